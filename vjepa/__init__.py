"""vjepa."""
