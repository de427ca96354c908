"""Probe heads, training recipe, view averaging and the report, on hand-made features."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from vjepa.config import load_config
from vjepa.eval.probe.fit import average_view_probs, build_head, fit_on_features, knn_probs, predict
from vjepa.eval.probe.heads import AttentiveClassifier, LinearProbe, init_head, knn_predict
from vjepa.eval.probe.report import classification_metrics, format_table, write_report
from vjepa.eval.probe.views import FeatureSet, head_inputs


def easy_set(n: int, num_classes: int, dim: int, *, tokens: int = 0, seed: int = 123):
    """Gaussian noise plus a class-dependent mean: separable, but not trivially (noise std 1).

    The seed differs from the head-init seed (0): the same stream would correlate the two.
    """
    g = torch.Generator().manual_seed(seed)
    means = 2.0 * torch.randn(num_classes, dim, generator=g)  # [C, D]
    labels = torch.arange(n) % num_classes  # [N]
    if tokens:
        x = torch.randn(n, tokens, dim, generator=g)  # [N, T, D]
        # The signal sits in ONE random token per sample: mean pooling dilutes it, attention finds it.
        where = torch.randint(0, tokens, (n,), generator=g)
        x[torch.arange(n), where] += 3.0 * means[labels]
        return x, labels
    return torch.randn(n, dim, generator=g) + means[labels], labels  # [N, D]


def test_knn_exact_predictions():
    train = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [-1.0, 0.0]])
    labels = torch.tensor([0, 0, 1, 1, 2])
    query = torch.tensor([[2.0, 0.1], [0.0, 3.0], [-5.0, 0.2]])  # scale must not matter (cosine)
    scores = knn_predict(train, labels, query, k=2, temperature=0.1, num_classes=3)
    assert scores.shape == (3, 3)
    assert scores.argmax(1).tolist() == [0, 1, 2]
    assert torch.allclose(scores.sum(1), torch.ones(3))
    # Query 2's two neighbours are train 4 (class 2) and train 2 or 3 (class 1): exact weights.
    q = torch.nn.functional.normalize(query[2:3], dim=1)
    sims = (q @ torch.nn.functional.normalize(train, dim=1).T)[0]
    top = sims.topk(2)
    w = torch.exp(top.values / 0.1)
    expected_c2 = (w[0] / w.sum()).item()
    assert top.indices[0].item() == 4
    assert scores[2, 2].item() == pytest.approx(expected_c2, rel=1e-5)
    assert scores[2, 0].item() == 0.0


def test_knn_small_temperature_does_not_overflow_and_k_is_clamped():
    train = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    scores = knn_predict(
        train,
        torch.tensor([0, 1]),
        torch.tensor([[1.0, 0.2]]),
        k=50,
        temperature=1e-3,
        num_classes=2,
    )
    assert torch.isfinite(scores).all()
    assert scores[0, 0].item() == pytest.approx(1.0)


def test_knn_learns_easy_set():
    x, y = easy_set(300, 5, 32)
    tr = FeatureSet([str(i) for i in range(200)], y[:200], x[:200, None], 1, 1)
    va = FeatureSet([str(i) for i in range(100)], y[200:], x[200:, None], 1, 1)
    probs = knn_probs(tr, va, k=10, temperature=0.07, num_classes=5)
    acc = (probs.argmax(1) == va.labels).float().mean().item()
    assert acc > 0.95


def _fit(kind: str, x: torch.Tensor, y: torch.Tensor, grid, epochs: int = 15):
    cfg = load_config(overrides=["probe.heads=4", f"probe.kind={kind}"])
    heads = [build_head(kind, x.shape[-1], 4, cfg, torch.Generator().manual_seed(0)) for _ in grid]
    losses = fit_on_features(
        heads, grid, x[:240, None], y[:240], epochs=epochs, batch_size=32, warmup_epochs=1,
        generator=torch.Generator().manual_seed(1),
    )  # fmt: skip
    accs = [
        (predict(h, x[240:, None], batch_size=64).argmax(1) == y[240:]).float().mean().item()
        for h in heads
    ]
    return heads, losses, accs


def test_linear_probe_learns_easy_set_and_grid_differs():
    x, y = easy_set(360, 4, 32)
    _, losses, accs = _fit("linear", x, y, [(1e-2, 0.01), (1e-7, 0.01)])
    assert accs[0] > 0.95
    # A near-zero lr leaves the head near its init (loss ~ ln 4): the sweep heads really differ.
    assert losses[0] < 0.2 and losses[1] > 1.2


def test_attentive_probe_learns_easy_token_set():
    x, y = easy_set(360, 4, 32, tokens=12)
    _, _, accs = _fit("attentive", x, y, [(3e-3, 0.01)], epochs=20)
    assert accs[0] > 0.9


def test_head_training_is_deterministic():
    x, y = easy_set(300, 4, 16)
    h1, l1, _ = _fit("linear", x, y, [(1e-2, 0.0)], epochs=2)
    h2, l2, _ = _fit("linear", x, y, [(1e-2, 0.0)], epochs=2)
    assert l1 == l2
    assert torch.equal(h1[0].linear.weight, h2[0].linear.weight)


def test_init_head_uses_generator_only():
    state = torch.random.get_rng_state()
    a = init_head(
        AttentiveClassifier(16, 3, num_heads=2, depth=2), torch.Generator().manual_seed(3)
    )
    b = init_head(
        AttentiveClassifier(16, 3, num_heads=2, depth=2), torch.Generator().manual_seed(3)
    )
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(pa, pb), name
    assert a.pooler.query_tokens.abs().sum() > 0
    # module construction draws from the global RNG, but init_head overwrites every parameter
    torch.random.set_rng_state(state)


def test_attentive_shapes_and_linear_on_tokens():
    head = AttentiveClassifier(16, 5, num_heads=4, depth=3, num_queries=2)
    assert head(torch.randn(3, 10, 16)).shape == (3, 5)
    assert head.pooler(torch.randn(3, 10, 16)).shape == (3, 2, 16)
    lin = LinearProbe(16, 5)
    assert lin(torch.randn(3, 10, 16)).shape == (3, 5)


def test_view_average_fixes_disagreeing_views():
    # Video 0 (true class 0): view 0 leans to class 1 a little, views 1-2 strongly to class 0.
    # Video 1 (true class 2): view 2 confidently says class 1, views 0-1 say class 2.
    logits = torch.tensor(
        [
            [[0.0, 0.5, 0.0], [4.0, 0.0, 0.0], [3.0, 0.0, 0.0]],
            [[0.0, 0.0, 3.0], [0.0, 1.0, 3.0], [0.0, 3.5, 0.0]],
        ]
    )  # [N=2, S=3, C=3]
    single = logits.argmax(-1)  # [2, 3]
    assert single[0].tolist() == [1, 0, 0] and single[1].tolist() == [2, 2, 1]
    probs = average_view_probs(logits)
    assert probs.argmax(1).tolist() == [0, 2]
    assert torch.allclose(probs.sum(1), torch.ones(2))
    assert probs[1, 2].item() == pytest.approx(logits[1].softmax(-1)[:, 2].mean().item())


def test_predict_averages_over_views():
    head = LinearProbe(2, 2, standardize=False)
    with torch.no_grad():
        head.linear.weight.copy_(torch.eye(2))
        head.linear.bias.zero_()
    # Each video: one view votes class 0 weakly, the other class 1 strongly.
    x = torch.tensor([[[1.0, 0.0], [0.0, 5.0]]])  # [N=1, S=2, D=2]
    probs = predict(head, x, batch_size=4)
    assert probs.argmax(1).item() == 1
    expected = (x[0].softmax(-1)).mean(0)
    assert torch.allclose(probs[0], expected)


def test_head_inputs_concatenate_clips_per_crop():
    N, clips, crops, T, D = 2, 2, 3, 4, 5
    feats = torch.arange(N * clips * crops * T * D, dtype=torch.float32).view(
        N, clips * crops, T, D
    )
    fs = FeatureSet(["a", "b"], torch.tensor([0, 1]), feats, clips, crops)
    x = head_inputs(fs, "attentive")
    assert x.shape == (N, crops, clips * T, D)
    # crop 1 of video 0 = tokens of view (clip 0, crop 1) then view (clip 1, crop 1)
    assert torch.equal(x[0, 1, :T], feats[0, 0 * crops + 1])
    assert torch.equal(x[0, 1, T:], feats[0, 1 * crops + 1])
    assert head_inputs(fs, "linear") is feats


def test_classification_metrics_values():
    probs = torch.tensor(
        [[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.5, 0.3, 0.2], [0.2, 0.3, 0.5]]
    )  # preds 0, 1, 0, 2
    labels = torch.tensor([0, 1, 1, 1])
    m = classification_metrics(probs, labels, ["a", "b", "c"])
    assert m["top1"] == pytest.approx(50.0)
    assert m["top5"] == pytest.approx(100.0)  # only 3 classes: top-5 covers all
    assert m["per_class"] == {"a": 100.0, "b": pytest.approx(100 / 3, abs=1e-3), "c": None}
    assert m["confusion"] == [[1, 0, 0], [1, 1, 1], [0, 0, 0]]


def test_write_report_and_table(tmp_path: Path, capsys):
    m = classification_metrics(torch.eye(3)[[0, 1, 1]], torch.tensor([0, 1, 2]), ["x", "y", "z"])
    report = {
        **m,
        "kind": "linear",
        "backbone": {"path": "runs/demo", "sha256": "ab" * 32},
        "views": "16x2x3",
        "num_train": 10,
        "num_val": 3,
        "sweep": {
            "selected_on_validation": True,
            "best": 1,
            "heads": [
                {"index": 0, "lr": 1e-3, "weight_decay": 0.01, "top1": 33.3},
                {"index": 1, "lr": 1e-2, "weight_decay": 0.01, "top1": 66.7},
            ],
        },
    }
    path = write_report(report, tmp_path / "probe")
    saved = json.loads(path.read_text())
    assert saved["top1"] == pytest.approx(200 / 3, abs=1e-3)
    assert saved["per_class"]["z"] == 0.0
    assert (tmp_path / "probe" / "confusion.png").stat().st_size > 1000
    table = format_table(report)
    assert "16x2x3" in table and "selected on validation: True" in table and "66.70%" in table
