"""Fixtures shared by the test files (pytest finds them by name)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


@pytest.fixture
def one_thread():
    """One intra-op thread for the test: tiny matrices run faster on one, and far faster on a
    busy machine. A file opts in with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def pan_corpus(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The demo's pan corpus, quick size: train 48, dev 24, val 36 clips of 6 classes
    ({split: shard folder}), written once per session."""
    from vjepa.demo.pretrain import write_demo_corpus

    folders, _ = write_demo_corpus(tmp_path_factory.mktemp("pan"), "pan", quick=True)
    return folders


# A short pretraining of the demo model (configs/pretrain/demo_cpu.yaml, the settings chosen on
# the dev split, docs/learning.md) on the TRAIN split of a generated pan corpus (never the val
# clips), shared by the slow tests that ask what it bought: the kNN probe
# (test_probe_run.py::test_probe_after_pretraining) and full fine-tuning
# (test_finetune_after_pretraining.py). 400 steps gave the kNN probe only +6.3 points, so 600
# is the floor.
E2E_STEPS = 600
E2E_PER_CLASS = {"train": 60, "val": 50}
E2E_CORPUS_SEED = 3


@pytest.fixture(scope="session")
def pan_pretraining(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """``{"cfg": the pretraining's Config, "run_dir": its folder, "shards": {split: folder}}``:
    the pan corpus (train 360, val 300 clips of 6 classes, seed 3) and E2E_STEPS steps of
    pretraining on train, run once per session (about 1 min on 2 cores)."""
    from vjepa.config import load_config
    from vjepa.data.formats import read_list
    from vjepa.data.synthetic import STYLES, write_split
    from vjepa.data.writer import write_shards
    from vjepa.demo.pretrain import PRETRAIN_CONFIG
    from vjepa.train.pretrain import pretrain

    root: Path = tmp_path_factory.mktemp("pan_pretraining")
    shards = {}
    for split, n in E2E_PER_CLASS.items():
        listing = write_split(root / "corpus", "pan", split, n, seed=E2E_CORPUS_SEED)
        shards[split] = root / "shards" / split
        items = read_list(listing).items
        write_shards(items, shards[split], prefix=split, label_names=list(STYLES["pan"]))
    cfg = load_config(
        PRETRAIN_CONFIG,
        [
            f"run.dir={root / 'pretrain'}",
            f"data.shards={shards['train']}",  # never the val videos
            f"train.max_steps={E2E_STEPS}",
            f"train.checkpoint_every={E2E_STEPS}",
            "run.trackers=[]",
        ],
    )
    return {"cfg": cfg, "run_dir": pretrain(cfg), "shards": shards}
