"""nnhil's pytest plugin: where the tests run (``--sim`` or ``--board arty``) and the ``dut`` fixture.

Installed with the package (entry point ``pytest11``), so any project's tests can use it:

    from nnhil.host.pytest_plugin import assert_bit_exact

    def test_my_model(dut, tmp_path):
        dut.load(model)
        assert_bit_exact(dut, images, dut.infer(images), tmp_path)

A mismatch fails with host.divergence's report: the differing images, and for the first few
the first diverging layer, channel and position (heatmaps and traces in ``tmp_path``).

By default the SoC runs in Verilator (``--sim``). ``--board arty`` runs the same tests on
a Digilent Arty A7 through its serial port (``--port``, or the Arty's FTDI found on USB);
``--variant a7-100`` picks the Arty A7-100 (its bitstream, build and accelerator; on the
simulation, its sim twin);
without a board the ``dut`` tests skip saying what was looked for, unless
``--sim-fallback`` sends them to the simulation. Markers: ``board`` (runs on the DUT),
``sim`` (tests the simulation itself, skipped with ``--board``) and ``serial``.

``pytest -n N`` (pytest-xdist) spreads the tests over N workers: each has its own session
fixtures, so its own simulation on its own port. Tests that need the machine to themselves
(marked ``serial``, and every pytest-benchmark test, which pytest-benchmark does not time
under xdist) are left out of such a run, with a warning: run them after it, without ``-n``:
``pytest -m serial``.
"""
import os
import signal
import warnings
from pathlib import Path

import pytest

from nnhil.gateware import link, variants

DEFAULT_IMAGES = 300
FULL_IMAGES = 10_000
MARKERS = {
    "board": "runs on the SoC under test: the simulation by default, a board with --board",
    "sim": "tests the simulation itself (skipped with --board)",
    "serial": "needs the machine to itself (a timing, every core loaded): left out of a pytest -n run",
}
XDIST_VARIABLES = ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID")


def assert_bit_exact(dut, images, results, out_dir=None):
    """Fail unless every image's logits and argmax (a host.results.Results) equal the integer
    model loaded on ``dut``; the message is host.divergence.explain's layer-by-layer report."""
    if not results.exact(dut.model, images).all():
        from nnhil.host import divergence
        pytest.fail(divergence.explain(dut, images, results, out_dir), pytrace=False)


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
    group.addoption("--nnhil-home", metavar="DIR",
                    help="where builds, trained models and run history go (default: $NNHIL_HOME, "
                         "else ~/.cache/nnhil)")


def pytest_configure(config):
    if not hasattr(config, "workerinput"):
        # a pytest run started by a test of an xdist worker inherits the worker's variables:
        # pytest-benchmark would take it for a worker and time nothing
        for name in XDIST_VARIABLES:
            os.environ.pop(name, None)
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")
    if config.getoption("--sim") and config.getoption("--board"):
        raise pytest.UsageError("--sim and --board exclude each other")
    if config.getoption("--nnhil-home"):   # the environment: subprocesses and sims see it too
        from nnhil.training import home
        os.environ[home.ENV] = str(Path(config.getoption("--nnhil-home")).resolve())
    # a kill unwinds like Ctrl-C, so session fixtures stop the sim and socat
    signal.signal(signal.SIGTERM, signal.default_int_handler)


@pytest.hookimpl(tryfirst=True)          # before -m selects by marker
def pytest_collection_modifyitems(config, items):
    board = config.getoption("--board")
    for item in items:
        if "sim" in item.keywords and board:
            item.add_marker(pytest.mark.skip(reason=f"tests the simulation itself; this run is on --board {board}"))
        if "benchmark" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.serial)
    if hasattr(config, "workerinput"):
        serial = [item for item in items if "serial" in item.keywords]
        if serial:
            items[:] = [item for item in items if "serial" not in item.keywords]
            config.hook.pytest_deselected(items=serial)
            warnings.warn(pytest.PytestWarning(
                f"{len(serial)} tests need the machine to themselves (marked serial, or timed by "
                f"pytest-benchmark) and were left out of this pytest -n run; run them without -n: "
                f"pytest -m serial (" + ", ".join(item.nodeid for item in serial[:5])
                + (", ..." if len(serial) > 5 else "") + ")"))


@pytest.fixture(scope="session")
def n_images(request):
    """How many test images a HIL test runs: --images, or all with --full."""
    return FULL_IMAGES if request.config.getoption("--full") else request.config.getoption("--images")


@pytest.fixture(scope="session")
def sim_build(request):
    """The sim model of --variant's accelerator, its sim twin (built once, then taken from its cache)."""
    from nnhil.gateware import buildcache
    return buildcache.build_sim(variants.get(request.config.getoption("--variant")).accel)


WORKER_PROPERTIES = "nnhil_suite_properties"    # the key of a worker's in its workeroutput


@pytest.fixture(scope="session")
def suite_property(request, record_testsuite_property):
    """record_testsuite_property, also under pytest -n: a worker's properties go to the
    controller when the worker ends, and into the JUnit report named 'name[gw0]'."""
    config = request.config
    if not hasattr(config, "workerinput"):
        return record_testsuite_property
    recorded = config.workeroutput.setdefault(WORKER_PROPERTIES, [])
    return lambda name, value: recorded.append((name, str(value)))


@pytest.hookimpl(optionalhook=True)              # a pytest-xdist hook, on the controller
def pytest_testnodedown(node, error):
    from _pytest.junitxml import xml_key

    xml = node.config.stash.get(xml_key, None)
    for name, value in getattr(node, "workeroutput", {}).get(WORKER_PROPERTIES, []):
        if xml is not None:
            xml.add_global_property(f"{name}[{node.gateway.id}]", value)


@pytest.fixture(scope="session")
def sim(sim_build, suite_property):
    """The sim, booted once; its boot time (bounded by Simulator.start_timeout) goes to the JUnit report."""
    from nnhil.host.simulator import Simulator
    with Simulator(sim_build) as s:
        suite_property("sim_boot_to_answer_s", round(s.boot_seconds, 2))
        yield s


@pytest.fixture(scope="session")
def dut(request, suite_property):
    """The SoC under test (host.dut.DUT): the session's simulation, or the board of --board.

    It holds the target's one link for the whole session (a sim serves one client at a time).
    """
    from nnhil.host import board, dut as duts

    opt = request.config.getoption
    name, port, place = opt("--board"), opt("--port"), None
    if name and not port:
        from nnhil.host import lab
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
        _record_target(d, suite_property)
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
