"""Quantizers with straight-through gradients: sign (binary), int8 weights and int8 activations.

A quantized layer is its float twin plus named quantizers (larq style). Every quantizer returns the
*integer* values (±1 or int8, held in a float tensor) and, where there is one, the real scale the
integer stands for; layers accumulate on the integers, so in evaluation mode their accumulators are
exact integers and the integer inference mode (:mod:`kwsbnn.sw.integer`) can reproduce them.

- :func:`sign_ste`: ``+1 if x >= 0 else -1``; gradient passed straight through, clipped to
  ``|x| <= 1`` (hardtanh gradient) or not clipped (``clipped=False``).
- :func:`round_ste`: round half to even, identity gradient.
- :class:`KernelQuantizer`: ``float`` (identity), ``int8`` (symmetric; per output channel or per
  tensor; ``w = w_int * scale``), ``bin`` (sign; scale 1, the layer's batch norm absorbs any scale).
- :class:`Int8Activation`: ReLU then fake quantization to ``[0, 127]`` with a scale tracked as an
  exponential moving average of the batch maximum in training and frozen in evaluation.
"""

import torch
from torch import nn


class _SignSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, clipped: bool, window: float):
        ctx.save_for_backward(x)
        ctx.clipped, ctx.window = clipped, window
        return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        if ctx.clipped:
            g = g * (x.abs() <= ctx.window).to(g.dtype)
        return g, None, None


def sign_ste(x: torch.Tensor, clipped: bool = True, window: float = 1.0) -> torch.Tensor:
    """±1 (``+1`` at 0) with a straight-through gradient, zeroed where ``|x| > window`` if ``clipped``."""
    return _SignSTE.apply(x, clipped, window)


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """Round half to even in the forward pass, identity gradient."""
    return x + (torch.round(x) - x).detach()


class KernelQuantizer(nn.Module):
    """Quantize a weight tensor ``[C_out, ...]``: returns ``(w_int, scale [C_out])``.

    ``prec``: ``float`` (w unchanged, scale 1), ``int8`` (``round(w / scale)`` clamped to ±127,
    ``scale = max|w| / 127`` per output channel or, with ``per_channel=False``, per tensor),
    ``bin`` (``sign(w)`` with a straight-through gradient, scale 1).
    """

    def __init__(self, prec: str, per_channel: bool = True, clipped: bool = True):
        super().__init__()
        if prec not in ("float", "int8", "bin"):
            raise ValueError(f"kernel precision must be float, int8 or bin, got {prec!r}")
        self.prec, self.per_channel, self.clipped = prec, per_channel, clipped

    def forward(self, w: torch.Tensor):
        ones = torch.ones(w.shape[0], dtype=w.dtype, device=w.device)
        if self.prec == "float":
            return w, ones
        if self.prec == "bin":
            return sign_ste(w, self.clipped), ones
        if self.per_channel:
            m = w.detach().abs().reshape(w.shape[0], -1).amax(dim=1)
        else:
            m = w.detach().abs().amax().expand(w.shape[0])
        scale = torch.clamp(m, min=1e-8) / 127.0
        shape = (-1,) + (1,) * (w.dim() - 1)
        w_int = torch.clamp(round_ste(w / scale.view(shape)), -127, 127)
        return w_int, scale

    def extra_repr(self):
        return f"prec={self.prec}"


class Int8Activation(nn.Module):
    """ReLU and fake quantization to ``[0, 127]``: returns ``(y_int, scale)`` with ``y ~ y_int * scale``.

    The scale is ``running_max / 127``; in training the running maximum follows the batch maximum
    with ``momentum`` (set directly on the first batch); in evaluation it is fixed. Gradients pass
    straight through the rounding and are zero where the clamp is active.
    """

    def __init__(self, momentum: float = 0.05):
        super().__init__()
        self.momentum = momentum
        self.register_buffer("running_max", torch.zeros(()))
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))

    def scale(self) -> torch.Tensor:
        return torch.clamp(self.running_max, min=1e-6) / 127.0

    def forward(self, z: torch.Tensor):
        if self.training:
            with torch.no_grad():
                m = torch.relu(z).amax()
                if bool(self.initialized):
                    self.running_max.mul_(1 - self.momentum).add_(self.momentum * m)
                else:
                    self.running_max.copy_(m)
                    self.initialized.fill_(True)
        s = self.scale()
        return torch.clamp(round_ste(z / s), 0, 127), s
