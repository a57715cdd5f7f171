"""AdamW in numpy with the semantics of ``torch.optim.AdamW`` (which Tinker uses).

Global-norm gradient clipping (``grad_clip_norm``; 0 disables it) is applied first,
then decoupled weight decay, then the bias-corrected Adam update. The state names its
optimizer ("optimizer": "adamw"), so it cannot be loaded into a Dimuon engine.
"""

from __future__ import annotations

import numpy as np
from tinker import types

from tinkerkit.backends import optimizers as opt


def global_norm(grads: dict[str, np.ndarray]) -> float:
    """The global L2 norm of all gradients, summed in float64."""
    return float(np.sqrt(sum(float(np.sum(g.astype(np.float64) ** 2)) for g in grads.values())))


class Adam:
    name = opt.ADAMW

    def __init__(self) -> None:
        self.step_count = 0
        self.m: dict[str, np.ndarray] = {}
        self.v: dict[str, np.ndarray] = {}

    def step(
        self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray], hp: opt.StepParams
    ) -> dict[str, float]:
        """Update ``params`` in place from ``grads``; returns metrics."""
        if not isinstance(hp, types.AdamParams):
            raise opt.OptimizerParamsError(self.name, hp)
        norm = global_norm(grads)
        scale = opt.clip_scale(norm, hp.grad_clip_norm)
        self.step_count += 1
        t = self.step_count
        bias1 = 1.0 - hp.beta1**t
        bias2 = 1.0 - hp.beta2**t
        for key, p in params.items():
            g = grads[key] * scale if scale != 1.0 else grads[key]
            m = self.m.get(key)
            if m is None:
                m = self.m[key] = np.zeros_like(p)
                self.v[key] = np.zeros_like(p)
            v = self.v[key]
            if hp.weight_decay:
                p *= 1.0 - hp.learning_rate * hp.weight_decay
            m *= hp.beta1
            m += (1.0 - hp.beta1) * g
            v *= hp.beta2
            v += (1.0 - hp.beta2) * (g * g)
            denom = np.sqrt(v) / np.sqrt(bias2) + hp.eps
            p -= (hp.learning_rate / bias1) * (m / denom)
        return {"grad_norm": norm, "learning_rate": hp.learning_rate}

    def state(self) -> dict[str, np.ndarray]:
        out = {"step": np.array([self.step_count], dtype=np.int64)}
        for key in self.m:
            out[f"m/{key}"] = self.m[key].copy()
            out[f"v/{key}"] = self.v[key].copy()
        return opt.tag_state(self.name, out)

    def load(self, state: dict[str, np.ndarray]) -> None:
        state = opt.check_state(self.name, state)
        self.step_count = int(state["step"][0])
        self.m = {k[2:]: v.copy() for k, v in state.items() if k.startswith("m/")}
        self.v = {k[2:]: v.copy() for k, v in state.items() if k.startswith("v/")}
