"""The model card: the README.md of an export folder, from its config.json and checks."""

from __future__ import annotations

from typing import Any

from vjepa.artifacts.sources import CONFIG_FILE, WEIGHTS_FILE


def model_card(
    config: dict[str, Any], *, formats: dict[str, dict[str, Any]], probe: dict[str, Any] | None
) -> str:
    """The README.md of an export folder: what it is, how it was trained, how to load it."""
    arch, src = config["architecture"], config["source"]
    lines = [
        f"# V-JEPA {config['which']} {'module' if config['which'] == 'predictor' else 'encoder'}",
        "",
        "Exported by `vjepa export` (format version "
        f"{config['format_version']}). Weights: `{WEIGHTS_FILE}`; architecture: `{CONFIG_FILE}`.",
        "",
        "## Architecture",
        "",
        "| " + " | ".join(sorted(arch)) + " |",
        "|" + "---|" * len(arch),
        "| " + " | ".join(str(arch[k]) for k in sorted(arch)) + " |",
        "",
        *_training_lines(src),
        *_probe_lines(probe),
        *_format_lines(formats),
    ]
    if config["which"] != "predictor":
        lines += _usage_lines(config)
    if "classifier" in config:
        c = config["classifier"]
        lines += [
            "## Classifier",
            "",
            f"A fine-tuned encoder with its {c['head']['kind']} head (`head.safetensors`) over "
            f"{len(c['label_names'])} classes (`config.json` `classifier.label_names`, line i ="
            " class i): `vjepa.load_classifier(folder)(video)` gives the logits `[B, C]`.",
        ]
    return "\n".join(lines) + "\n"


def _training_lines(src: dict[str, Any]) -> list[str]:
    lines = ["## Training", "", f"- source: {src['kind']} (`{src['path']}`)"]
    if src.get("step") is not None:
        lines.append(f"- optimizer steps: {src['step']}")
    if src.get("samples_seen") is not None:
        lines.append(f"- videos seen: {src['samples_seen']}")
    if src.get("clips_seen") is not None:  # num_clips clips per video (older exports lack it)
        lines.append(f"- clips seen: {src['clips_seen']}")
    data = src.get("data")
    if data:
        count = data.get("num_samples")
        suffix = f" ({count} videos)" if count is not None else ""
        lines.append(f"- training data: `{data['shards']}`{suffix}")
    for key, value in (src.get("config") or {}).items():
        lines.append(f"- {key}: {value}")
    return [*lines, ""]


def _probe_lines(probe: dict[str, Any] | None) -> list[str]:
    if probe is None:
        return []
    rows = [(k, v) for k, v in probe.items() if isinstance(v, (int, float, str, bool))]
    lines = ["## Frozen-backbone probe", "", "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {v:.2f} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in rows]
    return [*lines, ""]


def _format_lines(formats: dict[str, dict[str, Any]]) -> list[str]:
    if not formats:
        return []
    lines = ["## Other formats", "", "| format | file | max abs diff to PyTorch |", "|---|---|---|"]
    for name, info in formats.items():
        diff = info.get("max_abs_diff")
        shown = "not checked" if diff is None else f"{diff:.2e}"
        lines.append(f"| {name} | `{info.get('file', info.get('folder'))}` | {shown} |")
    if "hf" in formats:
        lines += [
            "",
            "`transformers.VJEPA2Model.from_pretrained('hf')` takes `pixel_values_videos` as "
            "[B, T, 3, H, W] (frames before channels).",
        ]
    return [*lines, ""]


def _usage_lines(config: dict[str, Any]) -> list[str]:
    arch, norm = config["architecture"], config["normalization"]
    return [
        "## How to load",
        "",
        "```python",
        "import vjepa",
        "encoder = vjepa.load_encoder('THIS_FOLDER')  # strict; eval mode; no grads",
        f"x = encoder.preprocess(frames)  # uint8 [T,H,W,3] -> [1,3,T,{arch['img_size']},"
        f"{arch['img_size']}]",
        "tokens = encoder(x)  # [1, N, D] with D = " + str(arch["width"]),
        "embedding = encoder.pool(tokens)  # [1, D]",
        "```",
        "",
        f"Input: {arch['num_frames']} RGB frames at {arch['img_size']}x{arch['img_size']}, "
        f"scaled to [0, 1] and normalised with mean {norm['mean']} and std {norm['std']}.",
        "",
    ]
