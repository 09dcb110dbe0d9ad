"""The accelerator's memory map, layer-program encoding and error codes.

Pure Python (no Migen), so the gateware, the firmware header generator, the host
driver and the tests all import this one definition.

The accelerator exposes one Wishbone window of 32-bit words holding five regions,
each aligned to a power of two so decoding is a bit test:

  weights   weight_words words of ``lanes`` int8 weights (lane k in byte k), seen on
            the bus as lanes/4 consecutive 32-bit words each (lane 0 in the low byte)
  bias      bias_entries entries of two words: [0] int32 bias, [1] mult (bits 0-15)
            and shift (bits 16-21)
  program   max_layers descriptors of four words (see encode_layer)
  act0/act1 two activation buffers of act_bytes uint8 values, four per word, the
            first value in the low byte; the input image goes into act0
  logits    logit_words int32 logits of the last layer

A dense layer with n_out outputs is run in tiles of ``lanes`` outputs. Tile t reads
weight words w_base + t*n_in ... + n_in - 1; word w_base + t*n_in + i holds the
weights from input i to outputs t*lanes .. t*lanes + lanes - 1 (zero for lanes past
n_out). Layer l reads act[l % 2] and writes act[(l + 1) % 2], or logits if it is last.
"""
from dataclasses import asdict, dataclass

MAGIC = 0x4E4E484C          # "NNHL"
VERSION = 1                 # bump on any change to this file's contract

DIM_BITS = 16               # n_in and n_out are 16-bit descriptor fields

# descriptor flags (the other bits of word 3 are ignored)
FLAG_LOGITS = 1 << 0        # output int32 logits (last layer) rather than uint8 activations

# error codes reported in the status register
ERR_NONE = 0
ERR_LAYER_COUNT = 1         # zero layers or more than max_layers
ERR_EMPTY_LAYER = 2         # n_in == 0 or n_out == 0
ERR_ACT_CAPACITY = 3        # n_in or a hidden n_out beyond act_bytes
ERR_WEIGHT_RANGE = 4        # the layer's weight words run past weight_words
ERR_BIAS_RANGE = 5          # the layer's bias entries run past bias_entries
ERR_CHAIN = 6               # n_in differs from the previous layer's n_out
ERR_OUTPUT_KIND = 7         # last layer not FLAG_LOGITS, a hidden one is, or n_out > logit_words
ERR_BUSY = 8                # start while a run is in progress: ignored, the run goes on and its
                            # results are valid; the code stays until the next accepted start
                            # (a rejected program found later in that run's validation overrides it)
ERROR_NAMES = {v: k[4:].lower() for k, v in globals().items() if k.startswith("ERR_")}

# CSR bit fields. The CSRs are named after the AccelConfig fields for the build
# configuration, plus control, n_layers, status, cycles, argmax, magic and version.
CTRL_START = 1 << 0         # control: write 1 to start a run
CTRL_SOFT_RESET = 1 << 1    # control: write 1 to abort and return to idle
STATUS_BUSY = 1 << 0
STATUS_DONE = 1 << 1        # set at the end of a run (or rejected program), cleared by start
STATUS_ERROR_SHIFT = 4      # status bits 4-7: the ERR_* code of the last start
STATUS_ERROR_BITS = 4
VERSION_FORMAT_SHIFT = 16   # version: VERSION in bits 0-15, fixedpoint.FORMAT_VERSION above


def decode_status(word):
    """(busy, done, error) from a status register value."""
    error = (word >> STATUS_ERROR_SHIFT) & ((1 << STATUS_ERROR_BITS) - 1)
    return bool(word & STATUS_BUSY), bool(word & STATUS_DONE), error

REGIONS = ("weights", "bias", "program", "act0", "act1", "logits")


def _pow2(n):
    return 1 << max(0, (n - 1).bit_length())


@dataclass(frozen=True)
class AccelConfig:
    """Build-time parameters of the accelerator; the host checks them against a model."""
    lanes: int = 64                 # P parallel MAC lanes (a power of two, >= 4)
    weight_words: int = 2048        # wide weight words of `lanes` int8 each
    bias_entries: int = 1024
    act_bytes: int = 1024           # per activation buffer
    logit_words: int = 64
    max_layers: int = 8

    def __post_init__(self):
        if self.lanes < 4 or self.lanes & (self.lanes - 1):
            raise ValueError(f"lanes must be a power of two >= 4, got {self.lanes}")
        for name in ("weight_words", "bias_entries", "act_bytes", "logit_words", "max_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive")
        if self.act_bytes % 4:
            raise ValueError("act_bytes must be a multiple of 4")

    @property
    def region_words(self):
        """Size in 32-bit bus words of each region (before power-of-two alignment)."""
        return {"weights": self.weight_words * self.lanes // 4, "bias": 2 * self.bias_entries,
                "program": 4 * self.max_layers, "act0": self.act_bytes // 4,
                "act1": self.act_bytes // 4, "logits": self.logit_words}

    @property
    def region_base(self):
        """Word offset of each region within the accelerator's Wishbone window."""
        base, out = 0, {}
        # largest first keeps every region aligned to its own power-of-two size
        for name in sorted(REGIONS, key=lambda r: -_pow2(self.region_words[r])):
            out[name] = base
            base += _pow2(self.region_words[name])
        return out

    @property
    def window_words(self):
        return _pow2(max(b + _pow2(self.region_words[r]) for r, b in self.region_base.items()))

    def to_dict(self):
        return asdict(self)


def encode_layer(n_in, n_out, w_base, b_base, logits):
    """The four descriptor words of one dense layer."""
    assert 0 <= n_in < 1 << DIM_BITS and 0 <= n_out < 1 << DIM_BITS
    return [(n_out << DIM_BITS) | n_in, w_base, b_base, FLAG_LOGITS if logits else 0]


def tiles(n_out, lanes):
    return -(-n_out // lanes)
