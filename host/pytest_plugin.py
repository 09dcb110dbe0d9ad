"""nnhil's pytest plugin: where the tests run (``--sim`` or ``--board arty``) and the ``dut`` fixture.

Installed with the package (entry point ``pytest11``), so any project's tests can use it:

    def test_my_model(dut):
        dut.load(model)
        assert dut.infer(images).exact(model, images).all()

By default the SoC runs in Verilator (``--sim``). ``--board arty`` runs the same tests on
a Digilent Arty A7 through its serial port (``--port``, or the Arty's FTDI found on USB);
``--variant a7-100`` picks the Arty A7-100 (its bitstream, build and accelerator; on the
simulation, its sim twin);
without a board the ``dut`` tests skip saying what was looked for, unless
``--sim-fallback`` sends them to the simulation. Markers: ``board`` (runs on the DUT) and
``sim`` (tests the simulation itself, skipped with ``--board``).
"""
import signal
from pathlib import Path

import pytest

from gateware import link, variants

DEFAULT_IMAGES = 300
FULL_IMAGES = 10_000
MARKERS = {
    "board": "runs on the SoC under test: the simulation by default, a board with --board",
    "sim": "tests the simulation itself (skipped with --board)",
}


def pytest_addoption(parser):
    group = parser.getgroup("nnhil", "nnhil: the SoC under test")
    group.addoption("--sim", action="store_true", help="run on the Verilator simulation (the default)")
    group.addoption("--board", choices=["arty"], help="run on a real board")
    group.addoption("--variant", choices=sorted(variants.VARIANTS), default=variants.DEFAULT,
                    help="the Arty A7 variant (gateware/variants.py): its part and accelerator, on the "
                         "board and in its sim twin (default %(default)s)")
    group.addoption("--port", help="the board's serial port (default: find the Arty's FTDI UART)")
    group.addoption("--baud", type=int, default=link.BAUD,
                    help="baud rate of the board's UART (default: the build's, %(default)s)")
    group.addoption("--bitstream", help="program this bitstream into the board first (openFPGALoader)")
    group.addoption("--lg-place", metavar="NAME",
                    help="with --board: acquire this labgrid place and use its board (coordinator: "
                         "--lg-coordinator or LG_COORDINATOR); a RemotePlace in --lg-env does the same")
    group.addoption("--build-dir", help="build directory of what the board runs (csr.json, software)")
    group.addoption("--sim-fallback", action="store_true",
                    help="with --board and no board found, run on the simulation instead of skipping")
    group.addoption("--model", action="append", default=[], metavar="PATH",
                    help="a quantized model file to run the HIL suite on (repeatable)")
    group.addoption("--images", type=int, default=DEFAULT_IMAGES,
                    help=f"test images run on the target (default {DEFAULT_IMAGES})")
    group.addoption("--full", action="store_true", help=f"run all {FULL_IMAGES} test images")
    group.addoption("--update-baselines", action="store_true",
                    help="rewrite the latency baselines with the measured cycles")
    group.addoption("--baselines", metavar="PATH",
                    help="the latency baselines file (default: nnhil-baselines.json in the rootdir)")


def pytest_configure(config):
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")
    if config.getoption("--sim") and config.getoption("--board"):
        raise pytest.UsageError("--sim and --board exclude each other")
    # a kill unwinds like Ctrl-C, so session fixtures stop the sim and socat
    signal.signal(signal.SIGTERM, signal.default_int_handler)


def pytest_collection_modifyitems(config, items):
    board = config.getoption("--board")
    for item in items:
        if "sim" in item.keywords and board:
            item.add_marker(pytest.mark.skip(reason=f"tests the simulation itself; this run is on --board {board}"))


@pytest.fixture(scope="session")
def n_images(request):
    """How many test images a HIL test runs: --images, or all with --full."""
    return FULL_IMAGES if request.config.getoption("--full") else request.config.getoption("--images")


@pytest.fixture(scope="session")
def sim_build(request):
    """The sim model of --variant's accelerator, its sim twin (built once, then taken from its cache)."""
    from gateware import sim
    return sim.build_sim(variants.get(request.config.getoption("--variant")).accel)


@pytest.fixture(scope="session")
def sim(sim_build, record_testsuite_property):
    """The sim, booted once; its boot time (bounded by Simulator.start_timeout) goes to the JUnit report."""
    from host.simulator import Simulator
    with Simulator(sim_build) as s:
        record_testsuite_property("sim_boot_to_answer_s", round(s.boot_seconds, 2))
        yield s


@pytest.fixture(scope="session")
def dut(request, record_testsuite_property):
    """The SoC under test (host.dut.DUT): the session's simulation, or the board of --board.

    It holds the target's one link for the whole session (a sim serves one client at a time).
    """
    from host import board, dut as duts

    opt = request.config.getoption
    name, port, place = opt("--board"), opt("--port"), None
    if name and not port:
        from host import lab
        place = lab.place_from_options(request.config)
        if place:
            port = lab.hold(request.config, place)      # released at the end of the run
    if name and not port:
        port = board.find_arty()
        if port is None and not opt("--sim-fallback"):
            pytest.skip(f"--board {name}: no board found (looked for {board.describe_search()}); "
                        f"pass --port or --lg-place, or --sim-fallback to run on the simulation")
    sim = None if name and port else request.getfixturevalue("sim")
    with duts.open_dut(name, port, opt("--baud"), opt("--build-dir"), opt("--bitstream"),
                       opt("--sim-fallback"), log=print, sim=sim,
                       program=place.program if place else None, variant=opt("--variant")) as d:
        _record_target(d, record_testsuite_property)
        yield d


def _record_target(d, record):
    import importlib.metadata
    import subprocess

    record("target", d.target)
    record("gateware_build", d.build_dir.name)
    record("litex_version", importlib.metadata.version("litex"))
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).parent)
    record("git_commit", commit.stdout.strip() if commit.returncode == 0 else "unknown")
