"""Board top: the generated network behind a UART byte link, with LEDs showing the last class.

Link (raw, version 0 of the host protocol; framing and checksums come with the host tool):
- host -> board: each input transfer of the network as ``ceil(C / 8)`` bytes, little-endian
  (``T * F`` transfers per inference, in the network's input order);
- board -> host: per inference one byte with the class, then every score as a little-endian
  two's-complement number of ``ceil(score_width / 8)`` bytes.

``KwsTop`` elaborates for an amaranth-boards platform (requests ``uart`` and LEDs), or, with
``platform=None``, exposes ``rx``/``tx``/``leds`` as ports for simulation.
"""

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from kwsbnn.hw.network import Network

from .uart import UARTRx, UARTTx


def link_sizes(n_inputs: int, score_width: int, n_classes: int) -> tuple[int, int, int]:
    """(bytes per input transfer, bytes per score, bytes per answer) of the raw link."""
    in_bytes = (n_inputs + 7) // 8
    score_bytes = (score_width + 7) // 8
    return in_bytes, score_bytes, 1 + score_bytes * n_classes


class KwsTop(wiring.Component):
    rx: In(1, init=1)
    tx: Out(1, init=1)
    leds: Out(4)

    def __init__(self, dep, folding=None, *, clk_freq: float, baud: int = 115200):
        self._net = Network(dep, folding)
        self._divisor = int(round(clk_freq / baud))
        self._n_in = int(dep.input["shape"][0]) * (1 if dep.input["prec"] == "bin" else 8)
        self._sizes = link_sizes(self._n_in, self._net.score_width, self._net.n_classes)
        super().__init__()

    @property
    def network(self) -> Network:
        return self._net

    def elaborate(self, platform):
        m = Module()
        m.submodules.net = net = self._net
        m.submodules.urx = urx = UARTRx(self._divisor)
        m.submodules.utx = utx = UARTTx(self._divisor)
        m.d.comb += [urx.rx.eq(self.rx), self.tx.eq(utx.tx)]
        in_bytes, score_bytes, out_bytes = self._sizes

        # Bytes -> input transfers.
        word = Signal(in_bytes * 8)
        nbyte = Signal(range(in_bytes + 1))
        m.d.comb += [net.i.payload.eq(word[:self._n_in]), net.i.valid.eq(nbyte == in_bytes),
                     urx.o.ready.eq(nbyte != in_bytes)]
        with m.If(urx.o.valid & urx.o.ready):
            m.d.sync += [word.eq(Cat(word[8:], urx.o.payload)), nbyte.eq(nbyte + 1)]
        with m.If(net.i.valid & net.i.ready):
            m.d.sync += nbyte.eq(0)

        # Result -> bytes.
        sw = self._net.score_width
        res = Signal(out_bytes * 8)
        left = Signal(range(out_bytes + 1))
        fields = [net.o.payload.cls.as_unsigned()[:8]]
        for k in range(self._net.n_classes):
            s = net.o.payload.scores[k]
            fields.append(Cat(s, *([s[sw - 1]] * (score_bytes * 8 - sw))))
        m.d.comb += net.o.ready.eq(left == 0)
        last = Signal(4)
        with m.If(net.o.valid & net.o.ready):
            m.d.sync += [res.eq(Cat(*[f if len(f) % 8 == 0 else Cat(f, *([0] * (8 - len(f) % 8)))
                                      for f in fields])),
                         left.eq(out_bytes), last.eq(net.o.payload.cls)]
        m.d.comb += [utx.i.payload.eq(res[:8]), utx.i.valid.eq(left != 0)]
        with m.If(utx.i.valid & utx.i.ready):
            m.d.sync += [res.eq(res >> 8), left.eq(left - 1)]
        m.d.comb += self.leds.eq(last)
        if platform is not None:
            self._connect_platform(m, platform)
        return m

    def _connect_platform(self, m, platform):
        uart = platform.request("uart", 0)
        m.d.comb += [self.rx.eq(uart.rx.i), uart.tx.o.eq(self.tx)]
        leds = []
        for name in ("led_g", "led_r", "led"):
            for n in range(4):
                try:
                    leds.append(platform.request(name, n))
                except Exception:
                    break
        for n, led in enumerate(leds[:4]):
            m.d.comb += led.o.eq(self.leds[n])
