"""Training: the shared loop (Accelerate, checkpoints, resume), optimiser and schedules, run metrics
and plots, and pretraining's task."""
