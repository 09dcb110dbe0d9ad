"""The device under test: one object for the SoC a run talks to, on the sim or a board.

:func:`open_dut` is the one place that resolves a target: the Verilator simulation by
default, or a board (its serial port given or found on USB, its build directory given
or the cached Arty build, a bitstream programmed first if asked). ``nnhil run``,
``nnhil demo`` and the pytest plugin's ``dut`` fixture all go through it.
"""
import contextlib
import functools
import logging
from pathlib import Path

from nnhil.gateware import buildcache, link, variants

from . import board, doctor, options
from .bridge import Bridge
from .driver import AcceleratorDriver, AcceleratorError
from .firmware import Firmware
from .firmware_build import build_firmware, check_defines
from .simulator import Simulator


class BoardNotFound(board.BoardError):
    """A board was asked for and none is attached."""


class VariantMismatch(board.BoardError):
    """The SoC runs another accelerator configuration than the Arty variant asked for."""


# How the messages name the options of open_dut's arguments: the CLI's (``nnhil run``); the
# pytest plugin passes its own (``--nnhil-port``, ...).
CLI_OPTIONS = options.option_names(options.Target)
log = logging.getLogger(__name__)


class FaultBuildRefused(board.BoardError):
    """An ordinary run found the selftest's fault build (or the selftest an ordinary one)."""


def check_fault_build(dut, want):
    """FaultBuildRefused unless ``dut`` is a fault build exactly when ``want`` (gateware.faults)."""
    if dut.identity.fault_build != want:
        raise FaultBuildRefused(
            f"the {dut.target} SoC of {dut.build_dir} is a selftest fault build: only 'nnhil selftest' "
            f"runs it; pass the --build-dir of an ordinary build" if not want else
            f"the {dut.target} SoC of {dut.build_dir} is not a selftest fault build: the selftest "
            f"needs one (it builds it when it starts the simulation itself)")


def check_variant(dut, variant, option_names=CLI_OPTIONS):
    """BoardError unless ``dut`` runs ``variant``'s accelerator configuration (gateware.variants)."""
    want = variants.get(variant).accel
    if dut.config != want:
        runs = [v.name for v in variants.VARIANTS.values() if v.accel == dut.config]
        flag = option_names["variant"]
        raise VariantMismatch(
            f"{flag} {variant} has the accelerator {want}, but the {dut.target} SoC of {dut.build_dir} "
            f"runs {dut.config}" + (f": that is {flag} {runs[0]}" if runs else "") +
            f"; pass the {flag} (and {option_names['build_dir']}) of what it runs")


class DUT:
    """The SoC under test: its identity, the accelerator and the firmware, behind one bridge.

    ``target`` is "sim" or the board's name. The firmware is built (with the C macros
    ``firmware_defines``, see host.firmware_build) and booted on first use.
    """

    def __init__(self, target, bridge, build_dir, sim=None, firmware_defines=None):
        self.target = target
        self.bridge = bridge
        self.build_dir = Path(build_dir)
        self.sim = sim
        self.accelerator = AcceleratorDriver(bridge)
        self.identity = self.accelerator.identity
        self._firmware = None
        self.firmware_defines = firmware_defines

    @property
    def config(self):
        return self.identity.config

    @property
    def model(self):
        """The model loaded on the accelerator, or None."""
        return self.accelerator.model

    @property
    def compiled(self):
        """The loaded model's gateware.compiled.CompiledModel, or None."""
        return self.accelerator.compiled

    @property
    def firmware(self):
        if self._firmware is None:
            fw = Firmware(self.bridge, build_firmware(self.build_dir, self.firmware_defines))
            fw.boot()
            self._firmware = fw
        return self._firmware

    def boot_firmware(self, defines=None):
        """Boot the firmware built with ``defines`` (C macros; None: this DUT's own) and make it
        this DUT's (the selftest's firmware faults)."""
        fw = Firmware(self.bridge, build_firmware(self.build_dir, self.firmware_defines if defines is None else defines))
        fw.boot()
        self._firmware = fw
        return fw

    def load(self, model, verify=True):
        """Put ``model`` on the accelerator (refused before any write if it does not fit);
        with verify, read every word back. Returns its gateware.compiled.CompiledModel."""
        return self.accelerator.load(model, verify)

    def infer(self, images, progress=None):
        """The loaded model on each uint8 image, driven by the firmware: a host.results.Results,
        whose rows are the Inference that AcceleratorDriver.infer gives for one image."""
        return self.firmware.accel_batch(self.accelerator, images, progress=progress)

    def layer_outputs(self, image):
        """Every layer's on-board output for one uint8 image (host.results.LayerRun: values and
        cycles), layer by layer through runs stopped after it: what host.divergence compares
        with the integer model."""
        if self.model is None:
            raise AcceleratorError("no model loaded: call load() first")
        return [self.accelerator.run_layers(image, k) for k in range(1, self.accelerator.compiled.n_layers + 1)]

    def cpu_infer(self, model, images, code="optimised"):
        """``model`` on each image in C on the SoC's CPU: a Results. ``code`` "optimised" is the
        speedup's baseline, "plain" the straightforward C (host.firmware_abi.CPU_CODES)."""
        return self.firmware.cpu_infer(model, images, code=code)


@contextlib.contextmanager
def open_dut(board_name=None, port=None, baud=link.BAUD, build_dir=None, bitstream=None,
             sim_fallback=False, sim=None, program=None, variant=variants.DEFAULT,
             option_names=CLI_OPTIONS, sim_variant=buildcache.SimVariant(), firmware_defines=None):
    """The DUT on the simulation, or on board ``board_name`` ("arty"), for as long as the block runs.

    ``variant`` (gateware.variants: "a7-35", "a7-100") picks the board's part and default build,
    and on the simulation its sim twin (the variant's accelerator); a SoC running another
    configuration is refused (VariantMismatch). Without a board attached, raises BoardNotFound,
    or with ``sim_fallback`` runs on the simulation and says so. The simulation is ``sim`` (a
    running Simulator, or a function that returns one) if given; ``program(bitstream)`` loads a
    bitstream (default: openFPGALoader for the variant; a lab's exporter for a labgrid place).
    A tool the target needs that is not installed stops it first (host.doctor.MissingTools).
    ``option_names`` are the caller's names of these arguments, for the messages.
    ``sim_variant`` (a buildcache.SimVariant) is the sim build to run; a fault build is refused
    on a board and, unless asked for, on the simulation (FaultBuildRefused). ``firmware_defines``
    are C macros the firmware is built with (host.firmware_build.build_firmware).
    """
    v = variants.get(variant)
    o = option_names
    check_defines(firmware_defines)                 # a bad macro is named before the SoC starts
    if board_name:
        port = port or board.find_arty()
        if port is None and not sim_fallback:
            raise BoardNotFound(f"{o['target']} {board_name}: no board found (looked for "
                                f"{board.describe_search()}); pass {o['port']}, or {o['sim_fallback']} "
                                f"to run on the simulation")
    if board_name and port:
        doctor.require("firmware", *(("board",) if bitstream and program is None else ()))
        if bitstream:
            (program or functools.partial(board.program, variant=v.name))(bitstream)
        build_dir = Path(build_dir or buildcache.build_arty(v.accel, variant=v.name))
        if not (build_dir / "csr.json").exists():
            raise board.BoardError(f"no csr.json in {build_dir}: pass the {o['build_dir']} of what the "
                                   f"board runs, or build it with 'nnhil build --target arty "
                                   f"--variant {v.name}'")
        with Bridge(port, build_dir / "csr.json", baudrate=baud) as bridge:
            d = DUT(board_name, bridge, build_dir, firmware_defines=firmware_defines)
            check_variant(d, v.name, o)
            check_fault_build(d, False)
            yield d
        return
    if board_name:
        log.warning(f"{o['target']} {board_name}: no board found, running on the simulation ({o['sim_fallback']})")
    doctor.require("firmware", *(() if isinstance(sim, Simulator) else ("sim",)))   # all that is missing, at once
    with contextlib.ExitStack() as stack:
        if callable(sim):
            sim = sim()
        if sim is None:
            sim = stack.enter_context(Simulator(buildcache.build_sim(v.accel, variant=sim_variant)))
            log.info(f"sim SoC ({v.name}'s accelerator) answering on {sim.url} after {sim.boot_seconds:.1f} s")
        bridge = stack.enter_context(sim.bridge())
        d = DUT("sim", bridge, sim.build.dir, sim=sim, firmware_defines=firmware_defines)
        check_variant(d, v.name, o)
        check_fault_build(d, sim_variant.faults)
        yield d
