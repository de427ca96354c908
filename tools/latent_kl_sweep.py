"""The continuous latent's ``world.kl_weight`` on the hand-made bimodal transition of
tests/test_world_latent.py (docs/world_latent.md): for each weight, the test's model trained
for STEPS steps, then its best of 8 prior draws, posterior-mean error and KL on 1024 held-out
samples, beside the deterministic model's error.

    PYTHONPATH=. python tools/latent_kl_sweep.py 500 0.01 0.02 0.03 0.05
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_world_latent import _bimodal, _checks, _trained  # noqa: E402


def main(argv: list[str]) -> None:
    steps, weights = int(argv[0]), [float(w) for w in argv[1:]]
    torch.set_num_threads(1)
    z, a, slip = _bimodal(1024, torch.Generator().manual_seed(9))
    det = _checks(_trained(0, steps), z, a, slip)
    print(f"deterministic, {steps} steps: error {det['best_of_k']:.4f}")
    for w in weights:
        c = _checks(_trained(0, steps, z_dim=4, kl_weight=w), z, a, slip)
        print(
            f"kl_weight {w:g}: best of 8 {c['best_of_k']:.4f} "
            f"({c['best_of_k'] / det['best_of_k']:.2f} x), posterior {c['posterior_error']:.4f}, "
            f"KL {c['kl_nats']:.4f} nats"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
