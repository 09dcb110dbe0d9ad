"""Bus access to the SoC over its one serial link: LiteX's UARTBone protocol, with timeouts.

The link is any pyserial URL: ``/dev/ttyUSB1`` on an Arty, a pty from socat, or
``socket://127.0.0.1:PORT`` on the sim. Unlike ``litex.tools.remote.CommUART`` every
read has a timeout, and a transfer is sent as whole commands of up to 255 words in one
write, so bulk writes run at the speed of the link instead of one syscall per byte.
Addresses and CSR names come from the build's ``csr.json``.
"""
import json
import socket
import struct
import time
from pathlib import Path

import serial

# UARTBone commands (litex.soc.cores.uart.Stream2Wishbone)
CMD_WRITE_INCR, CMD_READ_INCR, CMD_WRITE_FIXED, CMD_READ_FIXED = 0x01, 0x02, 0x03, 0x04
MAX_BURST = 255                 # the length field is one byte
BAUDRATE = 115200               # the Arty's FTDI link; ignored by ptys and sockets


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
    """Word reads and writes on the SoC bus through UARTBone."""

    def __init__(self, url, csr_map, timeout=5.0, baudrate=BAUDRATE):
        self.csr = csr_map if isinstance(csr_map, CSRMap) else CSRMap(csr_map)
        self.timeout = timeout
        device = "://" not in url
        try:
            # a device is locked (flock) so that a second user gets an error, not garbage
            self.port = serial.serial_for_url(url, baudrate, timeout=timeout, write_timeout=timeout,
                                              **({"exclusive": True} if device else {}))
        except (serial.SerialException, OSError) as e:
            if device and "exclusively lock" in str(e):
                raise BridgeError(f"{url} is in use by another program (a test run, litex_server or "
                                  f"a terminal): close it and try again") from e
            raise BridgeError(f"cannot open {url}: {e}") from e
        self.url = url
        sock = getattr(self.port, "_socket", None)
        if sock is not None:        # pyserial leaves Nagle on: small commands would wait for ACKs
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.port.reset_input_buffer()

    def close(self):
        self.port.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # Raw transfers -------------------------------------------------------------------------
    def _send(self, data):
        try:
            self.port.write(data)
            self.port.flush()
        except (serial.SerialException, OSError) as e:
            raise BridgeError(f"writing to {self.url} failed: {e}") from e

    def _recv(self, n):
        deadline = time.monotonic() + self.timeout
        buf = bytearray()
        while len(buf) < n:
            try:
                chunk = self.port.read(n - len(buf))
            except (serial.SerialException, OSError) as e:
                raise BridgeError(f"reading from {self.url} failed: {e}") from e
            buf += chunk
            if not chunk and time.monotonic() > deadline:
                raise BridgeError(f"the SoC did not answer on {self.url} within {self.timeout} s "
                                  f"({len(buf)} of {n} bytes)")
        return bytes(buf)

    @staticmethod
    def _cmd(cmd, addr, n):
        return struct.pack(">BBI", cmd, n, addr // 4)

    def write(self, addr, words, fixed=False):
        """Write 32-bit words from ``addr`` (all to ``addr`` if fixed), as one stream of commands."""
        words = list(words)
        out = bytearray()
        for i in range(0, len(words), MAX_BURST):
            chunk = words[i:i + MAX_BURST]
            out += self._cmd(CMD_WRITE_FIXED if fixed else CMD_WRITE_INCR,
                             addr if fixed else addr + 4 * i, len(chunk))
            out += struct.pack(f">{len(chunk)}I", *chunk)
        self._send(out)

    def read(self, addr, n=1, fixed=False):
        """Read n words (a list) from ``addr``; all commands are sent before the answers are read."""
        out = bytearray()
        for i in range(0, n, MAX_BURST):
            out += self._cmd(CMD_READ_FIXED if fixed else CMD_READ_INCR,
                             addr if fixed else addr + 4 * i, min(MAX_BURST, n - i))
        self._send(out)
        return list(struct.unpack(f">{n}I", self._recv(4 * n)))

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

    def expect(self, marker, timeout=10.0):
        """Read until ``marker`` appears in new output; returns the output up to and including it."""
        start = len(self.text)
        deadline = time.monotonic() + timeout
        while marker not in self.text[start:]:
            if time.monotonic() > deadline:
                raise BridgeError(f"{marker!r} did not appear on the console within {timeout} s; "
                                  f"it printed:\n{self.text[start:][-2000:]}")
            if not self.read():
                time.sleep(0.002)
        end = self.text.index(marker, start) + len(marker)
        return self.text[start:end]

    def write(self, text, timeout=5.0):
        """Type ``text``, at most a FIFO's worth at a time once the CPU has taken the last."""
        data = text.encode()
        for i in range(0, len(data), self.FIFO - 1):
            deadline = time.monotonic() + timeout
            while not self.bridge.read_word(self.cpu_rxempty):
                self.read()                                 # the CPU may be blocked echoing
                if time.monotonic() > deadline:
                    raise BridgeError(f"the CPU did not take console input within {timeout} s")
            self.bridge.write(self.rxtx, list(data[i:i + self.FIFO - 1]), fixed=True)
