"""Mixtures of bottleneck adapters on ``[b, m, d]`` tokens: Dense-MoA and Soft-MoA.

Axis letters: b batch, m tokens, d width, n experts, p slots per expert, r bottleneck.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import ExpertBank, PETLModule
from .widths import Init


class DenseMoA(PETLModule):
    """Dense mixture: ``Y = sum_i softmax(router(X))[..., i] * A_i(X)``.

    The router weights gate each expert's hidden units before one stacked up-projection, so
    no expert's full-width output is ever materialised.
    """

    def __init__(self, dim: int, experts: int, bottleneck: int, init: Init = "zero_up"):
        super().__init__()
        self.router = nn.Linear(dim, experts)
        self.experts = ExpertBank(dim, experts, bottleneck, init)

    def router_weights(self, x: torch.Tensor) -> torch.Tensor:
        """Per-token expert weights ``[b, m, n]`` (each row sums to 1)."""
        return self.router(x).softmax(dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.experts.up_mixed(self.experts.hidden_all(x), self.router_weights(x))

    def flops(self, tokens: int) -> int:
        n, d, r = self.experts.shape
        return 2 * tokens * (d * n + 2 * n * d * r)


class SoftMoA(PETLModule):
    """Soft mixture of adapters (Soft-MoE routing, Puigcerver et al. 2023).

    Each of the ``n * p`` slots is a convex combination of the tokens (dispatch: softmax over
    m); each expert processes its ``p`` slots; each output token is a convex combination of
    all slot outputs (combine: softmax over the n * p slots jointly). The experts see
    ``n * p`` vectors per example whatever the number of tokens.
    """

    def __init__(self, dim: int, experts: int, slots: int, bottleneck: int, normalize: bool = False,
                 init: Init = "zero_up"):
        super().__init__()
        self.phi = nn.Parameter(torch.empty(dim, experts, slots))
        # As the research code: Xavier on the 3-D tensor itself, so torch takes fan_in = n * p
        # and fan_out = d * p (std sqrt(2 / (n p + d p))), not the fans of a [d, n * p] view.
        nn.init.xavier_normal_(self.phi)
        self.normalize = normalize
        self.scale = nn.Parameter(torch.ones(())) if normalize else None
        self.experts = ExpertBank(dim, experts, bottleneck, init)

    def route(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Dispatch and combine weights, both ``[b, m, n, p]``: dispatch sums to 1 over m,
        combine over (n, p)."""
        phi = self.phi
        if self.normalize:  # Soft-MoE section 2.3: L2 over d for tokens and slot parameters
            x = F.normalize(x, dim=-1)
            phi = self.scale * F.normalize(phi, dim=0)
        logits = torch.einsum("bmd,dnp->bmnp", x, phi)
        dispatch = logits.softmax(dim=1)
        combine = logits.flatten(2).softmax(dim=-1).view_as(logits)
        return dispatch, combine

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dispatch, combine = self.route(x)
        slots = torch.einsum("bmnp,bmd->bnpd", dispatch, x)  # [b, n, p, d]
        outputs = self.experts(slots)  # [b, n, p, d]
        return torch.einsum("bmnp,bnpd->bmd", combine, outputs)

    def flops(self, tokens: int) -> int:
        n, d, r = self.experts.shape
        p = self.phi.shape[-1]
        routing = 3 * tokens * d * n * p  # logits, slots, combine
        return 2 * (routing + n * p * 2 * d * r)
