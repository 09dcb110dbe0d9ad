"""Compile the nnhil firmware (firmware/) against a SoC build's headers and libraries."""
import hashlib
import subprocess
from pathlib import Path

from nnhil.training import filelock

from .firmware_abi import FIRMWARE_MAX, FirmwareError, mailbox_header

FIRMWARE_DIR = Path(__file__).resolve().parent.parent / "firmware"


def build_firmware(soc_dir, defines=None, timeout=120):
    """Compile the firmware against a SoC build's headers and libraries; returns the .bin path.
    ``defines``, a dict of C macros, builds a variant in a directory of its own (the
    selftest's firmware faults).

    One process at a time per build directory (the workers of ``pytest -n`` share it); another
    waits for that build, then finds the firmware up to date."""
    soc_dir = Path(soc_dir).resolve()
    flags = " ".join(f"-D{k}={v}" for k, v in sorted((defines or {}).items()))
    out = soc_dir / ("firmware" if not flags else
                     "firmware-" + hashlib.sha256(flags.encode()).hexdigest()[:12])
    out.mkdir(exist_ok=True)
    with filelock.held(out / ".build.lock", 2 * timeout, f"building the firmware in {out}"):
        header = out / "mailbox.h"
        if not header.exists() or header.read_text() != mailbox_header():
            header.write_text(mailbox_header())
        cmd = ["make", "-s", "-C", str(out), "-f", str(FIRMWARE_DIR / "Makefile"),
               f"BUILD_DIR={soc_dir}", f"SRC_DIR={FIRMWARE_DIR}", f"FIRMWARE_MAX=0x{FIRMWARE_MAX:x}",
               f"FIRMWARE_DEFINES={flags}"]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise FirmwareError(f"the firmware build did not finish in {timeout} s")
    if r.returncode:
        raise FirmwareError(f"the firmware build failed:\n{r.stdout[-3000:]}{r.stderr[-3000:]}")
    return out / "nnhil_fw.bin"
