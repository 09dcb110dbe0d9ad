"""The SoC answers over TCP and over a pty, and LiteX's own tools see our registers."""
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nnhil.gateware import layout, soc
from nnhil.host.bridge import Bridge, BridgeError, CSRMap
from nnhil.training import fixedpoint as fx

pytestmark = pytest.mark.sim

BIN = Path(sys.executable).parent


def check_identification(bridge, cfg):
    assert bridge.csr_read("nnhil_magic") == layout.MAGIC
    assert bridge.csr_read("nnhil_version") == \
        layout.VERSION | fx.FORMAT_VERSION << layout.VERSION_FORMAT_SHIFT
    for name, value in cfg.to_dict().items():
        assert bridge.csr_read(f"nnhil_{name}") == value, name


def test_constants_exported(sim_build):
    """soc.h/csr.json carry the layout facts the firmware uses, and the window's region."""
    csr = CSRMap(sim_build.csr_json)
    cfg = layout.AccelConfig()
    for name, value in soc.layout_constants(cfg):
        assert csr.constants[name.lower()] == value, name
    assert csr.memories["nnhil"] == (soc.ORIGIN, 4 * cfg.window_words)


def test_identification_tcp(sim):
    with sim.bridge() as b:
        check_identification(b, layout.AccelConfig())


def test_identification_pty(sim, sim_build):
    with sim.pty() as tty, Bridge(tty, sim_build.csr_json) as b:
        check_identification(b, layout.AccelConfig())


def test_bulk_write_reads_back(sim, record_property):
    base, _ = CSRMap(sim.build.csr_json).memories["main_ram"]
    with sim.bridge() as b:
        t0 = time.perf_counter()
        for _ in range(100):
            b.csr_read("nnhil_magic")
        rt = (time.perf_counter() - t0) / 100
        words = [random.getrandbits(32) for _ in range(25000)]
        t0 = time.perf_counter()
        b.write(base + 0x100000, words)
        b.csr_read("nnhil_magic")              # the write is done once a later read answers
        write_s = time.perf_counter() - t0
        assert b.read(base + 0x100000, len(words)) == words
    print(f"\nregister read round trip {rt * 1e3:.2f} ms; 25,000-word write {write_s:.2f} s")
    record_property("read_round_trip_ms", rt * 1e3)
    record_property("bulk_write_25k_s", write_s)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_litex_cli_lists_accelerator_registers(sim, sim_build):
    """litex_server on the pty, then litex_cli --regs, as a user would on /dev/ttyUSB1."""
    port = _free_port()
    with sim.pty() as tty:
        server = subprocess.Popen([str(BIN / "litex_server"), "--uart", "--uart-port", tty,
                                   "--bind-port", str(port)], stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            deadline = time.monotonic() + 15
            while True:
                assert server.poll() is None, server.stdout.read()
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    assert time.monotonic() < deadline, "litex_server did not open its port"
                    time.sleep(0.1)
            cli = subprocess.run([str(BIN / "litex_cli"), "--csr-csv", str(sim_build.dir / "csr.csv"),
                                  "--port", str(port), "--regs", "--filter", "nnhil"],
                                 capture_output=True, text=True, timeout=60)
        finally:
            server.terminate()
            try:
                server.wait(timeout=5)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(timeout=5)
    assert cli.returncode == 0, cli.stderr
    lines = {l.split()[-1]: l for l in cli.stdout.splitlines() if "nnhil_" in l}   # "addr : value name"
    assert f"{layout.MAGIC:08x}" in lines["nnhil_magic"]
    for name in ("control", "status", "cycles", "argmax", "lanes", "max_layers"):
        assert f"nnhil_{name}" in lines


def test_second_user_of_a_port_is_refused(sim, sim_build):
    with sim.pty() as tty, Bridge(tty, sim_build.csr_json) as first:
        with pytest.raises(BridgeError, match="in use by another program"):
            Bridge(tty, sim_build.csr_json)
        assert first.csr_read("nnhil_magic") == layout.MAGIC


def test_board_code_path_on_the_sim_pty(sim, sim_build, every_model):
    """The HIL suite with --nnhil-target arty against the sim behind a pty: the /dev/ttyUSB1 code path.

    It runs in this run's working directory, so it finds the models every_model cached in out/;
    the tests of the simulation itself (marker sim, such as the loaded-core batches) are left
    out, and of the models the MLP runs: the path is the same for every model, the CNNs take
    the time."""
    with sim.pty() as tty:
        r = subprocess.run([sys.executable, "-m", "pytest", str(Path(__file__).parents[1] / "hil"), "-q",
                            "-p", "no:cacheprovider", "-m", "not sim", "-k", "not cnn",
                            "--nnhil-target", "arty", "--nnhil-port", tty,
                            "--nnhil-build-dir", str(sim_build.dir), "--images", "100"],
                           capture_output=True, text=True, timeout=600)
    summary = r.stdout.strip().splitlines()[-1]
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "passed" in summary and "skipped" not in summary and "failed" not in summary, summary
