"""The accelerator's memory map, layer-program encoding and error codes.

Pure Python (no Migen), so the gateware, the firmware header generator, the host
driver and the tests all import this one definition. The bit fields of the records are
the tables :data:`DESCRIPTOR`, :data:`BIAS`, :data:`REQUANT` and :data:`FLAGS`.

The accelerator exposes one Wishbone window of 32-bit words holding six regions,
each aligned to a power of two so decoding is a bit test:

  weights   weight_words words of ``lanes`` int8 weights (lane k in byte k), seen on
            the bus as lanes/4 consecutive 32-bit words each (lane 0 in the low byte)
  bias      bias_entries entries of two words, fields in :data:`BIAS`: the int32 bias, then
            the :data:`REQUANT` word (mult and shift)
  program   max_layers descriptors of four words, fields in :data:`DESCRIPTOR` (see
            :class:`LayerShape`)
  act0/act1 two activation buffers of act_bytes uint8 values, four per word, the
            first value in the low byte; the input image goes into act0
  logits    logit_words int32 logits of the last layer

Every layer is one :class:`LayerShape`: a k x k valid convolution over a (c_in, height,
width) activation tensor giving c_out channels, optionally followed by a 2x2/2 max-pool
of its requantized output. A dense layer is the 1x1 case over (n_in, 1, 1). The lanes
hold output channels: tile t computes channels t*lanes .. t*lanes + lanes - 1 at one
output position, one window element per cycle, broadcasting the activation to all lanes.
Tile t's weights are ``window`` consecutive words from w_base + t*window, word i holding
the weights of window element i = (ci*k + ky)*k + kx (zero for lanes past c_out). A dense
layer of at most lanes/2 (lanes/4) outputs splits its fan-in over 2 (4) lane groups
(:meth:`LayerShape.groups`): word i holds in lane g*lanes/G + c the weight of input G*i + g
to output c (zero past n_in), so it takes ceil(n_in/G) words and MAC cycles. A conv of at
most lanes/2 channels computes two adjacent output positions per window
(:meth:`LayerShape.pairs`): lane lanes/2 + c holds the weight of lane c.
Layer l reads act[l % 2] and writes act[(l + 1) % 2], or logits if it is last.
A run with ``stop_after`` = k > 0 ends after layer k - 1, whose output stays in act[k % 2].

Layer l writes from word ``out_base`` of its buffer (:data:`DESCRIPTOR`) and layer l + 1
reads from there. Layer 0 reads its input from word ``slot`` x :attr:`AccelConfig.slot_words`
of act0 and the last layer writes its logits from ``slot`` x :attr:`AccelConfig.slot_logits`
+ out_base, ``slot`` being a CSR latched at start: the CPU fills one input slot and reads one
logits bank while a run uses the other (the firmware's double-buffered batch).
"""
from dataclasses import asdict, dataclass

import numpy as np

from nnhil.training import fixedpoint as fx

MAGIC = 0x4E4E484C          # "NNHL"
VERSION = 6                 # bump on any change to this file's contract (3: lane groups, 4: stop_after,
                            # 5: output bases and the input slot, 6: conv position pairs)

DIM_BITS = 16               # c_in, c_out and output indices are 16-bit
GEOM_BITS = 8               # height, width and kernel are 8-bit descriptor fields


@dataclass(frozen=True)
class Field:
    """``width`` bits at bit ``offset`` of a record; a signed field is two's complement."""
    name: str
    offset: int
    width: int
    signed: bool = False

    @property
    def mask(self):
        return (1 << self.width) - 1

    @property
    def bits(self):
        """The field's slice of the record's bits: ``signal[field.bits]`` in Migen."""
        return slice(self.offset, self.offset + self.width)

    def check(self, value):
        """``value`` as the field's unsigned bits; ValueError if it does not fit."""
        lo, hi = (-(1 << self.width - 1), (1 << self.width - 1) - 1) if self.signed else (0, self.mask)
        v = np.asarray(value, dtype=np.int64)
        if v.size and (v.min() < lo or v.max() > hi):
            raise ValueError(f"{self.name} must be in {lo}..{hi}, got {v.min() if v.min() < lo else v.max()}")
        return v & self.mask


class Record:
    """A packed record of named bit fields: the one declaration its Python encoder and
    decoder, the gateware's slices (``field.bits``) and the firmware's C macros come from.

    ``encode`` and ``decode`` take and give ints or NumPy arrays (one record per element).
    """
    def __init__(self, name, width, fields):
        self.name, self.width, self.fields = name, width, tuple(fields)
        used = 0
        for f in self.fields:
            span = f.mask << f.offset
            if span & used or f.offset + f.width > width:
                raise ValueError(f"{name}.{f.name} overlaps another field or the end of the record")
            used |= span
        self._by_name = {f.name: f for f in self.fields}

    def __getitem__(self, name):
        return self._by_name[name]

    def __iter__(self):
        return iter(self.fields)

    @property
    def words(self):
        return -(-self.width // 32)

    def encode(self, **values):
        """The record as one int (or an array of uint64 for a record of up to 64 bits)."""
        if set(values) != set(self._by_name):
            raise ValueError(f"{self.name} takes the fields {[f.name for f in self]}, got {sorted(values)}")
        if self.width > 64:
            return sum(int(self[n].check(v)) << self[n].offset for n, v in values.items())
        out = 0
        for n, v in values.items():
            out = out | (self[n].check(v).astype(np.uint64) << np.uint64(self[n].offset))
        return out if np.ndim(out) else int(out)

    def decode(self, value):
        """{field name: value} of a record (ints, or arrays for an array of records)."""
        out = {}
        for f in self:
            if np.ndim(value):
                v = (np.asarray(value, dtype=np.uint64) >> np.uint64(f.offset)) & np.uint64(f.mask)
                v = v.astype(np.int64)
            else:
                v = (int(value) >> f.offset) & f.mask
            if f.signed:
                v = v - ((v >> (f.width - 1)) & 1) * (1 << f.width)
            out[f.name] = v
        return out

    def to_words(self, value):
        """Little-endian 32-bit words of an int record."""
        return [(value >> 32 * i) & 0xFFFFFFFF for i in range(self.words)]

    def from_words(self, words):
        return sum(int(w) << 32 * i for i, w in enumerate(words))

    def c_defines(self, prefix):
        """``#define PREFIX_FIELD_WORD/_OFFSET/_MASK`` lines for C: the field is bits OFFSET..
        of 32-bit word WORD of the record (see the firmware header's FIELD_GET)."""
        lines = []
        for f in self:
            word, offset = divmod(f.offset, 32)
            if offset + f.width > 32:
                raise ValueError(f"{self.name}.{f.name} crosses a 32-bit word: C reads it as two")
            name = f"{prefix}_{f.name.upper()}"
            lines += [f"#define {name}_WORD {word}", f"#define {name}_OFFSET {offset}",
                      f"#define {name}_MASK 0x{f.mask:x}u"]
        return lines


# The field tables: the bit positions of the descriptor, the bias entry and the
# requantization word are declared here and nowhere else.
FLAGS = Record("flags", 8, [
    Field("logits", 0, 1),  # output int32 logits (last layer) rather than uint8 activations
    Field("pool", 1, 1),    # 2x2/2 max-pool the requantized output
])
FLAG_LOGITS = 1 << FLAGS["logits"].offset
FLAG_POOL = 1 << FLAGS["pool"].offset

DESCRIPTOR = Record("descriptor", 128, [   # one layer of the program, four words
    Field("c_in", 0, DIM_BITS),
    Field("c_out", 16, DIM_BITS),
    Field("height", 32, GEOM_BITS),
    Field("width", 40, GEOM_BITS),
    Field("kernel", 48, GEOM_BITS),
    Field("flags", 56, FLAGS.width),   # FLAGS; the unused bits are ignored
    Field("w_base", 64, 16),           # first weight word of the layer
    Field("b_base", 80, 16),           # first bias entry of the layer
    Field("out_base", 96, DIM_BITS),   # first word of its output in the buffer it writes: an
                                       # act word (the next layer reads from there), or a logit
])

REQUANT = Record("requant", 32, [   # how a channel's accumulator becomes a uint8 activation
    Field("mult", 0, fx.MULT_BITS),
    Field("shift", 16, (fx.SHIFT_MAX).bit_length()),
])

BIAS = Record("bias", 64, [   # one bias-RAM entry: the bias word, then the REQUANT word
    Field("bias", 0, fx.ACC_BITS, signed=True),
    *(Field(f.name, 32 + f.offset, f.width) for f in REQUANT),
])


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
ERR_STOP_AFTER = 10         # stop_after > n_layers: the run would stop after a layer it does not have
ERROR_NAMES = {v: k[4:].lower() for k, v in globals().items() if k.startswith("ERR_")}

# CSR bit fields. The CSRs are named after the AccelConfig fields for the build
# configuration, plus control, n_layers, stop_after, status, cycles, argmax, magic and version.
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


def address_bits(n):
    """Address bits for n entries (at least one so a one-entry memory still has a port)."""
    return max(1, (n - 1).bit_length())


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
        for name in ("weight_words", "bias_entries"):
            if getattr(self, name) > 1 << DESCRIPTOR[name[0] + "_base"].width:
                raise ValueError(f"{name} must be at most {1 << DESCRIPTOR[name[0] + '_base'].width} "
                                 f"(the descriptor's {name[0]}_base field)")

    @property
    def slot_words(self):
        """Act0 word where input slot 1 starts (slot 0 at word 0): half the buffer."""
        return self.act_bytes // 8

    @property
    def slot_logits(self):
        """Logit word where logits bank 1 starts (bank 0 at word 0): half the region."""
        return self.logit_words // 2

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

    Its descriptor is a :data:`DESCRIPTOR` record. Dense is ``LayerShape.dense(n_in, n_out)``. The properties are the
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

    def groups(self, lanes):
        """Lane groups that split the fan-in of a dense layer narrow enough for them: 4 when
        c_out <= lanes/4, 2 when c_out <= lanes/2, else 1. Group g of G takes input G i + g
        of word step i (the bytes of one activation word), and the requantizer adds the
        groups' sums. A conv keeps 1 (see :meth:`pairs`)."""
        if (self.height, self.width, self.kernel) != (1, 1, 1):
            return 1
        return next(g for g in (4, 2, 1) if g == 1 or self.c_out <= lanes // g)

    def pairs(self, lanes):
        """Output positions per window: 2 for a conv of at most lanes/2 channels and two
        output columns or more, whose two lane groups take the adjacent positions (r, c) and
        (r, c + 1) (their inputs 1 byte apart, 2 with a pool: one read gives both), and
        whose requantizer drains both of a channel in one cycle, to adjacent bytes; else 1."""
        return 2 if self.c_out <= lanes // 2 and self.out_hw[1] >= 2 else 1

    def windows(self, lanes):
        """Windows (of ``phases`` conv positions each) per tile: a row's odd last position
        is a pair of its own."""
        h, w = self.out_hw
        return h * -(-w // self.pairs(lanes))

    def steps(self, lanes):
        """MAC cycles (and weight words) of one window of one tile."""
        return -(-self.window // self.groups(lanes))

    def weight_words(self, lanes):
        return tiles(self.c_out, lanes) * self.steps(lanes)

    @property
    def flags(self):
        return FLAGS.encode(logits=int(self.logits), pool=int(self.pool))

    def encode(self, w_base, b_base, out_base=0):
        """The four descriptor words; ValueError if a field does not fit its width."""
        return DESCRIPTOR.to_words(DESCRIPTOR.encode(
            c_in=self.c_in, c_out=self.c_out, height=self.height, width=self.width,
            kernel=self.kernel, flags=self.flags, w_base=w_base, b_base=b_base, out_base=out_base))

    @classmethod
    def decode(cls, words):
        """(shape, w_base, b_base) of four descriptor words."""
        d = DESCRIPTOR.decode(DESCRIPTOR.from_words(words))
        flags = FLAGS.decode(d.pop("flags"))
        w_base, b_base = d.pop("w_base"), d.pop("b_base")
        d.pop("out_base")                  # see out_base()
        return cls(**d, pool=bool(flags["pool"]), logits=bool(flags["logits"])), w_base, b_base


def out_base(words):
    """The out_base field of four descriptor words."""
    return DESCRIPTOR.decode(DESCRIPTOR.from_words(words))["out_base"]
