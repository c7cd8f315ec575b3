"""An exponential moving average of a model's weights, evaluated and saved in place of the raw weights."""

from __future__ import annotations

import copy
import math

import torch
from torch import Tensor, nn


class ModelEMA:
    """Exponential moving average of a model's weights (buffers copied), with a warm-up of the decay:
    ``decay * (1 - exp(-updates / tau))``, so early averages are not dominated by the random start."""

    def __init__(self, model: nn.Module, decay: float, tau: float = 2000.0) -> None:
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay = decay
        self.tau = tau
        self.updates = 0
        self._pairs: tuple[nn.Module, list[Tensor], list[Tensor], list[Tensor], list[Tensor]] | None = None

    def _tensors(self, model: nn.Module) -> tuple[list[Tensor], list[Tensor], list[Tensor], list[Tensor]]:
        """(averages, sources) of floating-point entries, then of the others; cached per source model (its
        state tensors are updated in place, so the aliases stay valid)."""
        if self._pairs is None or self._pairs[0] is not model:
            current = model.state_dict()
            avg_f, src_f, avg_o, src_o = [], [], [], []
            for name, avg in self.module.state_dict().items():
                value = current[name].detach()
                if avg.is_floating_point() and value.dtype == avg.dtype:
                    avg_f.append(avg)
                    src_f.append(value)
                else:
                    avg_o.append(avg)
                    src_o.append(value)
            self._pairs = (model, avg_f, src_f, avg_o, src_o)
        return self._pairs[1:]

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = self.decay * (1 - math.exp(-self.updates / self.tau))
        avg_f, src_f, avg_o, src_o = self._tensors(model)
        if avg_f:
            torch._foreach_mul_(avg_f, d)
            torch._foreach_add_(avg_f, src_f, alpha=1 - d)
        for avg, value in zip(avg_o, src_o, strict=True):
            avg.copy_(value.to(avg.dtype) if avg.is_floating_point() else value)

    def state_dict(self) -> dict[str, object]:
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, object]) -> None:
        self.module.load_state_dict(state["module"])  # type: ignore[arg-type]  # a checkpoint's values
        self.updates = int(state["updates"])  # type: ignore[arg-type]  # a checkpoint's values
