"""The bridge's deadlines follow the work: bulk writes are confirmed in windows, a stopped SoC is named."""
import os
import signal

import numpy as np
import pytest

from nnhil.gateware import link
from nnhil.host import pace
from nnhil.host.bridge import BridgeError
from nnhil.host.firmware_abi import DATA_OFFSET
from nnhil.host.simulator import Simulator

pytestmark = pytest.mark.sim

BULK = 1_500_000                  # bytes: one 2,000-image MLP chunk
MAX_AHEAD = 64 * 1024             # bytes any answer may wait behind: a second of link at most


def test_pace_follows_the_build():
    assert pace.of_build({"config_platform_name": "sim", "config_clock_frequency": 1_000_000}) is pace.SIM
    board = pace.of_build({"config_platform_name": "arty", "config_clock_frequency": 50_000_000}, 1_000_000)
    assert (board.cycles_per_s, board.link_bytes_per_s) == (50e6, 1e5)
    assert pace.of_build({}).link_bytes_per_s == link.BAUD / pace.UART_BITS_PER_BYTE
    # a wait is the allowance plus the cycles and the bytes, each at its slowest rate
    assert board.seconds(cycles=25e6, link_bytes=3e5) == board.allowance_s + 0.5 + 3.0


def test_bulk_write_is_confirmed_in_windows(sim):
    """1.5 MB into main RAM, then one read: nothing waits behind more than two windows. The
    margin is asserted in SoC cycles and bytes, not in seconds: a loaded machine slows the sim
    by any factor (tests/hil/test_long_batch.py asserts the wall time, serially)."""
    data = np.random.default_rng(0).integers(0, 256, BULK, dtype=np.uint8).tobytes()
    with sim.bridge() as b:
        base = b.csr.memories["main_ram"][0] + DATA_OFFSET
        waits = []
        b.on_answer = lambda *w: waits.append(w)
        t0, sent = uptime(b), b.sent
        b.write_bytes(base, data)
        assert b.read_bytes(base + BULK - 8, 8) == data[-8:]
        # the sim's pace assumes at most SIM_CYCLES_PER_LINK_BYTE: measured in SoC cycles
        assert uptime(b) - t0 <= pace.SIM_CYCLES_PER_LINK_BYTE * (b.sent - sent)
        assert len(waits) >= BULK // MAX_AHEAD          # confirmations along the way, then the read
        assert max(ahead for _, _, ahead in waits) <= MAX_AHEAD
        for at in (0, BULK // 2, BULK - 4096):          # the windows kept their order and contents
            assert b.read_bytes(base + at, 4096) == data[at:at + 4096]


def uptime(b):
    b.csr_write("timer0_uptime_latch", 1)
    return b.csr_read("timer0_uptime_cycles")


def test_stopped_soc_is_reported_at_its_deadline(sim_build):
    """A sim that stops answering (SIGSTOP) is named after the deadline of the read, not never."""
    s = Simulator(sim_build).start()
    try:
        with s.bridge() as b:
            os.killpg(s.proc.pid, signal.SIGSTOP)
            try:
                with pytest.raises(BridgeError, match=r"did not answer .* within 2\.0 s \(0 of 4 bytes"):
                    b.csr_read("nnhil_magic")
            finally:
                os.killpg(s.proc.pid, signal.SIGCONT)
    finally:
        s.stop()


def test_traffic_counts_every_byte_a_board_link_carries(sim):
    """The demo projects board times from these counts: check them against UARTBone's framing."""
    with sim.bridge() as b:
        base = b.csr.memories["main_ram"][0] + DATA_OFFSET
        t0 = b.traffic()
        b.write(base, range(1000))          # bursts of 255, 255, 255, 235: a 6-byte header each
        b.read(base, 1000)                  # the same four headers out, 4,000 bytes back
        assert b.traffic() - t0 == (4 * 6 + 4000) + (4 * 6 + 4000)
        # 8,048 bytes at 2 Mbaud, 10 bits a byte on the wire: 40.24 ms on a board
        assert (b.traffic() - t0) / pace.board(2_000_000).link_bytes_per_s == pytest.approx(0.04024)
