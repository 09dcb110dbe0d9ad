"""The layout records (descriptor, bias entry, requantization word, flags): declared once.

Their bit positions are the field tables of gateware/layout.py. This checks that no other
source spells a position or a mask out, and that the Python encoders and decoders agree
with the tables; test_blocks.py checks the gateware's slices, test_firmware_header.py the
C macros of the generated header.
"""
import re
from pathlib import Path

import numpy as np
import pytest

from nnhil.gateware import layout, link
from nnhil.gateware.layout import BIAS, DESCRIPTOR, FLAGS, REQUANT, Field, LayerShape, Record
from nnhil.training import fixedpoint as fx

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [*sorted((ROOT / "gateware").glob("*.py")), *sorted((ROOT / "host").glob("*.py")),
           *sorted((ROOT / "firmware").glob("*.[ch]"))]
RECORDS = (DESCRIPTOR, BIAS, REQUANT)


def position_patterns():
    """Regexes of a record's bit position or mask written as a number: shifts by a field's
    offset within its 32-bit word (or within the record), slices and bit indices of the
    field, and its mask unless it is a whole byte or word (0xff and 0xffffffff are everyday
    values, not positions)."""
    pats = set()
    for record in RECORDS:
        for f in record:
            for off in {f.offset, f.offset % 32} - {0, 32, 64, 96}:
                pats.add(rf"(<<|>>)\s*{off}\b")
            end = f.offset + f.width
            pats.add(rf"\[\s*{f.offset or ''}\s*:\s*{end}\s*\]" if f.offset else rf"\[\s*0?\s*:\s*{end}\s*\]")
            if f.width not in (8, 32):
                pats.add(rf"0x0*{f.mask:x}\b")
    for f in FLAGS:
        pats.add(rf"\[\s*{DESCRIPTOR['flags'].offset + f.offset}\s*\]")
    return sorted(pats)


def hard_coded_positions(text):
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1)
            if any(re.search(p, line, re.IGNORECASE) for p in position_patterns())]


def test_the_check_finds_positions_written_out():
    """The old hand-written decoders, each of which the scan must flag."""
    for line in ["NextValue(c_out, d[16:32]),", "NextValue(pool, d[57] != 0),",
                 "mult.eq(self.bias_dat[32:48]),", "shift_in = self.bias_dat[48:54]",
                 "self.comb += bias.eq(self.bias_dat[:32])",
                 "uint32_t mult = rq & 0xffff, shift = (rq >> 16) & 0x3f;",
                 "words[:, 1] = layer.mult | (layer.shift << 16)",
                 "self.height | self.width << 8 | self.kernel << 16 | flags << 24"]:
        assert hard_coded_positions(line), line
    assert not hard_coded_positions("value = value << 32 | word; got.append(w & 0xFF)")


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_bit_positions_are_declared_once(path):
    text = path.read_text()
    if path.name == "layout.py":   # the declaration: every line but the field tables
        text = "\n".join("" if "Field(" in line else line for line in text.splitlines())
    assert hard_coded_positions(text) == [], (
        f"{path.name} spells out a bit position of a layout record: use the field tables "
        "of gateware/layout.py (field.bits in Migen, FIELD_GET in C, Record.encode in Python)")


def test_tables_do_not_overlap_and_fit_the_formats():
    with pytest.raises(ValueError, match="overlaps"):
        Record("bad", 32, [Field("a", 0, 8), Field("b", 4, 8)])
    with pytest.raises(ValueError, match="overlaps"):
        Record("bad", 32, [Field("a", 30, 4)])
    assert REQUANT["mult"].width == fx.MULT_BITS
    assert REQUANT["shift"].mask >= fx.SHIFT_MAX
    assert BIAS["bias"].width == fx.ACC_BITS
    assert [(f.name, f.offset - 32, f.width) for f in BIAS.fields[1:]] == \
        [(f.name, f.offset, f.width) for f in REQUANT]
    assert DESCRIPTOR.words == 4 and BIAS.words == 2 and REQUANT.words == 1


def edge_values(field):
    lo, hi = (-(1 << field.width - 1), (1 << field.width - 1) - 1) if field.signed else (0, field.mask)
    return [lo, hi, lo + 1, hi - 1, (lo + hi) // 2]


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: r.name)
def test_python_round_trip(record):
    """Each field at its extremes among neighbours at theirs: no field bleeds into another."""
    for k in range(5):
        values = {f.name: edge_values(f)[(k + i) % 5] for i, f in enumerate(record)}
        word = record.encode(**values)
        assert 0 <= word < 1 << record.width
        assert record.decode(word) == values
        assert record.from_words(record.to_words(word)) == word
        for f in record:   # each field lands on exactly its own bits
            alone = record.encode(**{g.name: values[f.name] if g is f else 0 for g in record})
            assert alone & ~(f.mask << f.offset) == 0
            assert (alone >> f.offset) & f.mask == values[f.name] & f.mask


def test_arrays_round_trip():
    rng = np.random.default_rng(0)
    bias = rng.integers(fx.ACC_MIN, fx.ACC_MAX + 1, 50)
    mult = rng.integers(0, fx.MULT_MAX + 1, 50)
    shift = rng.integers(fx.SHIFT_MIN, fx.SHIFT_MAX + 1, 50)
    d = BIAS.decode(BIAS.encode(bias=bias, mult=mult, shift=shift))
    for name, v in dict(bias=bias, mult=mult, shift=shift).items():
        np.testing.assert_array_equal(d[name], v)
    np.testing.assert_array_equal(REQUANT.decode(REQUANT.encode(mult=mult, shift=shift))["shift"], shift)


def test_a_value_that_does_not_fit_is_refused():
    with pytest.raises(ValueError, match="shift must be in 0..63, got 64"):
        REQUANT.encode(mult=1, shift=64)
    with pytest.raises(ValueError, match="bias must be in"):
        BIAS.encode(bias=1 << 31, mult=0, shift=1)
    with pytest.raises(ValueError, match="kernel must be in 0..255"):
        LayerShape(1, 1, 1, 256, 1).encode(0, 0)
    with pytest.raises(ValueError, match="takes the fields"):
        REQUANT.encode(mult=1)


def test_layer_shape_round_trip():
    for shape in [LayerShape(3, 5, 7, 2, 9, pool=True), LayerShape.dense(784, 128),
                  LayerShape((1 << layout.DIM_BITS) - 1, 255, 255, 255, (1 << layout.DIM_BITS) - 1,
                             pool=True, logits=True)]:
        words = shape.encode(0xFFFF, 12345, 0xFFFF)
        assert len(words) == 4 and all(0 <= w < 1 << 32 for w in words)
        assert LayerShape.decode(words) == (shape, 0xFFFF, 12345)
        assert layout.out_base(words) == 0xFFFF
    # the unused flag bits are ignored
    words = LayerShape.dense(4, 2).encode(0, 0)
    flags = DESCRIPTOR["flags"]
    unused = flags.mask & ~(layout.FLAG_LOGITS | layout.FLAG_POOL)
    words[flags.offset // 32] |= unused << flags.offset % 32
    assert LayerShape.decode(words)[0] == LayerShape.dense(4, 2)



def spelled_baud_rates(text):
    """Lines about a serial link that write link.BAUD as a number (2_000_000, 2000000, 2e6)."""
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1)
            if re.search(r"baud|uart", line, re.IGNORECASE)
            and any(float(t.replace("_", "")) == link.BAUD
                    for t in re.findall(r"\b\d[\d_]*(?:\.\d+)?(?:e\d+)?\b", line, re.IGNORECASE))]


def test_the_baud_scan_finds_rates_written_out():
    for line in ["uart_baudrate=2_000_000", "BAUD = 2000000", 'help="baud rate (2e6)"']:
        assert spelled_baud_rates(line), line
    assert not spelled_baud_rates("START_CYCLES = 2_000_000") + spelled_baud_rates("baud=115200")


@pytest.mark.parametrize("path", [*SOURCES, ROOT / "conftest.py"], ids=lambda p: str(p.relative_to(ROOT)))
def test_the_baud_rate_is_declared_once(path):
    if path.name == "link.py":
        return
    assert spelled_baud_rates(path.read_text()) == [], (
        f"{path.name} writes the board link's baud rate as a number: use gateware.link.BAUD")
