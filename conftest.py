"""nnhil's pytest plugin: where the tests run (--sim or --board arty) and the shared fixtures.

By default the SoC runs in Verilator (``--sim``). ``--board arty`` runs the same tests on
a Digilent Arty A7 through its serial port (``--port``, or the Arty's FTDI found on USB);
without a board those tests skip saying what was looked for, unless ``--sim-fallback``
sends them to the simulation. The board's build directory (its csr.json and software
headers) is ``--build-dir``, by default the cached Arty build of the default configuration.
"""
import dataclasses
import importlib.metadata
import signal
import subprocess
from pathlib import Path

import pytest

from training import workflow

DEFAULT_IMAGES = 300
FULL_IMAGES = 10_000


def pytest_addoption(parser):
    group = parser.getgroup("nnhil")
    group.addoption("--sim", action="store_true", help="run on the Verilator simulation (the default)")
    group.addoption("--board", choices=["arty"], help="run on a real board")
    group.addoption("--port", help="the board's serial port (default: find the Arty's FTDI UART)")
    group.addoption("--baud", type=int, default=115200, help="baud rate of the board's UART")
    group.addoption("--bitstream", help="program this bitstream into the board first (openFPGALoader)")
    group.addoption("--build-dir", help="build directory of what the board runs (csr.json, software)")
    group.addoption("--sim-fallback", action="store_true",
                    help="with --board and no board found, run on the simulation instead of skipping")
    group.addoption("--images", type=int, default=DEFAULT_IMAGES,
                    help=f"test images run on the target (default {DEFAULT_IMAGES})")
    group.addoption("--full", action="store_true", help=f"run all {FULL_IMAGES} test images")
    group.addoption("--update-baselines", action="store_true",
                    help="rewrite tests/baselines/latency.json with the measured cycles")
    group.addoption("--runslow", action="store_true",
                    help="also run tests marked slow (long trainings, synthesis)")


def pytest_configure(config):
    if config.getoption("--sim") and config.getoption("--board"):
        raise pytest.UsageError("--sim and --board exclude each other")
    # a kill unwinds like Ctrl-C, so session fixtures stop the sim and socat
    signal.signal(signal.SIGTERM, signal.default_int_handler)


def pytest_collection_modifyitems(config, items):
    board = config.getoption("--board")
    for item in items:
        if "slow" in item.keywords and not config.getoption("--runslow"):
            item.add_marker(pytest.mark.skip(reason="slow: run with --runslow"))
        if "sim" in item.keywords and board:
            item.add_marker(pytest.mark.skip(reason=f"tests the simulation itself; this run is on --board {board}"))


@dataclasses.dataclass
class Trained:
    name: str
    model: object             # the quantized IntModel
    out_dir: Path             # its float.npz, metrics.json and plots
    data: workflow.Data


@pytest.fixture(scope="session")
def dataset():
    """Loads a dataset from $NNHIL_DATA_DIR (downloaded and verified if missing), once."""
    cache = {}
    def get(name):
        if name not in cache:
            cache[name] = workflow.load_data(name)
        return cache[name]
    return get


@pytest.fixture(scope="session")
def fashion(dataset):
    return dataset("fashion-mnist")


@pytest.fixture(scope="session")
def trained(dataset, record_testsuite_property):
    """A model of workflow.MODELS by name, trained once and cached under out/ by its config hash."""
    cache = {}
    def get(name):
        if name not in cache:
            arch, data_name = workflow.MODELS[name]
            data = dataset(data_name)
            model, out_dir = workflow.ensure_model(workflow.ARCHS[arch](), data)
            record_testsuite_property(f"model_hash_{name}", model.hash)
            cache[name] = Trained(name, model, out_dir, data)
        return cache[name]
    return get


@pytest.fixture(scope="session")
def every_model(trained):
    """Every model of workflow.MODELS, trained or taken from out/ here, for a test whose
    subprocess (a nested pytest run, the demo) would otherwise train them inside its timeout."""
    return {name: trained(name) for name in workflow.MODELS}


@pytest.fixture(scope="session")
def headline(trained):
    """The README's default model (the MLP)."""
    t = trained("mlp")
    return t.model, t.out_dir


@pytest.fixture(scope="session")
def n_images(request):
    return FULL_IMAGES if request.config.getoption("--full") else request.config.getoption("--images")


# The hardware -----------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def sim_build():
    """The default configuration's sim model (built once, then taken from build/sim-<hash>)."""
    from gateware import layout, sim
    return sim.build_sim(layout.AccelConfig())


@pytest.fixture(scope="session")
def sim(sim_build, record_testsuite_property):
    """The sim, booted once; its boot time (bounded by Simulator.start_timeout) goes to the JUnit report."""
    from host.simulator import Simulator
    with Simulator(sim_build) as s:
        record_testsuite_property("sim_boot_to_answer_s", round(s.boot_seconds, 2))
        yield s


@dataclasses.dataclass
class Target:
    """Where the SoC runs and how to reach it."""
    name: str                 # "sim", or the board's name
    build_dir: Path           # csr.json and the software headers of what runs there
    url: str = None           # a board's serial port
    baud: int = 115200
    sim: object = None        # the Simulator, for the sim

    @property
    def csr_json(self):
        return self.build_dir / "csr.json"

    def bridge(self, timeout=5.0):
        from host.bridge import Bridge
        if self.sim is not None:
            return self.sim.bridge(timeout=timeout)
        return Bridge(self.url, self.csr_json, timeout=timeout, baudrate=self.baud)


def _board_target(request, name):
    from gateware import layout, sim
    from host import board

    opt = request.config.getoption
    port = opt("--port") or board.find_arty()
    if port is None:
        if opt("--sim-fallback"):
            return None
        pytest.skip(f"--board {name}: no board found (looked for {board.describe_search()}); "
                    f"pass --port, or --sim-fallback to run on the simulation")
    if opt("--bitstream"):
        board.program(opt("--bitstream"))
    build_dir = Path(opt("--build-dir") or sim.BUILD_ROOT / f"arty-{sim.build_key('arty', layout.AccelConfig())[1]}")
    if not (build_dir / "csr.json").exists():
        raise pytest.UsageError(f"no csr.json in {build_dir}: build the board's gateware with "
                                f"'nnhil build --target arty' or pass --build-dir")
    return Target(name, build_dir, url=port, baud=opt("--baud"))


@pytest.fixture(scope="session")
def target(request, record_testsuite_property):
    """The SoC under test: the simulation, or a board given by --board."""
    name = request.config.getoption("--board")
    t = _board_target(request, name) if name else None
    if t is None:
        if name:
            print(f"\n--board {name}: no board found, running on the simulation (--sim-fallback)")
        t = Target("sim", request.getfixturevalue("sim_build").dir, sim=request.getfixturevalue("sim"))
    record_testsuite_property("target", t.name)
    record_testsuite_property("gateware_build", t.build_dir.name)
    record_testsuite_property("litex_version", importlib.metadata.version("litex"))
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).parent)
    record_testsuite_property("git_commit", commit.stdout.strip() if commit.returncode == 0 else "unknown")
    return t
