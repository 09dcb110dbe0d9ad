"""Compile the nnhil firmware (firmware/) against a SoC build's headers and libraries.

A build is keyed by the content of everything that shapes it: the firmware's sources and
Makefile, the generated mailbox.h, the SoC build's generated headers and the libraries it
links, the cross compiler's version and flags as make expands them, the LiteX and picolibc
versions, and the ``defines``. It lives in ``$NNHIL_HOME/build/firmware/<key>/``, built in a
temporary directory from a copy of the sources and renamed into place under a lock, so
checkouts, venvs and pytest-xdist workers sharing one home never see a half-built firmware,
never rebuild by file dates, and never depend on another checkout's files. The key's first
32 bits are compiled in (``FW_BUILD_ID``) and recorded in ``build.json`` beside the binary:
host.firmware reads the ID back from the running firmware and refuses any other binary.
"""
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from nnhil.training import filelock, home

from .firmware_abi import FIRMWARE_MAX, FirmwareError, mailbox_header

FIRMWARE_DIR = Path(__file__).resolve().parent.parent / "firmware"
BINARY = "nnhil_fw.bin"
RECORD = "build.json"              # {"id": FW_BUILD_ID, "key": what the build was keyed by}
BUILD_HEADER = "build.h"           # the defines and FW_BUILD_ID, included in every unit
SOURCE_SUFFIXES = (".c", ".h", ".S", ".ld")          # and the Makefile: what the package ships
KEEP = (BINARY, "nnhil_fw.elf", "nnhil_fw.elf.map", RECORD, BUILD_HEADER, "mailbox.h")
LIBRARIES = ("libbase/libbase.a", "libc/libc.a")     # of the SoC build, linked in
KEY_DIGITS = 16                    # hex digits of the key's SHA-256 naming a build's directory
ID_DIGITS = 8                      # of those, the first: FW_BUILD_ID, one mailbox word
C_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def root():
    """Where the keyed firmware builds live: ``$NNHIL_HOME/build/firmware``."""
    return home.builds() / "firmware"


def generated_headers(soc_dir):
    """The headers the SoC build generated for its software, which the firmware includes: its
    CSR and memory maps and variables.mak, and picolibc's configuration."""
    software = Path(soc_dir) / "software"
    return sorted(p for p in [*(software / "include" / "generated").iterdir(), *(software / "libc").glob("*.h")]
                  if p.is_file())


def build_id(binary):
    """The FW_BUILD_ID a firmware binary made by :func:`build_firmware` was compiled with."""
    record = Path(binary).parent / RECORD
    try:
        return json.loads(record.read_text())["id"]
    except (OSError, ValueError, KeyError) as e:
        raise FirmwareError(f"no build record {record} beside the firmware ({e}): build it with "
                            f"build_firmware(), which keys and records each build") from None


def check_defines(defines):
    """The C macros of ``defines`` as ``#define`` lines; ValueError naming a bad one."""
    lines = []
    for name, value in sorted((defines or {}).items()):
        if not isinstance(name, str) or not C_NAME.match(name) or name.startswith("FW_BUILD_"):
            raise ValueError(f"firmware define {name!r}: expected a C identifier (not FW_BUILD_*)")
        if value is None or value is True:
            lines.append(f"#define {name}")
        elif isinstance(value, int) and not isinstance(value, bool):
            lines.append(f"#define {name} {value}")
        elif isinstance(value, str) and "\n" not in value:
            lines.append(f"#define {name} {value}")
        else:
            raise ValueError(f"firmware define {name}={value!r}: expected an int, a one-line string, "
                             f"True or None")
    return lines


def _variables(soc_dir):
    """The SoC build's variables.mak as a dict (LiteX writes NAME=VALUE lines)."""
    path = soc_dir / "software" / "include" / "generated" / "variables.mak"
    try:
        text = path.read_text()
    except OSError:
        raise FirmwareError(f"no {path}: {soc_dir} is not a finished SoC build (build it with "
                            f"'nnhil build')") from None
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def _path_overrides(soc_dir):
    """make variables that point the build at this environment's LiteX and picolibc.

    A SoC build shared through the home records the directories of the venv that made it,
    perhaps another checkout's since deleted; the firmware takes LiteX's headers and
    common.mak from the LiteX this process runs, which the key records by version."""
    import pythondata_software_picolibc as picolibc

    old = _variables(soc_dir)
    soc = str(Path(importlib.util.find_spec("litex").origin).parent / "soc")
    out = {"BUILDINC_DIRECTORY": str(soc_dir / "software" / "include"),
           "PICOLIBC_DIRECTORY": picolibc.data_location}
    old_soc = old.get("SOC_DIRECTORY", soc)
    for name, value in old.items():
        if name.endswith("_DIRECTORY") and name not in out and value.startswith(old_soc):
            out[name] = soc + value[len(old_soc):]
    return out


def _make(soc_dir, overrides, cwd, target, timeout):
    cmd = ["make", "-s", "-C", str(cwd), "-f", "Makefile", f"BUILD_DIR={soc_dir}", "SRC_DIR=.",
           f"FIRMWARE_MAX=0x{FIRMWARE_MAX:x}", *(f"{k}={v}" for k, v in sorted(overrides.items())), target]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise FirmwareError(f"the firmware build ({target}) did not finish in {timeout} s") from None
    if r.returncode:
        raise FirmwareError(f"the firmware build ({target}) failed:\n{r.stdout[-3000:]}{r.stderr[-3000:]}")
    return r.stdout


def _digest(files):
    h = hashlib.sha256()
    for name, data in sorted(files.items()):
        h.update(f"{name}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()


def _write_sources(where, sources, header):
    for name, data in sources.items():
        (where / name).write_bytes(data)
    (where / "mailbox.h").write_text(mailbox_header())
    (where / BUILD_HEADER).write_text(header)


def _key(soc_dir, sources, define_lines, overrides, timeout):
    """What shapes the firmware, and its digest. The toolchain is asked through the firmware's
    own Makefile (in a scratch copy), so the flags are the ones the build will use; the paths
    of this environment are replaced by their names (their content is keyed by version)."""
    with tempfile.TemporaryDirectory(prefix="nnhil-fw-key-") as scratch:
        _write_sources(Path(scratch), sources, "")
        toolchain = _make(soc_dir, overrides, scratch, "toolchain", timeout)
    for name, path in sorted(overrides.items(), key=lambda kv: -len(kv[1])):
        toolchain = toolchain.replace(path, f"$({name})")
    toolchain = toolchain.replace(str(soc_dir), "$(BUILD_DIR)")
    try:
        libraries = {n: (soc_dir / "software" / n).read_bytes() for n in LIBRARIES}
    except OSError as e:
        raise FirmwareError(f"{soc_dir} lacks a library the firmware links ({e}): not a finished "
                            f"SoC build") from None
    key = {
        "sources": _digest(sources),
        "mailbox.h": _digest({"mailbox.h": mailbox_header().encode()}),
        "generated": _digest({str(p.relative_to(soc_dir)): p.read_bytes() for p in generated_headers(soc_dir)}),
        "libraries": _digest(libraries),
        "toolchain": toolchain,
        "packages": {p: importlib.metadata.version(p) for p in ("litex", "pythondata-software-picolibc")},
        "firmware_max": FIRMWARE_MAX,
        "defines": define_lines,
    }
    return key, hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:KEY_DIGITS]


def build_firmware(soc_dir, defines=None, timeout=120):
    """The firmware for the SoC build ``soc_dir`` with the C macros ``defines`` (a dict: name ->
    int, string, or True/None for a bare #define), built or taken from its keyed directory;
    returns the .bin path. A builder of the same key waits for the first (at most one build)."""
    soc_dir = Path(soc_dir).resolve()
    lines = check_defines(defines)                                     # bad input: before any work
    sources = {p.name: p.read_bytes() for p in sorted(FIRMWARE_DIR.iterdir())
               if p.is_file() and (p.suffix in SOURCE_SUFFIXES or p.name == "Makefile")}
    overrides = _path_overrides(soc_dir)
    key, digest = _key(soc_dir, sources, lines, overrides, timeout)
    final = root() / digest
    if (final / RECORD).exists():                                      # renamed in whole: complete
        return final / BINARY
    with filelock.held(root() / f"{digest}.lock", 2 * timeout, f"building firmware {digest}"):
        if (final / RECORD).exists():                                  # another process built it
            return final / BINARY
        for leftover in root().glob(f".{digest}-*"):                   # of a build that was killed
            shutil.rmtree(leftover, ignore_errors=True)
        fw_id = int(digest[:ID_DIGITS], 16)
        header = "\n".join(["/* Generated by host/firmware_build.py: do not edit. */", "#pragma once",
                            f"#define FW_BUILD_ID 0x{fw_id:08x}u", *lines]) + "\n"
        work = Path(tempfile.mkdtemp(prefix=f".{digest}-", dir=root()))
        try:
            _write_sources(work, sources, header)
            _make(soc_dir, overrides, work, "all", timeout)
            for p in work.iterdir():                                   # objects, deps, sources
                if p.name not in KEEP:
                    p.unlink()
            (work / RECORD).write_text(json.dumps({"id": fw_id, "key": key}, indent=2))
            work.chmod(0o755)                                          # mkdtemp's is private
            os.rename(work, final)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
    return final / BINARY
