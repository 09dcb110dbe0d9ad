"""How slow a target may be: every wait on the SoC takes its deadline from the work it waits for.

A deadline is a fixed allowance for one exchange (the OS scheduling the sim or the host,
a USB-serial adapter's latency timer) plus the SoC cycles the work takes and the link
bytes that must pass first, each at the target's slowest rate. A board runs at its clock
and its link's baud rate. The simulation has neither: it runs as fast as the host lets
it, so it gets the slowest rate we can justify (:data:`SIM`).
"""
from dataclasses import dataclass

from nnhil.gateware import link

# The sim's speed, measured on this project's 2-core machines: about 1 M cycles/s idle and
# 0.17-0.21 M with the machine four to seven times oversubscribed (load average 9-14 on 2
# cores: three sims, Yosys, trainings and builds at once). The floor is a quarter of that
# loaded figure and a twentieth of the idle one, so a slower machine of this kind (they
# vary 2-3x) under the same load still has margin, while a SoC that really stopped is
# named within seconds of work.
SIM_MIN_CYCLES_PER_S = 50_000
# UARTBone in the sim takes about 1.5 cycles per link byte, writes and reads alike (1.5 MB
# of writes in 2.3 M cycles; tests/soc/test_bridge_pacing.py keeps checking it).
SIM_CYCLES_PER_LINK_BYTE = 2
UART_BITS_PER_BYTE = 10          # 8N1: a start bit, 8 data bits and a stop bit


@dataclass(frozen=True)
class Pace:
    """A target's slowest clock and link rates, and a fixed allowance per exchange."""
    cycles_per_s: float
    link_bytes_per_s: float
    allowance_s: float

    def seconds(self, cycles=0, link_bytes=0):
        """The longest a wait for ``cycles`` of SoC work after ``link_bytes`` on the link may take."""
        return self.allowance_s + cycles / self.cycles_per_s + link_bytes / self.link_bytes_per_s

    def describe(self):
        return (f"{self.cycles_per_s / 1e6:g} M cycles/s, {self.link_bytes_per_s / 1e3:g} kB/s on "
                f"the link, {self.allowance_s:g} s per exchange")


def board(baud=link.BAUD, clock_hz=link.CLOCK_HZ):
    """A board: its clock, and its UART at ``baud`` (USB-serial adapters add up to 16 ms a turn)."""
    return Pace(clock_hz, baud / UART_BITS_PER_BYTE, allowance_s=1.0)


SIM = Pace(SIM_MIN_CYCLES_PER_S, SIM_MIN_CYCLES_PER_S / SIM_CYCLES_PER_LINK_BYTE, allowance_s=2.0)


def of_build(constants, baud=link.BAUD):
    """The pace of whatever runs a build, from its csr.json constants: a sim build is the
    sim even behind a serial device (the board code path tested here); a board build runs
    at the clock it was built for."""
    if constants.get("config_platform_name") == "sim":
        return SIM
    return board(baud, constants.get("config_clock_frequency", link.CLOCK_HZ))
