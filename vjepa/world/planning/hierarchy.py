"""Two-level planning (``plan.levels=2``): subgoals on the support of the data.

The high level searches a graph whose nodes are frames of the data (every
``plan.subgoal_stride``-th frame of the trajectory shards, at most ``plan.subgoal_nodes``), so
every subgoal it proposes is a state the data visited (Hi-LeWM: keep the high-level search on
the data's support). Edges:

- **temporal**: consecutive nodes of one trajectory (the data moved between them in
  ``subgoal_stride`` steps: reachable by construction);
- **links**: each node to its ``plan.subgoal_neighbours`` nearest nodes elsewhere whose
  distance is at most the median distance of the temporal edges (as close as one data hop).

The distance is a :class:`Measure`: the world model's energy between latents
(:class:`LatentMeasure`: learned) or the simulator's state distance (:class:`StateMeasure`: the
oracle's truth). What is learned: the encoder's latents that place the agent and link
trajectories; the graph's reachability is the data's own. What is not: the high level has no
predictor of its own and no macro-actions; it is a shortest path (Dijkstra) over the graph.

At every replan :class:`HighLevel` takes the node nearest the current observation, the shortest
path from it to the node nearest the goal, and proposes the node ``plan.subgoal_steps`` data
steps along it (the goal itself once the rest of the path is shorter, or when no path exists);
the low level (the flat planner, unchanged) plans toward that node's frame. Subgoal
reachability: the share of proposed subgoals whose true state the agent reaches (within the
env's ``success_distance``) within ``plan.horizon`` steps of the proposal.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import yaml
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import dijkstra

from vjepa.config import ConfigError, PlanConfig
from vjepa.world.trajectories import Trajectory, read_trajectories

log = logging.getLogger(__name__)


class Measure(Protocol):
    """Distances between observations (frame + state) and the graph's nodes."""

    def fit(self, frames: np.ndarray, states: np.ndarray) -> None:
        """Remember the nodes: frames [M, H, W, 3] uint8, states [M, S]."""

    def to_nodes(self, frame: np.ndarray, state: np.ndarray) -> np.ndarray:
        """Distances [M] from one observation to every node."""

    def pairwise(self, rows: np.ndarray) -> np.ndarray:
        """Distances [R, M] from nodes ``rows`` to every node."""


class LatentMeasure:
    """The world model's planning energy (``WorldModel.energy``) between encoded frames."""

    def __init__(self, model: Any, device: torch.device) -> None:
        self.model, self.device = model, device
        self.z: torch.Tensor | None = None

    @torch.no_grad()
    def fit(self, frames: np.ndarray, states: np.ndarray) -> None:
        self.z = self.model.encode(frames)[:, 0]  # [M, N, D]

    @torch.no_grad()
    def to_nodes(self, frame: np.ndarray, state: np.ndarray) -> np.ndarray:
        z = self.model.encode(np.ascontiguousarray(frame)[None])[:, 0]  # [1, N, D]
        return self.model.energy(self.z, z).cpu().numpy()  # [M]

    @torch.no_grad()
    def pairwise(self, rows: np.ndarray) -> np.ndarray:
        return np.stack(
            [self.model.energy(self.z, self.z[i : i + 1]).cpu().numpy() for i in rows]
        )  # [R, M]


class StateMeasure:
    """The simulator's ``state_distance`` (truth; for the oracle and for tests)."""

    def __init__(self, env: Any) -> None:
        self.base = env.unwrapped
        self.states: np.ndarray | None = None

    def fit(self, frames: np.ndarray, states: np.ndarray) -> None:
        self.states = states

    def to_nodes(self, frame: np.ndarray, state: np.ndarray) -> np.ndarray:
        return np.asarray(self.base.state_distance(self.states, np.asarray(state)))  # [M]

    def pairwise(self, rows: np.ndarray) -> np.ndarray:
        return np.stack([self.to_nodes(None, self.states[i]) for i in rows])  # [R, M]


@dataclass
class SubgoalGraph:
    """The data's frames as graph nodes, with temporal and link edges weighted in data steps."""

    frames: np.ndarray  # [M, H, W, 3] uint8
    states: np.ndarray  # [M, S]
    weights: Any  # scipy sparse [M, M]: data steps of an edge (symmetric)
    measure: Measure
    links: int  # link edges (beside the temporal ones)


def build_graph(trajs: list[Trajectory], measure: Measure, pcfg: PlanConfig) -> SubgoalGraph:
    """Nodes every ``subgoal_stride`` frames of ``trajs`` (at most ``subgoal_nodes``), edges
    temporal and links (see the module doc)."""
    stride = pcfg.subgoal_stride
    frames, states, src, dst = [], [], [], []
    count = 0
    for traj in trajs:
        if traj.states is None:
            raise ValueError(f"trajectory {traj.key} has no states (plan.levels=2 needs them)")
        idx = np.arange(0, traj.frames.shape[0], stride)
        if frames and count + len(idx) > pcfg.subgoal_nodes:
            break
        first, count = count, count + len(idx)
        frames.append(traj.frames[idx])
        states.append(traj.states[idx])
        src.extend(range(first, first + len(idx) - 1))
        dst.extend(range(first + 1, first + len(idx)))
    node_frames = np.concatenate(frames)  # [M, H, W, 3]
    node_states = np.concatenate(states).astype(np.float32)  # [M, S]
    m = node_frames.shape[0]
    measure.fit(node_frames, node_states)
    dist = np.concatenate(
        [measure.pairwise(np.arange(i, min(i + 256, m))) for i in range(0, m, 256)]
    )  # [M, M]
    src_a, dst_a = np.asarray(src, dtype=int), np.asarray(dst, dtype=int)
    radius = float(np.median(dist[src_a, dst_a])) if len(src_a) else 0.0
    np.fill_diagonal(dist, np.inf)
    k = min(pcfg.subgoal_neighbours, m - 1)
    near = np.argpartition(dist, k - 1, axis=1)[:, :k] if k > 0 else np.zeros((m, 0), int)
    rows = np.repeat(np.arange(m), near.shape[1])
    cols = near.reshape(-1)
    keep = dist[rows, cols] <= radius
    rows, cols = rows[keep], cols[keep]
    all_src = np.concatenate([src_a, dst_a, rows, cols])
    all_dst = np.concatenate([dst_a, src_a, cols, rows])
    w = np.full(all_src.shape[0], float(stride))
    weights = coo_matrix((w, (all_src, all_dst)), shape=(m, m)).tocsr()
    weights.data[:] = float(stride)  # duplicates summed by tocsr: every edge is one hop
    return SubgoalGraph(node_frames, node_states, weights, measure, int(keep.sum()))


class HighLevel:
    """Proposes subgoals along the graph's shortest path; counts their reachability."""

    def __init__(self, graph: SubgoalGraph, pcfg: PlanConfig) -> None:
        self.graph, self.pcfg = graph, pcfg
        self.steps_ahead = pcfg.subgoal_steps or pcfg.horizon
        self.proposed = 0
        self.reached = 0
        self._pred: np.ndarray | None = None
        self._to_goal: np.ndarray | None = None
        self._open: list[tuple[int, int]] = []  # (node, step proposed) not yet reached

    def start(self, goal_frame: np.ndarray, goal_state: np.ndarray) -> None:
        """A new episode: shortest paths of every node to the node nearest the goal."""
        g = self.graph
        goal_node = int(np.argmin(g.measure.to_nodes(goal_frame, goal_state)))
        self._to_goal, self._pred = dijkstra(
            g.weights, directed=False, indices=goal_node, return_predecessors=True
        )
        self.proposed, self.reached, self._open, self._current = 0, 0, [], -1

    def target(
        self, frame: np.ndarray, state: np.ndarray, goal_frame: np.ndarray, goal: Any, step: int
    ) -> tuple[np.ndarray, Any]:
        """(frame, state) the low level plans toward now: a graph node, or the goal itself."""
        g = self.graph
        node = int(np.argmin(g.measure.to_nodes(frame, state)))
        if not np.isfinite(self._to_goal[node]) or self._to_goal[node] <= self.steps_ahead:
            return goal_frame, goal
        walked, sub = 0.0, node
        while self._pred[sub] >= 0 and walked + self.pcfg.subgoal_stride <= self.steps_ahead:
            sub = int(self._pred[sub])
            walked += self.pcfg.subgoal_stride
        if sub != self._current:
            self._current = sub
            self.proposed += 1
            self._open.append((sub, step))
        return g.frames[sub], g.states[sub]

    def observe(self, base: Any, step: int) -> None:
        """After an env step: subgoals reached (true distance) within plan.horizon steps."""
        still = []
        for node, t0 in self._open:
            if base.goal_distance(self.graph.states[node]) <= base.success_distance:
                self.reached += 1
            elif step - t0 < self.pcfg.horizon:
                still.append((node, t0))
        self._open = still


def subgoal_shards(pcfg: PlanConfig) -> str:
    """plan.subgoal_data, else the world model run's own training shards (its data.shards)."""
    if pcfg.subgoal_data:
        return pcfg.subgoal_data
    run_config = Path(pcfg.model) / "config.yaml"
    if pcfg.model != "oracle" and run_config.is_file():
        shards = (yaml.safe_load(run_config.read_text()) or {}).get("data", {}).get("shards")
        if shards:
            return str(shards)
    raise ConfigError(
        "plan.subgoal_data: plan.levels=2 needs trajectory shards for its subgoals "
        f"(plan.model={pcfg.model!r} names no run folder with data.shards)"
    )


def high_level(pcfg: PlanConfig, env: Any, model: Any, device: torch.device) -> HighLevel:
    """The high level of ``plan.levels=2``: the graph over the subgoal data, measured by the
    world model's energy (the oracle's state distance when ``model`` is None)."""
    trajs = read_trajectories(subgoal_shards(pcfg), decoder="auto", need_states=True)
    measure = StateMeasure(env) if model is None else LatentMeasure(model, device)
    graph = build_graph(trajs, measure, pcfg)
    log.info("subgoal graph: %d nodes, %d link edges", graph.frames.shape[0], graph.links)
    return HighLevel(graph, pcfg)
