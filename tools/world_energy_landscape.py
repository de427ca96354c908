"""How graded is the world model's latent energy? Spearman(energy, true distance) on Two Rooms.

    python tools/world_energy_landscape.py [ENCODER|random] [--pool P] [--blur S ...]
    python tools/world_energy_landscape.py --world RUN_OR_EXPORT   # a trained world model

Renders the agent on a 23x23 grid of free positions, encodes every frame with the world
model's encoding (one frame per tubelet, pooled, layer-normed) and, for three goals,
reports the Spearman rank correlation between the energy to the goal and the true
distance: over all positions, and over those more than 0.3 away (``far``).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from vjepa.world.io import random_encoder
from vjepa.world.model import WorldSpec, build_world_model
from vjepa.world.two_rooms import TwoRoomsEnv, _blocked


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("encoder", nargs="?", default="random")
    ap.add_argument("--pool", type=int, nargs="+", default=[1, 2, 8])
    ap.add_argument("--blur", type=float, nargs="+", default=[0.0, 1.0])
    ap.add_argument(
        "--world",
        default="",
        help="a world model (run / export folder): its own encoder, pooling and energy "
        "(e.g. an end-to-end trained one); ENCODER, --pool and --blur are then ignored",
    )
    args = ap.parse_args()
    env = TwoRoomsEnv()
    xs = np.linspace(0.06, 0.94, 23)
    pts = np.array([(x, y) for y in xs for x in xs if not _blocked(np.array([x, y]))], np.float32)
    frames = []
    for p in pts:
        env.reset(options={"state": p})
        frames.append(env.render())
    video = torch.from_numpy(np.stack(frames))[:, None]  # [P, 1, 64, 64, 3]
    if args.world:
        from vjepa.world.io import load_world_model

        wm = load_world_model(args.world)
        print(f"{args.world}: " + " | ".join(_landscape(wm, video, pts)), flush=True)
        return
    if args.encoder == "random":
        enc = random_encoder("tiny_cpu", patch_size=8, tubelet_size=2, img_size=64, seed=0)
    else:
        from vjepa.artifacts.encoder import load_encoder

        enc = load_encoder(args.encoder)
    for pool in args.pool:
        for blur in args.blur:
            spec = WorldSpec(
                frame_size=enc.img_size,
                pool=pool,
                window=2,
                action_low=[-1.0, -1.0],
                action_high=[1.0, 1.0],
                energy_blur=blur,
            )
            m = build_world_model(enc, spec, width=32, depth=1, heads=2)
            print(f"pool {pool} blur {blur}: " + " | ".join(_landscape(m, video, pts)), flush=True)


def _landscape(m, video: torch.Tensor, pts: np.ndarray) -> list[str]:
    """Spearman(energy to the goal, true distance) for three goals, and the latents' spread."""
    z = m.encode(video)[:, 0]  # [P, N, D]
    cells = []
    for goal in ([0.8, 0.8], [0.2, 0.3], [0.75, 0.2]):
        gi = int(np.argmin(np.linalg.norm(pts - np.array(goal), axis=1)))
        e = m.energy(z, z[gi : gi + 1]).numpy()
        d = np.linalg.norm(pts - pts[gi], axis=1)
        far = d > 0.3
        cells.append(f"{spearman(d, e):.2f} (far {spearman(d[far], e[far]):.2f})")
    cells.append(f"std over positions {float(z.std(dim=0).mean()):.3f}")
    return cells


if __name__ == "__main__":
    main()
