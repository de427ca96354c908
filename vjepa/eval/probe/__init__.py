"""Frozen-backbone evaluation: attentive, linear and kNN probes, and feature extraction.

- :mod:`vjepa.eval.probe.heads`    the probe heads (attentive pooler, linear, cosine kNN).
- :mod:`vjepa.eval.probe.features` frozen-encoder feature extraction (``vjepa extract``).
- :mod:`vjepa.eval.probe.views`    frozen features of a labelled set, view by view (cached).
- :mod:`vjepa.eval.probe.fit`      the heads of the (lr, wd) grid on the shared optimizer and
  schedules, and the selection on validation.
- :mod:`vjepa.eval.probe.run`      ``run_probe(cfg)`` (``vjepa probe``) and ``run_splits``.
- :mod:`vjepa.eval.probe.report`   report.json, confusion-matrix PNG and the stdout table.
"""
