"""nnhil's pytest plugin: the SoC under test as the session fixture ``nnhil_dut``.

Installed with the package (entry point ``pytest11``), so it loads into every pytest run of
the environment: everything it adds is prefixed ``nnhil`` (options ``--nnhil-*``, ini keys
``nnhil_*``, fixtures ``nnhil_*``) so that it lives beside other plugins (pytest-embedded
has its own ``--port``, ``--baud``, ``--build-dir``, ``--target`` and ``dut``; labgrid owns
``--lg-*``). A project's tests::

    from nnhil.host.pytest_plugin import assert_bit_exact

    def test_my_model(nnhil_dut, tmp_path):
        nnhil_dut.load(model)
        assert_bit_exact(nnhil_dut, images, nnhil_dut.infer(images), tmp_path)

A mismatch fails with host.divergence's report: the differing images, and for the first few
the first diverging layer, channel and position (heatmaps and traces in ``tmp_path``).

By default the SoC runs in Verilator; ``--nnhil-target arty`` runs the same tests on a
Digilent Arty A7 (its port given, held through a labgrid place, or its FTDI found on USB).
Every option can be set in the ini file instead (``nnhil_target = arty``); the command line
wins. The target is resolved by host.dut.open_dut alone, as for ``nnhil run``. docs/plugin.md
lists the options and what the plugin leaves to a project's own conftest.py.
"""
import contextlib
import dataclasses
import importlib.util
import os
import signal
import subprocess
from pathlib import Path

import pytest

from nnhil.gateware import variants
from nnhil.host import options
from nnhil.host.doctor import MissingTools

# The plugin's options: the fields of these host.options concerns that exist in pytest,
# as --nnhil-<name> and ini key nnhil_<name> (the CLI takes the same fields unprefixed).
CONCERNS = ("Target", "Home")
PREFIX = "nnhil"


def _concerns():
    return [getattr(options, name) for name in CONCERNS]      # looked up when used


def _concern(name):
    for cls in _concerns():
        if name in {f.name for f in dataclasses.fields(cls)}:
            return cls
    raise KeyError(f"the nnhil plugin has no option {name!r}")


OPTION_NAMES = options.option_names(options.Target, PREFIX)      # how host.dut's messages name them


def assert_bit_exact(dut, images, results, out_dir=None):
    """Fail unless every image's logits and argmax (a host.results.Results) equal the integer
    model loaded on ``dut``; the message is host.divergence.explain's layer-by-layer report."""
    if not results.exact(dut.model, images).all():
        from nnhil.host import divergence
        pytest.fail(divergence.explain(dut, images, results, out_dir), pytrace=False)


def pytest_addoption(parser):
    group = parser.getgroup("nnhil", "nnhil: the SoC under test")
    for cls in _concerns():
        options.add_pytest_options(parser, group, cls, PREFIX)


def option(config, name):
    """The value of option ``name`` (a field of CONCERNS): the command line's, else the ini
    file's, else its default."""
    return options.pytest_value(config, _concern(name), name, PREFIX)


def pytest_configure(config):
    for cls in _concerns():     # a bad ini value stops the run before any test
        options.from_pytest(config, cls, PREFIX)
    home = option(config, "home")
    if home:                    # the environment: subprocesses and sims see it too
        from nnhil.training import home as homes
        os.environ[homes.ENV] = str(Path(home).resolve())


def _unwind_on_sigterm(config):
    """Once a sim or board is held: a kill (a CI timeout) unwinds like Ctrl-C, so the session
    fixtures stop the sim and socat and release a lab place; restored when the run ends. Left
    alone if the run (or the project) installed its own handler."""
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        config.add_cleanup(lambda: signal.signal(signal.SIGTERM, signal.SIG_DFL))


WORKER_PROPERTIES = "nnhil_suite_properties"    # the key of a worker's in its workeroutput


@pytest.fixture(scope="session")
def nnhil_suite_property(request, record_testsuite_property):
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
def nnhil_sim_build(request):
    """The sim model of the variant's accelerator, its sim twin (built once, then taken from its cache)."""
    from nnhil.gateware import buildcache
    from nnhil.host import doctor
    missing = doctor.problem("sim")
    if missing:
        pytest.fail(missing, pytrace=False)
    return buildcache.build_sim(variants.get(option(request.config, "variant")).accel)


@pytest.fixture(scope="session")
def nnhil_sim(request, nnhil_sim_build, nnhil_suite_property):
    """The sim, booted once; its boot time (bounded by Simulator.start_timeout) goes to the JUnit report."""
    from nnhil.host.simulator import Simulator
    _unwind_on_sigterm(request.config)
    with Simulator(nnhil_sim_build) as s:
        nnhil_suite_property("sim_boot_to_answer_s", round(s.boot_seconds, 2))
        yield s


@pytest.fixture(scope="session")
def nnhil_dut(request, nnhil_suite_property):
    """The SoC under test (host.dut.DUT), as host.dut.open_dut resolves the options: the
    session's simulation (``nnhil_sim``), or the board. Skips if a board is asked for and none
    is found. It holds the target's one link for the whole session (a sim serves one client at
    a time)."""
    from nnhil.host import dut as duts

    config = request.config
    t = options.from_pytest(config, options.Target, PREFIX)
    board_name, port, program = t.board, t.port, None
    if board_name and not port:
        place = _place(config, t.place)
        if place:
            from nnhil.host import lab
            port, program = lab.hold(config, place), place.program   # released at the end of the run
    _unwind_on_sigterm(config)
    with contextlib.ExitStack() as stack:
        try:
            d = stack.enter_context(duts.open_dut(
                board_name, port, t.baud, t.build_dir, t.bitstream, t.sim_fallback,
                sim=lambda: request.getfixturevalue("nnhil_sim"), program=program,
                variant=t.variant, option_names=OPTION_NAMES))
        except (duts.BoardNotFound, MissingTools) as e:
            d = e                   # skipped or failed outside the handler: the message alone, no traceback
        if isinstance(d, duts.BoardNotFound):
            pytest.skip(f"{d}; or --nnhil-place for a labgrid place")
        if isinstance(d, MissingTools):
            pytest.fail(str(d), pytrace=False)
        _record_target(d, nnhil_suite_property)
        yield d


def _place(config, name):
    """The labgrid place of ``name`` or of labgrid's --lg-env (host.lab), or None; labgrid is
    the extra "lab", so without it there is none (and a name is an error saying so)."""
    if importlib.util.find_spec("labgrid") is None:
        if name:
            raise pytest.UsageError(f"--nnhil-place {name}: labgrid is not installed; pip install 'nnhil[lab]'")
        return None
    from nnhil.host import lab
    return lab.place_from_options(config, name)


def _record_target(d, record):
    import importlib.metadata

    record("target", d.target)
    record("gateware_build", d.build_dir.name)
    record("nnhil_version", importlib.metadata.version("nnhil"))
    record("litex_version", importlib.metadata.version("litex"))
    source = Path(__file__).resolve().parents[1]        # a checkout (an editable install) has its commit
    if (source / ".git").exists():
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=source)
        record("git_commit", commit.stdout.strip() if commit.returncode == 0 else "unknown")
