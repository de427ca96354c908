"""The JEPA objective: the model (context encoder + predictor vs target encoder), its losses and
the 3D masks."""
