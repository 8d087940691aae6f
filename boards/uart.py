"""8N1 UART receiver and transmitter with stream interfaces.

``UARTRx``: samples ``rx`` at ``divisor`` clocks per bit (start bit checked at its middle), emits one
byte per frame on ``o``; a byte that arrives while ``o`` is not ready is dropped and ``overflow``
pulses. Latency: one bit time after the stop bit's middle. Throughput: one byte per 10 bit times.

``UARTTx``: takes a byte from ``i`` and shifts out start, 8 data bits (LSB first) and stop on ``tx``.
Throughput: one byte per 10 bit times.

:func:`uart_divisor` gives the clocks per bit for a clock and baud rate, refusing a rate more than
2% off (8N1 tolerates about 4% between both ends together).

Members: ``UARTRx.rx : In(1)``, ``UARTRx.o : Out(stream.Signature(8))``, ``UARTRx.overflow : Out(1)``;
``UARTTx.i : In(stream.Signature(8))``, ``UARTTx.tx : Out(1)``.
"""

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

from kwsbnn.errors import KwsError

MAX_BAUD_ERROR = 0.02


def uart_divisor(clk_freq: float, baud: int) -> int:
    """Clocks per UART bit, ``round(clk_freq / baud)``; a :class:`KwsError` when the achieved rate
    ``clk_freq / divisor`` is more than 2% off ``baud`` or the divisor is below 4."""
    if baud <= 0:
        raise KwsError(f"baud rate {baud} must be positive")
    div = int(round(clk_freq / baud))
    if div < 4:
        raise KwsError(f"a {clk_freq / 1e6:g} MHz clock is too slow for {baud} baud "
                       f"(needs at least 4 clocks per bit)", "lower the baud rate or raise the clock")
    err = abs(clk_freq / div - baud) / baud
    if err > MAX_BAUD_ERROR:
        raise KwsError(f"{baud} baud from a {clk_freq / 1e6:g} MHz clock is {100 * err:.1f}% off "
                       f"(divisor {div})", "choose a clock (--freq) or a baud rate (--baud) that "
                       "divide better")
    return div


class UARTRx(wiring.Component):
    rx: In(1, init=1)
    o: Out(stream.Signature(8))
    overflow: Out(1)

    def __init__(self, divisor: int):
        if divisor < 4:
            raise ValueError(f"UART divisor {divisor} is too small (clock / baud rate must be >= 4)")
        self._div = int(divisor)
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        rx = Signal(init=1)
        m.submodules.sync_rx = FFSynchronizer(self.rx, rx, init=1)
        timer = Signal(range(self._div * 3 // 2 + 1))
        bit = Signal(range(10))
        shreg = Signal(8)
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        m.d.sync += self.overflow.eq(0)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(~rx):
                    m.d.sync += timer.eq(self._div // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                with m.If(timer == 0):
                    with m.If(~rx):
                        m.d.sync += [timer.eq(self._div - 1), bit.eq(0)]
                        m.next = "DATA"
                    with m.Else():
                        m.next = "IDLE"
                with m.Else():
                    m.d.sync += timer.eq(timer - 1)
            with m.State("DATA"):
                with m.If(timer == 0):
                    m.d.sync += [shreg.eq(Cat(shreg[1:], rx)), timer.eq(self._div - 1), bit.eq(bit + 1)]
                    with m.If(bit == 7):
                        m.next = "STOP"
                with m.Else():
                    m.d.sync += timer.eq(timer - 1)
            with m.State("STOP"):
                with m.If(timer == 0):
                    with m.If(rx):
                        with m.If(self.o.valid & ~self.o.ready):
                            m.d.sync += self.overflow.eq(1)
                        with m.Else():
                            m.d.sync += [self.o.payload.eq(shreg), self.o.valid.eq(1)]
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += timer.eq(timer - 1)
        return m


class UARTTx(wiring.Component):
    i: In(stream.Signature(8))
    tx: Out(1, init=1)

    def __init__(self, divisor: int):
        if divisor < 2:
            raise ValueError(f"UART divisor {divisor} is too small")
        self._div = int(divisor)
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        timer = Signal(range(self._div))
        shreg = Signal(10)
        left = Signal(range(11))
        m.d.comb += self.i.ready.eq(left == 0)
        with m.If(left == 0):
            with m.If(self.i.valid):
                m.d.sync += [shreg.eq(Cat(0, self.i.payload, 1)), left.eq(10), timer.eq(self._div - 1),
                             self.tx.eq(0)]
        with m.Else():
            with m.If(timer == 0):
                m.d.sync += [timer.eq(self._div - 1), left.eq(left - 1), shreg.eq(shreg >> 1)]
                m.d.sync += self.tx.eq(shreg[1] | (left == 1))
            with m.Else():
                m.d.sync += timer.eq(timer - 1)
        return m
