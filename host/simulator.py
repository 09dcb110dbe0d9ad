"""Run a built sim model as a managed subprocess and reach it like a board: over TCP or a pty.

The model runs in its build directory (it reads sim_config.js there) in its own process
group; the sim_tcp module prints the port the OS gave it, and the launcher waits until
the accelerator's MAGIC CSR answers through the bridge. ``pty()`` puts socat between a
pseudo-terminal and the TCP port, so the exact pyserial path used for /dev/ttyUSB1 on an
Arty is exercised. Everything is stopped on exit from the context manager, on Ctrl-C,
on a failing test and at interpreter exit; every wait has a timeout.
"""
import atexit
import contextlib
import ctypes
import os
import re
import signal
import subprocess
import tempfile
import threading
import time
from collections import deque
from pathlib import Path
from shutil import which

from nnhil.gateware import layout

from . import pace
from .bridge import Bridge, BridgeError

PR_SET_PDEATHSIG = 1          # linux/prctl.h
_LIBC = ctypes.CDLL(None, use_errno=True)    # loaded here: the child only makes the call
PORT_LINE = re.compile(r"^sim_tcp: listening on 127\.0\.0\.1:(\d+)$")


class SimulatorError(RuntimeError):
    """The sim could not start, crashed or does not answer; the message has its last output."""


def _die_with_parent(sig=signal.SIGTERM):
    """Run in the child before exec: send it ``sig`` when the host process dies, however it dies.

    The sim and socat run in their own process group (a terminal's Ctrl-C goes to the host,
    which stops them in order); this covers a host that is killed outright. The kernel sends
    it when the *thread* that started the child ends: start sims from a thread that outlives
    them (host.shards opens them all in the caller's thread).
    """
    _LIBC.prctl(PR_SET_PDEATHSIG, sig)


def _stop_group(proc, grace=3.0):
    """SIGTERM the process group, SIGKILL it after ``grace`` seconds, and reap the leader."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
            os.killpg(proc.pid, signal.SIGCONT)        # a paused sim (Simulator.paused) takes it now
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)        # stragglers of the group, if any
    proc.wait(timeout=grace)


class Simulator:
    """One running sim model of a :class:`gateware.buildcache.SimBuild`."""

    def __init__(self, build, start_timeout=20.0, pace=pace.SIM, env=None):
        self.build = build
        self.env = env                            # added to the model's environment (host.wave's trace file)
        self.start_timeout = start_timeout        # the process start: a model that loads at once
        self.pace = pace
        self.proc = None
        self.port = None
        self.output = deque(maxlen=200)
        self.boot_seconds = None
        self._port_seen = threading.Event()
        self._children = []
        self._pauses = 0                          # paused() blocks open: the sim continues when none is

    # Lifecycle --------------------------------------------------------------------------------
    def start(self):
        if not self.build.vsim.exists():
            raise SimulatorError(f"no sim model at {self.build.vsim}: build it first (nnhil build --target sim)")
        t0 = time.monotonic()
        self.proc = subprocess.Popen([str(self.build.vsim.resolve())], cwd=self.build.gateware_dir,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, errors="replace",
                                     start_new_session=True,    # SIGKILL: a paused sim holds SIGTERM until continued
                                     preexec_fn=lambda: _die_with_parent(signal.SIGKILL),
                                     env={**os.environ, **self.env} if self.env else None)
        atexit.register(self.stop)
        threading.Thread(target=self._read_output, daemon=True).start()
        try:
            if not self._port_seen.wait(self.start_timeout) or self.port is None:
                self._fail(f"the sim did not report its port within {self.start_timeout} s")
            self._wait_answering(t0 + self.start_timeout)
        except BaseException:
            self.stop()
            raise
        self.boot_seconds = time.monotonic() - t0
        return self

    def _read_output(self):
        for line in self.proc.stdout:
            line = line.rstrip()
            self.output.append(line)
            m = PORT_LINE.match(line)
            if m and self.port is None:
                self.port = int(m.group(1))
                self._port_seen.set()
        self._port_seen.set()                        # EOF: the sim exited

    def _wait_answering(self, deadline):
        last = None
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                with Bridge(self.url, self.build.csr_json, self.pace) as b:
                    magic = b.csr_read("nnhil_magic")
                if magic == layout.MAGIC:
                    return
                last = f"nnhil_magic reads 0x{magic:08x}, expected 0x{layout.MAGIC:08x}"
            except BridgeError as e:
                last = str(e)
            time.sleep(0.05)
        self._fail(f"the SoC did not answer within {self.start_timeout} s ({last})")

    def stop(self):
        """Stop socat children and the sim; safe to call twice."""
        for child in self._children:
            _stop_group(child)
        self._children.clear()
        if self.proc is not None:
            _stop_group(self.proc)
        atexit.unregister(self.stop)

    @contextlib.contextmanager
    def paused(self):
        """The sim stopped (SIGSTOP) for the block, then continued. Between commands a running sim
        still simulates the firmware polling its mailbox, a core's worth of host CPU; stopped, its
        simulated time stands still, so the SoC sees nothing of the pause. Blocks nest (a training
        inside a test that does not use the sim): it continues when the outermost ends. Only
        between commands: a bridge access meanwhile waits out its deadline."""
        self.check_alive()
        self._pauses += 1
        if self._pauses == 1:
            os.kill(self.proc.pid, signal.SIGSTOP)
        try:
            yield self
        finally:
            self._pauses -= 1
            if not self._pauses:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.proc.pid, signal.SIGCONT)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # State ------------------------------------------------------------------------------------
    @property
    def url(self):
        return f"socket://127.0.0.1:{self.port}"

    def tail(self, n=30):
        return "\n".join(list(self.output)[-n:])

    def _fail(self, why):
        raise SimulatorError(f"{why}\n--- last output of {self.build.vsim} ---\n{self.tail()}")

    def check_alive(self):
        if self.proc is None or self.proc.poll() is not None:
            rc = None if self.proc is None else self.proc.returncode
            self._fail(f"the sim is not running (exit status {rc})")

    # Access -----------------------------------------------------------------------------------
    def bridge(self, url=None):
        """A :class:`SimBridge` on the TCP port (or ``url``, e.g. a pty from :meth:`pty`)."""
        self.check_alive()
        return SimBridge(self, url or self.url)

    @contextlib.contextmanager
    def pty(self, timeout=10.0):
        """A pseudo-terminal path bridged to the sim's port by socat, for as long as the block runs.

        The sim serves one client at a time (the newest), so do not hold a TCP bridge meanwhile.
        """
        self.check_alive()
        if which("socat") is None:
            raise SimulatorError("socat is not installed (run `make setup`)")
        with tempfile.TemporaryDirectory(prefix="nnhil-pty-") as tmp:
            link = Path(tmp) / "tty"
            child = subprocess.Popen(
                ["socat", f"pty,raw,echo=0,link={link}", f"tcp:127.0.0.1:{self.port},nodelay"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                start_new_session=True, preexec_fn=_die_with_parent)
            self._children.append(child)
            try:
                deadline = time.monotonic() + timeout
                while not link.exists():
                    if child.poll() is not None:
                        raise SimulatorError(f"socat exited: {child.stderr.read().decode()[-500:]}")
                    if time.monotonic() > deadline:
                        raise SimulatorError(f"socat did not create {link} within {timeout} s")
                    time.sleep(0.01)
                yield str(link)
            finally:
                _stop_group(child)
                self._children.remove(child)


class SimBridge(Bridge):
    """A Bridge whose errors say whether the sim itself died, with its last output."""

    def __init__(self, sim, url):
        self.sim = sim
        super().__init__(url, sim.build.csr_json, sim.pace)

    def _send(self, data):
        try:
            return super()._send(data)
        except BridgeError as e:
            self._diagnose(e)

    def _recv(self, n, seconds):
        try:
            return super()._recv(n, seconds)
        except BridgeError as e:
            self._diagnose(e)

    def _diagnose(self, error):
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.sim.proc.wait(timeout=1.0)          # a dying sim drops the link first
        try:
            self.sim.check_alive()
        except SimulatorError as dead:
            raise dead from error
        raise error
