"""Encoder, predictor and their layers (see vjepa.models.encoder / predictor / layers)."""
