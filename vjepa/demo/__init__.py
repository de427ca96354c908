"""The demos: ``vjepa demo`` (pretrain + probes + surprise) and ``vjepa demo world``."""
