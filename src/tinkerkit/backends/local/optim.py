"""AdamW over the LoRA parameters: ``torch.optim.AdamW`` driven by ``types.AdamParams``.

Each step first clips the global gradient norm (``grad_clip_norm``; 0 disables it),
then runs ``torch.optim.AdamW`` with that step's hyperparameters, then zeroes the
gradients. Its state goes out and back in as flat numpy arrays ("optimizer" = "adamw",
"step", "m/<key>", "v/<key>") that round-trip exactly, so a resumed run continues
bit-identically, and that a Dimuon engine refuses.
"""

from __future__ import annotations

import numpy as np
import torch
from tinker import types

from tinkerkit.backends import optimizers as opt


class LoraAdam:
    """AdamW on named parameters whose ``.grad`` buffers always exist.

    Example:
        >>> opt = LoraAdam(params)
        >>> opt.step(types.AdamParams(learning_rate=1e-4))["grad_norm"]
        0.0
    """

    name = opt.ADAMW

    def __init__(self, params: dict[str, torch.nn.Parameter]) -> None:
        self.params = params
        # foreach=False: the same per-tensor arithmetic on every device and batch size.
        self.opt = torch.optim.AdamW(list(params.values()), foreach=False)

    def _grads(self) -> list[torch.Tensor]:
        grads = []
        for p in self.params.values():
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            grads.append(p.grad)
        return grads

    def step(self, hp: opt.StepParams) -> dict[str, float]:
        """One AdamW step with ``hp``; returns ``grad_norm`` (before clipping) and ``learning_rate``."""
        if not isinstance(hp, types.AdamParams):
            raise opt.OptimizerParamsError(self.name, hp)
        grads = self._grads()
        if hp.grad_clip_norm > 0:
            # Same scale as torch.nn.utils.clip_grad_norm_: max_norm / (norm + 1e-6), capped at 1.
            norm = torch.nn.utils.clip_grad_norm_(list(self.params.values()), hp.grad_clip_norm)
        else:
            norm = torch.linalg.vector_norm(
                torch.stack([torch.linalg.vector_norm(g) for g in grads])
            )
        group = self.opt.param_groups[0]
        group["lr"] = hp.learning_rate
        group["betas"] = (hp.beta1, hp.beta2)
        group["eps"] = hp.eps
        group["weight_decay"] = hp.weight_decay
        self.opt.step()
        for g in grads:
            g.zero_()
        return {"grad_norm": float(norm), "learning_rate": float(hp.learning_rate)}

    def state(self) -> dict[str, np.ndarray]:
        """The optimizer state as float32 numpy copies (``step`` as int64)."""
        step = 0
        out: dict[str, np.ndarray] = {}
        for key, p in self.params.items():
            st = self.opt.state.get(p)
            if not st:
                continue
            step = int(st["step"])
            out[f"m/{key}"] = st["exp_avg"].detach().float().cpu().numpy().copy()
            out[f"v/{key}"] = st["exp_avg_sq"].detach().float().cpu().numpy().copy()
        out["step"] = np.array([step], dtype=np.int64)
        return opt.tag_state(self.name, out)

    def load(self, state: dict[str, np.ndarray]) -> None:
        """Replace the optimizer state with ``state`` (as ``state()`` gives it)."""
        state = opt.check_state(self.name, state)
        if "step" not in state:
            raise ValueError("optimizer state has no 'step' entry")
        step = int(np.asarray(state["step"]).reshape(-1)[0])
        unknown = {k for k in state if k != "step"} - {
            f"{w}/{key}" for key in self.params for w in ("m", "v")
        }
        if unknown:
            raise ValueError(f"optimizer state has entries for unknown tensors: {sorted(unknown)}")
        self.opt.state.clear()
        if step == 0:
            return
        for key, p in self.params.items():
            m, v = state.get(f"m/{key}"), state.get(f"v/{key}")
            if m is None or v is None:
                raise ValueError(f"optimizer state is missing m/{key} or v/{key}")
            for name, array in (("m", m), ("v", v)):
                if tuple(array.shape) != tuple(p.shape):
                    raise ValueError(
                        f"optimizer state {name}/{key}: shape {tuple(array.shape)} does not "
                        f"match {tuple(p.shape)}"
                    )
            self.opt.state[p] = {
                # torch keeps `step` as a float32 CPU tensor when not capturable.
                "step": torch.tensor(float(step), dtype=torch.float32),
                "exp_avg": torch.tensor(m, dtype=p.dtype, device=p.device),
                "exp_avg_sq": torch.tensor(v, dtype=p.dtype, device=p.device),
            }
