"""The device under test: one object for the SoC a run talks to, on the sim or a board.

:func:`open_dut` is the one place that resolves a target: the Verilator simulation by
default, or a board (its serial port given or found on USB, its build directory given
or the cached Arty build, a bitstream programmed first if asked). ``nnhil run``,
``nnhil demo`` and the pytest plugin's ``dut`` fixture all go through it.
"""
import contextlib
import functools
from pathlib import Path

from nnhil.gateware import buildcache, link, variants

from . import board
from .bridge import Bridge
from .driver import AcceleratorDriver, AcceleratorError
from .firmware import Firmware
from .firmware_build import build_firmware, check_defines
from .simulator import Simulator


class BoardNotFound(board.BoardError):
    """A board was asked for and none is attached."""


class VariantMismatch(board.BoardError):
    """The SoC runs another accelerator configuration than the Arty variant asked for."""


def check_variant(dut, variant):
    """BoardError unless ``dut`` runs ``variant``'s accelerator configuration (gateware.variants)."""
    want = variants.get(variant).accel
    if dut.config != want:
        runs = [v.name for v in variants.VARIANTS.values() if v.accel == dut.config]
        raise VariantMismatch(
            f"--variant {variant} has the accelerator {want}, but the {dut.target} SoC of {dut.build_dir} "
            f"runs {dut.config}" + (f": that is --variant {runs[0]}" if runs else "") +
            f"; pass the --variant (and --build-dir) of what it runs")


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
             sim_fallback=False, log=print, sim=None, program=None, variant=variants.DEFAULT,
             firmware_defines=None):
    """The DUT on the simulation, or on board ``board_name`` ("arty"), for as long as the block runs.

    ``variant`` (gateware.variants: "a7-35", "a7-100") picks the board's part and default build,
    and on the simulation its sim twin (the variant's accelerator); a SoC running another
    configuration is refused (VariantMismatch). Without a board attached, raises BoardNotFound,
    or with ``sim_fallback`` runs on the simulation and says so. The simulation is ``sim`` (a
    running Simulator) if given; ``program(bitstream)`` loads a bitstream (default: openFPGALoader
    for the variant; a lab's exporter for a labgrid place). ``firmware_defines`` are C macros
    the firmware is built with (host.firmware_build.build_firmware).
    """
    v = variants.get(variant)
    check_defines(firmware_defines)                 # a bad macro is named before the SoC starts
    if board_name:
        port = port or board.find_arty()
        if port is None and not sim_fallback:
            raise BoardNotFound(f"--board {board_name}: no board found (looked for "
                                f"{board.describe_search()}); pass --port, or --sim-fallback to "
                                f"run on the simulation")
    if board_name and port:
        if bitstream:
            (program or functools.partial(board.program, variant=v.name))(bitstream)
        build_dir = Path(build_dir or buildcache.build_arty(v.accel, variant=v.name, log=log))
        if not (build_dir / "csr.json").exists():
            raise board.BoardError(f"no csr.json in {build_dir}: pass the --build-dir of what the "
                                   f"board runs, or build it with 'nnhil build --target arty "
                                   f"--variant {v.name}'")
        with Bridge(port, build_dir / "csr.json", baudrate=baud) as bridge:
            d = DUT(board_name, bridge, build_dir, firmware_defines=firmware_defines)
            check_variant(d, v.name)
            yield d
        return
    if board_name:
        log(f"--board {board_name}: no board found, running on the simulation (--sim-fallback)")
    with contextlib.ExitStack() as stack:
        if sim is None:
            sim = stack.enter_context(Simulator(buildcache.build_sim(v.accel, log=log)))
            log(f"sim SoC ({v.name}'s accelerator) answering on {sim.url} after {sim.boot_seconds:.1f} s")
        bridge = stack.enter_context(sim.bridge())
        d = DUT("sim", bridge, sim.build.dir, sim=sim, firmware_defines=firmware_defines)
        check_variant(d, v.name)
        yield d
