"""The walking skeleton's network: one binary fully-connected layer with thresholds, then scores.

``TinyBNN``: ``n_in`` input bits -> binary FC (``hidden`` neurons) -> batch norm -> sign -> binary FC to
``n_classes`` integer scores (+ integer bias) -> argmax. In the integer contract it is a 1x1 ``conv``
over an input ``[n_in, 1, 1]`` with ``out: bits``, a ``gap`` and a binary ``dense``. It exists to fix
the interfaces between the stages (train -> export -> golden -> RTL -> bitstream); the keyword
networks of :mod:`kwsbnn.sw.models` use the same export path.
"""

import numpy as np
import torch
from torch import nn

from .fold import fold_step


class SignSTE(torch.autograd.Function):
    """sign with +1 at 0, and the clipped straight-through gradient (zero where |x| > 1)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * (x.abs() <= 1).to(g.dtype)


def sign(x):
    return SignSTE.apply(x)


class TinyBNN(nn.Module):
    def __init__(self, n_in=64, hidden=32, n_classes=4):
        super().__init__()
        self.n_in, self.hidden, self.n_classes = n_in, hidden, n_classes
        self.w1 = nn.Parameter(torch.randn(hidden, n_in) * 0.1)
        self.bn1 = nn.BatchNorm1d(hidden)
        self.w2 = nn.Parameter(torch.randn(n_classes, hidden) * 0.1)
        self.b2 = nn.Parameter(torch.zeros(n_classes))

    def forward(self, x_pm: torch.Tensor) -> torch.Tensor:
        """Float (training) forward of ±1 inputs ``[B, n_in]``; the bias is rounded (STE)."""
        acc1 = x_pm @ sign(self.w1).t()
        h = sign(self.bn1(acc1))
        bias = self.b2 + (torch.round(self.b2) - self.b2).detach()
        return h @ sign(self.w2).t() + bias

    def post_acc1(self, acc: torch.Tensor) -> torch.Tensor:
        """Hidden bits as a function of the first accumulator, in float32 eval mode (for folding)."""
        return self.bn1(acc) >= 0

    def integer_spec(self) -> dict:
        """The network in the integer contract (docs/integer-network.md), thresholds by enumeration."""
        self.eval()
        values = np.arange(-self.n_in, self.n_in + 1, 2)      # reachable ±1 dot products
        with torch.no_grad():
            acc = torch.tensor(values, dtype=torch.float32)[:, None].expand(-1, self.hidden)
            bits = self.post_acc1(acc.contiguous()).numpy().T   # [hidden, V]
        direction, threshold = fold_step(values, bits)
        w1 = (self.w1.detach().numpy() >= 0).astype(np.int64)
        w2 = (self.w2.detach().numpy() >= 0).astype(np.int64)
        return {
            "name": "tiny",
            "classes": [f"class{k}" for k in range(self.n_classes)],
            "input": {"prec": "bin", "shape": [self.n_in, 1, 1]},
            "layers": [
                {"name": "fc1", "op": "conv", "in_channels": self.n_in, "out_channels": self.hidden,
                 "kernel": [1, 1], "stride": [1, 1], "dilation": [1, 1], "padding": [0, 0],
                 "in_prec": "bin", "w_prec": "bin", "pad_bit": 0, "pool": None, "out": "bits",
                 "shortcut": "none", "weights": w1, "direction": direction,
                 "threshold": threshold[:, None]},
                {"name": "gap", "op": "gap"},
                {"name": "fc2", "op": "dense", "in_features": self.hidden,
                 "out_features": self.n_classes, "w_prec": "bin", "weights": w2,
                 "bias": torch.round(self.b2.detach()).numpy().astype(np.int64)},
            ],
        }

    @torch.no_grad()
    def integer_forward(self, x_bits: torch.Tensor) -> torch.Tensor:
        """Integer inference mode: input bits ``[B, n_in]`` (0/1) -> int64 scores ``[B, n_classes]``.

        Exact integer ops in int64 with thresholds folded from the eval-mode batch norm.
        """
        spec = self.integer_spec()
        fc1, fc2 = spec["layers"][0], spec["layers"][2]
        x = x_bits.to(torch.int64) * 2 - 1
        w1 = torch.from_numpy(fc1["weights"]) * 2 - 1
        acc = x @ w1.t()
        d = torch.from_numpy(fc1["direction"])
        t = torch.from_numpy(fc1["threshold"][:, 0])
        h = torch.where(d > 0, acc >= t, acc <= t).to(torch.int64) * 2 - 1
        w2 = torch.from_numpy(fc2["weights"]) * 2 - 1
        return h @ w2.t() + torch.from_numpy(fc2["bias"])


def make_tiny(seed: int = 0, n_in=64, hidden=32, n_classes=4, steps=300) -> TinyBNN:
    """Train a TinyBNN for a moment on a seeded synthetic task (class = argmax of a hidden ±1 map).

    Afterwards a few channels get negative and zero batch-norm scales so that every case of the
    threshold folding is present in the skeleton.
    """
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = TinyBNN(n_in, hidden, n_classes)
    teacher = torch.randint(0, 2, (n_classes, n_in), generator=g).float() * 2 - 1
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        x = torch.randint(0, 2, (256, n_in), generator=g).float() * 2 - 1
        y = (x @ teacher.t()).argmax(dim=1)
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        model.bn1.weight[0] = -model.bn1.weight[0].abs()
        model.bn1.weight[1] = 0.0
        model.bn1.bias[2] = 50.0        # always +1
        model.bn1.bias[3] = -50.0       # always -1
        model.bn1.weight[4] = -model.bn1.weight[4].abs()
    return model.eval()
