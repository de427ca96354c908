"""Write an export folder (safetensors + config.json + model card) and its extra formats.

:func:`export` writes one module of any source :mod:`vjepa.artifacts.sources` reads;
:func:`import_official` converts an official file with its context encoder and predictor.
Extra formats (TorchScript, ONNX, a Hugging Face folder) are each checked against our module
and their measured max |difference| goes into formats.json.
"""

from __future__ import annotations

import json
import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from vjepa.artifacts.arch import build_encoder_from_arch, build_predictor_from_arch
from vjepa.artifacts.card import model_card
from vjepa.artifacts.classifier import classifier_from
from vjepa.artifacts.encoder import VideoEncoder, encoder_from
from vjepa.artifacts.hf import hf_max_abs_diff, write_hf
from vjepa.artifacts.official import load_state_strict
from vjepa.artifacts.sources import (
    CARD_FILE,
    CONFIG_FILE,
    CONTEXT_FILE,
    FORMAT_VERSION,
    FORMATS_FILE,
    HEAD_FILE,
    HF_DIR,
    ONNX_FILE,
    PREDICTOR_FILE,
    TORCHSCRIPT_FILE,
    WEIGHTS_FILE,
    ExportSourceError,
    Loaded,
    Which,
    classify,
    config_json,
    read,
)
from vjepa.errors import UsageError

EXTRA_FORMATS = ("torchscript", "onnx", "hf")


# ----------------------------------------------------------------------------------------
# Writing an export folder
# ----------------------------------------------------------------------------------------


def export(
    src: str | Path,
    out_dir: str | Path,
    *,
    which: Which | None = None,
    formats: Sequence[str] = (),
    probe_report: Path | None = None,
    num_heads: int | None = None,
    pred_num_heads: int | None = None,
    num_frames: int | None = None,
    img_size: int | None = None,
) -> Path:
    """Export one module of ``src`` as ``out_dir/model.safetensors`` + config.json + README.md.

    ``src``: a run folder (its latest complete checkpoint), a checkpoint folder, an export
    folder or an official V-JEPA / V-JEPA 2 file. A `vjepa finetune` run (its kept best
    checkpoint, else the last) or checkpoint exports its fine-tuned encoder + ``head.safetensors``
    and a ``classifier`` section in config.json (vjepa.artifacts.classifier.load_classifier). ``formats`` adds any of ``torchscript``,
    ``onnx`` (checked with onnxruntime when installed) and ``hf`` (a transformers VJEPA2Model
    folder); each one's measured max |difference| to our module goes into formats.json.
    """
    unknown = [f for f in formats if f not in EXTRA_FORMATS]
    if unknown:
        raise UsageError(f"unknown export format(s) {unknown}; choose from {list(EXTRA_FORMATS)}")
    if which == "predictor" and formats:
        raise UsageError("extra formats are for encoders; export the predictor without --format")
    loaded = _read_with_extras(src, which, (num_heads, pred_num_heads), (num_frames, img_size))
    module = _build_checked(loaded, str(src))
    out = _prepare_out(Path(src), Path(out_dir))
    config = _write_weights(loaded, out)
    done = _write_formats(module, loaded, config, out, formats) if formats else {}
    report = json.loads(Path(probe_report).read_text()) if probe_report is not None else None
    (out / CARD_FILE).write_text(model_card(config, formats=done, probe=report))
    return out


def import_official(
    path: str | Path,
    out_dir: str | Path,
    *,
    num_heads: int | None = None,
    pred_num_heads: int | None = None,
    num_frames: int | None = None,
    img_size: int | None = None,
) -> Path:
    """Convert an official V-JEPA / V-JEPA 2 file into an export folder of ours.

    The target encoder becomes model.safetensors; the context encoder and the predictor are
    kept as context_encoder.safetensors and predictor.safetensors, all checked strictly.
    ``num_frames`` / ``img_size`` record the clip geometry of a RoPE model (V-JEPA 2 files do
    not store it; the default is its 16 x 256 pretraining clip).
    """
    path = Path(path)
    if classify(path) != "official":
        raise ExportSourceError(f"{path}: vjepa import takes an official checkpoint file")
    loaded = _read_with_extras(path, "target", (num_heads, pred_num_heads), (num_frames, img_size))
    _build_checked(loaded, str(path))
    if "context" in loaded.extras:
        context = build_encoder_from_arch(loaded.arch)
        load_state_strict(context, loaded.extras["context"], f"{path} (context encoder)")
    out = _prepare_out(path, Path(out_dir))
    config = _write_weights(loaded, out, with_context=True)
    (out / CARD_FILE).write_text(model_card(config, formats={}, probe=None))
    return out


def _read_with_extras(
    src: str | Path,
    which: Which | None,
    heads: tuple[int | None, int | None],
    geometry: tuple[int | None, int | None],
) -> Loaded:
    """:func:`read` with the companions an export keeps; ``heads`` (encoder, predictor),
    ``geometry`` (num_frames, img_size)."""
    return read(
        src,
        which=which,
        num_heads=heads[0],
        pred_num_heads=heads[1],
        num_frames=geometry[0],
        img_size=geometry[1],
        with_extras=True,
    )


def _build_checked(loaded: Loaded, source: str) -> nn.Module:
    """Build the module the weights describe and load them strictly (the export's validation)."""
    if loaded.which == "predictor":
        predictor = build_predictor_from_arch(loaded.arch)
        load_state_strict(predictor, loaded.state, f"{source} (predictor)")
        return predictor
    frozen = encoder_from(loaded, source)
    if loaded.classifier is not None:
        classifier_from(loaded, source)  # the head loads strictly onto the encoder
    if "predictor" in loaded.extras and loaded.predictor_arch is not None:
        predictor = build_predictor_from_arch(loaded.predictor_arch)
        load_state_strict(predictor, loaded.extras["predictor"], f"{source} (predictor)")
    return frozen


def _prepare_out(src: Path, out: Path) -> Path:
    src_dir = src if src.is_dir() else src.parent
    if out.resolve() == src_dir.resolve():
        raise UsageError(f"{out}: the export folder must differ from the source folder")
    out.mkdir(parents=True, exist_ok=True)
    stale_files = (TORCHSCRIPT_FILE, ONNX_FILE, ONNX_FILE + ".data", FORMATS_FILE, CONTEXT_FILE)
    for stale in (*stale_files, HEAD_FILE):
        (out / stale).unlink(missing_ok=True)  # never leave files of an older export behind
    shutil.rmtree(out / HF_DIR, ignore_errors=True)
    return out


def _save(state: dict[str, torch.Tensor], path: Path, which: str) -> None:
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    meta = {"format": "pt", "vjepa_format_version": str(FORMAT_VERSION), "which": which}
    save_file(tensors, str(path), metadata=meta)


def _write_weights(loaded: Loaded, out: Path, *, with_context: bool = False) -> dict[str, Any]:
    _save(loaded.state, out / WEIGHTS_FILE, loaded.which)
    predictor = loaded.extras.get("predictor") if loaded.which != "predictor" else None
    if predictor is not None:
        _save(predictor, out / PREDICTOR_FILE, "predictor")
    else:
        (out / PREDICTOR_FILE).unlink(missing_ok=True)
        loaded.predictor_arch = None
    if with_context and "context" in loaded.extras:
        _save(loaded.extras["context"], out / CONTEXT_FILE, "context")
    if loaded.classifier is not None:  # a fine-tuned classifier: its head beside the encoder
        _save(loaded.extras["head"], out / HEAD_FILE, "head")
    config = config_json(loaded)
    (out / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return config


# ----------------------------------------------------------------------------------------
# Extra formats
# ----------------------------------------------------------------------------------------


def example_input(arch: dict[str, Any], batch: int = 1, seed: int = 0) -> torch.Tensor:
    """A seeded normal clip of the exported geometry: [batch, 3, T, S, S]."""
    gen = torch.Generator().manual_seed(seed)
    shape = (batch, 3, arch["num_frames"], arch["img_size"], arch["img_size"])
    return torch.randn(shape, generator=gen)


def _write_formats(
    frozen: VideoEncoder,
    loaded: Loaded,
    config: dict[str, Any],
    out: Path,
    formats: Sequence[str],
) -> dict[str, dict[str, Any]]:
    """Write each extra format, check it against ``frozen`` and record the result."""
    example = example_input(loaded.arch, batch=1, seed=0)
    check = example_input(loaded.arch, batch=2, seed=1)  # a different input and batch size
    with torch.no_grad():
        expected = frozen(check)  # [2, N, D]
    done: dict[str, dict[str, Any]] = {}
    if "torchscript" in formats:
        done["torchscript"] = write_torchscript(frozen, out / TORCHSCRIPT_FILE, example)
        with warnings.catch_warnings():  # torch.jit is deprecated but still the portable format
            warnings.filterwarnings("ignore", category=FutureWarning)
            traced = torch.jit.load(str(out / TORCHSCRIPT_FILE))
        with torch.no_grad():
            done["torchscript"]["max_abs_diff"] = _diff(traced(check), expected)
    if "onnx" in formats:
        done["onnx"] = write_onnx(frozen, out / ONNX_FILE, example)
        done["onnx"]["max_abs_diff"] = onnx_max_abs_diff(out / ONNX_FILE, check, expected)
    if "hf" in formats:
        done["hf"] = _write_hf(frozen, loaded, config, out, check)
    (out / FORMATS_FILE).write_text(json.dumps(done, indent=2, sort_keys=True) + "\n")
    return done


def _diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.float() - b.float()).abs().max().item()


def write_torchscript(frozen: VideoEncoder, path: Path, example: torch.Tensor) -> dict[str, Any]:
    """torch.jit.trace of the bare encoder at the example's shape (batch size stays free)."""
    with torch.no_grad(), warnings.catch_warnings():
        # Constants folded into the trace (RoPE sign pattern, token ids) are shape-fixed by
        # design: the traced file is documented as valid for this T x H x W only.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)  # torch.jit is deprecated
        traced = torch.jit.trace(frozen.encoder, (example,), check_trace=False)
    traced.save(str(path))
    return {"file": path.name, "traced_input_shape": list(example.shape)}


def write_onnx(frozen: VideoEncoder, path: Path, example: torch.Tensor) -> dict[str, Any]:
    """ONNX via the TorchScript-based exporter (no onnxscript needed), dynamic batch axis."""
    with torch.no_grad(), warnings.catch_warnings():
        # The legacy exporter warns that it is legacy and that traced shape checks become
        # constants; the geometry is fixed by design and the batch axis stays dynamic.
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(
            frozen.encoder,
            (example,),
            str(path),
            dynamo=False,
            input_names=["video"],
            output_names=["tokens"],
            dynamic_axes={"video": {0: "batch"}, "tokens": {0: "batch"}},
            opset_version=17,
        )
    return {"file": path.name, "input": "video [B,3,T,H,W]", "output": "tokens [B,N,D]"}


def onnx_max_abs_diff(path: Path, x: torch.Tensor, expected: torch.Tensor) -> float | None:
    """Run the ONNX file with onnxruntime (None when onnxruntime is not installed)."""
    try:
        import onnxruntime
    except ImportError:
        return None
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (tokens,) = session.run(None, {"video": x.numpy()})
    return _diff(torch.from_numpy(tokens), expected)


def _write_hf(
    frozen: VideoEncoder, loaded: Loaded, config: dict[str, Any], out: Path, x: torch.Tensor
) -> dict[str, Any]:
    predictor = loaded.extras.get("predictor")
    hf_dir = write_hf(out / HF_DIR, loaded.state, config, predictor_state=predictor)
    try:
        diff: float | None = hf_max_abs_diff(hf_dir, frozen.encoder, x)
    except ImportError:  # transformers is an optional extra: the folder is still written
        diff = None
    return {"folder": HF_DIR, "with_predictor": predictor is not None, "max_abs_diff": diff}
