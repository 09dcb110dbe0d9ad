"""The host's client of the nnhil firmware: boot it, run mailbox commands, batch images.

The firmware runs from main RAM. The host resets the CPU into the real LiteX BIOS, waits for
its prompt (the BIOS memtests the start of main RAM while booting), writes the firmware
there over the bridge and types ``boot <main_ram base>`` through the crossover UART: new firmware never needs a gateware rebuild and
the BIOS stays usable on a board. The firmware then serves the mailbox of
:mod:`host.firmware_abi`, after writing the ID of its build there: a firmware that is not the
build recorded beside the binary (:mod:`host.firmware_build`) is refused. The host waits as long as ``images_done`` advances, each image within the
cycles it may take at the target's slowest pace (:mod:`host.pace`), so a long batch is
never cut short and a firmware that stopped is named within seconds.

CMD_CPU_INFER (plain C) and CMD_CPU_INFER_OPTIMISED (the speedup's baseline) take the model
as the blob of :func:`host.cpu_model.pack_cpu_model`.
"""
import time
from pathlib import Path

import numpy as np

from .bridge import Console
from .cpu_model import cpu_cycles_bound, pack_cpu_model
from .firmware_abi import (CMD_ACCEL_BATCH, CPU_CODES, DATA_OFFSET, FIRMWARE_MAX, FW_MAGIC, MAILBOX,
                           MAILBOX_OFFSET, MB, RESULT_HEADER, STATUS_NAMES, STATUS_OK, FirmwareError)
from .firmware_build import build_id
from .results import Results

# Bounds on the firmware's own work, for deadlines (each several times what was measured):
COMMAND_CYCLES = 100_000                   # a command's setup: cache flushes, model checks
DRIVER_CYCLES_PER_WORD = 40                # per image and logit word the batch runner copies (~7)
DRIVER_CYCLES_PER_IMAGE = 5_000            # per image: start, polls, timer, results (~2,000)
# A lower bound on the batch's copy of an image (copy_words): each word is a load and a store,
# two instructions, so at least two cycles on the single-issue VexRiscv (see batch_timing).
COPY_CYCLES_PER_WORD_MIN = 2
BOOT_CYCLES = 10_000_000                   # CPU reset to the BIOS prompt (1.1 M: the banner
                                           # drains through the console FIFO the host reads)
START_CYCLES = 2_000_000                   # 'boot' typed to the firmware serving its mailbox
BIOS_PROMPT = "\x1b[92;1mlitex\x1b[0m> "
BOOT_MARKER = "Liftoff!"
CTRL_CPU_RESET = 1 << 1                    # ctrl_reset.cpu_rst: hold the CPU in reset


def driver_overhead(n_in, n_out):
    """The most driver work per image of a batch, beside the accelerator's run (the bound of
    the host's deadlines and of batch_timing): the per-image constant and every image and
    logit word the firmware copies."""
    return DRIVER_CYCLES_PER_IMAGE + DRIVER_CYCLES_PER_WORD * (-(-n_in // 4) + n_out)


def batch_timing(results, n_in, n_out):
    """What is wrong with a batch's driver cycles (the firmware's timer, Results.driver_cycles),
    bounded by the accelerator's own per-image counts (Results.cycles): [] if nothing, else a
    sentence per bound broken, naming the first image that breaks it.

    From below, every prefix: image k + 1 starts only after image k's done, so the runs of a
    batch do not overlap, and the first starts after the first image's copy into the
    accelerator, which the batch's timer includes (it starts before that copy). The driver
    cycles of images 0..k therefore hold at least the accelerator cycles of images 0..k plus
    one copy of ``n_in`` bytes (COPY_CYCLES_PER_WORD_MIN a word). Batches run one after the
    other (host.shards' chunks, Firmware.accel_batch's) each add their own copy, so the bound
    holds over their concatenation too. A timer started late (after the first copy) breaks it.

    From above, every image: its period ends at most the documented driver work
    (:func:`driver_overhead`) after its own run, and starts after its run was started (double
    buffered, the previous image's time is taken after starting this one; single buffered,
    before copying it), so it is at most its accelerator cycles plus that work. The host's
    bridge sharing the bus only adds cycles, which this bound's margin (several times the
    measured work) absorbs. The CPU inference's Results have no accelerator cycles: not theirs.
    """
    cycles = np.asarray(results.cycles, dtype=np.int64)
    driver = np.asarray(results.driver_cycles, dtype=np.int64)
    problems = []
    copy = COPY_CYCLES_PER_WORD_MIN * -(-n_in // 4)
    low = np.flatnonzero(np.cumsum(driver) < np.cumsum(cycles) + copy)
    if low.size:
        k = int(low[0])
        problems.append(f"images 0-{k} took {int(driver[:k + 1].sum())} driver cycles, fewer than their "
                        f"{int(cycles[:k + 1].sum())} accelerator cycles plus the first image's copy "
                        f"(at least {copy}): the batch's timer started late")
    most = driver_overhead(n_in, n_out)
    high = np.flatnonzero(driver > cycles + most)
    if high.size:
        k = int(high[0])
        problems.append(f"image {k} took {int(driver[k])} driver cycles, more than its {int(cycles[k])} "
                        f"accelerator cycles plus the most driver work per image ({most}); "
                        f"{high.size} image(s) do")
    return problems


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
        """Load the firmware, reboot the CPU into the BIOS and start it from its prompt; check
        that what runs is the build recorded beside the binary."""
        if not self.binary.exists():
            raise FirmwareError(f"no firmware at {self.binary}: build it with build_firmware()")
        image = self.binary.read_bytes()
        if len(image) > FIRMWARE_MAX:
            raise FirmwareError(f"the firmware is {len(image)} bytes, more than the "
                                f"{FIRMWARE_MAX} reserved for it below the mailbox")
        want = build_id(self.binary)
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
        running = b.read_word(self.mailbox + MB["build_id"])
        if running != want:
            raise FirmwareError(f"the firmware that started reports build {running:08x}, but {self.binary} "
                                f"is recorded as build {want:08x}: a stale or foreign binary; let "
                                f"build_firmware() build it again")
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
        return self.cpu_infer_blob(blob, images, model.n_out, cpu_cycles_bound(model), progress, code)

    def cpu_infer_blob(self, blob, images, n_logits, image_cycles, progress=None, code="optimised"):
        """:meth:`cpu_infer` of a CPU model blob packed for ``self.data`` (:func:`pack_cpu_model`),
        as the firmware receives it: each image takes at most ``image_cycles``."""
        if code not in CPU_CODES:
            raise FirmwareError(f"no CPU inference {code!r}: expected one of {', '.join(CPU_CODES)}")
        self.bridge.write_bytes(self.data, blob)
        img, stride, res, res_words = self._layout_batch(images, len(blob), n_logits)
        self.run(CPU_CODES[code], len(images), image_cycles, progress, model=self.data,
                 images=img, image_stride=stride, results=res)
        return self._results(res, res_words, len(images))

    def accel_batch(self, accel, images, chunk=2000, progress=None, slots=None):
        """The program loaded on ``accel`` (a host.driver.AcceleratorDriver) on each image,
        driven by the CPU: double-buffered when its program.MemoryImage has two input slots (the
        CPU fills one slot and reads one logits bank while the accelerator runs the other).
        Each image's ``driver_cycles`` is the time from the previous image's done to its own
        (the first: from the batch's start), so their median is the batch's period. ``slots``
        1 runs single-buffered (to compare); the default is the program's.

        Images go through main RAM ``chunk`` at a time, so any number of them fits;
        ``progress(done, total)`` follows the firmware's count of images done.
        """
        program_slots = accel.compiled.memory_image.slots
        slots = slots or program_slots
        if slots not in (1, program_slots):
            raise FirmwareError(f"slots={slots}: the loaded program has {program_slots} input slot(s)")
        n_logits = accel.model.n_out
        image_cycles = accel.model_cycles + driver_overhead(accel.model.n_in, n_logits)
        parts = []
        for start in range(0, len(images), chunk):
            part = images[start:start + chunk]
            img, stride, res, res_words = self._layout_batch(part, 0, n_logits)
            self.run(CMD_ACCEL_BATCH, len(part), image_cycles,
                     progress and (lambda done, _, start=start: progress(start + done, len(images))),
                     images=img, image_stride=stride, results=res, n_layers=accel.compiled.n_layers,
                     slots=slots)
            parts.append(self._results(res, res_words, len(part)))
        return Results.concatenate(parts)
