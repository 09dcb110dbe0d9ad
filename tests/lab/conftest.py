"""A labgrid lab on loopback: a coordinator, an exporter whose board is the sim's pty, one place.

Every process runs in its own process group (ser2net in the exporter's), is stopped by
group with timeouts, and :meth:`LoopbackLab.leftovers` tells whether any of it survived.
"""
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check, timeout, what):
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} within {timeout} s")
        time.sleep(0.1)


def processes():
    """(pid, process group, command line) of every live process but this one."""
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            stat = (d / "stat").read_text()
            state, _, pgid = stat[stat.rindex(")") + 2:].split()[:3]
            if state != "Z":
                yield int(d.name), int(pgid), (d / "cmdline").read_bytes().replace(b"\0", b" ").decode()


def group_members(pgid):
    return [(pid, cmd) for pid, group, cmd in processes() if group == pgid]


def processes_mentioning(text):
    return [(pid, cmd) for pid, _, cmd in processes() if text in cmd]


class LoopbackLab:
    """The coordinator and the exporter of one board (the sim's pty), and its place."""
    EXPORTER = "lab1"
    GROUP = PLACE = "arty"                  # the exporter's group of the board, and the place that matches it
    FTDI_SERIAL = "210319A8C1B2"            # what a real Arty's FT2232H reports; the stand-in records it

    def __init__(self, tmp, tty, build_dir):
        self.tmp = Path(tmp)
        self.tty = tty
        self.build_dir = build_dir          # what the board runs: the sim's build
        self.address = f"127.0.0.1:{free_port()}"
        self.procs = {}
        self.log = {}
        self.watch = []                 # process groups started for it: the sim's and socat's

    def _spawn(self, name, cmd):
        self.log[name] = open(self.tmp / f"{name}.log", "w")
        self.procs[name] = subprocess.Popen(cmd, cwd=self.tmp, stdin=subprocess.DEVNULL, stdout=self.log[name],
                                            stderr=subprocess.STDOUT, start_new_session=True)

    def client(self, *args, user=None, timeout=30):
        env = dict(os.environ, **({"LG_USERNAME": user} if user else {}))
        return subprocess.run([str(BIN / "labgrid-client"), "-x", self.address, *args], capture_output=True,
                              text=True, stdin=subprocess.DEVNULL, env=env, timeout=timeout)

    def start(self):
        self.start_coordinator()
        self.start_exporter()
        assert self.client("-p", self.PLACE, "add-match", f"{self.EXPORTER}/{self.GROUP}/*").returncode == 0
        return self

    def start_coordinator(self):
        """The coordinator alone, with the (still empty) place created."""
        self._spawn("coordinator", [str(BIN / "labgrid-coordinator"), "-l", self.address])
        wait_for(lambda: self.client("places", timeout=10).returncode == 0, 20, "the coordinator did not answer")
        assert self.client("-p", self.PLACE, "create").returncode == 0
        return self

    def start_exporter(self):
        config = self.tmp / "exporter.yaml"
        # a RawSerialPort must be a /dev path: the pty itself, not socat's symlink to it
        config.write_text(f"{self.GROUP}:\n"
                          f"  RawSerialPort:\n    port: {os.path.realpath(self.tty)}\n    speed: 115200\n"
                          f"  JTAG:\n    cls: OpenFPGALoaderJTAG\n    ftdi_serial: '{self.FTDI_SERIAL}'\n")
        self._spawn("exporter", [str(BIN / "labgrid-exporter"), "-c", self.address, "-n", self.EXPORTER,
                                 "--hostname", "127.0.0.1", str(config)])
        wait_for(lambda: f"{self.EXPORTER}/{self.GROUP}/NetworkSerialPort" in self.client("resources").stdout, 30,
                 "the exporter's serial port did not reach the coordinator")

    def kill_exporter(self):
        self._stop("exporter", signal.SIGKILL)

    def holder(self):
        """Who holds the place, as labgrid-client shows it ('host/user'), or None."""
        r = self.client("-p", self.PLACE, "show")
        assert r.returncode == 0, r.stderr
        line = next(l for l in r.stdout.splitlines() if l.strip().startswith("acquired:"))
        value = line.split(":", 1)[1].strip()
        return None if value == "None" else value

    def ser2net(self):
        exporter = self.procs.get("exporter")
        return [p for p in group_members(exporter.pid) if "ser2net" in p[1]] if exporter else []

    def _stop(self, name, sig=signal.SIGTERM):
        proc = self.procs[name]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)

    def stop(self):
        for name in ("exporter", "coordinator"):
            if name in self.procs:
                self._stop(name)
        for f in self.log.values():
            f.close()

    def leftovers(self):
        groups = [p.pid for p in self.procs.values()] + self.watch
        return [m for g in groups for m in group_members(g)] + processes_mentioning(self.tty)

    def logs(self):
        return "\n".join(f"--- {n} ---\n{(self.tmp / f'{n}.log').read_text()[-2000:]}" for n in self.log)


@pytest.fixture
def loopback_lab(sim_build, sims_frozen, tmp_path):
    """Starts a sim of its own, its pty and a lab on it for a ``with`` block; after the block
    ``lab.leftovers()`` lists whatever of it is still running (the test asserts it is nothing).
    The sim is frozen while the coordinator and the exporter start (a Verilator model spins
    while idle, a core's worth taken from them; nothing reaches the board before a run acquires
    the place), and with ``board_used=False`` for the whole block, for a run that must be
    refused before it touches the board: one that did touch it would find a board that never
    answers, and fail."""
    from nnhil.host.simulator import Simulator

    @contextlib.contextmanager
    def run(board_used=True):
        with Simulator(sim_build) as sim, sim.pty() as tty:
            lab = LoopbackLab(tmp_path, tty, sim_build.dir)
            lab.watch = [sim.proc.pid] + [pid for pid, _ in processes_mentioning(tty)]   # the sim and socat
            try:
                with sims_frozen([sim]):
                    lab.start()
                with contextlib.nullcontext() if board_used else sims_frozen([sim]):
                    yield lab
            finally:
                lab.stop()
    return run


@pytest.fixture
def lab_coordinator(tmp_path):
    """A lab of a coordinator and its (empty) place alone, no board: for the place's own bookkeeping.
    After the test ``leftovers()`` must be empty."""
    lab = LoopbackLab(tmp_path, tty=str(tmp_path / "no-board"), build_dir=None)
    try:
        yield lab.start_coordinator()
    finally:
        lab.stop()
        assert lab.leftovers() == []
