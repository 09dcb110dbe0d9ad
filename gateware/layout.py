"""The accelerator's memory map, layer-program encoding and error codes.

Pure Python (no Migen), so the gateware, the firmware header generator, the host
driver and the tests all import this one definition.

The accelerator exposes one Wishbone window of 32-bit words holding six regions,
each aligned to a power of two so decoding is a bit test:

  weights   weight_words words of ``lanes`` int8 weights (lane k in byte k), seen on
            the bus as lanes/4 consecutive 32-bit words each (lane 0 in the low byte)
  bias      bias_entries entries of two words: [0] int32 bias, [1] mult (bits 0-15)
            and shift (bits 16-21)
  program   max_layers descriptors of four words (see :class:`LayerShape` and encode_layer)
  act0/act1 two activation buffers of act_bytes uint8 values, four per word, the
            first value in the low byte; the input image goes into act0
  logits    logit_words int32 logits of the last layer

Every layer is one :class:`LayerShape`: a k x k valid convolution over a (c_in, height,
width) activation tensor giving c_out channels, optionally followed by a 2x2/2 max-pool
of its requantized output. A dense layer is the 1x1 case over (n_in, 1, 1). The lanes
hold output channels: tile t computes channels t*lanes .. t*lanes + lanes - 1 at one
output position, one window element per cycle, broadcasting the activation to all lanes.
Tile t's weights are ``window`` consecutive words from w_base + t*window, word i holding
the weights of window element i = (ci*k + ky)*k + kx (zero for lanes past c_out).
Layer l reads act[l % 2] and writes act[(l + 1) % 2], or logits if it is last.
"""
from dataclasses import asdict, dataclass

MAGIC = 0x4E4E484C          # "NNHL"
VERSION = 2                 # bump on any change to this file's contract

DIM_BITS = 16               # c_in, c_out and output indices are 16-bit
GEOM_BITS = 8               # height, width and kernel are 8-bit descriptor fields

# descriptor flags (bits 24-31 of word 1; the unused ones are ignored)
FLAG_LOGITS = 1 << 0        # output int32 logits (last layer) rather than uint8 activations
FLAG_POOL = 1 << 1          # 2x2/2 max-pool the requantized output

# error codes reported in the status register
ERR_NONE = 0
ERR_LAYER_COUNT = 1         # zero layers or more than max_layers
ERR_EMPTY_LAYER = 2         # c_in, c_out, height, width or kernel is 0
ERR_SHAPE = 3               # kernel larger than the input, or a pool of less than 2x2
ERR_ACT_CAPACITY = 4        # n_in or a hidden n_out beyond act_bytes
ERR_WEIGHT_RANGE = 5        # the layer's weight words run past weight_words
ERR_BIAS_RANGE = 6          # the layer's bias entries (one per channel) run past bias_entries
ERR_CHAIN = 7               # n_in differs from the previous layer's n_out
ERR_OUTPUT_KIND = 8         # last layer not FLAG_LOGITS, a hidden one is, or the last layer is
                            # not one position without pool, or its c_out > logit_words
ERR_BUSY = 9                # start while a run is in progress: ignored, the run goes on and its
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
    bias_entries: int = 512
    act_bytes: int = 4096           # per activation buffer: a pooled 16x13x13 conv output
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
        if self.act_bytes >= 1 << DIM_BITS:
            raise ValueError(f"act_bytes must be below {1 << DIM_BITS} (output indices are {DIM_BITS}-bit)")

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


def tiles(n_out, lanes):
    return -(-n_out // lanes)


@dataclass(frozen=True)
class LayerShape:
    """One layer of the program: k x k valid conv, c_out channels, optional 2x2/2 max-pool.

    Descriptor words: [c_in | c_out << 16, height | width << 8 | kernel << 16 | flags << 24,
    w_base, b_base]. Dense is ``LayerShape.dense(n_in, n_out)``. The properties are the
    arithmetic the sequencer does when it validates a descriptor.
    """
    c_in: int
    height: int
    width: int
    kernel: int
    c_out: int
    pool: bool = False
    logits: bool = False

    @classmethod
    def dense(cls, n_in, n_out, logits=False):
        return cls(n_in, 1, 1, 1, n_out, logits=logits)

    @property
    def n_in(self):
        return self.c_in * self.height * self.width

    @property
    def window(self):
        """Inputs of one output value: MAC cycles per output position and tile."""
        return self.c_in * self.kernel * self.kernel

    @property
    def conv_hw(self):
        return self.height - self.kernel + 1, self.width - self.kernel + 1

    @property
    def out_hw(self):
        h, w = self.conv_hw
        return (h // 2, w // 2) if self.pool else (h, w)

    @property
    def plane(self):
        h, w = self.out_hw
        return h * w

    @property
    def phases(self):
        """Conv positions per output position: the 2x2 pool window, or 1."""
        return 4 if self.pool else 1

    @property
    def n_out(self):
        return self.c_out * self.plane

    @property
    def macs(self):
        """MACs the hardware performs (pool-dropped odd rows/columns are skipped)."""
        return self.phases * self.plane * self.c_out * self.window

    def __str__(self):
        if (self.height, self.width, self.kernel) == (1, 1, 1):
            return f"dense {self.c_in}->{self.c_out}"
        return (f"conv {self.kernel}x{self.kernel} ({self.c_in},{self.height},{self.width})->{self.c_out}"
                + (" + pool" if self.pool else ""))

    def weight_words(self, lanes):
        return tiles(self.c_out, lanes) * self.window

    def encode(self, w_base, b_base):
        """The four descriptor words."""
        for name, bits in (("c_in", DIM_BITS), ("c_out", DIM_BITS), ("height", GEOM_BITS),
                           ("width", GEOM_BITS), ("kernel", GEOM_BITS)):
            assert 0 <= getattr(self, name) < 1 << bits, name
        flags = (FLAG_LOGITS if self.logits else 0) | (FLAG_POOL if self.pool else 0)
        return [self.c_in | self.c_out << DIM_BITS,
                self.height | self.width << 8 | self.kernel << 16 | flags << 24, w_base, b_base]

    @classmethod
    def decode(cls, words):
        """(shape, w_base, b_base) of four descriptor words."""
        d0, d1, w_base, b_base = words
        flags = d1 >> 24
        mask = (1 << GEOM_BITS) - 1
        shape = cls(d0 & 0xFFFF, d1 & mask, (d1 >> 8) & mask, (d1 >> 16) & mask, d0 >> DIM_BITS,
                    pool=bool(flags & FLAG_POOL), logits=bool(flags & FLAG_LOGITS))
        return shape, w_base, b_base
