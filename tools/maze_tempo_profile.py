"""How far does a world model's temporal-distance head see on vjepa/Maze-v0? (issue #22)

    python tools/maze_tempo_profile.py RUN_OR_EXPORT [--tasks 20] [--split dev|val]

For each task of ``vjepa plan``'s split (the same seeds: task_seed 1000000, val + 500000), the
agent is rendered at the centre of every cell of the maze's one path from the start to the
goal; prints, by cells left to the goal along that path, the mean of the head's predicted env
steps to the goal image and of the latent energy (``WorldModel.energy``). Where the steps sit
at the head's cap, its cost is flat and cannot guide a planner.
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np
import torch

import vjepa
from vjepa.world.envs import make_env, reset_to
from vjepa.world.planning.mpc import VAL_OFFSET


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("world", help="world train run folder or world export with tempo.safetensors")
    ap.add_argument("--tasks", type=int, default=20)
    ap.add_argument("--split", choices=["dev", "val"], default="dev")
    args = ap.parse_args()
    env = make_env("vjepa/Maze-v0")
    base = env.unwrapped
    wm = vjepa.load_world_model(args.world)
    if wm.tempo is None:
        raise SystemExit(f"{args.world}: no temporal-distance head (train with world.tempo=true)")
    first = 1_000_000 + (VAL_OFFSET if args.split == "val" else 0)
    steps, energy = defaultdict(list), defaultdict(list)
    for i in range(args.tasks):
        start, goal = base.sample_task(first + i)
        goal_frame = reset_to(env, goal)
        path = base.cell_path(start, goal)
        frames = np.stack([reset_to(env, base.cell_centre(c)) for c in path])  # [P, H, W, 3]
        with torch.no_grad():
            z = wm.encode(frames[None])[0]  # [P, N, D]
            zg = wm.encode(goal_frame[None, None])[0]  # [1, N, D]
            s, e = wm.tempo.steps(z, zg).numpy(), wm.energy(z, zg).numpy()
        for j in range(len(path)):
            steps[len(path) - 1 - j].append(float(s[j]))
            energy[len(path) - 1 - j].append(float(e[j]))
    print(f"cells left | predicted steps (cap {wm.tempo.cap}) | latent energy | cells")
    for k in sorted(steps):
        print(
            f"{k:>10} | {np.mean(steps[k]):>15.1f} | {np.mean(energy[k]):>13.2f} | {len(steps[k])}"
        )


if __name__ == "__main__":
    main()
