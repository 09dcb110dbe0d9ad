"""The nnhil firmware: its mailbox (defined here once, emitted as a C header), build, boot and driver.

The firmware runs from main RAM. The host resets the CPU into the real LiteX BIOS, waits for
its prompt (the BIOS memtests the start of main RAM while booting), writes the firmware
there over the bridge and types ``boot <main_ram base>`` through the crossover UART: new firmware never needs a gateware rebuild and
the BIOS stays usable on a board. The firmware then serves a mailbox in main RAM:

  main RAM  [0, FIRMWARE_MAX)        the firmware (code, data, bss); stack in SRAM
            MAILBOX_OFFSET           the mailbox words below
            DATA_OFFSET ...          models, images and results, placed by the host

The host fills the arguments and ``command``, then bumps ``request``; the firmware runs
it, writing ``images_done`` after each image, then sets ``status`` and copies ``request``
to ``done``. The host waits as long as ``images_done`` advances, each image within the
cycles it may take at the target's slowest pace (:mod:`host.pace`), so a long batch is
never cut short and a firmware that stopped is named within seconds.

CMD_CPU_INFER (plain C) and CMD_CPU_INFER_OPTIMISED (the speedup's baseline) take the model
as the blob of :func:`pack_cpu_model`: one record per layer of
:func:`gateware.program.layer_shapes` (a k x k valid stride-1 conv over a (c_in, height,
width) uint8 tensor, c_out channels, optionally a fused 2x2/2 max-pool of its requantized
output; a dense layer is the 1x1 conv over (n_in, 1, 1)), in the tensor layout of
:mod:`training.fixedpoint`. Hidden activations live in two MAX_WIDTH-byte buffers; the
input image is read in place from main RAM and the logits go straight to the results.
"""
import struct
import subprocess
import time
from pathlib import Path

import numpy as np

from nnhil.gateware import layout, program
from nnhil.training import filelock, fixedpoint as fx

from .bridge import Console
from .results import Results

FIRMWARE_DIR = Path(__file__).resolve().parent.parent / "firmware"
FIRMWARE_MAX = 0x10000
MAILBOX_OFFSET = FIRMWARE_MAX
DATA_OFFSET = MAILBOX_OFFSET + 0x1000

FW_MAGIC = 0x4E4E4657                      # "NNFW": the firmware is serving the mailbox
MAILBOX = ("magic", "request", "done", "command", "status",
           "model", "images", "n_images", "image_stride", "results", "n_layers", "images_done",
           "slots")
MB = {name: 4 * i for i, name in enumerate(MAILBOX)}          # byte offsets

CMD_CPU_INFER = 1                          # integer model on the CPU in plain C (infer_plain)
CMD_ACCEL_BATCH = 2                        # the loaded accelerator program on each image
CMD_CPU_INFER_OPTIMISED = 3                # the same, optimised for the VexRiscv: the speedup's baseline
CPU_CODES = {"plain": CMD_CPU_INFER, "optimised": CMD_CPU_INFER_OPTIMISED}   # cpu_infer(code=...)
STATUS_OK, STATUS_BAD_COMMAND, STATUS_BAD_MODEL, STATUS_ACCEL_ERROR = 0, 1, 2, 3
STATUS_NAMES = {0: "ok", 1: "unknown command", 2: "a model the firmware cannot run (its geometry or width)",
                3: "accelerator error"}

MAX_WIDTH = 4096                           # bytes of each hidden-activation buffer of the CPU inference
MAX_DIM = (1 << layout.DIM_BITS) - 1       # bound on each record field, so products cannot overflow
LAYER_FIELDS = ("c_in", "height", "width", "kernel", "c_out", "flags",   # a CPU model layer record:
                "weights", "bias", "requant")                           # geometry, then array addresses
LAYER_WORDS = len(LAYER_FIELDS)
LAYER_FLAGS = {"LAYER_FLAG_LOGITS": layout.FLAG_LOGITS,   # int32 logits: the last layer
               "LAYER_FLAG_POOL": layout.FLAG_POOL}       # 2x2/2 max-pool of the requantized output
HEADER_RECORDS = {"DESC": layout.DESCRIPTOR, "BIAS": layout.BIAS, "REQUANT": layout.REQUANT}
CPU_CYCLES_PER_MAC, CPU_CYCLES_PER_VALUE = 25, 250    # bounds for timeouts, see cpu_cycles_bound
# Bounds on the firmware's own work, for deadlines (each several times what was measured):
COMMAND_CYCLES = 100_000                   # a command's setup: cache flushes, model checks
DRIVER_CYCLES_PER_WORD = 40                # per image and logit word the batch runner copies (~7)
DRIVER_CYCLES_PER_IMAGE = 5_000            # per image: start, polls, timer, results (~2,000)
BOOT_CYCLES = 10_000_000                   # CPU reset to the BIOS prompt (1.1 M: the banner
                                           # drains through the console FIFO the host reads)
START_CYCLES = 2_000_000                   # 'boot' typed to the firmware serving its mailbox
RESULT_HEADER = ("prediction", "cpu_cycles", "accel_cycles")   # then n_out int32 logits
BIOS_PROMPT = "\x1b[92;1mlitex\x1b[0m> "
BOOT_MARKER = "Liftoff!"
CTRL_CPU_RESET = 1 << 1                    # ctrl_reset.cpu_rst: hold the CPU in reset


class FirmwareError(RuntimeError):
    """The firmware is missing, does not fit, did not start or reported a failure."""


def mailbox_header():
    """firmware/mailbox.h, generated from the definitions above."""
    lines = ["/* Generated by host/firmware.py: do not edit. */", "#pragma once", "",
             f"#define FIRMWARE_MAX 0x{FIRMWARE_MAX:x}", f"#define MAILBOX_OFFSET 0x{MAILBOX_OFFSET:x}",
             f"#define FW_MAGIC 0x{FW_MAGIC:08x}", f"#define MAX_WIDTH {MAX_WIDTH}",
             f"#define MAX_DIM {MAX_DIM}",
             f"#define LAYER_WORDS {LAYER_WORDS}", f"#define RESULT_HEADER {len(RESULT_HEADER)}"]
    lines += [f"#define LAYER_{n.upper()} {i}" for i, n in enumerate(LAYER_FIELDS)]
    lines += [f"#define {n} {v}" for n, v in LAYER_FLAGS.items()]
    lines += ["", "/* Bit fields of the layout records (gateware/layout.py): word F##_WORD of a record,",
              " * read with FIELD_GET(word, F), written with FIELD_PREP(F, value). */",
              "#define FIELD_GET(word, f) (((word) >> f##_OFFSET) & f##_MASK)",
              "#define FIELD_PREP(f, value) (((uint32_t)(value) & f##_MASK) << f##_OFFSET)"]
    for prefix, record in HEADER_RECORDS.items():
        lines += record.c_defines(prefix)
    lines += [""]
    lines += [f"#define MB_{n.upper()} {i}" for i, n in enumerate(MAILBOX)]
    lines += [f"#define MB_WORDS {len(MAILBOX)}"]
    lines += [f"#define CMD_CPU_INFER {CMD_CPU_INFER}", f"#define CMD_ACCEL_BATCH {CMD_ACCEL_BATCH}",
              f"#define CMD_CPU_INFER_OPTIMISED {CMD_CPU_INFER_OPTIMISED}"]
    lines += [f"#define STATUS_OK {STATUS_OK}", f"#define STATUS_BAD_COMMAND {STATUS_BAD_COMMAND}",
              f"#define STATUS_BAD_MODEL {STATUS_BAD_MODEL}", f"#define STATUS_ACCEL_ERROR {STATUS_ACCEL_ERROR}"]
    return "\n".join(lines) + "\n"


def build_firmware(soc_dir, timeout=120):
    """Compile the firmware against a SoC build's headers and libraries; returns the .bin path.

    One process at a time per build directory (the workers of ``pytest -n`` share it); another
    waits for that build, then finds the firmware up to date."""
    soc_dir = Path(soc_dir).resolve()
    out = soc_dir / "firmware"
    out.mkdir(exist_ok=True)
    with filelock.held(out / ".build.lock", 2 * timeout, f"building the firmware in {out}"):
        header = out / "mailbox.h"
        if not header.exists() or header.read_text() != mailbox_header():
            header.write_text(mailbox_header())
        cmd = ["make", "-s", "-C", str(out), "-f", str(FIRMWARE_DIR / "Makefile"),
               f"BUILD_DIR={soc_dir}", f"SRC_DIR={FIRMWARE_DIR}", f"FIRMWARE_MAX=0x{FIRMWARE_MAX:x}"]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise FirmwareError(f"the firmware build did not finish in {timeout} s")
    if r.returncode:
        raise FirmwareError(f"the firmware build failed:\n{r.stdout[-3000:]}{r.stderr[-3000:]}")
    return out / "nnhil_fw.bin"


def cpu_limits(image_bytes):
    """What the firmware's model_ok accepts, as gateware.program.Limits: records of fields up
    to MAX_DIM, hidden outputs up to MAX_WIDTH, a first layer reading at most the
    ``image_bytes`` of an image; logits may have several positions (a conv)."""
    return program.Limits(max_layers=MAX_DIM, input_bytes=image_bytes, act_bytes=MAX_WIDTH,
                          field_max=MAX_DIM, dense_logits=False)


def cpu_layers(model):
    """[(LayerShape, conv or dense layer)] the firmware runs; FirmwareError if it cannot.

    The firmware answers STATUS_BAD_MODEL to a blob failing gateware.program.check_layers
    with :func:`cpu_limits`; this names what is too large and the limit.
    """
    try:
        shapes = program.layer_shapes(model)
    except program.ModelDoesNotFit as e:
        raise FirmwareError(f"the firmware, like the accelerator, fuses each max-pool into the "
                            f"conv before it and cannot run this model: {e}") from None
    code, l = program.check_layers(len(shapes), lambda l: (shapes[l][0], 0, 0), cpu_limits(model.n_in))
    if code == layout.ERR_NONE:
        return shapes
    s, layer = shapes[l]
    j = next(j for j, other in enumerate(model.layers) if other is layer)
    what = f"layer {j} ({type(layer).__name__}{' and the max-pool after it' if s.pool else ''})"
    if code == layout.ERR_ACT_CAPACITY:
        dims = "" if s.plane == 1 else " x ".join(str(d) for d in (s.c_out, *s.out_hw)) + " = "
        raise FirmwareError(f"{what} outputs {dims}{s.n_out} activations, more than the "
                            f"{MAX_WIDTH} bytes of each hidden-activation buffer of the "
                            f"firmware's CPU inference (MAX_WIDTH)")
    raise FirmwareError(f"{what} is {s}, which the firmware's CPU inference cannot run: "
                        f"{layout.ERROR_NAMES[code]} (fields up to MAX_DIM = {MAX_DIM})")


def cpu_cycles_bound(model):
    """A generous bound on the CPU cycles of one inference, for timeouts.

    Measured on the VexRiscv: ~11.5 cycles per MAC for dense layers, ~19 for 2x2 convs
    (short contiguous runs), plus ~100 per conv value computed (call, requantization),
    which dominates 1x1 convs over few channels. A pooled layer computes 4 values per output.
    """
    return sum(CPU_CYCLES_PER_MAC * s.macs + CPU_CYCLES_PER_VALUE * s.phases * s.n_out
               for s, _ in cpu_layers(model))


def pack_cpu_model(model, base):
    """The CPU model blob at address ``base``: n_layers, then LAYER_WORDS words per layer
    (:data:`LAYER_FIELDS`: its geometry, LAYER_FLAG_* flags and the addresses of its int8
    weights [c_out][c_in][k][k], int32 bias and layout.REQUANT words), then the arrays.

    Records are :func:`gateware.program.layer_shapes` entries, each max-pool fused into its conv.
    """
    shapes = cpu_layers(model)
    head = 4 * (1 + LAYER_WORDS * len(shapes))
    desc, arrays = [len(shapes)], bytearray()

    def put(data):
        arrays.extend(bytes(-len(arrays) % 4))
        addr = base + head + len(arrays)
        arrays.extend(data)
        return addr

    for s, layer in shapes:
        w = put(np.ascontiguousarray(layer.weights, dtype=np.int8).tobytes())
        b = put(np.asarray(layer.bias, dtype="<i4").tobytes())
        rq = np.asarray(layout.REQUANT.encode(mult=layer.mult, shift=layer.shift), dtype="<u4")
        r = put(rq.tobytes())
        flags = (layout.FLAG_LOGITS if layer.output == fx.OUTPUT_I32 else 0) | \
                (layout.FLAG_POOL if s.pool else 0)
        record = dict(c_in=s.c_in, height=s.height, width=s.width, kernel=s.kernel, c_out=s.c_out,
                      flags=flags, weights=w, bias=b, requant=r)
        desc += [record[name] for name in LAYER_FIELDS]
    return struct.pack(f"<{len(desc)}I", *desc) + bytes(arrays)


class Firmware:
    """Boots the firmware on a SoC through its bridge and runs mailbox commands."""

    def __init__(self, bridge, binary):
        self.bridge = bridge
        self.binary = Path(binary)
        base, size = bridge.csr.memories["main_ram"]
        self.ram_base, self.ram_size = base, size
        self.mailbox = base + MAILBOX_OFFSET
        self.data = base + DATA_OFFSET
        self.console = Console(bridge)
        self.seq = 0

    def boot(self):
        """Load the firmware, reboot the CPU into the BIOS and start it from its prompt."""
        if not self.binary.exists():
            raise FirmwareError(f"no firmware at {self.binary}: build it with build_firmware()")
        image = self.binary.read_bytes()
        if len(image) > FIRMWARE_MAX:
            raise FirmwareError(f"the firmware is {len(image)} bytes, more than the "
                                f"{FIRMWARE_MAX} reserved for it below the mailbox")
        b = self.bridge
        b.csr_write("ctrl_reset", CTRL_CPU_RESET)          # reboot the CPU into the BIOS
        self.console.read()                                 # drop what the old run printed
        b.csr_write("ctrl_reset", 0)
        self.console.expect(BIOS_PROMPT, BOOT_CYCLES)       # after its main-RAM memtest
        b.write_bytes(self.ram_base, image)
        b.write(self.mailbox, [0] * len(MAILBOX))
        if b.read_bytes(self.ram_base, len(image)) != image:
            raise FirmwareError("the firmware read back from main RAM differs from what was written")
        self.console.write(f"boot 0x{self.ram_base:x}\n")
        self.console.expect(BOOT_MARKER, START_CYCLES)
        seconds = b.pace.seconds(cycles=START_CYCLES)
        deadline = time.monotonic() + seconds
        while b.read_word(self.mailbox + MB["magic"]) != FW_MAGIC:
            self.console.read()                             # the BIOS waits for its output to drain
            if time.monotonic() > deadline:
                raise FirmwareError(f"the firmware did not start within {seconds:.1f} s; console:\n"
                                    f"{self.console.text[-1500:]}")
            time.sleep(0.005)
        self.seq = b.read_word(self.mailbox + MB["done"])

    def run(self, command, n_images=0, image_cycles=0, progress=None, **args):
        """Run one mailbox command over ``n_images`` images of at most ``image_cycles`` each.

        Waits as long as the firmware's ``images_done`` advances; ``progress(done, total)``
        is called whenever it does. Raises naming how far it got if it stops advancing.
        """
        b = self.bridge
        for name, value in dict(args, n_images=n_images, images_done=0).items():
            b.write(self.mailbox + MB[name], [value])
        b.write(self.mailbox + MB["command"], [command])
        self.seq = (self.seq + 1) & 0xFFFFFFFF
        b.write(self.mailbox + MB["request"], [self.seq])
        step = b.pace.seconds(cycles=COMMAND_CYCLES + image_cycles)
        deadline, seen = time.monotonic() + step, 0
        while True:
            finished = b.read_word(self.mailbox + MB["done"]) == self.seq
            done = b.read_word(self.mailbox + MB["images_done"])
            if done != seen:
                seen, deadline = done, time.monotonic() + step
                if progress:
                    progress(done, n_images)
            if finished:
                break
            if time.monotonic() > deadline:
                raise FirmwareError(f"the firmware did not finish command {command}: no progress in "
                                    f"{step:.1f} s after {seen} of {n_images} images (an image takes at "
                                    f"most {image_cycles} cycles; the target's slowest pace is "
                                    f"{b.pace.describe()}); reboot the SoC")
            time.sleep(0.01)
        status = b.read_word(self.mailbox + MB["status"])
        if status != STATUS_OK:
            raise FirmwareError(f"command {command} failed: {STATUS_NAMES.get(status, status)}")

    def _layout_batch(self, images, blob_len, n_logits):
        images = np.asarray(images, dtype=np.uint8).reshape(len(images), -1)
        stride = -(-images.shape[1] // 4) * 4
        img_addr = self.data + -(-blob_len // 4) * 4
        res_addr = img_addr + stride * len(images)
        res_words = len(RESULT_HEADER) + n_logits
        end = res_addr + 4 * res_words * len(images)
        if end > self.ram_base + self.ram_size:
            raise FirmwareError(f"the batch needs {end - self.ram_base} bytes of main RAM, "
                                f"the SoC has {self.ram_size}")
        padded = np.zeros((len(images), stride), dtype=np.uint8)
        padded[:, :images.shape[1]] = images
        self.bridge.write_bytes(img_addr, padded.tobytes())
        return img_addr, stride, res_addr, res_words

    def _results(self, res_addr, res_words, n):
        words = np.array(self.bridge.read(res_addr, res_words * n), dtype=np.uint32).reshape(n, res_words)
        head = {name: words[:, i].astype(np.int64) for i, name in enumerate(RESULT_HEADER)}
        return Results(logits=words[:, len(RESULT_HEADER):].view(np.int32), argmax=head["prediction"],
                       cycles=head["accel_cycles"], driver_cycles=head["cpu_cycles"])

    def cpu_infer(self, model, images, progress=None, code="optimised"):
        """Integer inference on the CPU: predictions, logits and CPU cycles per image.

        ``code`` is the firmware's C inference (:data:`CPU_CODES`): "optimised", the
        speedup's baseline, or "plain", the straightforward loop at -O2.
        """
        if code not in CPU_CODES:
            raise FirmwareError(f"no CPU inference {code!r}: expected one of {', '.join(CPU_CODES)}")
        blob = pack_cpu_model(model, self.data)
        images = np.asarray(images, dtype=np.uint8).reshape(len(images), -1)
        if images.shape[1] != model.n_in:
            raise FirmwareError(f"the images have {images.shape[1]} pixels, the model takes {model.n_in}")
        self.bridge.write_bytes(self.data, blob)
        img, stride, res, res_words = self._layout_batch(images, len(blob), model.n_out)
        self.run(CPU_CODES[code], len(images), cpu_cycles_bound(model), progress, model=self.data,
                 images=img, image_stride=stride, results=res)
        return self._results(res, res_words, len(images))

    def accel_batch(self, accel, images, chunk=2000, progress=None, slots=None):
        """The program loaded on ``accel`` (a host.driver.AcceleratorDriver) on each image,
        driven by the CPU: double-buffered when its program.Image has two input slots (the
        CPU fills one slot and reads one logits bank while the accelerator runs the other).
        Each image's ``driver_cycles`` is the time from the previous image's done to its own
        (the first: from the batch's start), so their median is the batch's period. ``slots``
        1 runs single-buffered (to compare); the default is the program's.

        Images go through main RAM ``chunk`` at a time, so any number of them fits;
        ``progress(done, total)`` follows the firmware's count of images done.
        """
        slots = slots or accel.image.slots
        if slots not in (1, accel.image.slots):
            raise FirmwareError(f"slots={slots}: the loaded program has {accel.image.slots} input slot(s)")
        n_logits = accel.model.n_out
        words = -(-accel.model.n_in // 4) + n_logits
        image_cycles = (accel.model_cycles + DRIVER_CYCLES_PER_IMAGE
                        + DRIVER_CYCLES_PER_WORD * words)
        parts = []
        for start in range(0, len(images), chunk):
            part = images[start:start + chunk]
            img, stride, res, res_words = self._layout_batch(part, 0, n_logits)
            self.run(CMD_ACCEL_BATCH, len(part), image_cycles,
                     progress and (lambda done, _, start=start: progress(start + done, len(images))),
                     images=img, image_stride=stride, results=res, n_layers=accel.image.n_layers,
                     slots=slots)
            parts.append(self._results(res, res_words, len(part)))
        return Results.concatenate(parts)
