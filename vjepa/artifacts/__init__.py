"""Saved artifacts: classify and read every saved kind, export folders, official checkpoints.

An *export folder* is the one portable format of this project::

    <out>/
        model.safetensors            the exported module's state dict (official bare key names)
        config.json                  architecture, normalisation, provenance (format_version 1)
        README.md                    model card
        predictor.safetensors        the predictor, when the source had one (import, HF export)
        context_encoder.safetensors  the context encoder (``vjepa import`` only)
        formats.json                 extra formats written and their measured max |diff|
        model.torchscript.pt / model.onnx / hf/   optional extra formats

One job per module: :mod:`vjepa.artifacts.sources` classifies every saved kind and reads it
(:func:`~vjepa.artifacts.sources.classify`, :func:`~vjepa.artifacts.sources.read`),
:mod:`vjepa.artifacts.arch` rebuilds modules from their architecture,
:mod:`vjepa.artifacts.encoder` gives the :class:`~vjepa.artifacts.encoder.VideoEncoder`
(:func:`~vjepa.artifacts.encoder.load_encoder`, :func:`~vjepa.artifacts.encoder.random_encoder`),
:mod:`vjepa.artifacts.export` writes export folders and the extra formats,
:mod:`vjepa.artifacts.card` the model card, :mod:`vjepa.artifacts.official` reads the official
V-JEPA / V-JEPA 2 checkpoints and :mod:`vjepa.artifacts.hf` converts to and from Hugging Face's
VJEPA2.
"""
