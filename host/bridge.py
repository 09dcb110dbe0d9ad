"""Bus access to the SoC over its one serial link: LiteX's UARTBone protocol, with deadlines.

The link is any pyserial URL: ``/dev/ttyUSB1`` on an Arty, a pty from socat, or
``socket://127.0.0.1:PORT`` on the sim. Unlike ``litex.tools.remote.CommUART`` every
wait has a deadline, and a transfer is sent as whole commands of up to 255 words in one
write, so bulk writes run at the speed of the link instead of one syscall per byte.
Addresses and CSR names come from the build's ``csr.json``.

UARTBone answers reads only: a write is taken in silence, at the SoC's pace. So a bulk
write is sent in windows of :data:`WINDOW` bytes, each followed by a read of a scratch
register whose answer proves the window was taken; the next window waits for the one
before it. At most two windows are ever ahead of a read, and each wait's deadline counts
the bytes still ahead of it in the link (:meth:`host.pace.Pace.seconds`), so a read after
megabytes of images neither waits behind them nor times out for them.
"""
import json
import socket
import struct
import time
from collections import deque
from pathlib import Path

import serial

from nnhil.gateware import link

from . import pace as pacing

# UARTBone commands (litex.soc.cores.uart.Stream2Wishbone)
CMD_WRITE_INCR, CMD_READ_INCR, CMD_WRITE_FIXED, CMD_READ_FIXED = 0x01, 0x02, 0x03, 0x04
MAX_BURST = 255                 # the length field is one byte
HEADER = 6                      # command, length, 32-bit word address
WINDOW = 1 << 14                # bytes of writes sent ahead of the SoC before one is confirmed
POLL_S = 0.05                   # a read returns at least this often to look at its deadline
CONFIRM_CSR = "ctrl_scratch"    # read to confirm a window: every LiteX SoC has it, reading it has no effect


class BridgeError(IOError):
    """The SoC did not answer in time, or the link dropped."""


class CSRMap:
    """Register and memory-region addresses from LiteX's csr.json."""

    def __init__(self, csr_json):
        d = json.loads(Path(csr_json).read_text())
        self.registers = {k: v["addr"] for k, v in d["csr_registers"].items()}
        self.sizes = {k: v["size"] for k, v in d["csr_registers"].items()}
        self.memories = {k: (v["base"], v["size"]) for k, v in d["memories"].items()}
        self.constants = d["constants"]

    def addr(self, name):
        try:
            return self.registers[name]
        except KeyError:
            raise KeyError(f"no CSR named {name!r} in this SoC") from None


class Bridge:
    """Word reads and writes on the SoC bus through UARTBone.

    ``pace`` is how slow the target may be (default: what runs the build, at ``baudrate``
    if a board); every answer's wait goes to ``on_answer(waited_s, deadline_s, bytes_ahead)``
    when set.
    """

    def __init__(self, url, csr_map, pace=None, baudrate=link.BAUD):
        self.csr = csr_map if isinstance(csr_map, CSRMap) else CSRMap(csr_map)
        self.pace = pace or pacing.of_build(self.csr.constants, baudrate)
        self.on_answer = None
        self.sent = 0               # bytes sent so far
        self.received = 0           # bytes received so far
        self._taken = 0             # of those, the bytes the SoC has provably taken
        self._answers = deque()     # (sent after its command, bytes): answers still to come
        device = "://" not in url
        try:
            # a device is locked (flock) so that a second user gets an error, not garbage
            self.port = serial.serial_for_url(url, baudrate, timeout=POLL_S,
                                              write_timeout=self.pace.allowance_s,
                                              **({"exclusive": True} if device else {}))
        except (serial.SerialException, OSError) as e:
            if device and "exclusively lock" in str(e):
                raise BridgeError(f"{url} is in use by another program (a test run, litex_server or "
                                  f"a terminal): close it and try again") from e
            raise BridgeError(f"cannot open {url}: {e}") from e
        self.url = url
        self._confirm = self.csr.addr(CONFIRM_CSR)
        sock = getattr(self.port, "_socket", None)
        if sock is not None:        # pyserial leaves Nagle on: small commands would wait for ACKs
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.port.reset_input_buffer()

    def traffic(self):
        """Bytes sent and received so far, both ways: what a board's UART would have to carry."""
        return self.sent + self.received

    def close(self):
        self.port.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # Raw transfers -------------------------------------------------------------------------
    def _send(self, data):
        # the OS buffer of a tty is small: the write lasts as long as the link takes the bytes
        needed = self.pace.seconds(link_bytes=self.sent - self._taken + len(data))
        if needed > self.port.write_timeout:
            self.port.write_timeout = needed        # reconfigures a tty: only when it must grow
        try:
            self.port.write(data)
            self.port.flush()
        except (serial.SerialException, OSError) as e:
            raise BridgeError(f"writing to {self.url} failed: {e}") from e
        self.sent += len(data)

    def _recv(self, n, seconds):
        deadline = time.monotonic() + seconds
        buf = bytearray()
        while len(buf) < n:
            try:
                chunk = self.port.read(n - len(buf))
            except (serial.SerialException, OSError) as e:
                raise BridgeError(f"reading from {self.url} failed: {e}") from e
            buf += chunk
            self.received += len(chunk)
            if not chunk and time.monotonic() >= deadline:
                raise BridgeError(f"the SoC did not answer on {self.url} within {seconds:.1f} s "
                                  f"({len(buf)} of {n} bytes; the deadline allows for the "
                                  f"{self.sent - self._taken} bytes ahead at {self.pace.describe()})")
        return bytes(buf)

    def _expect(self, n):
        """An answer of n bytes is due after everything sent so far."""
        self._answers.append((self.sent, n))

    def _answer(self):
        """The oldest answer due; its deadline counts every byte sent before it that the SoC
        has not provably taken, the command and the answer itself."""
        mark, n = self._answers[0]
        ahead = mark - self._taken
        seconds = self.pace.seconds(link_bytes=ahead + n)
        t0 = time.monotonic()
        data = self._recv(n, seconds)
        self._answers.popleft()
        self._taken = mark
        if self.on_answer:
            self.on_answer(time.monotonic() - t0, seconds, ahead)
        return data

    @staticmethod
    def _cmd(cmd, addr, n):
        return struct.pack(">BBI", cmd, n, addr // 4)

    def write(self, addr, words, fixed=False):
        """Write 32-bit words from ``addr`` (all to ``addr`` if fixed), in confirmed windows."""
        words = list(words)
        out = bytearray()
        for i in range(0, len(words), MAX_BURST):
            chunk = words[i:i + MAX_BURST]
            out += self._cmd(CMD_WRITE_FIXED if fixed else CMD_WRITE_INCR,
                             addr if fixed else addr + 4 * i, len(chunk))
            out += struct.pack(f">{len(chunk)}I", *chunk)
        if len(out) <= WINDOW:
            self._send(out)
            return
        step = (WINDOW // (HEADER + 4 * MAX_BURST)) * (HEADER + 4 * MAX_BURST)   # whole commands
        for i in range(0, len(out), step):
            self._send(out[i:i + step] + self._cmd(CMD_READ_INCR, self._confirm, 1))
            self._expect(4)
            while len(self._answers) > 2:       # keep one window in flight while the next is sent
                self._answer()

    def read(self, addr, n=1, fixed=False):
        """Read n words (a list) from ``addr``; all commands are sent before the answers are read."""
        out = bytearray()
        for i in range(0, n, MAX_BURST):
            out += self._cmd(CMD_READ_FIXED if fixed else CMD_READ_INCR,
                             addr if fixed else addr + 4 * i, min(MAX_BURST, n - i))
        self._send(out)
        self._expect(4 * n)
        while True:
            data = self._answer()
            if not self._answers:
                return list(struct.unpack(f">{n}I", data))

    def read_word(self, addr):
        return self.read(addr, 1)[0]

    def write_bytes(self, addr, data):
        """Write a byte string (padded with zeros to whole words) from a word-aligned address."""
        data = bytes(data) + bytes(-len(data) % 4)
        self.write(addr, struct.unpack(f"<{len(data) // 4}I", data))

    def read_bytes(self, addr, n):
        words = self.read(addr, -(-n // 4))
        return struct.pack(f"<{len(words)}I", *words)[:n]

    # CSRs ------------------------------------------------------------------------------------
    def csr_read(self, name):
        """A CSR by its csr.json name; a wider one spans several words, the high word first."""
        value = 0
        for word in self.read(self.csr.addr(name), self.csr.sizes[name]):
            value = value << 32 | word
        return value

    def csr_write(self, name, value):
        self.write(self.csr.addr(name), [value])


class Console:
    """The BIOS console through the crossover UART's CSRs (what litex_term --csr-csv does)."""

    FIFO = 16                   # depth of the crossover's receive FIFO (UARTCrossover)
    INPUT_CYCLES = 200_000      # a CPU at a prompt takes a FIFO's worth of input well within this

    def __init__(self, bridge, prefix="uart"):
        self.bridge = bridge
        csr = bridge.csr
        self.rxtx = csr.addr(f"{prefix}_xover_rxtx")
        self.rxempty = csr.addr(f"{prefix}_xover_rxempty")
        self.rxfull = csr.addr(f"{prefix}_xover_rxfull")
        self.cpu_rxempty = csr.addr(f"{prefix}_rxempty")
        self.text = ""          # everything read so far

    def read(self):
        """What the CPU printed since the last call (a full FIFO is fetched in one burst)."""
        span = (self.rxfull - self.rxempty) // 4 + 1
        got = bytearray()
        while True:
            flags = self.bridge.read(self.rxempty, span)
            if flags[-1]:                                   # full: 16 bytes waiting
                got += bytes(w & 0xFF for w in self.bridge.read(self.rxtx, self.FIFO, fixed=True))
            elif not flags[0]:
                got.append(self.bridge.read_word(self.rxtx) & 0xFF)
            else:
                break
        text = got.decode("latin-1")
        self.text += text
        return text

    def expect(self, marker, cycles):
        """Read until ``marker`` appears in new output, which takes the CPU at most ``cycles``;
        returns the output up to and including it."""
        start = len(self.text)
        seconds = self.bridge.pace.seconds(cycles=cycles)
        deadline = time.monotonic() + seconds
        while marker not in self.text[start:]:
            if time.monotonic() > deadline:
                raise BridgeError(f"{marker!r} did not appear on the console within {seconds:.1f} s "
                                  f"({cycles} cycles at {self.bridge.pace.describe()}); "
                                  f"it printed:\n{self.text[start:][-2000:]}")
            if not self.read():
                time.sleep(0.002)
        end = self.text.index(marker, start) + len(marker)
        return self.text[start:end]

    def write(self, text):
        """Type ``text``, at most a FIFO's worth at a time once the CPU has taken the last."""
        data = text.encode()
        seconds = self.bridge.pace.seconds(cycles=self.INPUT_CYCLES)
        for i in range(0, len(data), self.FIFO - 1):
            deadline = time.monotonic() + seconds
            while not self.bridge.read_word(self.cpu_rxempty):
                self.read()                                 # the CPU may be blocked echoing
                if time.monotonic() > deadline:
                    raise BridgeError(f"the CPU did not take console input within {seconds:.1f} s")
            self.bridge.write(self.rxtx, list(data[i:i + self.FIFO - 1]), fixed=True)
