"""The ResNet keyword-spotting family (Tang & Lin 2018, castorini/honk) at float, 8-bit and binary precision.

A model maps the int8-quantized feature map ``q [B, T, F]`` (int8 values in a float tensor) to class
logits ``[B, K]``. Architectures are plain data (:data:`ARCHS`); precision is a parameter. Two layouts:

``honk``  Honk's own network: ``conv0 -> ReLU -> avgpool``, then convs ``i = 1..n`` each
          ``conv -> ReLU -> (+ block input every second conv) -> BN(affine=False)``, global average
          pool, linear. Used for the float baseline and for *naive* binarization (sign of weights and
          inputs of conv1..n, first and last layer float). In this layout conv1's input is a ReLU
          output, so its sign is always +1 and conv1 sees a constant: that is why naive
          binarization fails, and the model keeps it to show it. Not deployable.

``chain`` The deployable layout, one contract ``conv`` layer per block (docs/integer-network.md):
          ``acc = conv(x)`` (exact integers) ``-> sum pool -> z = BN(acc * scale) + a_c * x ->``
          activation; then a sum (global average) pool and a dense layer. Precision decides the
          quantizers: ``float`` (ReLU, real shortcut), ``int8`` (int8 weights per channel, ReLU + int8
          fake quantization, int8 shortcut, int8 dense with a per-tensor scale) or ``binary`` (±1
          weights, sign activations, the 1-bit shortcut ``BN(conv(x)) + a_c * x`` with x the ±1
          input, pad value ``pad_bit``; the first layer reads int8 features with binary or int8
          weights; the dense layer is int8).

Every block splits into :meth:`Block.accumulate` (exact integer accumulator in evaluation mode) and
:meth:`Block.pre_activation` (the float post-accumulator function that threshold folding enumerates).
"""

from dataclasses import asdict, dataclass, field, fields, replace

import torch
import torch.nn.functional as F
from torch import nn

import numpy as np

from .quant import Int8Activation, KernelQuantizer, round_ste, sign_ste

# Tang & Lin 2018 / Honk configurations (n_layers counts the convolutions after conv0).
ARCHS = {
    "res8":         dict(channels=45, layers=6, pool=(4, 3), dilation=False),
    "res8-narrow":  dict(channels=19, layers=6, pool=(4, 3), dilation=False),
    "res15":        dict(channels=45, layers=13, pool=None, dilation=True),
    "res15-narrow": dict(channels=19, layers=13, pool=None, dilation=True),
    "res26":        dict(channels=45, layers=24, pool=(2, 2), dilation=False),
}
PRECISIONS = ("float", "int8", "binary")
SHORTCUTS = ("none", "bit", "int")
STREAM_RANGE = (-128, 127)      # the integer residual stream saturates to int8
INPUT_SCALE = 1.0 / 32.0        # real value of one int8 feature step seen by the first layer


@dataclass
class BinaryOptions:
    """The binary-network design choices, each a flag a search can toggle.

    Model: ``layout`` (``chain`` = redesign, ``honk`` = naive), ``first_weights`` (``int8`` | ``bin``
    weights of the first layer), ``bn`` (batch norm before each sign: a learned threshold),
    ``width`` (channels; None = the arch's),
    ``clipped_ste`` (hardtanh gradient of sign), ``ste_window`` (the activations' gradient
    passes where ``|z| <= ste_window``; the 1-bit shortcut widens z to about ±2), ``head_gain``
    (a fixed factor on the logits: the dense layer reads a mean of ±1 values, and Adam's bounded
    steps would otherwise take many epochs to grow confident logits; argmax and the integer scores
    are unchanged), ``real`` (step one of two-step training: binary layers
    keep their latent weights and use hardtanh activations instead of signs, so the network learns at
    float speed; step two trains the binary network initialised from it with ``--init``; a ``real``
    model is not deployable), ``real_weights`` (ReActNet's step one of two-step training: binary
    layers keep their latent weights but sign their activations; step two binarizes the weights from
    ``--init``; not deployable either), ``pad_bit`` (binary padding value, 1 = +1).
    Architecture (chain layout; the defaults keep the arch's): ``stages`` (``W1xD1-W2xD2...``: width and
    number of binary layers of each stage; the first layer outputs ``W1`` channels; a layer that
    changes width has no shortcut), ``pool`` (``arch`` | ``none`` | ``TxF`` after the first layer |
    ``TxF/TxF``: the second pooling in the first layer of the second stage, or of the middle binary
    layer with one stage; a pooling layer has no shortcut), ``dilation`` (``arch`` | ``on`` | ``off``).
    Training: ``optimizer`` (``adam`` | ``sgd``), ``schedule`` (``cosine`` | ``linear`` | ``constant``),
    ``lr``, ``distill`` (weight of the KL term to a float teacher, 0 = off), ``temperature``,
    ``feat_distill`` (weight of Real-to-Binary's attention-transfer term: every block's spatial
    attention map, the channel mean of its squared output, L2-normalised, matched to the same block
    of a teacher of the same architecture, e.g. the ``real=true`` step-one model; 0 = off),
    ``bn_reestimate`` (recompute batch-norm statistics on training batches before evaluation),
    ``clip_latent`` (clip latent binary weights to [-1, 1] after each step).
    ``shortcut`` (``none`` | ``bit``: the 1-bit shortcut ``BN(conv(x)) + a_c * x`` | ``int``: Bi-Real
    Net's integer residual stream: the first layer writes ``r = round(BN(acc) / S)`` (int8,
    ``S = 2**-stream_frac``), every binary layer convolves ``sign(r * S - shift_c)`` and adds
    ``round(BN(acc) / S)`` to ``r``, saturating to int8; layers that change width or pool start a
    new stream; the head pools the last ``r``, through a ReLU (clamp at 0) with ``last=int8``,
    signed with ``last=bin``), ``rsign`` (ReActNet's learnable
    per-channel shift before the sign of a stream; off: 0; folded into an integer threshold),
    ``rprelu`` (ReActNet's RPReLU on what each stream layer adds: ``PReLU(z - g_c; b_c) + e_c`` of its
    batch-normalised output, learnable shifts and slope; a training study option: such a model has no
    integer form yet, torch evaluates it in floating point),
    ``stream_frac`` (fraction bits of the stream).
    ``last`` (``bin`` | ``int8``: the last binary layer's output. ``int8`` is guideline 1's
    higher-precision last layer: its batch-normalised accumulator goes through ReLU and int8
    quantization instead of the sign, so the global pool and the dense layer read 8-bit values;
    that layer has no shortcut).
    """
    layout: str = "chain"
    first_weights: str = "int8"
    bn: bool = True
    shortcut: str = "bit"
    width: int | None = None
    clipped_ste: bool = True
    ste_window: float = 1.0
    head_gain: float = 1.0
    real: bool = False
    real_weights: bool = False
    pad_bit: int = 1
    optimizer: str = "adam"
    schedule: str = "cosine"
    lr: float = 2e-3
    distill: float = 0.0
    temperature: float = 4.0
    feat_distill: float = 0.0
    bn_reestimate: bool = True
    clip_latent: bool = True
    stages: str = ""
    pool: str = "arch"
    dilation: str = "arch"
    last: str = "bin"
    rsign: bool = True
    rprelu: bool = False
    stream_frac: int = 4
    preset: str = field(default="", compare=False)   # the preset parsed from (reports name direct models)

    def __post_init__(self):
        # model files written before ``shortcut`` took a name store a bool
        if isinstance(self.shortcut, bool):
            self.shortcut = "bit" if self.shortcut else "none"
        if self.shortcut not in SHORTCUTS:
            raise ValueError(f"shortcut {self.shortcut!r}: use {', '.join(SHORTCUTS)}")

    @classmethod
    def parse(cls, text: str | None) -> "BinaryOptions":
        """``naive`` | ``redesign`` (default) followed by ``,key=value`` overrides."""
        parts = [p.strip() for p in (text or "redesign").split(",") if p.strip()]
        opts = replace(PRESETS["redesign"], preset="redesign")
        if parts and "=" not in parts[0]:
            name = parts.pop(0)
            if name not in PRESETS:
                raise ValueError(f"unknown binary preset {name!r}; known: {', '.join(PRESETS)}")
            opts = replace(PRESETS[name], preset=name)
        types = {f.name: f.type for f in fields(cls)}
        for p in parts:
            key, _, val = p.partition("=")
            if key not in types:
                raise ValueError(f"unknown binary option {key!r}; known: {', '.join(types)}")
            cur = getattr(opts, key)
            if key == "shortcut":
                low = val.lower()
                v = {"1": "bit", "true": "bit", "yes": "bit", "on": "bit",
                     "0": "none", "false": "none", "no": "none", "off": "none"}.get(low, low)
            elif isinstance(cur, bool):
                v = val.lower() in ("1", "true", "yes", "on")
            elif key == "width":
                v = None if val.lower() in ("", "none") else int(val)
            elif isinstance(cur, int):
                v = int(val)
            elif isinstance(cur, float):
                v = float(val)
            else:
                v = val
            opts = replace(opts, **{key: v})
        return opts


PRESETS = {
    "redesign": BinaryOptions(),
    # Textbook binarization of the deployable float network (the paper's "direct binarization"
    # baseline): ±1 weights and signs of the batch-normalised activations with a clipped
    # straight-through estimator, the 1-bit form of the float shortcut, int8 first layer and dense
    # layer kept, batch-norm statistics re-estimated; nothing searched, no teacher.
    "direct": BinaryOptions(first_weights="int8", bn=True, shortcut="bit", last="bin", distill=0.0),
    "naive": BinaryOptions(layout="honk", first_weights="float", bn=False, shortcut="none",
                           clipped_ste=True, lr=1e-3, schedule="constant", bn_reestimate=False,
                           clip_latent=False),
}


@dataclass
class ModelConfig:
    """Everything needed to rebuild a model: plain data, saved in every model file."""
    arch: str = "res8"
    precision: str = "float"
    layout: str = "honk"
    channels: int = 45
    layers: int = 6
    pool: tuple | None = (4, 3)
    dilation: bool = False
    n_classes: int = 12
    dropout: float = 0.0
    binary: dict = field(default_factory=dict)
    widths: list | None = None      # chain: output channels of every block (None: all `channels`)
    pools: list | None = None       # chain: pooling of every block (None: `pool` after the first)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        d = dict(d)
        if d.get("pool") is not None:
            d["pool"] = tuple(d["pool"])
        if d.get("pools") is not None:
            d["pools"] = [tuple(p) if p is not None else None for p in d["pools"]]
        return cls(**d)

    def block_widths(self) -> list[int]:
        return list(self.widths) if self.widths else [self.channels] * (self.layers + 1)

    def block_pools(self) -> list:
        return list(self.pools) if self.pools else [self.pool] + [None] * self.layers

    @property
    def options(self) -> BinaryOptions:
        return BinaryOptions(**self.binary) if self.binary else BinaryOptions()


def make_config(arch: str, precision: str, binary: BinaryOptions | None = None, n_classes: int = 12,
                dropout: float = 0.0, layout: str | None = None, width: int | None = None) -> ModelConfig:
    """The configuration of ``arch`` at ``precision`` (layout: float honk, int8 chain, binary per options).

    ``width``: the channels of every layer instead of the arch's, at any precision (``kwsbnn train
    --width``). For a binary network it is the option ``width`` (recorded in its options; giving
    both with different values, or ``width`` with ``stages``, which sets the widths itself, is an
    error)."""
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(ARCHS)}")
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; known: {', '.join(PRECISIONS)}")
    if width is not None and (not isinstance(width, int) or width < 1):
        raise ValueError(f"width {width!r}: expected a positive number of channels")
    a = dict(ARCHS[arch])
    bin_dict = {}
    extra = {}
    if width is not None and precision != "binary":
        a["channels"] = width
    if precision == "binary":
        binary = binary or BinaryOptions()
        if width is not None:
            if binary.stages:
                raise ValueError(f"width {width} and stages={binary.stages} both set the widths; give one")
            if binary.width and binary.width != width:
                raise ValueError(f"width {width} and the binary option width={binary.width} disagree")
            binary = replace(binary, width=width)
        bin_dict = asdict(binary)
        layout = binary.layout
        if binary.width:
            a["channels"] = binary.width
        extra = _architecture(binary, a)
    layout = layout or ("honk" if precision == "float" else "chain")
    if precision == "int8" and layout != "chain":
        raise ValueError("int8 models use the chain layout")
    if layout != "chain" and extra:
        raise ValueError("stages and a second pooling need the chain layout")
    return ModelConfig(arch=arch, precision=precision, layout=layout, n_classes=n_classes,
                       dropout=dropout, binary=bin_dict, **a, **extra)


def _pair(text: str, what: str) -> tuple[int, int]:
    a, sep, b = text.partition("x")
    if not sep or not a.strip().isdigit() or not b.strip().isdigit() or int(a) < 1 or int(b) < 1:
        raise ValueError(f"{what} {text!r}: expected AxB with positive integers")
    return int(a), int(b)


def _architecture(opts: BinaryOptions, a: dict) -> dict:
    """Apply the options ``stages``, ``pool`` and ``dilation`` to the arch dict ``a`` (in place);
    return the ModelConfig fields ``widths``/``pools`` they need (empty when the defaults hold)."""
    extra = {}
    stages = None
    if opts.stages:
        stages = [_pair(s, "stage") for s in opts.stages.split("-")]
        a["channels"] = stages[0][0]
        a["layers"] = sum(d for _, d in stages)
        widths = [stages[0][0]] + [w for w, d in stages for _ in range(d)]
        if len(set(widths)) > 1:
            extra["widths"] = widths
    if opts.dilation not in ("arch", "on", "off"):
        raise ValueError(f"dilation {opts.dilation!r}: use arch, on or off")
    if opts.dilation != "arch":
        a["dilation"] = opts.dilation == "on"
    if opts.pool != "arch":
        pools = [] if opts.pool == "none" else [_pair(p, "pool") for p in opts.pool.split("/")]
        if len(pools) > 2:
            raise ValueError(f"pool {opts.pool!r}: at most two poolings (TxF or TxF/TxF)")
        a["pool"] = pools[0] if pools else None
        if len(pools) == 2:
            at = 1 + stages[0][1] if stages and len(stages) > 1 else 1 + a["layers"] // 2
            per_block = [a["pool"]] + [None] * a["layers"]
            per_block[min(at, a["layers"])] = pools[1]
            extra["pools"] = per_block
    return extra


def build_model(cfg: ModelConfig) -> nn.Module:
    """A fresh model for ``cfg`` (its ``.config`` is ``cfg``)."""
    return HonkResNet(cfg) if cfg.layout == "honk" else ChainResNet(cfg)


def _dilations(cfg: ModelConfig) -> list[int]:
    return [int(2 ** (i // 3)) if cfg.dilation else 1 for i in range(1, cfg.layers + 1)]


class QConv2d(nn.Conv2d):
    """``nn.Conv2d`` with named ``input_quantizer`` and ``kernel_quantizer`` (larq style)."""

    def __init__(self, *args, input_quantizer=None, kernel_quantizer=None, **kw):
        super().__init__(*args, **kw)
        self.input_quantizer = input_quantizer
        self.kernel_quantizer = kernel_quantizer or KernelQuantizer("float")

    def forward(self, x):
        if self.input_quantizer is not None:
            x = self.input_quantizer(x)
        w, _ = self.kernel_quantizer(self.weight)
        return self._conv_forward(x, w, self.bias)


class SignQuantizer(nn.Module):
    """Input quantizer: sign with a (clipped) straight-through gradient."""

    def __init__(self, clipped: bool = True):
        super().__init__()
        self.clipped = clipped

    def forward(self, x):
        return sign_ste(x, self.clipped)


class HonkResNet(nn.Module):
    """Honk's res8/res15/res26 (float), or its naive binarization (``precision='binary'``)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        n, binary = cfg.channels, cfg.precision == "binary"
        clipped = cfg.options.clipped_ste
        self.conv0 = nn.Conv2d(1, n, 3, padding=1, bias=False)
        self.convs = nn.ModuleList(
            QConv2d(n, n, 3, padding=d, dilation=d, bias=False,
                    input_quantizer=SignQuantizer(clipped) if binary else None,
                    kernel_quantizer=KernelQuantizer("bin" if binary else "float", clipped=clipped))
            for d in _dilations(cfg))
        self.bns = nn.ModuleList(nn.BatchNorm2d(n, affine=False) for _ in range(cfg.layers))
        self.drop = nn.Dropout(cfg.dropout)
        self.output = nn.Linear(n, cfg.n_classes)

    def forward(self, q):
        x = q.unsqueeze(1) * INPUT_SCALE
        x = F.relu(self.conv0(x))
        if self.config.pool:
            x = F.avg_pool2d(x, self.config.pool)
        old = x
        for i, (conv, bn) in enumerate(zip(self.convs, self.bns), start=1):
            y = F.relu(conv(x))
            if i % 2 == 0:
                x = y + old
                old = x
            else:
                x = y
            x = bn(x)
        return self.output(self.drop(x.mean(dim=(2, 3))))


class Block(nn.Module):
    """One contract ``conv`` layer: ``conv (3x3) -> sum pool -> z = BN(acc * scale) + a_c * x -> act``.

    ``in_prec``/``out_prec``: ``float`` | ``int8`` | ``bin``; ``w_prec``: ``float`` | ``int8`` | ``bin``.
    ``forward(x, in_scale) -> (y, out_scale)`` with ``x`` integer values (int8 or ±1) for quantized
    inputs and ``x * in_scale`` the real value.
    """

    def __init__(self, cin, cout, *, dilation=1, pool=None, in_prec, w_prec, out_prec,
                 shortcut=False, bn=True, pad_bit=1, clipped=True, ste_window=1.0, real=False,
                 real_weights=False, stream_frac=4, rsign=True, rprelu=False):
        super().__init__()
        self.cin, self.cout, self.dilation, self.pool = cin, cout, dilation, pool
        self.in_prec, self.w_prec, self.out_prec = in_prec, w_prec, out_prec
        self.pad_bit, self.clipped, self.ste_window = pad_bit, clipped, ste_window
        self.real, self.real_weights = real, real_weights
        self.conv = nn.Conv2d(cin, cout, 3, dilation=dilation, bias=False)
        self.kernel_quantizer = KernelQuantizer(w_prec, clipped=clipped)
        self.bn = nn.BatchNorm2d(cout) if bn else None
        if shortcut and (cin != cout or pool):
            raise ValueError("a shortcut needs in_channels == out_channels and no pooling")
        self.act = Int8Activation() if out_prec == "int8" else None
        # The integer residual stream (shortcut=int): values r * 2**-stream_frac, int8 saturating.
        self.stream_scale = 2.0 ** -stream_frac
        self.in_shift = None
        self.stream_add = False
        self.stream_range = STREAM_RANGE   # the last block clamps at 0 with last=int8 (a ReLU)
        if in_prec == "stream":       # RSign: a per-channel shift before the sign (learnable or 0)
            self.in_shift = nn.Parameter(torch.zeros(cin), requires_grad=rsign)
        if out_prec == "stream":      # the residual is added with weight 1: no shortcut scale
            self.stream_add = bool(shortcut)
            shortcut = False
        self.shortcut_scale = nn.Parameter(torch.ones(cout)) if shortcut else None
        self.rprelu = None            # RPReLU on the stream increment: (shift in, slope, shift out)
        if out_prec == "stream" and rprelu:
            self.rprelu = nn.ParameterList([nn.Parameter(torch.zeros(cout)),
                                            nn.Parameter(torch.full((cout,), 0.25)),
                                            nn.Parameter(torch.zeros(cout))])

    @property
    def pad_value(self) -> float:
        return float(2 * self.pad_bit - 1) if self.in_prec in ("bin", "stream") else 0.0

    def in_threshold(self) -> torch.Tensor:
        """Stream input: the integer threshold per input channel, ``bit = r >= t`` (int64 [C_in])."""
        return torch.ceil(self.in_shift.detach().double() / self.stream_scale - 1e-9).to(torch.int64)

    def binarize_input(self, r):
        """The ±1 values a stream-input block convolves: ``sign(r * S - shift)`` in training (straight
        through), ``r >= in_threshold`` exactly in evaluation."""
        if self.training or self.real:
            z = r * self.stream_scale - self.in_shift.view(1, -1, 1, 1)
            if self.real:
                return torch.clamp(z, -1.0, 1.0)
            return sign_ste(z, self.clipped, self.ste_window)
        t = self.in_threshold().to(r.device).view(1, -1, 1, 1)
        return torch.where(r.double() >= t, 1.0, -1.0).to(r.dtype)

    STREAM_FRAC_BITS = 16

    def stream_requant(self, in_scale: float, bound: int):
        """``(mul, add, shift)`` (int64 tensors [C], int) with ``floor((acc*mul + add) / 2**shift)``
        = ``round(BN(acc * w_scale * in_scale) / S)`` up to the multipliers' rounding (under
        ``2**-16`` of a stream step for any ``|acc| <= bound``)."""
        _, ws = self.weights()
        if self.bn is None:
            alpha = torch.ones_like(ws, dtype=torch.float64)
            b = torch.zeros_like(alpha)
        else:
            bn = self.bn
            alpha = (bn.weight * torch.rsqrt(bn.running_var + bn.eps)).double()
            b = bn.bias.double() - bn.running_mean.double() * alpha
        k = ws.detach().double() * float(in_scale) * alpha.detach()
        shift = int(np.ceil(np.log2(bound + 130))) + self.STREAM_FRAC_BITS
        scale = 2.0 ** shift / self.stream_scale
        mul = torch.round(k * scale).to(torch.int64)
        add = torch.round(b.detach() * scale).to(torch.int64) + (1 << shift >> 1)
        return mul, add, shift

    @property
    def latent_weights(self) -> bool:
        """True when the convolution uses its real-valued weights (the float study or ReActNet's
        step one): such a layer has no integer form."""
        return self.real or self.real_weights

    def weights(self):
        """``(w_int, scale [C_out])``: the quantized kernel the accumulator uses."""
        if self.latent_weights and self.w_prec == "bin":
            w = self.conv.weight
            return w, torch.ones(w.shape[0], dtype=w.dtype, device=w.device)
        return self.kernel_quantizer(self.conv.weight)

    def accumulate(self, x):
        """Padded convolution on the integer input values, then the optional sum pool."""
        d = self.dilation
        w, _ = self.weights()
        x = F.pad(x, (d, d, d, d), value=self.pad_value)
        acc = F.conv2d(x, w, dilation=d)
        if self.pool:
            acc = F.avg_pool2d(acc, self.pool, stride=self.pool, divisor_override=1)
        return acc

    def pre_activation(self, acc, x, in_scale):
        """The float post-accumulator function before the activation (eval: explicit elementwise ops).

        ``x`` is the block input at the same positions (for the shortcut), ``in_scale`` its real step.
        """
        _, ws = self.weights()
        m = (ws * in_scale).view(1, -1, 1, 1)
        z = acc * m
        if self.bn is not None:
            if self.training:
                z = self.bn(z)
            else:
                bn = self.bn
                alpha = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
                z = (z - bn.running_mean.view(1, -1, 1, 1)) * alpha.view(1, -1, 1, 1) \
                    + bn.bias.view(1, -1, 1, 1)
        if self.shortcut_scale is not None:
            z = z + self.shortcut_scale.view(1, -1, 1, 1) * (x * in_scale)
        return z

    def activation(self, z):
        """``(y, out_scale)``: ReLU (float), ReLU + int8 fake quant, or sign (+1 at 0)."""
        if self.out_prec == "bin":
            if self.real:
                return torch.clamp(z, -1.0, 1.0), 1.0
            return sign_ste(z, self.clipped, self.ste_window), 1.0
        if self.out_prec == "int8":
            return self.act(z)
        return F.relu(z), 1.0

    def acc_bound(self) -> int:
        """A bound on ``|acc'|`` over every input (int8 inputs in [-127, 127])."""
        w, _ = self.weights()
        per_c = w.detach().abs().reshape(w.shape[0], -1).sum(dim=1)
        xmax = 127 if self.in_prec == "int8" else 1
        area = self.pool[0] * self.pool[1] if self.pool else 1
        return int(per_c.max().item()) * xmax * area

    def stream_output(self, acc, r, in_scale):
        """The stream output ``clamp(r + round(BN(acc)/S), -128, 127)`` (``r`` = 0 without the
        residual add): straight-through rounding in training, the exported integers in evaluation."""
        lo, hi = self.stream_range
        res = r if self.stream_add else torch.zeros((), dtype=acc.dtype, device=acc.device)
        if self.training or self.latent_weights or self.rprelu is not None:
            z = self.pre_activation(acc, r, in_scale)     # (real_weights: acc is not integer)
            if self.rprelu is not None:
                g, b, e = (p.view(1, -1, 1, 1) for p in self.rprelu)
                z = torch.where(z >= g, z - g, b * (z - g)) + e
            return torch.clamp(res + round_ste(z / self.stream_scale), lo, hi)
        mul, add, shift = self.stream_requant(in_scale, self.acc_bound())
        dev = acc.device
        y = (torch.round(acc.double()).to(torch.int64) * mul.to(dev).view(1, -1, 1, 1)
             + add.to(dev).view(1, -1, 1, 1))
        y = torch.div(y, 1 << shift, rounding_mode="floor")
        y = y + torch.round(torch.as_tensor(res, dtype=torch.float64)).to(torch.int64).to(dev)
        return torch.clamp(y, lo, hi).to(acc.dtype)

    def forward(self, x, in_scale=1.0):
        xin = self.binarize_input(x) if self.in_prec == "stream" else x
        acc = self.accumulate(xin)
        if self.out_prec == "stream":
            return self.stream_output(acc, x, 1.0 if self.in_prec == "stream" else in_scale), \
                self.stream_scale
        return self.activation(self.pre_activation(acc, xin, 1.0 if self.in_prec == "stream" else in_scale))


class Head(nn.Module):
    """Global sum pool and the dense layer: ``logits = (W_int g + b_int) * c`` when quantized.

    ``g = sum_{t,f} x`` (integer for quantized inputs), ``c = w_scale * in_scale / (T*F)``: the int8
    weights share one scale so that integer scores are proportional to the logits.
    """

    def __init__(self, cin, n_classes, prec, dropout=0.0, gain=1.0):
        super().__init__()
        self.prec, self.gain = prec, gain
        self.linear = nn.Linear(cin, n_classes)
        self.kernel_quantizer = KernelQuantizer(prec, per_channel=False)
        self.drop = nn.Dropout(dropout)

    def forward(self, x, in_scale=1.0):
        n = x.shape[2] * x.shape[3]
        g = self.drop(x.sum(dim=(2, 3)))
        if self.prec == "float":
            return self.linear(g * (in_scale / n))
        w, ws = self.kernel_quantizer(self.linear.weight)
        c = ws[0] * in_scale / n
        b = torch.round(self.linear.bias / c)
        b = self.linear.bias / c + (b - self.linear.bias / c).detach()
        scores = g.double() @ w.double().t() + b.double()
        return (scores * c.double() * self.gain).float()


class ChainResNet(nn.Module):
    """The deployable layout (see the module docstring)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        opts = cfg.options
        widths, pools = cfg.block_widths(), cfg.block_pools()
        if cfg.precision == "float":
            act, w, first_w, sc, head = "float", "float", "float", True, "float"
        elif cfg.precision == "int8":
            act, w, first_w, sc, head = "int8", "int8", "int8", True, "int8"
        else:
            act, w, first_w, sc, head = "bin", "bin", opts.first_weights, opts.shortcut != "none", "int8"
        kw = dict(bn=opts.bn if cfg.precision == "binary" else True, pad_bit=opts.pad_bit,
                  clipped=opts.clipped_ste, ste_window=opts.ste_window,
                  real=cfg.precision == "binary" and opts.real,
                  real_weights=cfg.precision == "binary" and opts.real_weights)
        if cfg.precision == "binary" and opts.shortcut == "int":
            # Bi-Real: an integer residual stream between the binary convolutions; every block reads
            # sign(r - shift) and adds round(BN(conv)) to r; the head reads the last stream.
            kw.update(stream_frac=opts.stream_frac, rsign=opts.rsign, rprelu=opts.rprelu)
            act, sc = "stream", True
        last = opts.last if cfg.precision == "binary" else act
        if act == "stream":
            last = "stream"
        if cfg.precision == "binary" and last not in ("bin", "int8", "stream"):
            raise ValueError(f"last {last!r}: use bin or int8")
        n = cfg.layers
        blocks = [Block(1, widths[0], pool=pools[0], in_prec="int8", w_prec=first_w,
                        out_prec=last if n == 0 else act, **kw)]
        for i, d in enumerate(_dilations(cfg), start=1):
            cin, cout, pool = widths[i - 1], widths[i], pools[i]
            out = last if i == n else act
            blocks.append(Block(cin, cout, dilation=d, pool=pool, in_prec=act, w_prec=w, out_prec=out,
                                shortcut=sc and cin == cout and not pool and out == act, **kw))
        if act == "stream" and opts.last == "int8":     # ReLU on the last stream before the pool
            blocks[-1].stream_range = (0, STREAM_RANGE[1])
        self.blocks = nn.ModuleList(blocks)
        self.head = Head(widths[-1], cfg.n_classes, head, cfg.dropout,
                         gain=opts.head_gain if cfg.precision == "binary" else 1.0)

    def forward(self, q, return_activations=False):
        x, s = q.unsqueeze(1), INPUT_SCALE
        acts = []
        for b in self.blocks:
            x, s = b(x, s)
            acts.append(x)
        out = self.head(x, s)
        return (out, acts) if return_activations else out


def binary_weight_bits(model: nn.Module) -> int:
    """Bits of binary weights in a chain model (the block-RAM budget of the redesign)."""
    total = 0
    for m in model.modules():
        if isinstance(m, Block) and m.w_prec == "bin":
            total += m.conv.weight.numel()
    return total


def reestimate_bn(model: nn.Module, batches) -> None:
    """Recompute every batch norm's running statistics as the plain average over ``batches``.

    Binary models' statistics go stale while the latent weights move; evaluation collapses unless
    they are re-estimated. Only batch-norm buffers change (int8 activation ranges are restored).
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    saved = {k: v.clone() for k, v in model.state_dict().items() if "running_max" in k or "initialized" in k}
    was_training = model.training
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    model.train()
    with torch.no_grad():
        for x in batches:
            model(x)
    for bn, mom in zip(bns, momenta):
        bn.momentum = mom
    model.load_state_dict({**model.state_dict(), **saved})
    model.train(was_training)


def randomize_bn_stats(model: nn.Module, generator: torch.Generator) -> nn.Module:
    """Give every batch norm random running statistics (mean U(-3, 3), variance U(0.5, 20)) and
    return the model in evaluation mode: an untrained network whose thresholds are all different,
    for costing candidates and exercising the hardware before training."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=generator) * 6 - 3)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=generator) * 19.5 + 0.5)
    return model.eval()
