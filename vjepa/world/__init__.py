"""World models and planning: environments, trajectory data, world model, CEM / MPPI MPC."""
