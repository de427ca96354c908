"""The pretraining loop on real shards of the sample corpus with the tiny model (CPU)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from train_utils import (
    final_weights,
    kill_after_first_checkpoint,
    make_shards,
    run_vjepa,
    tiny_overrides,
    vjepa_cmd,
    write_config,
)

from vjepa.config import load_config
from vjepa.train.checkpoint import MARKER, latest_checkpoint, list_checkpoints, load_checkpoint
from vjepa.train.loop import resolve_threads, run_training
from vjepa.train.metrics import MetricsLog, read_metrics
from vjepa.train.plots import plot_loss
from vjepa.train.pretrain import TrainingDivergedError, pretrain
from vjepa.train.schedules import lr_at
from vjepa.train.task import StepOutput, Task


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_shards(tmp_path_factory.mktemp("shards"))


pytestmark = pytest.mark.usefixtures("one_thread")


def _loss_rows(run_dir: Path) -> list[dict]:
    return [r for r in read_metrics(run_dir / "metrics.jsonl") if "loss" in r]


def test_a_few_steps_lower_the_loss(tmp_path: Path, shards: Path) -> None:
    run_dir = tmp_path / "run"
    cfg = load_config(
        None, tiny_overrides(run_dir, shards, "train.max_steps=30", "train.checkpoint_every=30")
    )
    assert pretrain(cfg) == run_dir
    rows = _loss_rows(run_dir)
    assert [r["step"] for r in rows] == list(range(1, 31))
    first = sum(r["loss"] for r in rows[:5]) / 5
    last = sum(r["loss"] for r in rows[-5:]) / 5
    assert last < 0.8 * first, (first, last)
    row = rows[-1]
    for key in ("lr", "wd", "ema", "clips_per_s", "data_wait_frac", "grad_norm", "skipped_steps"):
        assert math.isfinite(row[key]), key
    assert row["data_errors"] == {} and row["skipped_steps"] == 0
    assert row["data_retries"] == {}  # local shards: no network, nothing retried
    assert 0.0 <= row["data_wait_frac"] <= 1.0 and row["clips_per_s"] > 0
    # the schedules of the last step (index 29): near the end of the cosine
    assert row["lr"] == pytest.approx(
        lr_at(29, warmup_steps=5, start_lr=2e-4, lr=1e-3, final_lr=1e-5, total_steps=30)
    )
    assert row["ema"] == pytest.approx(0.99 + 0.01 * 29 / 30)
    health = [r for r in rows if "target_std" in r]
    assert [r["step"] for r in health] == [5, 10, 15, 20, 25, 30]
    assert all(r["target_std"] > 0 and 1 <= r["target_rank"] <= 96 for r in health)
    assert all(0 <= r["target_position_share"] <= 1 and r["target_clip_std"] > 0 for r in health)
    for name in ("config.yaml", "loss.png", "health.png", "masks.png", "metrics.jsonl"):
        assert (run_dir / name).stat().st_size > 0, name
    ckpt = latest_checkpoint(run_dir)
    assert ckpt is not None and ckpt.name == "step-00000030"
    state = load_checkpoint(ckpt)
    assert state["counters"]["step"] == 30 and state["counters"]["batches"] == 30
    assert state["world_size"] == 1 and state["per_rank"][0]["data"]["batches"] == 30


def test_nan_steps_are_skipped_then_too_many_stop(tmp_path: Path, shards: Path) -> None:
    run_dir = tmp_path / "run"
    overrides = tiny_overrides(
        run_dir, shards, "train.max_steps=20", "train.checkpoint_every=5", "train.max_bad_steps=3"
    )
    cfg = load_config(None, overrides)
    bad = {2, *range(6, 20)}  # one isolated NaN, then NaN for good from step 6
    with pytest.raises(TrainingDivergedError, match="3 consecutive steps") as info:
        pretrain(cfg, nan_steps=bad)
    assert "step-00000005" in str(info.value)  # names the last good checkpoint
    rows = read_metrics(run_dir / "metrics.jsonl")
    assert rows[-1]["event"] == "diverged" and rows[-1]["skipped_steps"] == 4
    by_step = {r["step"]: r for r in rows if "event" not in r}
    assert by_step[3]["skipped_steps"] == 1 and by_step[5]["skipped_steps"] == 1
    assert "loss" not in by_step[3]  # a window of skipped steps only has no loss to report
    assert math.isfinite(by_step[4]["loss"]) and by_step[2]["skipped_steps"] == 0
    # the last good checkpoint is intact, complete and finite; nothing later was written
    assert [p.name for p in list_checkpoints(run_dir)] == ["step-00000005"]
    state = load_checkpoint(latest_checkpoint(run_dir))
    assert state["counters"]["skipped_steps"] == 1
    for name in ("encoder", "predictor", "target_encoder"):
        assert all(torch.isfinite(t).all() for t in state[name].values()), name
    assert not list((run_dir / "checkpoints").glob(".tmp-*"))


def test_half_written_checkpoints_are_ignored_on_resume(tmp_path: Path, shards: Path) -> None:
    run_dir = tmp_path / "run"
    base = tiny_overrides(run_dir, shards, "train.checkpoint_every=2")
    pretrain(load_config(None, [*base, "train.max_steps=4"]))
    root = run_dir / "checkpoints"
    tmp = root / ".tmp-step-00000006"  # a save killed midway
    tmp.mkdir()
    (tmp / "encoder.safetensors").write_bytes(b"\0" * 10)
    unmarked = root / "step-00000008"  # a folder without its COMPLETE marker
    unmarked.mkdir()
    (unmarked / "train_state.pt").write_bytes(b"garbage")
    pretrain(load_config(None, [*base, "train.max_steps=6"]))
    events = [r for r in read_metrics(run_dir / "metrics.jsonl") if "event" in r]
    assert events[-1]["event"] == "resume" and events[-1]["step"] == 4
    assert events[-1]["checkpoint"].endswith("step-00000004")
    assert latest_checkpoint(run_dir).name == "step-00000006"
    assert (root / "step-00000006" / MARKER).is_file()
    assert not tmp.exists()
    steps = [r["step"] for r in _loss_rows(run_dir)]
    assert steps == [1, 2, 3, 4, 5, 6]


@pytest.mark.slow
def test_kill_and_resume_matches_an_uninterrupted_run(tmp_path: Path, shards: Path) -> None:
    steps = 24
    extra = (f"train.max_steps={steps}", "train.checkpoint_every=4", "train.keep_last=2")
    config = write_config(
        tmp_path / "tiny.yaml", tiny_overrides(tmp_path / "unused", shards, *extra)
    )
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    done = run_vjepa(config, f"run.dir={straight}")
    assert done.returncode == 0, done.stderr[-3000:]

    first_step = kill_after_first_checkpoint(vjepa_cmd(config, f"run.dir={killed}"), killed)
    assert 4 <= first_step < steps, "the run ended before the kill: nothing was resumed"

    again = run_vjepa(config, f"run.dir={killed}")
    assert again.returncode == 0, again.stderr[-3000:]
    events = [r for r in read_metrics(killed / "metrics.jsonl") if "event" in r]
    assert [e["event"] for e in events] == ["start", "resume"]
    assert events[1]["step"] == first_step
    assert f"resume at step {first_step}" in again.stdout + again.stderr

    a, b = final_weights(straight), final_weights(killed)
    for name in a:
        assert a[name].keys() == b[name].keys()
        for key in a[name]:
            torch.testing.assert_close(
                b[name][key], a[name][key], rtol=0, atol=1e-6, msg=f"{name}.{key}"
            )
    # the loss curve after the resume replays the uninterrupted one
    la = {r["step"]: r["loss"] for r in _loss_rows(straight)}
    lb = {r["step"]: r["loss"] for r in _loss_rows(killed)}
    for step in range(first_step + 1, steps + 1):
        assert lb[step] == pytest.approx(la[step], abs=1e-6), step


def test_data_errors_are_counted_and_logged(tmp_path: Path) -> None:
    import json

    import webdataset as wds
    from train_utils import SAMPLE

    shards = tmp_path / "shards"
    shards.mkdir()
    good = sorted(SAMPLE.glob("*/*.mp4"))[:8]
    with wds.TarWriter(str(shards / "mixed-000000.tar")) as sink:
        for i, path in enumerate(good):  # a broken video after every good one
            sink.write(
                {
                    "__key__": f"good{i:03d}",
                    "mp4": path.read_bytes(),
                    "json": json.dumps({"label": 0}),
                }
            )
            sink.write(
                {
                    "__key__": f"bad{i:03d}",
                    "mp4": b"not a video at all",
                    "json": json.dumps({"label": 0}),
                }
            )
    run_dir = tmp_path / "run"
    cfg = load_config(
        None, tiny_overrides(run_dir, shards, "train.max_steps=2", "data.shuffle_buffer=0")
    )
    pretrain(cfg)
    rows = _loss_rows(run_dir)
    assert len(rows) == 2 and all(math.isfinite(r["loss"]) for r in rows)
    errors = rows[-1]["data_errors"]
    assert sum(errors.values()) >= 7, errors  # 8 good clips read: at least 7 bad ones passed
    # A resumed run keeps counting from the checkpoint's totals instead of from zero.
    saved = load_checkpoint(latest_checkpoint(run_dir))["counters"]["data_errors_before_resume"]
    assert saved == errors
    pretrain(load_config(None, [*tiny_overrides(run_dir, shards, "data.shuffle_buffer=0"),
                                "train.max_steps=4"]))  # fmt: skip
    after = _loss_rows(run_dir)[-1]["data_errors"]
    assert sum(after.values()) >= sum(errors.values()) + 7, (errors, after)


def test_metrics_reader_and_loss_plot_handle_torn_lines_and_resume(tmp_path: Path) -> None:
    log = MetricsLog(tmp_path / "metrics.jsonl")
    for step, loss in [(1, 1.0), (2, 0.9), (3, 0.8)]:
        log.write({"step": step, "loss": loss, "lr": 1e-3})
    log.write({"event": "resume", "step": 2})
    log.write({"step": 3, "loss": 0.7, "lr": 1e-3})  # replayed after the resume: this one wins
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 4, "lo')  # a line cut by a kill
    rows = read_metrics(tmp_path / "metrics.jsonl")
    assert len(rows) == 5 and rows[-1]["loss"] == 0.7
    assert plot_loss(tmp_path / "metrics.jsonl", tmp_path / "loss.png") == tmp_path / "loss.png"
    assert (tmp_path / "loss.png").read_bytes()[:4] == b"\x89PNG"
    assert plot_loss(tmp_path / "missing.jsonl", tmp_path / "none.png") is None
    assert MetricsLog(tmp_path / "off.jsonl", enabled=False).write({"step": 1}) is None
    assert not (tmp_path / "off.jsonl").exists()


class _Regressor(torch.nn.Module):
    """A second kind of training for the shared loop: no EMA target, two child modules."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.body = torch.nn.Linear(6, 16)
        self.head = torch.nn.Linear(16, 1)
        for p in self.parameters():
            p.data.copy_(torch.randn(p.shape, generator=g) * 0.3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.body(x)))  # [B, 1]


def _regression_batches(cfg, rank: int, world: int, start: dict | None):
    w = torch.linspace(-1, 1, 6)
    i = int((start or {}).get("batches", 0))  # resume: continue the deterministic stream
    while True:
        g = torch.Generator().manual_seed(1000 * rank + i)
        x = torch.randn(8, 6, generator=g)  # [B, 6]
        yield {"x": x, "y": (x @ w).unsqueeze(1)}  # [B, 1]
        i += 1


def _regression_task():
    def forward(cfg, model, batch, device):
        err = model(batch["x"].to(device)) - batch["y"].to(device)  # [B, 1]
        return StepOutput(loss=err.pow(2).mean(), terms={"mae": err.abs().mean().detach()})

    return Task(
        name="regress",
        build_model=lambda cfg: _Regressor(),
        batches=_regression_batches,
        forward=forward,
    )


def test_the_loop_trains_a_second_task_and_resumes_it_exactly(tmp_path: Path) -> None:
    def cfg(run_dir: Path, steps: int):
        return load_config(
            None,
            [
                f"run.dir={run_dir}",
                "run.trackers=[]",
                "run.log_every=1",
                f"train.max_steps={steps}",
                "train.checkpoint_every=10",
                "train.health_every=1000",
                "optim.lr=0.02",
                "optim.start_lr=0.02",
                "optim.final_lr=0.02",  # constant schedules: a 20-step run is a 40-step
                "optim.final_weight_decay=0.04",  # run's first half
                "optim.warmup_steps=0",
            ],
        )

    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    run_training(cfg(straight, 40), _regression_task())
    run_training(cfg(resumed, 20), _regression_task())
    run_training(cfg(resumed, 40), _regression_task())  # resumes from step 20
    rows = _loss_rows(straight)
    assert [r["step"] for r in rows] == list(range(1, 41)) and "mae" in rows[-1]
    assert rows[-1]["loss"] < 0.3 * rows[0]["loss"], (rows[0]["loss"], rows[-1]["loss"])
    ckpt = latest_checkpoint(resumed)
    assert sorted(p.name for p in ckpt.glob("*.safetensors")) == [
        "body.safetensors",
        "head.safetensors",
    ]
    a, b = load_checkpoint(straight), load_checkpoint(resumed)
    for part in ("body", "head"):
        for key in a[part]:
            torch.testing.assert_close(b[part][key], a[part][key], rtol=0, atol=1e-6)
    assert b["counters"]["batches"] == 40


def test_auto_threads_never_oversubscribe(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    cores = len(os.sched_getaffinity(0))
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    assert resolve_threads("auto", 0) == cores
    assert resolve_threads("auto", cores) == 1  # all cores busy decoding: still one thread
    assert resolve_threads("auto", 1) == max(1, cores - 1)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(cores))  # one process per core
    assert resolve_threads("auto", 0) == 1
    assert resolve_threads(3, 2) == 3  # an integer is taken as is
