"""Fixtures shared by the test files (pytest finds them by name)."""

from __future__ import annotations

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
