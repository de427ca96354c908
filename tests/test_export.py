"""Export, import and load_encoder: strict loading, fresh-process reload, extra formats."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import vjepa
from vjepa.artifacts.encoder import VideoEncoder, load_encoder
from vjepa.artifacts.export import export, import_official
from vjepa.artifacts.official import WeightsMismatchError, build_from_official, read_official
from vjepa.artifacts.sources import ExportSourceError
from vjepa.config import PretrainRoot, to_dict
from vjepa.config.sections import ConfigError
from vjepa.data.augment import eval_transform
from vjepa.models.encoder import build_encoder
from vjepa.models.predictor import Predictor
from vjepa.train.checkpoint import save_checkpoint

FIXTURES = Path(__file__).parent / "fixtures" / "reference"


def tiny_config(pos_embed: str) -> PretrainRoot:
    cfg = PretrainRoot()
    cfg.model.name = "tiny_cpu"
    cfg.model.pos_embed = pos_embed
    cfg.model.pred_width, cfg.model.pred_depth, cfg.model.pred_heads = 48, 2, 3
    cfg.data.frames_per_clip, cfg.data.crop_size = 4, 64
    return cfg


def make_run(
    root: Path, pos_embed: str = "rope", step: int = 7, num_clips: int = 1
) -> tuple[Path, dict]:
    """A run folder in our checkpoint layout; returns it and the modules written into it."""
    cfg = tiny_config(pos_embed)
    cfg.data.num_clips = num_clips
    gen = torch.Generator().manual_seed(3)
    target = build_encoder(cfg.model, num_frames=4, img_size=64, generator=gen).eval()
    context = build_encoder(cfg.model, num_frames=4, img_size=64, generator=gen).eval()
    predictor = Predictor(
        embed_dim=96,
        width=48,
        depth=2,
        heads=3,
        num_mask_tokens=2,
        img_size=64,
        num_frames=4,
        patch_size=16,
        tubelet_size=2,
        pos_embed=pos_embed,
        generator=gen,
    )
    with torch.no_grad():  # non-zero mask tokens, so a wrong mask token would show
        for token in predictor.mask_tokens:
            token.normal_(generator=gen)
    state = {
        "target_encoder": target.state_dict(),
        "encoder": context.state_dict(),
        "predictor": predictor.state_dict(),
        "config": to_dict(cfg),
        "counters": {"step": step, "batches": 2 * step},  # as train.py saves them
        "world_size": 3,
    }
    run = root / "run"
    save_checkpoint(run, step, state=state, keep_last=2)
    return run, {"target": target, "context": context, "predictor": predictor}


def clip(batch: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randn((batch, 3, 4, 64, 64), generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def run_rope(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    return make_run(tmp_path_factory.mktemp("rope"), "rope")


@pytest.fixture(scope="module")
def run_sincos(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    return make_run(tmp_path_factory.mktemp("sincos"), "sincos")


@pytest.mark.parametrize("kind", ["run", "checkpoint"])
def test_load_encoder_from_our_run(run_rope, kind):
    run, modules = run_rope
    path = run if kind == "run" else run / "checkpoints" / "step-00000007"
    enc = vjepa.load_encoder(path)
    x = clip()
    with torch.no_grad():
        assert torch.equal(enc(x), modules["target"](x))
    assert isinstance(enc, VideoEncoder)
    assert (enc.embed_dim, enc.num_frames, enc.img_size) == (96, 4, 64)
    assert (enc.patch_size, enc.tubelet_size) == (16, 2)
    assert not enc.training and all(not p.requires_grad for p in enc.parameters())
    enc.train()  # a probe wrapper calling .train() must not unfreeze the backbone
    assert not enc.training and not enc.encoder.training
    weights = run / "checkpoints" / "step-00000007" / "target_encoder.safetensors"
    assert enc.sha256 == hashlib.sha256(weights.read_bytes()).hexdigest()
    context = load_encoder(path, which="context")
    with torch.no_grad():
        assert torch.equal(context(x), modules["context"](x))
        assert not torch.equal(context(x), enc(x))
    assert enc.pool(enc(x)).shape == (2, 96)


def test_export_reloads_identically_in_fresh_process(run_sincos, tmp_path):
    run, modules = run_sincos
    out = export(run, tmp_path / "export")
    assert {p.name for p in out.iterdir()} >= {"model.safetensors", "config.json", "README.md"}
    x = clip()
    save_file({"x": x}, str(tmp_path / "x.safetensors"))
    code = (
        "import sys, vjepa, torch; from safetensors.torch import load_file, save_file;"
        "enc = vjepa.load_encoder(sys.argv[1]); x = load_file(sys.argv[2])['x'];"
        "save_file({'y': enc(x).contiguous()}, sys.argv[3])"
    )
    args = [str(out), str(tmp_path / "x.safetensors"), str(tmp_path / "y.safetensors")]
    subprocess.run([sys.executable, "-c", code, *args], check=True, timeout=120)
    with torch.no_grad():
        expected = modules["target"](x)
    assert torch.equal(load_file(str(tmp_path / "y.safetensors"))["y"], expected)


def test_config_json_round_trips(run_rope, tmp_path):
    run, _ = run_rope
    first = export(run, tmp_path / "a")
    second = export(first, tmp_path / "b")
    assert (first / "config.json").read_text() == (second / "config.json").read_text()
    config = json.loads((first / "config.json").read_text())
    assert config["architecture"] == {
        "depth": 4,
        "heads": 3,
        "img_size": 64,
        "mlp_ratio": 4.0,
        "num_frames": 4,
        "patch_size": 16,
        "pos_embed": "rope",
        "tubelet_size": 2,
        "width": 96,
    }
    assert config["which"] == "target" and config["source"]["step"] == 7
    assert config["source"]["samples_seen"] == 2 * 7 * 8 * 3  # batches x batch x ranks
    assert config["predictor"]["num_mask_tokens"] == 2 and config["predictor"]["heads"] == 3
    a, b = load_file(str(first / "model.safetensors")), load_file(str(second / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_model_card_has_training_and_probe(run_rope, tmp_path):
    run, _ = run_rope
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"top1": 41.25, "kind": "attentive", "num_classes": 3}))
    out = export(run, tmp_path / "e", probe_report=report)
    card = (out / "README.md").read_text()
    assert "| top1 | 41.25 |" in card
    assert "optimizer steps: 7" in card and "runs/shards/sample" in card
    assert "vjepa.load_encoder" in card


def test_model_card_counts_every_clip_of_a_video(tmp_path):
    run, _ = make_run(tmp_path / "clips", num_clips=3)  # 3 clips (batch rows) per video
    out = export(run, tmp_path / "e")
    source = json.loads((out / "config.json").read_text())["source"]
    videos = 2 * 7 * 8 * 3  # micro-batches x batch size x ranks
    assert (source["samples_seen"], source["clips_seen"]) == (videos, 3 * videos)
    card = (out / "README.md").read_text()
    assert f"- videos seen: {videos}\n" in card and f"- clips seen: {3 * videos}\n" in card
    assert "- num_clips: 3\n" in card


def _tamper(src: Path, dst: Path, edit) -> Path:
    shutil.copytree(src, dst)
    state = load_file(str(dst / "model.safetensors"))
    edit(state)
    save_file(state, str(dst / "model.safetensors"))
    return dst


def test_tampered_weights_fail_naming_the_key(run_rope, tmp_path):
    run, _ = run_rope
    good = export(run, tmp_path / "good")

    def rename(s):
        s["blocks.1.attn.qkvx.weight"] = s.pop("blocks.1.attn.qkv.weight")

    def drop(s):
        del s["norm.bias"]

    def reshape(s):
        s["blocks.0.mlp.fc1.bias"] = s["blocks.0.mlp.fc1.bias"][:10].clone()

    with pytest.raises(WeightsMismatchError, match=r"missing keys: blocks\.1\.attn\.qkv\.weight"):
        load_encoder(_tamper(good, tmp_path / "renamed", rename))
    with pytest.raises(WeightsMismatchError, match=r"unexpected keys: blocks\.1\.attn\.qkvx"):
        load_encoder(tmp_path / "renamed")
    with pytest.raises(WeightsMismatchError, match=r"missing keys: norm\.bias"):
        load_encoder(_tamper(good, tmp_path / "dropped", drop))
    with pytest.raises(
        WeightsMismatchError, match=r"blocks\.0\.mlp\.fc1\.bias \(checkpoint \(10,\)"
    ):
        load_encoder(_tamper(good, tmp_path / "reshaped", reshape))


def test_unknown_source_is_a_clear_error(tmp_path):
    with pytest.raises(ExportSourceError, match="no such file"):
        load_encoder(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ExportSourceError, match="not an export folder"):
        load_encoder(tmp_path / "empty")
    with pytest.raises(ValueError, match="unknown export format"):
        export(tmp_path / "empty", tmp_path / "out", formats=["tflite"])


def test_torchscript_export_matches(run_rope, tmp_path):
    run, modules = run_rope
    out = export(run, tmp_path / "ts", formats=["torchscript"])
    traced = torch.jit.load(str(out / "model.torchscript.pt"))
    x = clip(batch=3, seed=5)
    with torch.no_grad():
        assert torch.equal(traced(x), modules["target"](x))
    assert json.loads((out / "formats.json").read_text())["torchscript"]["max_abs_diff"] == 0.0


def test_onnx_export_matches(run_sincos, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    run, modules = run_sincos
    out = export(run, tmp_path / "onnx", formats=["onnx"])
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    x = clip(batch=3, seed=6)
    (tokens,) = session.run(None, {"video": x.numpy()})
    with torch.no_grad():
        diff = (torch.from_numpy(tokens) - modules["target"](x)).abs().max().item()
    assert diff < 5e-5
    recorded = json.loads((out / "formats.json").read_text())["onnx"]["max_abs_diff"]
    assert recorded is not None and recorded < 5e-5


@pytest.mark.parametrize("name", ["jepa_tiny", "vjepa2_tiny"])
def test_official_fixture_export_and_import(name, tmp_path):
    ckpt_file = FIXTURES / name / "checkpoint.pt"
    io = load_file(str(FIXTURES / name / "io.safetensors"))
    direct, _ = build_from_official(read_official(ckpt_file), num_heads=3)
    with torch.no_grad():
        expected = direct.eval()(io["x"])  # [2, N, D]
    assert (expected - io["enc_full"]).abs().max().item() <= 5e-6

    out = export(ckpt_file, tmp_path / "export", num_heads=3)
    enc = load_encoder(out)
    with torch.no_grad():
        assert torch.equal(enc(io["x"]), expected)
    assert json.loads((out / "config.json").read_text())["source"]["kind"].startswith("official")

    imported = import_official(ckpt_file, tmp_path / "import", num_heads=3)
    assert (imported / "predictor.safetensors").is_file()
    context = load_encoder(imported, which="context")
    with torch.no_grad():
        assert torch.equal(load_encoder(imported)(io["x"]), expected)
        enc_ctx = context.encoder(io["x"], masks=io["ctx_idx"])  # [2, Kc, D]
    assert (enc_ctx - io["enc_ctx"]).abs().max().item() <= 5e-6
    assert enc.sha256 == hashlib.sha256((out / "model.safetensors").read_bytes()).hexdigest()


def test_official_predictor_export_loads(tmp_path):
    ckpt_file = FIXTURES / "jepa_tiny" / "checkpoint.pt"
    out = export(ckpt_file, tmp_path / "pred", which="predictor", num_heads=3)
    config = json.loads((out / "config.json").read_text())
    assert config["which"] == "predictor" and config["architecture"]["num_mask_tokens"] == 2
    with pytest.raises(ExportSourceError, match="holds a predictor"):
        load_encoder(out)


def test_preprocess_resizes_crops_and_normalises(run_rope):
    run, _ = run_rope
    enc = load_encoder(run)
    frames = np.zeros((4, 90, 120, 3), dtype=np.uint8)
    frames[..., 0] = 255  # pure red: every output pixel is exactly (1 - mean) / std in R
    x = enc.preprocess(frames)
    assert x.shape == (1, 3, 4, 64, 64) and x.dtype == torch.float32
    red = (1 - 0.485) / 0.229
    assert torch.allclose(x[:, 0], torch.full_like(x[:, 0], red), atol=1e-5)
    assert torch.allclose(x[:, 1], torch.full_like(x[:, 1], -0.456 / 0.224), atol=1e-5)
    batch = enc.preprocess(torch.from_numpy(np.stack([frames, frames])))
    assert batch.shape == (2, 3, 4, 64, 64) and torch.equal(batch[1], x[0])
    # Centre crop: a left-edge stripe outside the central square must not appear.
    striped = frames.copy()
    striped[:, :, :10] = 0
    assert torch.equal(enc.preprocess(striped), x)
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, size=(4, 90, 120, 3), dtype=np.uint8)
    assert torch.equal(enc.preprocess(noise), eval_transform(noise, crop_size=64))
    with pytest.raises(ValueError, match="uint8"):
        enc.preprocess(frames.astype(np.float32))
    assert enc(x).shape == (1, 32, 96)


def test_plain_pytorch_loading_snippet(run_rope, tmp_path):
    """The README recipe: config.json architecture = the VisionTransformer arguments."""
    run, modules = run_rope
    folder = export(run, tmp_path / "e")
    from vjepa.models.encoder import VisionTransformer

    arch = json.loads((folder / "config.json").read_text())["architecture"]
    enc = VisionTransformer(**arch).eval()
    enc.load_state_dict(load_file(str(folder / "model.safetensors")), strict=True)
    x = clip()
    with torch.no_grad():
        assert torch.equal(enc(x), modules["target"](x))


def test_a_frozen_teacher_run_gives_its_trained_context_encoder(tmp_path):
    # Issue 27: with the demo's frozen random teacher (optim.ema [1, 1]) the target encoder is
    # the random init; every reader must default to the encoder that trained (the context one).
    from train_utils import make_shards, tiny_overrides

    from vjepa.config import load_config
    from vjepa.eval.probe.features import load_backbone
    from vjepa.jepa.model import build_jepa
    from vjepa.train.pretrain import pretrain

    shards = make_shards(tmp_path / "shards", per_class=2, per_shard=12)
    run = tmp_path / "run"
    cfg = load_config(None, tiny_overrides(run, shards, "train.max_steps=3", "optim.ema=[1,1]"))
    pretrain(cfg)
    ckpt = run / "checkpoints" / "step-00000003"
    trained = load_file(str(ckpt / "encoder.safetensors"))
    init = build_jepa(cfg).encoder.state_dict()

    def assert_trained(state: dict) -> None:
        assert state.keys() == trained.keys()
        assert all(torch.equal(state[k], trained[k]) for k in trained)
        assert any(not torch.equal(state[k], init[k]) for k in init)

    assert_trained(vjepa.load_encoder(run).encoder.state_dict())
    assert vjepa.load_encoder(run).config["source"]["encoder"] == "context"
    out = export(run, tmp_path / "export")
    assert_trained(load_file(str(out / "model.safetensors")))
    encoder, identity = load_backbone(
        str(run), random_model="tiny_cpu", data_cfg=cfg.data, model_cfg=None, seed=0
    )
    assert_trained(encoder.encoder.state_dict())
    assert identity["encoder"] == "context"
    with pytest.warns(UserWarning, match="target encoder never trained"):
        target = vjepa.load_encoder(run, which="target")
    target_state = target.encoder.state_dict()
    assert all(torch.equal(target_state[k], init[k]) for k in init)  # the random init


@pytest.mark.parametrize(
    "options",
    [
        {"frame_diff": True},
        {"stem": "conv"},
        {"frame_diff": True, "stem": "conv"},
        {"frame_diff": True, "rgb": False},
        {"centre_input": True},
        {"centre_input": True, "frame_diff": True},
    ],
)
def test_small_frame_encoders_load_export_and_hide_what_is_masked(tmp_path, options):
    """model.frame_diff / model.stem=conv (issue 27): recorded in the architecture, so load,
    export and reload give the same encoder; a context of the first steps sees no later frame,
    and with a spatial mask no kept token sees a hidden pixel (the conv reaches across tokens)."""
    from vjepa.models.encoder import with_frame_diff

    x = clip()
    diff = with_frame_diff(x)  # [B, 6, T, H, W]
    assert torch.equal(diff[:, :3], x) and not diff[:, 3:, 0].any()
    assert torch.allclose(diff[:, 3:, 2], x[:, :, 2] - x[:, :, 1])
    cfg = tiny_config("rope")
    for key, value in options.items():
        setattr(cfg.model, key, value)
    enc = build_encoder(cfg.model, num_frames=4, img_size=64).eval()
    channels = 3 * (options.get("rgb", True) + options.get("frame_diff", False))
    assert enc.patch_embed.proj.weight.shape[1] == channels
    state = {"target_encoder": enc.state_dict(), "encoder": enc.state_dict(),
             "config": to_dict(cfg), "counters": {"step": 1, "batches": 1}}  # fmt: skip
    save_checkpoint(tmp_path / "run", 1, state=state, keep_last=1)
    loaded = load_encoder(tmp_path / "run")
    with torch.no_grad():
        assert torch.equal(loaded(x), enc(x))
        export(tmp_path / "run", tmp_path / "export")
        assert torch.equal(load_encoder(tmp_path / "export")(x), enc(x))
        later = x.clone()
        later[:, :, 2:] += 3.0  # change only the second tubelet
        first = torch.arange(16)[None].expand(2, -1)  # the first tubelet's 16 tokens
        assert torch.equal(enc(x, first), enc(later, first))
        assert not torch.equal(enc(x), enc(later))
        keep = torch.tensor([[0, 5, 10, 15, 16, 21], [1, 2, 7, 12, 19, 30]])  # scattered tokens
        on = torch.zeros(2, 32).scatter_(1, keep, 1.0).view(2, 1, 2, 4, 4)
        for dim, size in ((2, 2), (3, 16), (4, 16)):
            on = on.repeat_interleave(size, dim=dim)  # [B, 1, T, H, W]
        noisy = x + 4.0 * (1 - on) * torch.randn_like(x)  # only hidden pixels change
        assert torch.allclose(enc(x, keep), enc(noisy, keep), atol=1e-6)
        every = torch.arange(32)[None].expand(2, -1)
        assert torch.allclose(enc(x, [keep, every])[1], enc(x), atol=1e-5)


def blind_to_still_background(cfg) -> bool:
    """Whether the encoder of ``cfg.model`` gives the same tokens for two clips that differ
    only by a background that is the same in every frame."""
    x = clip()
    background = torch.randn(2, 3, 1, 64, 64).expand_as(x)  # the same in every frame
    enc = build_encoder(cfg.model, num_frames=4, img_size=64).eval()
    with torch.no_grad():
        return torch.allclose(enc(x), enc(x + background), atol=1e-5)


def test_differences_only_input_cannot_see_a_still_background():
    """model.rgb=false (issue 27): with only frame differences at the input, two clips that
    differ by a still background give the same tokens; with RGB kept they do not."""
    cfg = tiny_config("rope")
    cfg.model.frame_diff = True
    for rgb, blind in ((False, True), (True, False)):
        cfg.model.rgb = rgb
        assert blind_to_still_background(cfg) is blind
    cfg.model.frame_diff = False
    cfg.model.rgb = False
    with pytest.raises(ConfigError, match="model.rgb: false needs model.frame_diff"):
        cfg.model.check()


def test_centred_input_cannot_see_a_still_background_but_sees_what_moves():
    """model.centre_input (issue 27): each pixel minus its mean over the clip's frames. Two
    clips that differ by a still background give the same tokens; a moving square of another
    colour gives other tokens (the differences-only input keeps colour only as a change)."""
    from vjepa.models.encoder import centre_frames

    x = clip()
    assert torch.allclose(centre_frames(x).mean(dim=2), torch.zeros(()), atol=1e-6)
    on = torch.ones(2, 1, 4, 64, 64)
    on[:, :, 2:] = 0  # the second tubelet hidden: the mean is over the first two frames only
    first = centre_frames(x, on)
    assert torch.allclose(first[:, :, :2], x[:, :, :2] - x[:, :, :2].mean(2, keepdim=True))
    assert not first[:, :, 2:].any()
    cfg = tiny_config("rope")
    for centre in (False, True):
        cfg.model.centre_input = centre
        assert blind_to_still_background(cfg) is centre
    enc = build_encoder(cfg.model, num_frames=4, img_size=64).eval()
    still = torch.zeros(2, 3, 4, 64, 64)
    red, blue = still.clone(), still.clone()
    for t in range(4):  # a square moving right, red in one clip and blue in the other
        red[:, 0, t, 16:32, 8 * t : 8 * t + 16] = 1.0
        blue[:, 2, t, 16:32, 8 * t : 8 * t + 16] = 1.0
    with torch.no_grad():
        assert not torch.allclose(enc(red), enc(blue), atol=1e-3)
