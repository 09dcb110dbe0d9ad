"""The layout records through the C macros of the generated firmware header (host gcc).

The firmware decodes the requantization word with FIELD_GET and the REQUANT_* macros of
mailbox.h; this compiles a program that decodes and encodes every record with the same
macros and checks both directions against gateware.layout.
"""
import shutil
import subprocess

import numpy as np
import pytest

from nnhil.gateware.layout import BIAS, DESCRIPTOR, REQUANT
from nnhil.host.firmware_abi import HEADER_RECORDS, mailbox_header
from nnhil.training import fixedpoint as fx

CC = shutil.which("gcc") or shutil.which("cc")


def c_program():
    """``prog PREFIX get w0 w1 ...`` prints the fields; ``prog PREFIX put v0 v1 ...`` the words."""
    out = ["#include <stdint.h>", "#include <stdio.h>", "#include <stdlib.h>", "#include <string.h>",
           '#include "mailbox.h"', "", "int main(int argc, char **argv)", "{",
           "\tuint32_t in[16], w[4] = {0};",
           "\tfor (int i = 3; i < argc; i++) in[i - 3] = (uint32_t)strtoul(argv[i], 0, 0);"]
    for prefix, record in HEADER_RECORDS.items():
        fields = [f"{prefix}_{f.name.upper()}" for f in record]
        out.append(f'\tif (!strcmp(argv[1], "{prefix}") && !strcmp(argv[2], "get")) {{')
        out += [f'\t\tprintf("%u\\n", (unsigned)FIELD_GET(in[{f}_WORD], {f}));' for f in fields]
        out.append("\t\treturn 0;\n\t}")
        out.append(f'\tif (!strcmp(argv[1], "{prefix}") && !strcmp(argv[2], "put")) {{')
        out += [f"\t\tw[{f}_WORD] |= FIELD_PREP({f}, in[{i}]);" for i, f in enumerate(fields)]
        out += [f'\t\tfor (int i = 0; i < {record.words}; i++) printf("%u\\n", (unsigned)w[i]);',
                "\t\treturn 0;\n\t}"]
    out += ["\treturn 1;", "}"]
    return "\n".join(out) + "\n"


@pytest.fixture(scope="module")
def codec(tmp_path_factory):
    if CC is None:
        pytest.fail("no C compiler (gcc) on PATH: `make setup` installs build-essential")
    d = tmp_path_factory.mktemp("header")
    (d / "mailbox.h").write_text(mailbox_header())
    (d / "codec.c").write_text(c_program())
    subprocess.run([CC, "-std=c11", "-Wall", "-Werror", "-o", str(d / "codec"), str(d / "codec.c")],
                   check=True, capture_output=True, text=True)

    def run(prefix, mode, values):
        r = subprocess.run([str(d / "codec"), prefix, mode, *map(str, values)],
                           check=True, capture_output=True, text=True)
        return [int(v) for v in r.stdout.split()]
    return run


def cases(record):
    """Field values: each field at its extremes, in turn, with the others at theirs."""
    rng = np.random.default_rng(len(record.name))
    out = []
    for k in range(4):
        v = {}
        for i, f in enumerate(record):
            lo = -(1 << f.width - 1) if f.signed else 0
            hi = (1 << f.width - 1) - 1 if f.signed else f.mask
            v[f.name] = [lo, hi, int(rng.integers(lo, hi + 1)), hi if k % 2 else lo][(i + k) % 4]
        out.append(v)
    return out


@pytest.mark.parametrize("prefix", sorted(HEADER_RECORDS))
def test_c_round_trip(codec, prefix):
    record = HEADER_RECORDS[prefix]
    for values in cases(record):
        words = record.to_words(record.encode(**values))
        unsigned = [values[f.name] & f.mask for f in record]
        assert codec(prefix, "get", words) == unsigned, values     # Python encodes, C decodes
        assert codec(prefix, "put", unsigned) == words, values     # C encodes, Python decodes
        assert record.decode(record.from_words(codec(prefix, "put", unsigned))) == values


def test_the_header_covers_every_record():
    assert set(HEADER_RECORDS.values()) == {DESCRIPTOR, BIAS, REQUANT}
    header = mailbox_header()
    assert f"#define REQUANT_SHIFT_MASK 0x{REQUANT['shift'].mask:x}u" in header
    assert REQUANT["shift"].mask >= fx.SHIFT_MAX
