"""This repository's own options, markers and fixtures: its datasets, its three trained models.

The SoC under test comes from nnhil's pytest plugin (``host/pytest_plugin.py``, installed with
the package as a ``pytest11`` entry point): ``nnhil_dut`` and the ``--nnhil-*`` options. What
only this suite needs lives here, not in the plugin every user's pytest loads (docs/plugin.md):
the HIL suite's options, the markers ``sim``/``board``/``serial``, pytest-benchmark's tests kept
out of a ``pytest -n`` run, and the short fixture names its tests use.
"""
import contextlib
import dataclasses
import os
import signal
import warnings
from pathlib import Path

import pytest

from nnhil.host import options
from nnhil.host.options import option
from nnhil.training import workflow

LATENCY_BASELINES = Path(__file__).resolve().parent / "tests" / "baselines" / "latency.json"
XDIST_VARIABLES = ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID")


@dataclasses.dataclass(frozen=True)
class Suite:
    """This repository's own pytest options (host.options declares them; no prefix, no ini key)."""
    runslow: bool = option(False, "also run tests marked slow (long trainings, synthesis)", cli=False)
    model: tuple = option((), "a quantized model file to run the HIL suite on (repeatable)", type=str,
                          repeat=True, metavar="PATH", cli=False)
    images: int = option(300, "test images run on the target", cli=False)
    full: bool = option(False, "run every test image of the dataset", cli=False)
    update_baselines: bool = option(False, "rewrite the latency baselines with the measured cycles", cli=False)
    baselines: str = option(None, "the latency baselines file (default: nnhil-baselines.json in the rootdir "
                            "for the models of --model, else tests/baselines/latency.json)", metavar="PATH",
                            cli=False)


def pytest_addoption(parser):
    group = parser.getgroup("nnhil-suite", "nnhil's own test suite")
    options.add_pytest_options(parser, group, Suite, prefix="", ini=False)


def suite_options(config):
    """This run's Suite options."""
    return options.from_pytest(config, Suite, prefix="", ini=False)


def pytest_configure(config):
    if not hasattr(config, "workerinput"):
        # a pytest run started by a test of an xdist worker inherits the worker's variables:
        # pytest-benchmark would take it for a worker and time nothing
        for name in XDIST_VARIABLES:
            os.environ.pop(name, None)
    # a kill (make test under a CI timeout) unwinds like Ctrl-C from the start of the run
    signal.signal(signal.SIGTERM, signal.default_int_handler)


@pytest.hookimpl(tryfirst=True)          # before -m selects by marker
def pytest_collection_modifyitems(config, items):
    from nnhil.host.pytest_plugin import option as plugin_option
    target = plugin_option(config, "target")
    runslow = suite_options(config).runslow
    for item in items:
        if "slow" in item.keywords and not runslow:
            item.add_marker(pytest.mark.skip(reason="slow: run with --runslow"))
        if "sim" in item.keywords and target != "sim":
            item.add_marker(pytest.mark.skip(reason=f"tests the simulation itself; this run is on {target}"))
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


# The plugin's fixtures under the short names this suite's tests use (a conftest's fixture wins
# over any plugin's, pytest-embedded's ``dut`` too).
@pytest.fixture(scope="session")
def dut(nnhil_dut):
    return nnhil_dut


@pytest.fixture(scope="session")
def sim(nnhil_sim):
    return nnhil_sim


# The session's sim between the tests that use it. A Verilator model never sleeps (it polls its
# socket every few cycles), so an idle one takes a core from whatever runs beside it: this
# worker's subprocess runs with sims of their own, and the other pytest -n worker. It is frozen
# (SIGSTOP) while a test that does not use it runs, and continued before anything that may use it
# (the next test's fixtures, the session's teardown). The SoC cannot tell: the pause falls between
# two of its cycles, and its state, simulated time and TCP connection stay as they are.
PAUSABLE_SIMS = []                      # the session sim once started (host.simulator.Simulator)
SIM_FIXTURES = {"nnhil_sim", "nnhil_dut"}   # a test with either in its closure may talk to the sim


@pytest.fixture(scope="session")
def nnhil_sim(nnhil_sim):
    """The plugin's session sim, made pausable for the tests that do not use it."""
    PAUSABLE_SIMS.append(nnhil_sim)
    try:
        yield nnhil_sim
    finally:
        PAUSABLE_SIMS.remove(nnhil_sim)


@contextlib.contextmanager
def frozen(sims):
    """The live ones of ``sims`` paused for the block (host.simulator.Simulator.paused, which
    nests: a training inside a test that does not use the sim). Only while nothing talks to
    them: a bridge access meanwhile would wait out its deadline."""
    with contextlib.ExitStack() as stack:
        for sim in sims:
            if sim.proc is not None and sim.proc.poll() is None:
                stack.enter_context(sim.paused())
        yield


@pytest.fixture(scope="session")
def sims_frozen():
    """frozen, for a test's own sims: ``with sims_frozen([sim]): ...``."""
    return frozen


@pytest.fixture(autouse=True)
def _session_sim_paused_unless_used(request):
    """Freezes the session sim for a test that uses neither it nor the DUT, for the test only."""
    with frozen([] if SIM_FIXTURES & set(request.fixturenames) else PAUSABLE_SIMS):
        yield


@pytest.fixture(scope="session")
def sim_build(nnhil_sim_build):
    return nnhil_sim_build


@pytest.fixture(scope="session")
def suite_property(nnhil_suite_property):
    return nnhil_suite_property


@pytest.fixture(scope="session")
def n_images(request):
    """How many test images a HIL test runs: --images, or all of them (None) with --full."""
    suite = suite_options(request.config)
    return None if suite.full else suite.images


@pytest.fixture(scope="session")
def repo_baselines():
    """This repository's latency baselines of its own models (host.latency reads the file it is given)."""
    return LATENCY_BASELINES


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
def trained(dataset, suite_property):
    """A model of workflow.MODELS by name, trained once and cached under out/ by its config hash."""
    cache = {}
    def get(name):
        if name not in cache:
            arch, data_name = workflow.MODELS[name]
            data = dataset(data_name)
            with frozen(PAUSABLE_SIMS):     # a training takes minutes, and nothing talks to the sim meanwhile
                model, out_dir = workflow.ensure_model(workflow.ARCHS[arch](), data)
            suite_property(f"model_hash_{name}", model.hash)
            cache[name] = workflow.Trained(name, model, out_dir, data)
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
