"""Frozen-backbone evaluation: attentive, linear and kNN probes, and feature extraction.

- :mod:`vjepa.eval.probe.heads`    the probe heads (attentive pooler, linear, cosine kNN).
- :mod:`vjepa.eval.probe.features` frozen-encoder feature extraction (``vjepa extract``).
- :mod:`vjepa.eval.probe.run`      ``run_probe(cfg)`` (``vjepa probe``) and ``run_splits``.
- :mod:`vjepa.eval.probe.report`   report.json, confusion-matrix PNG and the stdout table.
"""
