"""Training terms that make a world model's latent follow the agent when the scene changes from
episode to episode (issue #25). Each is off by default (``world.idm_weight``,
``world.time_var``, ``world.centre``).

A large scene element that is static within an episode but differs across episodes (a wall
that moves, a large distractor) dominates a latent trained on prediction alone: it is what
varies most across the batch, and predicting "the scene stays" is easy. The small agent then
barely moves the latent and planning walks nowhere (the slow-feature trap). The terms:

- **inverse dynamics** (EB-JEPA / PLDM's IDM): a small MLP predicts the action a_t from
  (z_t, z_{t+1}); its MSE joins the loss, so the latent must carry what the action changed;
- **within-episode variance** (PLDM's ``std_loss_t``, the same function as pretraining's
  ``objective.time_var``, vjepa.jepa.losses.time_variance_loss): a hinge on the std over the
  window's frames of each latent feature, so features that never move within an episode cost;
- **centring**: each window's latents minus their temporal mean before the prediction and its
  loss, so a scene constant within the window contributes exactly nothing.

The IDM and the variance term act on the encoder's latents (the same tensors SIGReg sees), so
their gradients reach exactly what SIGReg's do: the encoder when it trains and the latent
projection of ``world.latent_dim``. On a frozen encoder only the IDM head itself learns.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vjepa.jepa.gather import gather_batch
from vjepa.jepa.losses import sigreg_loss, time_variance_loss

IDM_HIDDEN = 128
"""Width of the inverse-dynamics head's two hidden layers."""


class InverseDynamics(nn.Module):
    """MLP (z_t, z_{t+1}) -> a_t: two latent maps [.., N, D] flattened and concatenated."""

    def __init__(
        self,
        latent_size: int,
        action_dim: int,
        hidden: int = IDM_HIDDEN,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(2 * latent_size, hidden),
            nn.GELU(),
            nn.Linear(hidden, hidden),
            nn.GELU(),
            nn.Linear(hidden, action_dim),
        )
        gen = generator if generator is not None else torch.Generator().manual_seed(0)
        with torch.no_grad():
            for layer in self.mlp:
                if isinstance(layer, nn.Linear):
                    layer.weight.normal_(0.0, layer.in_features**-0.5, generator=gen)
                    layer.bias.zero_()

    def forward(self, z: Tensor, z_next: Tensor) -> Tensor:
        """[.., N, D] x 2 -> predicted actions [.., A]."""
        return self.mlp(torch.cat([z.flatten(-2), z_next.flatten(-2)], dim=-1))


def idm_loss(head: InverseDynamics, z: Tensor, actions: Tensor) -> Tensor:
    """MSE of the head's actions from every consecutive pair of ``z`` [B, W, N, D] against
    ``actions`` [B, W-1, A] (the model's actions scaled to [-1, 1])."""
    return F.mse_loss(head(z[:, :-1], z[:, 1:]), actions)


def window_time_var(z: Tensor) -> Tensor:
    """The within-window std hinge (time_variance_loss, hinge at 1) of ``z`` [B, W, N, D]: the
    std over the W frames of each (window, token, feature), the batch's mean per frame removed."""
    return time_variance_loss(z.flatten(1, 2), steps=z.shape[1])


def centre_windows(z: Tensor) -> Tensor:
    """``z`` [B, W, N, D] minus each window's temporal mean [B, 1, N, D].

    The mean includes the frames to be predicted: given the centred context frames, the centred
    last frame is minus their sum, a shortcut the predictor may take in the teacher-forcing term
    (see docs/world_model.md for what that does to planning). Planning centres the current
    frame and the goal by their mean (vjepa.world.planning.costs.ModelCost)."""
    return z - z.mean(dim=1, keepdim=True)


def latent_terms(
    z: Tensor,
    actions: Tensor,
    head: InverseDynamics | None,
    *,
    sigreg_weight: float = 0.0,
    sigreg_generator: torch.Generator | None = None,
    reg_scope: str = "global",
    idm_weight: float = 0.0,
    time_var: float = 0.0,
) -> tuple[list[Tensor], dict[str, Tensor]]:
    """(weighted terms to add to the world loss, detached terms) of the regularisers on the
    latents ``z`` [B, W, N, D]: SIGReg (vjepa.jepa.losses.sigreg_loss on every frame, over
    every rank's frames with ``reg_scope`` global, vjepa.jepa.gather), the IDM (``actions``
    [B, W-1, A] scaled to [-1, 1]) and the variance term; a weight of 0 skips its term."""
    weighted: list[Tensor] = []
    terms: dict[str, Tensor] = {}
    if sigreg_weight > 0:
        gen = sigreg_generator if sigreg_generator is not None else torch.Generator()
        frames_z = z.flatten(0, 1)  # [B*W, N, D]
        if reg_scope == "global":  # every rank's frames; alone: as is
            frames_z = gather_batch(frames_z)  # [R*B*W, N, D]
        value = sigreg_loss(frames_z, gen)  # over the frames, per token position
        terms["sigreg"] = value.detach()
        weighted.append(sigreg_weight * value)
    if idm_weight > 0:
        if head is None:
            raise ValueError("world.idm_weight > 0 needs a model built with an IDM head")
        value = idm_loss(head, z, actions)
        terms["idm"] = value.detach()
        weighted.append(idm_weight * value)
    if time_var > 0:
        value = window_time_var(z)
        terms["time_var"] = value.detach()
        weighted.append(time_var * value)
    return weighted, terms
