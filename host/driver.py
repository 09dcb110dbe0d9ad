"""Drive the accelerator over the bus: identify the bitstream, load a model, run images.

Register names come from the SoC's csr.json (``<name>_<register>``), addresses of the
memory regions from :class:`gateware.layout.AccelConfig` as the hardware reports it, so
the host never assumes a build configuration: it reads it and refuses what cannot run.
"""
import time
from dataclasses import dataclass, fields

from nnhil.gateware import cyclemodel, faults, layout, program
from nnhil.gateware.compiled import CompiledModel
from nnhil.training import fixedpoint as fx
from nnhil.training.intmodel import Conv2D

from .results import Inference, LayerRun


class IdentificationMismatch(RuntimeError):
    """The bitstream is not an nnhil accelerator this host and model can use."""


class AcceleratorError(RuntimeError):
    """A run failed (error code), did not finish in time, or a load did not read back."""


@dataclass(frozen=True)
class Identity:
    magic: int
    layout_version: int
    format_version: int
    config: layout.AccelConfig
    fault_build: bool = False       # the selftest's fault build (gateware.faults)


class AcceleratorDriver:
    """The accelerator named ``name`` in the SoC behind ``bridge`` (a host.bridge.Bridge)."""

    def __init__(self, bridge, name="nnhil"):
        self.bridge = bridge
        self.name = name
        try:
            self.base = bridge.csr.memories[name][0]
        except KeyError:
            raise IdentificationMismatch(f"the SoC has no memory region {name!r}: not an nnhil "
                                         f"bitstream, or the csr.json belongs to another build") from None
        self.identity = self.identify()
        self.config = self.identity.config
        self.compiled = None        # the loaded model's gateware.compiled.CompiledModel

    @property
    def model(self):
        """The loaded IntModel, or None."""
        return self.compiled and self.compiled.model

    @property
    def model_cycles(self):
        """What the cycle model says one inference of the loaded model takes (0: none loaded)."""
        return self.compiled.cycles if self.compiled else 0

    def _csr(self, reg):
        return f"{self.name}_{reg}"

    def read_csr(self, reg):
        return self.bridge.csr_read(self._csr(reg))

    def write_csr(self, reg, value):
        self.bridge.csr_write(self._csr(reg), value)

    def region_addr(self, region, word=0):
        return self.base + 4 * (self.config.region_base[region] + word)

    def identify(self):
        """Read and check the identification registers: magic, versions, build configuration."""
        magic = self.read_csr("magic")
        if magic != layout.MAGIC:
            raise IdentificationMismatch(f"magic word 0x{magic:08x}, expected 0x{layout.MAGIC:08x}: "
                                         f"the board does not run an nnhil bitstream (program one "
                                         f"built by 'nnhil build')")
        version = self.read_csr("version")
        ident = Identity(magic, version & ((1 << layout.VERSION_FORMAT_SHIFT) - 1),
                         version >> layout.VERSION_FORMAT_SHIFT,
                         layout.AccelConfig(**{f.name: self.read_csr(f.name)
                                               for f in fields(layout.AccelConfig)}),
                         self._csr("fault_build") in self.bridge.csr.registers
                         and self.read_csr("fault_build") == faults.FAULT_BUILD_ID)
        if ident.layout_version != layout.VERSION:
            raise IdentificationMismatch(f"the bitstream has register layout version {ident.layout_version}, "
                                         f"this host speaks {layout.VERSION}: rebuild the gateware")
        if ident.format_version != fx.FORMAT_VERSION:
            raise IdentificationMismatch(f"the bitstream implements numeric format {ident.format_version}, "
                                         f"models here use {fx.FORMAT_VERSION}: rebuild the gateware")
        return ident

    # Model ----------------------------------------------------------------------------------
    def load(self, model, verify=True):
        """Write a model's program, weights, biases and CSRs, and reset the run state
        (program.MemoryImage); with verify, read the model back. Returns the
        gateware.compiled.CompiledModel, compiled before anything is written."""
        compiled = CompiledModel.of(model, self.config)
        memory_image = compiled.memory_image
        for region, words in memory_image.regions.items():
            self.bridge.write(self.region_addr(region), words)
        for reg, value in {**memory_image.csrs, **memory_image.RUN_STATE}.items():
            self.write_csr(reg, value)          # whole runs from slot 0, whatever a killed trace left
        if verify:
            self.verify(memory_image)
        self.compiled = compiled
        return compiled

    def verify(self, memory_image):
        """Read back the model a load of memory_image wrote (its regions and CSRs, not the run
        state, which runs change); raise naming the first word that differs. Valid after runs."""
        for region, words in memory_image.regions.items():
            back = self.bridge.read(self.region_addr(region), len(words))
            if back != list(words):
                bad = [i for i, (a, b) in enumerate(zip(back, words)) if a != b]
                raise AcceleratorError(f"{region} did not read back: word {bad[0]} is 0x{back[bad[0]]:08x}, "
                                       f"wrote 0x{words[bad[0]]:08x} ({len(bad)} of {len(words)} words differ)")
        for reg, value in memory_image.csrs.items():
            back = self.read_csr(reg)
            if back != value:
                raise AcceleratorError(f"{reg} reads {back}, wrote {value}")

    # Runs -----------------------------------------------------------------------------------
    def start(self):
        self.write_csr("control", layout.CTRL_START)

    def soft_reset(self):
        self.write_csr("control", layout.CTRL_SOFT_RESET)

    def wait(self, cycles=None):
        """Poll status until done, which takes at most ``cycles`` (default: the loaded model's,
        or a rejection at the last layer the program may hold); returns the error code."""
        cycles = cycles or self.model_cycles or cyclemodel.rejected_cycles(self.config.max_layers - 1)
        seconds = self.bridge.pace.seconds(cycles=cycles)
        deadline = time.monotonic() + seconds
        while True:
            busy, done, error = layout.decode_status(self.read_csr("status"))
            if done and not busy:
                return error
            if time.monotonic() > deadline:
                self.soft_reset()
                raise AcceleratorError(f"the accelerator did not finish within {seconds:.1f} s "
                                       f"({cycles} cycles at {self.bridge.pace.describe()}, "
                                       f"busy={busy}); it was soft-reset")

    def _run(self, image):
        if self.model is None:
            raise AcceleratorError("no model loaded: call load() first")
        self.bridge.write(self.region_addr("act0"), program.pack_input(image))
        self.write_csr("slot", 0)               # input slot 0, logits bank 0, whatever a batch left
        self.start()
        error = self.wait()
        if error != layout.ERR_NONE:
            raise AcceleratorError(f"the accelerator rejected the program: "
                                   f"{layout.ERROR_NAMES.get(error, error)} (code {error})")

    def infer(self, image):
        """Run one uint8 image through the loaded model."""
        self._run(image)
        base = self.compiled.memory_image.out_bases[-1]
        logits = program.unpack_logits(self.bridge.read(self.region_addr("logits", base), self.model.n_out))
        return Inference(logits, self.read_csr("argmax"), self.read_csr("cycles"))

    def run_layers(self, image, k):
        """The output of layer k - 1 (0-based, a max-pool fused into its conv) of the loaded
        model for one image: the program runs its first k layers (the stop_after CSR), which
        leaves that output in act[k % 2] from its out_base, or the logits for the last layer."""
        if k < 1:
            raise ValueError(f"layers to run: {k}; give 1 up to the program's n_layers (0 would "
                             f"run the whole program: infer does that)")
        self.write_csr("stop_after", k)
        try:
            self._run(image)                   # k > n_layers: ERR_STOP_AFTER
        finally:
            self.write_csr("stop_after", 0)    # the next run (the firmware's batch) runs it all
        shape, layer = self.compiled.layers[k - 1]
        base = self.compiled.memory_image.out_bases[k - 1]
        if k == self.compiled.n_layers:
            values = program.unpack_logits(self.bridge.read(self.region_addr("logits", base), shape.n_out))
        else:
            values = self.activations(k % 2, shape.n_out, base)
        out_shape = (shape.c_out, *shape.out_hw) if isinstance(layer, Conv2D) else (shape.c_out,)
        return LayerRun(values.reshape(out_shape), self.read_csr("cycles"))

    def activations(self, buffer, n, base=0):
        """n uint8 values of activation buffer 0 or 1 from word ``base`` (for debugging a layer)."""
        return program.unpack_acts(self.bridge.read(self.region_addr(f"act{buffer}", base), -(-n // 4)), n)
