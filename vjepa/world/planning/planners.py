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

import torch
from torch import Tensor

from vjepa.config import PlanConfig

Cost = Callable[[Tensor], Tensor]


def _check(
    horizon: int, action_low: Tensor, action_high: Tensor, samples: int, init_mean: Tensor | None
) -> None:
    if horizon < 1 or samples < 2:
        raise ValueError(f"planner needs horizon >= 1 and samples >= 2, got {horizon}, {samples}")
    if action_low.shape != action_high.shape or action_low.ndim != 1:
        raise ValueError(
            f"action_low / action_high must be [A] each, got {list(action_low.shape)} "
            f"and {list(action_high.shape)}"
        )
    if init_mean is not None and init_mean.shape != (horizon, action_low.shape[0]):
        raise ValueError(
            f"init_mean must be [horizon, A] = [{horizon}, {action_low.shape[0]}], "
            f"got {list(init_mean.shape)}"
        )


def _start(
    horizon: int,
    action_low: Tensor,
    action_high: Tensor,
    init_mean: Tensor | None,
    init_std: float,
) -> tuple[Tensor, Tensor, Tensor]:
    """(mean [H, A], std [H, A], half-range [A]) of the initial sampling distribution."""
    mid = (action_low + action_high) / 2  # [A]
    half = (action_high - action_low) / 2  # [A]
    mean = mid.expand(horizon, -1).clone() if init_mean is None else init_mean.clone()
    mean = torch.minimum(torch.maximum(mean, action_low), action_high)
    std = (init_std * half).expand(horizon, -1).clone()  # [H, A]
    return mean, std, half


def _sample(
    mean: Tensor, std: Tensor, samples: int, low: Tensor, high: Tensor, generator: torch.Generator
) -> Tensor:
    """``samples`` sequences [N, H, A] around (mean, std), clipped to the box; row 0 = mean."""
    noise = torch.randn(
        (samples, *mean.shape), generator=generator, device=mean.device, dtype=mean.dtype
    )  # [N, H, A]
    seqs = mean + std * noise
    seqs[0] = mean  # score the current mean too
    return torch.minimum(torch.maximum(seqs, low), high)


def _energies(cost: Cost, seqs: Tensor) -> Tensor:
    return _scored(cost, seqs)[0]


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
def cem(
    cost: Cost,
    *,
    horizon: int,
    action_low: Tensor,
    action_high: Tensor,
    samples: int,
    iterations: int,
    elites: int,
    generator: torch.Generator,
    init_mean: Tensor | None = None,
    init_std: float = 1.0,
    min_std: float = 0.02,
) -> Tensor:
    """Cross-entropy method; returns the lowest-energy action sequence found, [H, A].

    ``min_std`` (a fraction of the half-range) keeps the search from collapsing too early.
    """
    _check(horizon, action_low, action_high, samples, init_mean)
    if not 1 <= elites <= samples:
        raise ValueError(f"cem elites must be within [1, samples={samples}], got {elites}")
    mean, std, half = _start(horizon, action_low, action_high, init_mean, init_std)
    best, best_key = mean, (True, float("inf"))  # (violating, energy): lowest wins
    for _ in range(iterations):
        seqs = _sample(mean, std, samples, action_low, action_high, generator)  # [N, H, A]
        energy, violating = _scored(cost, seqs)  # [N], [N]
        rank, k = _ranked(energy, violating, elites)
        top = torch.topk(rank, int(k), largest=False).indices  # [K]
        key = (bool(violating[top[0]]), float(energy[top[0]]))
        if key < best_key:
            best, best_key = seqs[top[0]].clone(), key
        elite = seqs[top]  # [K, H, A]
        mean = elite.mean(0)  # [H, A]
        std = torch.maximum(elite.std(0, unbiased=False), min_std * half)  # [H, A]
    return best


@torch.no_grad()
def mppi(
    cost: Cost,
    *,
    horizon: int,
    action_low: Tensor,
    action_high: Tensor,
    samples: int,
    iterations: int,
    elites: int,
    generator: torch.Generator,
    init_mean: Tensor | None = None,
    init_std: float = 1.0,
    temperature: float = 0.1,
    min_std: float = 0.02,
) -> Tensor:
    """MPPI; returns the energy-weighted mean action sequence after the last iteration, [H, A].

    Weights are ``softmax(-E' / temperature)`` over the ``elites`` lowest energies, with
    ``E'`` the energies rescaled to [0, 1] among them (``elites = samples`` weighs all).
    """
    _check(horizon, action_low, action_high, samples, init_mean)
    if not 1 <= elites <= samples:
        raise ValueError(f"mppi elites must be within [1, samples={samples}], got {elites}")
    if temperature <= 0:
        raise ValueError(f"mppi temperature must be > 0, got {temperature}")
    mean, std, half = _start(horizon, action_low, action_high, init_mean, init_std)
    safe_best, safe_energy, rejecting = None, float("inf"), False
    for _ in range(iterations):
        seqs = _sample(mean, std, samples, action_low, action_high, generator)  # [N, H, A]
        energy, violating = _scored(cost, seqs)  # [N], [N]
        rejecting = rejecting or bool(violating.any())
        if bool((~violating).any()):
            i = int(torch.where(violating, torch.inf, energy).argmin())
            if float(energy[i]) < safe_energy:
                safe_best, safe_energy = seqs[i].clone(), float(energy[i])
        rank, k = _ranked(energy, violating, elites)
        top = torch.topk(rank, int(k), largest=False).indices  # [K]
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
        std = torch.maximum(var.sqrt(), min_std * half)  # [H, A]
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
