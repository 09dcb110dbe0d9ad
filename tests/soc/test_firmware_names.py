"""The C names the firmware compiles against equal their one Python declaration.

The firmware takes every fact it shares with the gateware and the host from generated headers:
the layout records' fields, the flag bits, the mailbox and the result rows from mailbox.h
(host/firmware_abi.py), the build's configuration from soc.h (gateware.soc.layout_constants),
the CSRs' bit fields from csr.h (gateware/accelerator.py's CSRFields) and the window's base from
mem.h. This compiles a program against those very headers (a sim build's and mailbox_header())
with the host's C compiler, prints each name, and compares it with what it is derived from
here: gateware/layout.py's field tables and constants, the build's AccelConfig, the mailbox's
declarations. Every generated name the firmware's sources use must be among the checked ones,
so a new use is checked too.
"""
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from nnhil.gateware import layout, soc
from nnhil.host import firmware_abi as abi
from nnhil.host import firmware_build

pytestmark = pytest.mark.sim

CC = shutil.which("cc") or shutil.which("gcc")
HEADERS = ("generated/soc.h", "generated/mem.h", "generated/csr.h")
RECORDS = {"DESC": layout.DESCRIPTOR, "BIAS": layout.BIAS, "REQUANT": layout.REQUANT}


def record_names(prefix, record):
    """A record's fields as the C names must place them: bit offset = 32 * WORD + OFFSET."""
    out = {f"{prefix}_WORDS": -(-record.width // 32)}
    for f in record:
        name = f"{prefix}_{f.name.upper()}"
        out.update({f"{name}_WORD": f.offset // 32, f"{name}_OFFSET": f.offset % 32,
                    f"{name}_MASK": (1 << f.width) - 1})
    return out


def csr_field(register, field, mask_or_shift, size=1):
    """csr.h's CSR_NNHIL_<REGISTER>_<FIELD>_OFFSET/_SIZE of a layout bit (size 1) or shift."""
    offset = mask_or_shift.bit_length() - 1 if size == 1 else mask_or_shift
    name = f"CSR_NNHIL_{register}_{field}"
    return {f"{name}_OFFSET": offset, f"{name}_SIZE": size}


def expected(cfg):
    """Every C name the firmware may use from the generated headers, from its Python declaration."""
    names = {}
    for prefix, record in RECORDS.items():
        names.update(record_names(prefix, record))
    names.update({f"FLAG_{f.name.upper()}": 1 << f.offset for f in layout.FLAGS})
    assert (names["FLAG_LOGITS"], names["FLAG_POOL"]) == (layout.FLAG_LOGITS, layout.FLAG_POOL)
    names.update(csr_field("CONTROL", "START", layout.CTRL_START))
    names.update(csr_field("CONTROL", "SOFT_RESET", layout.CTRL_SOFT_RESET))
    names.update(csr_field("STATUS", "BUSY", layout.STATUS_BUSY))
    names.update(csr_field("STATUS", "DONE", layout.STATUS_DONE))
    names.update(csr_field("STATUS", "ERROR", layout.STATUS_ERROR_SHIFT, layout.STATUS_ERROR_BITS))
    names["NNHIL_BASE"] = soc.ORIGIN
    accel = {"WINDOW_WORDS": cfg.window_words, "SLOT_WORDS": cfg.slot_words, "SLOT_LOGITS": cfg.slot_logits,
             **{k.upper(): v for k, v in cfg.to_dict().items()}}
    for region in layout.REGIONS:
        accel[f"{region.upper()}_OFFSET"] = 4 * cfg.region_base[region]
        accel[f"{region.upper()}_WORDS"] = cfg.region_words[region]
    names.update({f"ACCEL_{k}": v for k, v in accel.items()})
    names.update({"FIRMWARE_MAX": abi.FIRMWARE_MAX, "MAILBOX_OFFSET": abi.MAILBOX_OFFSET,
                  "FW_MAGIC": abi.FW_MAGIC, "MAX_WIDTH": abi.MAX_WIDTH, "MAX_DIM": (1 << layout.DIM_BITS) - 1,
                  "LAYER_WORDS": len(abi.LAYER_FIELDS), "RESULT_HEADER": len(abi.RESULT_HEADER),
                  "MB_WORDS": len(abi.MAILBOX)})
    names.update({f"LAYER_{n.upper()}": i for i, n in enumerate(abi.LAYER_FIELDS)})
    names.update({f"RESULT_{n.upper()}": i for i, n in enumerate(abi.RESULT_HEADER)})
    names.update({f"MB_{n.upper()}": abi.MB[n] // 4 for n in abi.MAILBOX})
    names.update({"CMD_CPU_INFER": abi.CPU_CODES["plain"], "CMD_CPU_INFER_OPTIMISED": abi.CPU_CODES["optimised"],
                  "CMD_ACCEL_BATCH": abi.CMD_ACCEL_BATCH})
    names.update({"STATUS_OK": abi.STATUS_OK, "STATUS_BAD_COMMAND": abi.STATUS_BAD_COMMAND,
                  "STATUS_BAD_MODEL": abi.STATUS_BAD_MODEL, "STATUS_ACCEL_ERROR": abi.STATUS_ACCEL_ERROR})
    return names


@pytest.fixture(scope="module")
def headers(sim_build, tmp_path_factory):
    """(directory holding mailbox.h, the include flags of the sim build's generated headers)."""
    d = tmp_path_factory.mktemp("names")
    (d / "mailbox.h").write_text(abi.mailbox_header())
    dirs = firmware_build._path_overrides(sim_build.dir)          # this environment's LiteX, as the build
    flags = [f"-I{d}", f"-I{dirs['BUILDINC_DIRECTORY']}", f"-I{dirs['SOC_DIRECTORY']}/software/include",
             f"-I{dirs['CPU_DIRECTORY']}"]
    return d, flags


def ours(d, flags):
    """The object-like macros of the generated headers that are this project's: mailbox.h's, and
    the accelerator's in soc.h, mem.h and csr.h (the host preprocessor's list)."""
    (d / "all.c").write_text("".join(f"#include <{h}>\n" for h in HEADERS) + '#include "mailbox.h"\n')
    r = subprocess.run([CC, "-E", "-dM", *flags, str(d / "all.c")], capture_output=True, text=True, check=True)
    mailbox = set(re.findall(r"^#define (\w+)[ \t]", abi.mailbox_header(), re.M))
    return mailbox | {n for n in re.findall(r"^#define (\w+)[ \t]", r.stdout, re.M)
                      if n.startswith(("ACCEL_", "CSR_NNHIL_", "NNHIL_"))}


def c_values(d, flags, names):
    """{name: value} as a program compiled against the headers prints them."""
    lines = ["#include <stdio.h>", *(f"#include <{h}>" for h in HEADERS), '#include "mailbox.h"',
             "int main(void)", "{"]
    lines += [f'\tprintf("{n} %llu\\n", (unsigned long long)({n}));' for n in sorted(names)]
    lines += ["\treturn 0;", "}"]
    (d / "names.c").write_text("\n".join(lines) + "\n")
    subprocess.run([CC, "-std=gnu11", "-Wall", "-Werror", *flags, "-o", str(d / "names"), str(d / "names.c")],
                   check=True, capture_output=True, text=True)
    out = subprocess.run([str(d / "names")], check=True, capture_output=True, text=True).stdout
    return {n: int(v) for n, v in (line.split() for line in out.splitlines())}


def firmware_tokens():
    """The identifiers of firmware/'s C sources, comments left out."""
    text = "".join(p.read_text() for p in sorted(firmware_build.FIRMWARE_DIR.iterdir())
                   if p.suffix in (".c", ".h"))
    text = re.sub(r"/\*.*?\*/|//[^\n]*", " ", text, flags=re.S)
    return set(re.findall(r"\b[A-Za-z_]\w*\b", text))


def test_the_c_names_equal_their_python_declaration(sim_build, headers):
    if CC is None:
        pytest.fail("no C compiler (cc) on PATH: `make setup` installs build-essential")
    cfg = layout.AccelConfig(**json.loads((Path(sim_build.dir) / "build.json").read_text())["key"]["accel"])
    want = expected(cfg)
    assert c_values(*headers, want) == want


def test_every_generated_name_the_firmware_uses_is_checked(headers):
    """A token the firmware pastes (FIELD_GET(w, DESC_C_OUT), CSR_FIELD_GET(s, NNHIL_STATUS_DONE))
    stands for the names it is pasted into."""
    if CC is None:
        pytest.fail("no C compiler (cc) on PATH: `make setup` installs build-essential")
    generated, used = ours(*headers), set()
    for token in firmware_tokens():
        used |= {token, *(token + s for s in ("_WORD", "_OFFSET", "_MASK")),
                 *(f"CSR_{token}{s}" for s in ("_OFFSET", "_SIZE"))} & generated
    unchecked = sorted(used - set(expected(layout.AccelConfig())))
    assert not unchecked, f"the firmware uses generated names this test does not check: {unchecked}"
    assert {"DESC_C_OUT_OFFSET", "DESC_C_OUT_MASK", "DESC_C_OUT_WORD", "DESC_WORDS", "FLAG_POOL",
            "CSR_NNHIL_STATUS_ERROR_SIZE", "CSR_NNHIL_CONTROL_START_OFFSET", "RESULT_CPU_CYCLES",
            "ACCEL_SLOT_WORDS", "NNHIL_BASE", "MB_BUILD_ID"} <= used
