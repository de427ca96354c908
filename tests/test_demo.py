"""`vjepa demo --quick`: shards of the sample corpus, a short pretraining and both probes."""

import json

import pytest

from vjepa.cli import main


@pytest.mark.slow
def test_quick_demo_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "run.trackers=[]"]) == 0
    printed = capsys.readouterr().out
    assert "pretrained encoder" in printed and "random-init encoder" in printed

    results = json.loads((out / "demo_results.json").read_text())
    assert set(results) == {"pretrained", "random", "chance"}
    assert results["chance"] == pytest.approx(100 / 6)
    for name in ("pretrained", "random"):
        report = json.loads((out / f"probe_{name}" / "report.json").read_text())
        assert report["top1"] == results[name] and 0 <= report["top1"] <= 100
        assert report["num_val"] == 72  # every val video of data/sample, none dropped
        assert (out / f"probe_{name}" / "confusion.png").stat().st_size > 0

    # pretraining used the train split only (216 videos), and left a complete run folder
    train_manifest = json.loads((out / "shards" / "train" / "manifest.json").read_text())
    assert train_manifest["count"] == 216 and not (out / "shards" / "all").exists()
    run = out / "pretrain"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "step-00000010",
        "step-00000020",
    ]
    assert (run / "loss.png").stat().st_size > 0 and (run / "masks.png").stat().st_size > 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert max(r.get("step", 0) for r in rows) == 20

    # a second run finds everything complete and resumes instead of starting over
    assert main(["demo", "--quick", "--out", str(out), "run.trackers=[]"]) == 0
    rows_after = (run / "metrics.jsonl").read_text().splitlines()
    assert len(rows_after) <= len(rows) + 2  # at most a resume event, no re-training
