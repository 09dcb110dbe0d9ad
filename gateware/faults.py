"""The selftest's fault list: bugs an RTL, firmware or link engineer could plausibly make, each
declared once here (the gateware's fault sites, host.selftest's campaign, host.coverage's
verdicts and docs/selftest.md all take it from this table).

A fault build (``Accelerator(cfg, faults=True)``, a sim-only build variant: never an
AccelConfig field, so no Arty build can have it) adds a ``fault_select`` CSR: 0 runs the
ordinary datapath, n the hardware fault ``HARDWARE[n - 1]``, so one Verilator build serves the
whole campaign. The ordinary build generates none of it (:func:`site` returns the ordinary
expression unchanged when there is no select signal), so its Verilog is what it was before.

Firmware faults are firmware variants built with the C macro :func:`define`; link faults
corrupt what the campaign's host writes. Each fault names the checks that can catch it
(:data:`CHECKS`) and the coverage ``edge`` (host.coverage) that says whether the images
exercised it: a fault whose edge the images never reached is "not exercised" with the
edge's reason, not a weakness of the harness.
"""
from dataclasses import dataclass

# The checks a campaign run makes (host.selftest).
CHECKS = {
    "logits":     "bit-exact logits and argmax against the integer model",
    "cycles":     "cycles equal to the cycle model",
    "readback":   "the model's memories read back after the load",
    "accuracy":   "accuracy equal to the integer model's",
    "divergence": "the layer-by-layer divergence report",
    "repeat":     "the images shuffled and repeated give the first pass's results",
    "timing":     "the driver's cycles of the batch within the bounds of the accelerator's own counts",
    "completes":  "the run finishes without an error or a timeout",
}
VALUES = ("logits", "accuracy", "divergence", "repeat")   # what a wrong value can meet
FIRMWARE = ("logits", "accuracy", "repeat")   # the layer-by-layer report runs without the firmware

FAULT_BUILD_ID = 0x4E464C54     # "NFLT": the fault_build CSR of a fault build


@dataclass(frozen=True)
class Fault:
    name: str
    stands_for: str               # the bug, as an engineer would describe it
    block: str                    # where it lives: a gateware module, "firmware" or "link"
    checks: tuple                 # the CHECKS that can see it
    edge: str                     # the host.coverage edge that exercises it ("" : every run does)

    @property
    def kind(self):
        return self.block if self.block in ("firmware", "link") else "hardware"


FAULTS = (
    Fault("round_dropped", "the rounding constant 2**(shift-1) dropped (truncation)",
          "requantizer", VALUES, "rounding"),
    Fault("round_off_by_one", "the rounding constant one bit too high, 2**shift",
          "requantizer", VALUES, "rounding_high"),
    Fault("saturation_short", "the clamp to 255 tests bits 9 and up: 256..511 wrap",
          "requantizer", VALUES, "saturation_wrap"),
    Fault("relu_broken", "ReLU broken: negative values become 255",
          "requantizer", VALUES, "negative"),
    Fault("acc_24_bits", "the MAC accumulator narrowed to 24 bits",
          "macarray", VALUES, "beyond_2_23"),
    Fault("lane_weight_stuck", "weight bit 0 of the last lane stuck at 1",
          "macarray", VALUES, "last_lane"),
    Fault("partial_tile_lane_dropped", "the last lane of a partial tile not drained",
          "requantizer", VALUES + ("cycles",), "partial_tile"),
    Fault("neighbour_requant", "the next channel's bias, mult and shift used",
          "requantizer", VALUES, "requant_differs"),
    Fault("kernel_row_stride", "the address generator's kernel-row stride one too large",
          "addrgen", VALUES, "kernel_rows"),
    Fault("split_group_dropped", "the last lane group of a split fan-in dropped",
          "requantizer", VALUES, "split_last_group"),
    Fault("pair_wrong_address", "the second position of a pair written one byte too far",
          "accelerator", VALUES, "pairs"),
    Fault("input_slot_ignored", "the input slot ignored: layer 0 always reads slot 0",
          "sequencer", VALUES, "two_slots"),
    Fault("out_base_ignored", "out_base ignored by the activation writes",
          "accelerator", VALUES, "out_base"),
    Fault("maxpool_min", "max-pool keeps the minimum",
          "macarray", VALUES, "pool_differs"),
    Fault("argmax_ties_last", "argmax resolves ties to the last largest logit",
          "requantizer", ("logits", "accuracy", "repeat"), "argmax_tie"),
    Fault("cycles_from_1", "the cycle counter starts at 1",
          "sequencer", ("cycles",), ""),
    Fault("acc_not_cleared", "the accumulators not cleared at a run's first window (state leak)",
          "macarray", VALUES, "second_image"),
    Fault("stage_longer", "the requantizer one pipeline stage longer than the schedule",
          "requantizer", ("cycles",), ""),
    Fault("image_copy_short", "the firmware copies each image one word short",
          "firmware", FIRMWARE, "image_tail"),
    Fault("batch_timing_late", "the firmware starts the batch's timer after its first image copies",
          "firmware", ("timing",), ""),
    Fault("logits_wrong_slot", "the firmware reads the logits from the other slot's bank",
          "firmware", FIRMWARE, "two_slots"),
    Fault("weight_bit_flip", "one bit flipped in a weight word during the load",
          "link", ("readback",) + VALUES, ""),
    Fault("image_byte_flip", "one image byte flipped in transit",
          "link", ("logits", "accuracy"), ""),
)
BY_NAME = {f.name: f for f in FAULTS}
HARDWARE = tuple(f for f in FAULTS if f.kind == "hardware")
SELECT_BITS = len(HARDWARE).bit_length()


def define(fault):
    """The C macro a firmware fault's variant is built with (firmware/main.c)."""
    return f"NNHIL_FAULT_{fault.name.upper()}"


def code(name):
    """The fault_select value of hardware fault ``name`` (0 is the ordinary datapath)."""
    return HARDWARE.index(BY_NAME[name]) + 1


def get(names):
    """The faults named in ``names`` ("all", or an iterable of names); ValueError naming the
    unknown ones and the list."""
    if names in ("all", None):
        return list(FAULTS)
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        raise ValueError(f"unknown fault {', '.join(unknown)}: the faults are {', '.join(BY_NAME)}")
    return [BY_NAME[n] for n in names]


def active(select, name):
    """The condition "fault ``name`` is selected" (None in an ordinary build)."""
    return None if select is None else select == code(name)


def site(select, name, ordinary, faulty):
    """``ordinary`` in an ordinary build (``select`` None: nothing generated), else the
    multiplexer that gives ``faulty`` while fault ``name`` is selected."""
    if select is None:
        return ordinary
    from migen import Mux
    return Mux(select == code(name), faulty, ordinary)
