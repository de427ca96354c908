"""`vjepa demo --quick`: a generated corpus, a short pretraining and all probes on both encoders."""

import json

import pytest

from vjepa.cli import main


@pytest.mark.slow
def test_quick_demo_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "run.trackers=[]"]) == 0
    printed = capsys.readouterr().out
    for word in ("attentive:", "linear:", "knn:", "pretrained", "random-init", "95 % CI"):
        assert word in printed, word

    results = json.loads((out / "demo_results.json").read_text())
    assert results["chance"] == pytest.approx(100 / 6) and results["split"] == "val"
    assert results["num_val"] == 36  # 6 val clips per class, none dropped
    for name in ("pretrained", "random"):
        for kind in ("attentive", "linear", "knn"):
            report = json.loads((out / f"probe_{name}_{kind}" / "report.json").read_text())
            assert report["top1"] == results[name][kind] and 0 <= report["top1"] <= 100
            assert report["num_train"] == 48 and report["num_val"] == 36
    assert set(results["comparison"]) == {"attentive", "linear", "knn"}
    assert results["comparison"]["linear"]["test"] == "mcnemar"  # paired on the same val clips

    # three disjoint splits, each in a shuffled (not class-sorted) order
    lists = {
        s: (out / "corpus" / f"{s}.txt").read_text().split("\n")[:-1]
        for s in ("train", "dev", "val")
    }
    assert {s: len(v) for s, v in lists.items()} == {"train": 48, "dev": 24, "val": 36}
    paths = [line.split()[0] for v in lists.values() for line in v]
    assert len(set(paths)) == len(paths)
    labels = [int(line.split()[1]) for line in lists["train"]]
    assert labels != sorted(labels)

    # pretraining used the train split only, and left a complete run folder
    train_manifest = json.loads((out / "shards" / "train" / "manifest.json").read_text())
    assert train_manifest["count"] == 48
    run = out / "pretrain"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "step-00000010",
        "step-00000020",
    ]
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert max(r.get("step", 0) for r in rows) == 20

    # a second run finds everything complete and resumes instead of starting over
    assert main(["demo", "--quick", "--out", str(out), "run.trackers=[]"]) == 0
    rows_after = (run / "metrics.jsonl").read_text().splitlines()
    assert len(rows_after) <= len(rows) + 2  # at most a resume event, no re-training


def test_objects_corpus_has_a_dev_split(tmp_path):
    """`vjepa demo --corpus objects --split dev` needs dev shards (it used to fail after
    generating the corpus): train / dev / val like pan, disjoint clips."""
    from vjepa.demo.pretrain import CORPORA, write_demo_corpus

    assert set(CORPORA["objects"]["splits"]) == {"train", "dev", "val"}
    folders, names = write_demo_corpus(tmp_path, "objects", quick=True)
    assert set(folders) == {"train", "dev", "val"} and len(names) == 8
    counts = {s: json.loads((f / "manifest.json").read_text())["count"] for s, f in folders.items()}
    assert counts == {"train": 64, "dev": 32, "val": 48}
