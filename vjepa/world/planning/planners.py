"""Sampling-based trajectory optimisers: CEM and MPPI (pure torch, batched, seeded).

Both minimise an energy over action sequences: ``cost`` maps a batch of sequences
``[N, H, A]`` to energies ``[N]`` in one call (a batched world-model rollout, or the true
simulator for the oracle), so the whole population is scored on the device at once. Every
random draw comes from the ``generator`` passed in; no global RNG.

- **CEM** (cross-entropy method, as in V-JEPA 2-AC and DINO-WM): sample around a Gaussian,
  refit it to the ``elites`` lowest-energy samples, repeat. Returns the lowest-energy sequence
  seen (the current mean is scored each iteration too, so the answer is never worse than it).
- **MPPI** (model-predictive path integral, as in PLDM / EB-JEPA): refit the Gaussian to all
  samples weighted by ``softmax(-energy / temperature)``. Returns the final weighted mean.

**Rejection** (``plan.guard_mode=reject``): a cost may return ``(energies [N], violating
[N] bool)``. A violating sample then ranks after every safe one, the elite set holds only safe
samples while any exist, and the answer is a safe sequence whenever a safe one was seen.

``init_mean`` warm-starts the search (MPC passes the previous plan shifted by the executed
steps); ``init_std`` is a fraction of the half-range of the action box.

:func:`plan_actions` runs the planner that ``plan.planner`` names with the settings of the
``plan`` config section: the one entry point of ``vjepa plan``, its plots and
``WorldModel.plan``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from vjepa.config import PlanConfig

Cost = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class Search:
    """What both planners search and how: the keywords of :func:`cem` and :func:`mppi`."""

    horizon: int
    """Actions per sequence, H."""
    action_low: Tensor
    """[A] lower bound of every action."""
    action_high: Tensor
    """[A] upper bound of every action."""
    samples: int
    """Sequences scored per iteration, N (one call of the cost)."""
    iterations: int
    """Refits of the sampling distribution."""
    elites: int
    """Lowest-energy samples the distribution is refit to, within [1, samples]."""
    generator: torch.Generator
    """The source of every random draw."""
    init_mean: Tensor | None = None
    """[H, A] warm start (MPC: the previous plan shifted); None: the centre of the box."""
    init_std: float = 1.0
    """Initial sampling std, a fraction of the half-range of the box."""
    min_std: float = 0.02
    """Floor of the std (a fraction of the half-range): the search never collapses too early."""

    def __post_init__(self) -> None:
        low, high, horizon, samples = self.action_low, self.action_high, self.horizon, self.samples
        if horizon < 1 or samples < 2:
            raise ValueError(
                f"planner needs horizon >= 1 and samples >= 2, got {horizon}, {samples}"
            )
        if low.shape != high.shape or low.ndim != 1:
            raise ValueError(
                f"action_low / action_high must be [A] each, got {list(low.shape)} "
                f"and {list(high.shape)}"
            )
        if self.init_mean is not None and self.init_mean.shape != (horizon, low.shape[0]):
            raise ValueError(
                f"init_mean must be [horizon, A] = [{horizon}, {low.shape[0]}], "
                f"got {list(self.init_mean.shape)}"
            )
        if not 1 <= self.elites <= samples:
            raise ValueError(f"elites must be within [1, samples={samples}], got {self.elites}")

    def start(self) -> tuple[Tensor, Tensor, Tensor]:
        """(mean [H, A], std [H, A], half-range [A]) of the initial sampling distribution."""
        low, high = self.action_low, self.action_high
        mid = (low + high) / 2  # [A]
        half = (high - low) / 2  # [A]
        start = mid.expand(self.horizon, -1) if self.init_mean is None else self.init_mean
        mean = torch.minimum(torch.maximum(start, low), high)  # [H, A], a new tensor
        std = (self.init_std * half).expand(self.horizon, -1).clone()  # [H, A]
        return mean, std, half

    def population(
        self, cost: Cost, mean: Tensor, std: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """One iteration: ``samples`` sequences around (mean, std) clipped to the box (row 0: the
        mean), scored and ranked: (sequences [N, H, A], energies [N], violating [N] bool, elite
        indices [K] from the lowest energy up)."""
        noise = torch.randn(
            (self.samples, *mean.shape),
            generator=self.generator,
            device=mean.device,
            dtype=mean.dtype,
        )  # [N, H, A]
        seqs = mean + std * noise
        seqs[0] = mean  # score the current mean too
        seqs = torch.minimum(torch.maximum(seqs, self.action_low), self.action_high)
        energy, violating = _scored(cost, seqs)  # [N], [N]
        rank, k = _ranked(energy, violating, self.elites)
        return seqs, energy, violating, torch.topk(rank, int(k), largest=False).indices


def _scored(cost: Cost, seqs: Tensor) -> tuple[Tensor, Tensor]:
    """(energies [N], violating [N] bool: all False unless the cost returns the mask)."""
    out = cost(seqs)
    energy, violating = out if isinstance(out, tuple) else (out, None)
    if energy.shape != (seqs.shape[0],):
        raise ValueError(f"cost must map [N, H, A] to [N], got {list(energy.shape)}")
    if violating is None:
        violating = torch.zeros(seqs.shape[0], dtype=torch.bool, device=energy.device)
    # A NaN energy (a diverging rollout) must never be chosen.
    return torch.nan_to_num(energy.float(), nan=float("inf")), violating.bool()


def _ranked(energy: Tensor, violating: Tensor, elites: int) -> tuple[Tensor, Tensor]:
    """(rank key [N], elite count): violating samples rank after every safe one, and only safe
    samples are elites while any exist."""
    safe = int((~violating).sum())
    if safe in (0, len(energy)):
        return energy, torch.tensor(elites)
    finite = energy[torch.isfinite(energy)]
    offset = (finite.max() - finite.min() + 1.0) if len(finite) else torch.tensor(1.0)
    return torch.where(violating, energy + offset, energy), torch.tensor(min(elites, safe))


@torch.no_grad()
def cem(cost: Cost, **search: Any) -> Tensor:
    """Cross-entropy method; returns the lowest-energy action sequence found, [H, A].

    ``search``: the fields of :class:`Search` (horizon, action_low, action_high, samples,
    iterations, elites, generator; optional init_mean, init_std, min_std).
    """
    s = Search(**search)
    mean, std, half = s.start()
    best, best_key = mean, (True, float("inf"))  # (violating, energy): lowest wins
    for _ in range(s.iterations):
        seqs, energy, violating, top = s.population(cost, mean, std)  # [N, H, A], [N], [N], [K]
        key = (bool(violating[top[0]]), float(energy[top[0]]))
        if key < best_key:
            best, best_key = seqs[top[0]].clone(), key
        elite = seqs[top]  # [K, H, A]
        mean = elite.mean(0)  # [H, A]
        std = torch.maximum(elite.std(0, unbiased=False), s.min_std * half)  # [H, A]
    return best


@torch.no_grad()
def mppi(cost: Cost, *, temperature: float = 0.1, **search: Any) -> Tensor:
    """MPPI; returns the energy-weighted mean action sequence after the last iteration, [H, A].

    Weights are ``softmax(-E' / temperature)`` over the ``elites`` lowest energies, with
    ``E'`` the energies rescaled to [0, 1] among them (``elites = samples`` weighs all).
    ``search``: the fields of :class:`Search`, as for :func:`cem`.
    """
    s = Search(**search)
    if temperature <= 0:
        raise ValueError(f"mppi temperature must be > 0, got {temperature}")
    mean, std, half = s.start()
    safe_best, safe_energy, rejecting = None, float("inf"), False
    for _ in range(s.iterations):
        seqs, energy, violating, top = s.population(cost, mean, std)  # [N, H, A], [N], [N], [K]
        rejecting = rejecting or bool(violating.any())
        if bool((~violating).any()):
            i = int(torch.where(violating, torch.inf, energy).argmin())
            if float(energy[i]) < safe_energy:
                safe_best, safe_energy = seqs[i].clone(), float(energy[i])
        top_energy = energy[top]  # [K]
        # Energies normalised to [0, 1] over the elites, so one temperature fits any energy
        # scale (simulator distances, latent L1).
        spread = (top_energy[-1] - top_energy[0]).clamp_min(1e-12)
        finite = torch.isfinite(top_energy)
        scaled = torch.where(finite, (top_energy - top_energy[0]) / spread, torch.inf)
        weights = torch.softmax(-scaled / temperature, dim=0)  # [K]
        elite = seqs[top]  # [K, H, A]
        mean = torch.einsum("k,kha->ha", weights, elite)  # [H, A]
        var = torch.einsum("k,kha->ha", weights, (elite - mean) ** 2)
        std = torch.maximum(var.sqrt(), s.min_std * half)  # [H, A]
    if rejecting and safe_best is not None and bool(_scored(cost, mean[None])[1][0]):
        return safe_best  # the weighted mean violates: the best safe sample seen instead
    return mean


def plan_actions(
    cost: Cost,
    pcfg: PlanConfig,
    low: Tensor,
    high: Tensor,
    init: Tensor | None = None,
    *,
    generator: torch.Generator,
) -> Tensor:
    """The action sequence [plan.horizon, A] that ``pcfg.planner`` finds for ``cost``.

    ``low`` / ``high`` [A] bound the actions; ``init`` [H, A] warm-starts the search.
    """
    common = dict(
        horizon=pcfg.horizon,
        action_low=low,
        action_high=high,
        samples=pcfg.samples,
        iterations=pcfg.iterations,
        elites=min(pcfg.elites, pcfg.samples),
        generator=generator,
        init_mean=init,
        init_std=pcfg.init_std,
    )
    if pcfg.planner == "cem":
        return cem(cost, **common)
    if pcfg.planner == "mppi":
        return mppi(cost, temperature=pcfg.temperature, **common)
    raise ValueError(f"plan.planner must be 'cem' or 'mppi', got {pcfg.planner!r}")
