"""Planning in a world model's latent space: planners (CEM / MPPI), model-predictive control
over episodes, reports and plots."""
