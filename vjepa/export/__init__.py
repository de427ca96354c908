"""Export a frozen encoder, import official checkpoints, and load either back.

An *export folder* is the one portable format of this project::

    <out>/
        model.safetensors            the exported module's state dict (official bare key names)
        config.json                  architecture, normalisation, provenance (format_version 1)
        README.md                    model card
        predictor.safetensors        the predictor, when the source had one (import, HF export)
        context_encoder.safetensors  the context encoder (``vjepa import`` only)
        formats.json                 extra formats written and their measured max |diff|
        model.torchscript.pt / model.onnx / hf/   optional extra formats

One job per module: :mod:`vjepa.export.load` reads every source and rebuilds modules strictly
(:func:`load_encoder`), :mod:`vjepa.export.formats` writes export folders and the extra formats,
:mod:`vjepa.export.card` writes the model card. The names below are re-exported so that
``from vjepa.export import ...`` keeps working.
"""

from vjepa.export.card import model_card
from vjepa.export.formats import (
    EXTRA_FORMATS,
    example_input,
    export,
    import_official,
    onnx_max_abs_diff,
    write_onnx,
    write_torchscript,
)
from vjepa.export.load import (
    ARCH_KEYS,
    CARD_FILE,
    CONFIG_FILE,
    CONTEXT_FILE,
    FORMAT_VERSION,
    FORMATS_FILE,
    HF_DIR,
    ONNX_FILE,
    PREDICTOR_FILE,
    TORCHSCRIPT_FILE,
    WEIGHTS_FILE,
    ExportSourceError,
    FrozenEncoder,
    Loaded,
    WeightsMismatchError,
    Which,
    arch_of,
    build_encoder_from_arch,
    build_predictor_from_arch,
    config_json,
    file_sha256,
    frozen_encoder,
    load_encoder,
    predictor_arch_from_state,
    read_source,
    source_kind,
)

__all__ = [
    "ARCH_KEYS",
    "CARD_FILE",
    "CONFIG_FILE",
    "CONTEXT_FILE",
    "EXTRA_FORMATS",
    "FORMATS_FILE",
    "FORMAT_VERSION",
    "HF_DIR",
    "ONNX_FILE",
    "PREDICTOR_FILE",
    "TORCHSCRIPT_FILE",
    "WEIGHTS_FILE",
    "ExportSourceError",
    "FrozenEncoder",
    "Loaded",
    "WeightsMismatchError",
    "Which",
    "arch_of",
    "build_encoder_from_arch",
    "build_predictor_from_arch",
    "config_json",
    "example_input",
    "export",
    "file_sha256",
    "frozen_encoder",
    "import_official",
    "load_encoder",
    "model_card",
    "onnx_max_abs_diff",
    "predictor_arch_from_state",
    "read_source",
    "source_kind",
    "write_onnx",
    "write_torchscript",
]
