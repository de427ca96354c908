"""Frozen-backbone evaluation: attentive, linear and kNN probes, and feature extraction.

- :mod:`vjepa.probe.heads`    the probe heads (attentive pooler, linear, cosine kNN).
- :mod:`vjepa.probe.features` frozen-encoder feature extraction (``vjepa extract``).
- :mod:`vjepa.probe.run`      ``run_probe(cfg)`` (``vjepa probe``) and ``run_splits``.
- :mod:`vjepa.probe.report`   report.json, confusion-matrix PNG and the stdout table.
"""
