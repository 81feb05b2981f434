"""The LoRA delta of a non-affine hypernetwork (relu, LayerNorm, …): a least-squares fit
over real activations.

The model generates a set of prompts with the hypernetwork active; a forward pre-hook on
each reached attention layer sees the input x of to_k/to_v and adds x and the network's
change e = module(x) − x to running moments (Σ x xᵀ, Σ x eᵀ, Σ e eᵀ, sums, count), so
no activation is kept. The delta is then ΔW = W B with B = argmin Σ‖e − B x‖²: for the
keys after centring (a shift shared by all keys has no effect, so the fit may ignore
one), for the values as it is. Every fifth prompt is held out; the error reported is
on those prompts' activations.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch

from ..errors import HypernetError
from ..network import Hypernetwork
from .deltas import SIDES, LayerDelta
from .targets import Target

HOLD_OUT_EVERY = 5  # prompt i is held out when i % 5 == 4 (with at least 5 prompts)
RIDGE = 1e-9  # relative to the mean input energy: keeps the solve defined on degenerate inputs


@dataclass
class Moments:
    """Running sums of x and e = change(x) over rows, in float64."""

    width: int
    count: int = 0
    sum_x: torch.Tensor = None
    sum_e: torch.Tensor = None
    xx: torch.Tensor = None
    xe: torch.Tensor = None
    ee: torch.Tensor = None

    def __post_init__(self):
        d = self.width
        self.sum_x, self.sum_e = torch.zeros(d, dtype=torch.float64), torch.zeros(d, dtype=torch.float64)
        self.xx, self.xe, self.ee = (torch.zeros(d, d, dtype=torch.float64) for _ in range(3))

    def add(self, x: torch.Tensor, e: torch.Tensor) -> None:
        x, e = x.to(torch.float64).cpu(), e.to(torch.float64).cpu()
        self.count += x.shape[0]
        self.sum_x += x.sum(0)
        self.sum_e += e.sum(0)
        self.xx += x.T @ x
        self.xe += x.T @ e
        self.ee += e.T @ e

    def centred(self) -> "Moments":
        """The same moments about the means."""
        result = Moments(self.width)
        result.count = self.count
        n = max(self.count, 1)
        mean_x, mean_e = self.sum_x / n, self.sum_e / n
        result.xx = self.xx - n * torch.outer(mean_x, mean_x)
        result.xe = self.xe - n * torch.outer(mean_x, mean_e)
        result.ee = self.ee - n * torch.outer(mean_e, mean_e)
        return result


@dataclass
class LayerMoments:
    """Per projection side, moments of the fitting prompts and of the held-out ones."""

    fit: dict = field(default_factory=dict)
    check: dict = field(default_factory=dict)


class ActivationCollector:
    """Forward pre-hooks on the targets' attention modules (plain torch hooks: the
    hypernetwork itself still enters through the attention seam)."""

    def __init__(self, network: Hypernetwork, multiplier: float, targets: list[Target]):
        # the multiplier the MLPs run at (the generation it watches calibrates the same way)
        self.network, self.multiplier, self.targets = network, network.effective_multiplier(float(multiplier)), targets
        self.moments = {t.name: LayerMoments({s: Moments(t.width) for s in SIDES}, {s: Moments(t.width) for s in SIDES})
                        for t in targets}
        self.phase = "fit"
        self._last = {}
        self._handles = []

    def _hook(self, target: Target):
        def record(module, args, kwargs):
            hidden = args[0] if args else kwargs.get("hidden_states")
            context = kwargs.get("encoder_hidden_states")
            x = context if context is not None else hidden
            if x is None or x.shape[-1] != target.width:
                return None
            seen = self._last.get(target.name)
            if seen is not None and seen[0] is x and seen[1] == x._version and seen[2] == self.phase:
                return None  # the text context is the same tensor at every step: count it once
            self._last[target.name] = (x, x._version, self.phase)
            rows = x.detach().reshape(-1, target.width).float()
            pair = self.network.pair(target.width)
            with torch.no_grad():
                for side, module_ in zip(SIDES, pair):
                    change = module_(rows, self.multiplier) - rows
                    getattr(self.moments[target.name], self.phase)[side].add(rows, change)
            return None

        return record

    def __enter__(self):
        for target in self.targets:
            self._handles.append(target.attention.register_forward_pre_hook(self._hook(target), with_kwargs=True))
        return self

    def __exit__(self, *exc):
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._last.clear()


def collect(pipe, network: Hypernetwork, multiplier: float, targets: list[Target], prompts: list[str],
            steps: int = 20, seed: int = 0, on_prompt=None) -> dict[str, LayerMoments]:
    """Moments of every target's inputs while the model generates `prompts` (seed + i for
    prompt i) with the network active at `multiplier`."""
    from ..generation import Generator, Request

    prompts = [p for p in prompts if p.strip()]
    if not prompts:
        raise HypernetError("fitting needs at least one prompt")
    hold_out = len(prompts) >= HOLD_OUT_EVERY
    network.eval()
    with contextlib.closing(Generator(pipe)) as generator, ActivationCollector(network, multiplier, targets) as collector:
        for index, prompt in enumerate(prompts):
            collector.phase = "check" if hold_out and index % HOLD_OUT_EVERY == HOLD_OUT_EVERY - 1 else "fit"
            generator.generate(Request(prompt=prompt, steps=steps, seed=seed + index), networks=[(network, multiplier)],
                               progress=False)
            if on_prompt is not None:
                on_prompt(index + 1, len(prompts))
    return collector.moments


def _ridged(moments: Moments) -> torch.Tensor:
    d = moments.width
    ridge = RIDGE * float(torch.trace(moments.xx)) / d + 1e-12
    return moments.xx + ridge * torch.eye(d, dtype=torch.float64)


def _solve(moments: Moments) -> torch.Tensor:
    """B (d × d) minimising Σ‖e − B x‖² (slightly ridged)."""
    return torch.linalg.solve(_ridged(moments), moments.xe).T


def _for_side(moments: Moments, side: str) -> Moments:
    return moments.centred() if side == "to_k" else moments


def fitted_deltas(targets: list[Target], moments: dict[str, LayerMoments]) -> list[LayerDelta]:
    deltas = []
    for target in targets:
        for side in SIDES:
            fit = _for_side(moments[target.name].fit[side], side)
            if fit.count == 0:
                raise HypernetError(f"attention {target.name} saw no input while generating; nothing to fit")
            weight = target.projection(side).weight.detach().to(torch.float64).cpu()
            delta = weight @ _solve(fit)
            total = float(torch.trace(weight @ fit.ee @ weight.T))
            bias = "key offset: left out (no effect)" if side == "to_k" else "value offset: fitted"
            root = torch.linalg.cholesky(_ridged(fit) / fit.count)  # root rootᵀ = E[x xᵀ]
            deltas.append(LayerDelta(target, side, delta, root, bias, total / fit.count))
    return deltas


def held_out_error(layer: LayerDelta, delta: torch.Tensor, moments: dict[str, LayerMoments]) -> tuple[float, str]:
    """(relative error of `delta` on the held-out prompts' activations, which set it is on)."""
    entry = moments[layer.target.name]
    check = entry.check[layer.side]
    where = "held-out prompts"
    if check.count == 0:
        check, where = entry.fit[layer.side], "fitting prompts"
    check = _for_side(check, layer.side)
    weight = layer.target.projection(layer.side).weight.detach().to(torch.float64).cpu()
    target_energy = float(torch.trace(weight @ check.ee @ weight.T))
    cross = float(torch.trace(weight.T @ delta @ check.xe))
    fitted_energy = float(torch.trace(delta @ check.xx @ delta.T))
    residual = max(target_energy - 2 * cross + fitted_energy, 0.0)
    return ((residual / target_energy) ** 0.5 if target_energy > 0 else 0.0), where
