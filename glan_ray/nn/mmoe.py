"""Multi-gate Mixture-of-Experts (Ma et al., 2018), as used by L-RTG, HRM and KLAN.

M expert MLPs share the input; task k mixes them with its own gate
g_k = softmax(W_k x_g + b_k) ∈ R^M, z_k = Σ_m g_k(m) d_m (GLAN eq. 12). The gate input x_g
defaults to the expert input; L-RTG feeds the gates a different vector, [e_d ‖ u].
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class Expert(nn.Module):
    """One expert: Linear -> GELU -> Linear, d_in -> hidden -> d_out."""

    def __init__(self, d_in: int, hidden: int, d_out: int) -> None:
        super().__init__()
        self.fc = nn.Linear(d_in, hidden)
        self.out = nn.Linear(hidden, d_out)

    def forward(self, x: Tensor) -> Tensor:
        """x (B, d_in) -> (B, d_out)."""
        return self.out(nn.functional.gelu(self.fc(x)))


class MMoE(nn.Module):
    """n_experts shared experts and one softmax gate per task."""

    def __init__(
        self,
        d_in: int,
        n_experts: int,
        expert_hidden: int,
        d_out: int,
        n_tasks: int,
        gate_in: int | None = None,
    ) -> None:
        super().__init__()
        if n_experts < 1 or n_tasks < 1:
            raise ValueError(
                f"MMoE needs n_experts >= 1 and n_tasks >= 1; got {n_experts}, {n_tasks}"
            )
        self.n_experts = n_experts
        self.n_tasks = n_tasks
        self.experts = nn.ModuleList(Expert(d_in, expert_hidden, d_out) for _ in range(n_experts))
        self.gates = nn.ModuleList(nn.Linear(gate_in or d_in, n_experts) for _ in range(n_tasks))

    def gate_weights(self, gate_x: Tensor) -> Tensor:
        """g_k for every task: gate_x (B, gate_in) -> (B, n_tasks, n_experts), rows sum to 1."""
        logits = torch.stack([gate(gate_x) for gate in self.gates], dim=1)  # (B, T, M)
        return torch.softmax(logits, dim=-1)

    def forward(
        self, x: Tensor, gate_x: Tensor | None = None, return_gates: bool = False
    ) -> list[Tensor] | tuple[list[Tensor], Tensor]:
        """x (B, d_in), gate_x (B, gate_in) -> n_tasks tensors z_k (B, d_out).

        With ``return_gates`` also returns the gate weights (B, n_tasks, n_experts) for logging.
        """
        experts = torch.stack([e(x) for e in self.experts], dim=1)  # (B, M, d_out)
        gates = self.gate_weights(x if gate_x is None else gate_x)  # (B, T, M)
        z = torch.einsum("btm,bmd->btd", gates, experts)  # (B, T, d_out)
        outs = list(z.unbind(dim=1))  # T x (B, d_out)
        return (outs, gates) if return_gates else outs
