r"""The MLP, in every form the library uses it.

f_θ = Linear_L ∘ φ ∘ … ∘ φ ∘ Linear_1, with z_l = h_{l−1} W_lᵀ + b_l, h_l = φ(z_l), h_0 = x.

* :func:`mlp`: the torch module (orthogonal initialisation), used by the policies and the critic;
* :func:`mlp_layers`: recognises such a module, so the fast paths below can take it apart;
* :class:`MLPLinearization`: J·v and Jᵀ·u at fixed θ, by hand (the JᵀMJ Fisher product, the fused critic);
* :class:`NumpyMLP`: the forward pass in numpy, for the few states of one vector step (the numpy actor).

:data:`ACTIVATIONS` is the one table of φ: its torch module, φ itself on a tensor, φ' and φ in numpy.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class Activation:
    """One nonlinearity φ in the forms the MLP paths need.

    Attributes:
        module: the ``nn.Module`` class :func:`mlp` puts between the layers.
        apply_: z ↦ φ(z) on a tensor, in place where torch has an in-place op.
        derivative: h ↦ φ'(z), written in terms of the output h = φ(z) (all three allow it).
        numpy: z ↦ φ(z) on a float32 array, in place where numpy allows.
    """

    module: type[nn.Module]
    apply_: Callable[[torch.Tensor], torch.Tensor]
    derivative: Callable[[torch.Tensor], torch.Tensor]
    numpy: Callable[[np.ndarray], np.ndarray]


ACTIVATIONS: dict[str, Activation] = {
    "tanh": Activation(
        nn.Tanh, torch.Tensor.tanh_,
        lambda h: 1.0 - h * h,  # tanh' = 1 − tanh²
        lambda h: np.tanh(h, out=h),
    ),
    "relu": Activation(
        nn.ReLU, torch.Tensor.relu_,
        lambda h: (h > 0).to(h.dtype),
        lambda h: np.maximum(h, 0.0, out=h),
    ),
    "elu": Activation(  # ELU(z) = eᶻ − 1 for z ≤ 0 (α = 1), so ELU'(z) = h + 1 there
        nn.ELU, nn.functional.elu,
        lambda h: torch.where(h > 0, torch.ones_like(h), h + 1.0),
        lambda h: np.where(h > 0, h, np.expm1(h)),
    ),
    "softplus": Activation(  # the TRPO paper's locomotion nets; φ(z) = log(1 + eᶻ), φ'(z) = σ(z) = 1 − e^(−h)
        nn.Softplus, nn.functional.softplus,
        lambda h: -torch.expm1(-h),
        lambda h: np.logaddexp(np.float32(0.0), h),
    ),
}
_BY_MODULE: dict[type[nn.Module], Activation] = {a.module: a for a in ACTIVATIONS.values()}

MLPLayers = list[tuple[nn.Linear, Activation | None]]


def mlp(
    in_dim: int,
    hidden_sizes: Sequence[int],
    out_dim: int,
    activation: str = "tanh",
    out_gain: float = 1.0,
) -> nn.Sequential:
    """A fully connected network with orthogonal initialisation.

    Hidden layers use gain √2 and the output layer ``out_gain`` (0.01 for policy heads, so the
    initial policy is close to uniform / zero-mean, as in most TRPO/PPO implementations).
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"policy activation={activation!r} is not one of {sorted(ACTIVATIONS)}")
    layers: list[nn.Module] = []
    sizes = [in_dim, *hidden_sizes]
    for a, b in zip(sizes[:-1], sizes[1:]):
        lin = nn.Linear(a, b)
        nn.init.orthogonal_(lin.weight, math.sqrt(2.0))
        nn.init.zeros_(lin.bias)
        layers += [lin, ACTIVATIONS[activation].module()]
    out = nn.Linear(sizes[-1], out_dim)
    nn.init.orthogonal_(out.weight, out_gain)
    nn.init.zeros_(out.bias)
    layers.append(out)
    return nn.Sequential(*layers)


def mlp_layers(net: nn.Module) -> MLPLayers | None:
    """``[(Linear_1, φ), …, (Linear_L, None)]`` if ``net`` is ``Sequential(Linear, φ, …, Linear)``, else None.

    φ must be in :data:`ACTIVATIONS` (ELU only with α = 1, Softplus only with β = 1 and threshold 20); anything else (dropout, normalisation
    layers, custom modules) returns None so the caller can fall back to autograd.
    """
    if not isinstance(net, nn.Sequential) or len(net) % 2 != 1:
        return None
    mods = list(net)
    layers: MLPLayers = []
    for i in range(0, len(mods), 2):
        lin = mods[i]
        act = mods[i + 1] if i + 1 < len(mods) else None
        if not isinstance(lin, nn.Linear) or lin.bias is None:
            return None
        if act is None:
            layers.append((lin, None))
            continue
        if type(act) not in _BY_MODULE or (isinstance(act, nn.ELU) and act.alpha != 1.0) or (
                isinstance(act, nn.Softplus) and (act.beta != 1.0 or act.threshold != 20.0)):
            return None
        layers.append((lin, _BY_MODULE[type(act)]))
    return layers


class MLPLinearization:
    r"""An MLP f_θ linearised at its current θ on a fixed input batch.

    The constructor runs the forward pass once and keeps h_l and D_l = φ'(z_l). Then

    * :meth:`jvp` (forward tangent, J·v for v = (dW_l, db_l)):
          dz_1 = x dW_1ᵀ + db_1,   dz_l = h_{l−1} dW_lᵀ + db_l + (D_{l−1} ⊙ dz_{l−1}) W_lᵀ,   J·v = dz_L;
    * :meth:`vjp` (backward, Jᵀ·u for a cotangent u on the output):
          δ_L = u,   ∂/∂W_l = δ_lᵀ h_{l−1},   ∂/∂b_l = Σ_rows δ_l,   δ_{l−1} = (δ_l W_l) ⊙ D_{l−1}.

    These are exactly what autograd would do, without building a graph: each costs a handful of
    matmuls of the batch against the weights (the hidden×hidden ones dominate).

    Args:
        layers: from :func:`mlp_layers` (any objects with ``.weight`` and ``.bias`` in place of the
            ``nn.Linear``s will do: the fused critic passes views into its flat parameter buffer).
        x: the input batch ``(B, in_dim)``.
        snapshot: copy the weights (so a later in-place change of the module does not move θ_old).
    """

    def __init__(self, layers: Sequence[tuple[nn.Linear, Activation | None]], x: torch.Tensor, snapshot: bool = True) -> None:
        with torch.no_grad():
            self.weights = [lin.weight.detach().clone() if snapshot else lin.weight.detach() for lin, _ in layers]
            biases = [lin.bias.detach() for lin, _ in layers]
            self.hidden: list[torch.Tensor] = [x]  # h_0 … h_{L−1}
            self.derivs: list[torch.Tensor] = []  # D_1 … D_{L−1}
            h = x
            for (_, act), W, b in zip(layers[:-1], self.weights[:-1], biases[:-1]):
                h = act.apply_(torch.addmm(b, h, W.T))
                self.hidden.append(h)
                self.derivs.append(act.derivative(h))
            self.output = torch.addmm(biases[-1], h, self.weights[-1].T)  # z_L at θ

    def jvp(self, dW: Sequence[torch.Tensor], db: Sequence[torch.Tensor]) -> torch.Tensor:
        """J·v: the change of the output, ``(B, out_dim)``, for the parameter change (dW_l, db_l)."""
        dz = torch.addmm(db[0], self.hidden[0], dW[0].T)
        for l in range(1, len(self.weights)):
            dh = self.derivs[l - 1] * dz
            dz = torch.addmm(db[l], self.hidden[l], dW[l].T)
            dz.addmm_(dh, self.weights[l].T)
        return dz

    def vjp(self, u: torch.Tensor, gW: Sequence[torch.Tensor], gb: Sequence[torch.Tensor]) -> None:
        """Jᵀ·u, written into ``gW[l]`` and ``gb[l]`` (views into a flat gradient, say)."""
        delta = u
        for l in range(len(self.weights) - 1, -1, -1):
            torch.mm(delta.T, self.hidden[l], out=gW[l])
            torch.sum(delta, 0, out=gb[l])
            if l > 0:
                delta = torch.mm(delta, self.weights[l]).mul_(self.derivs[l - 1])


class NumpyMLP:
    r"""A float32 numpy snapshot of an MLP's weights: x ↦ f_θ(x) for a handful of states.

    For the 2–16 states of one vector step its dozen numpy calls cost a fraction of the torch
    module call's per-op dispatch.
    """

    def __init__(self, layers: Sequence[tuple[nn.Linear, Activation | None]]) -> None:
        with torch.no_grad():
            self.weights_t = [lin.weight.detach().numpy().T.astype(np.float32, order="C") for lin, _ in layers]
            self.biases = [lin.bias.detach().numpy().astype(np.float32) for lin, _ in layers]
        self.acts = [act.numpy for _, act in layers[:-1]]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        h = x
        for W_t, b, act in zip(self.weights_t, self.biases, self.acts):
            h = act(h @ W_t + b)
        return h @ self.weights_t[-1] + self.biases[-1]
