"""The CPU baselines' cache: the firmware's C inferences on the simulated SoC's CPU, measured
once per SoC build, firmware, model, code and image, then reused.

A CPU baseline (images through the firmware's plain or optimised C, the speedups' yardstick)
takes millions of simulated cycles an image: about 20 M for a CNN's two images in both codes,
a fifth of the demo's simulation. What it gives depends only on what the SoC runs: the logits
on the model and the images, the cycles on those and on the firmware binary and the SoC build
(CPU, caches, bus), and by a few hundred cycles on the host's polling of the mailbox over
the bridge, which shares the bus. A figure from the cache is one such measurement, and the
runs that use it (``nnhil demo``'s, through host.run.run_job) say so.

An entry is keyed by the SHA-256 of this format's version, the sim build's key (its hash, in
its build.json), the firmware binary's bytes, the code, the model as the firmware receives
it (host.cpu_model.pack_cpu_model's blob: every weight, bias and requantization word and the
address it is put at) and the images' bytes: a change to any of them is a miss. It is an .npz
in ``$NNHIL_HOME/cpu-baselines/``, written to a temporary file beside it and renamed into place,
so concurrent writers (pytest-xdist workers, two demos) each put a whole file and a reader sees
a whole entry or none; an unreadable entry is a miss that the next measurement replaces.
Only the simulation is cached: a board's gateware is whatever was programmed, which no key
names, and it runs a C inference in milliseconds anyway.

The API: :func:`cpu_infer` (a DUT's ``cpu_infer`` through the cache, giving a :class:`Baseline`),
:func:`lookup` (the entry alone, or None) and :func:`describe` (how a run says what was cached).
To measure everything again, remove the directory.
"""
import dataclasses
import datetime
import hashlib
import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from nnhil.training import home

from .cpu_model import pack_cpu_model
from .firmware_abi import CPU_CODES, FirmwareError
from .results import Results

VERSION = 1                   # of the key and the entry's layout: a change makes every entry a miss
FIELDS = tuple(f.name for f in dataclasses.fields(Results))


@dataclasses.dataclass(frozen=True)
class Baseline:
    """A C inference's Results, and when it was measured if it came from the cache (else None)."""
    results: Results
    cached: str = None        # the UTC time the entry was written, ISO 8601
    path: Path = None         # the entry's file (None when the run is not cacheable)


def root():
    """Where the entries live: ``$NNHIL_HOME/cpu-baselines``."""
    return home.root() / "cpu-baselines"


def key(soc, firmware, code, blob, images):
    """The entry's name: a hex SHA-256 of everything a C inference's figures depend on.

    ``soc`` names the SoC build (the sim build's hash), ``firmware`` is the binary's bytes,
    ``code`` one of CPU_CODES, ``blob`` the model as packed for the firmware, ``images`` uint8
    [n, pixels]. Each part is framed by its length, so no two inputs give the same stream."""
    if code not in CPU_CODES:
        raise FirmwareError(f"no CPU inference {code!r}: expected one of {', '.join(CPU_CODES)}")
    images = np.ascontiguousarray(images, dtype=np.uint8)
    h = hashlib.sha256()
    for part in (str(VERSION).encode(), soc.encode(), bytes(firmware), code.encode(), bytes(blob),
                 json.dumps(images.shape).encode(), images.tobytes()):
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.hexdigest()


def load(path):
    """The Baseline stored at ``path``, or None if there is none or it is unreadable."""
    try:
        with np.load(path, allow_pickle=False) as f:
            results = Results(*(np.array(f[name]) for name in FIELDS))
            written = str(f["written"])
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):   # missing, torn, foreign
        return None
    if len({len(getattr(results, name)) for name in FIELDS}) != 1:
        return None
    return Baseline(results, written, Path(path))


def store(path, results):
    """Write ``results`` as the entry at ``path``: a temporary file renamed into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    written = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".npz", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, written=written, **{name: getattr(results, name) for name in FIELDS})
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def soc_key(dut):
    """The key's name of ``dut``'s SoC: its sim build's hash, or None when it is not a keyed
    sim build (a board, or a --build-dir without build.json)."""
    if dut.target != "sim":
        return None
    try:
        return json.loads((Path(dut.build_dir) / "build.json").read_text())["hash"]
    except (OSError, ValueError, KeyError):
        return None


def _path(dut, model, images, code):
    """The entry's file of ``dut.cpu_infer(model, images, code)``, or None where there is no cache."""
    soc = soc_key(dut)
    if soc is None:
        return None
    fw = dut.firmware
    images = np.asarray(images, dtype=np.uint8).reshape(len(images), -1)
    return root() / f"{key(soc, fw.binary.read_bytes(), code, pack_cpu_model(model, fw.data), images)}.npz"


def cpu_infer(dut, model, images, code="optimised"):
    """``dut.cpu_infer(model, images, code)`` through the cache: a :class:`Baseline`.

    A hit returns the stored Results without running anything on the SoC; a miss runs the C
    inference and stores what it gave."""
    hit = lookup(dut, model, images, code)
    if hit is not None:
        return hit
    results = dut.cpu_infer(model, images, code=code)
    path = _path(dut, model, images, code)
    if path is not None:
        store(path, results)
    return Baseline(results, path=path)


def lookup(dut, model, images, code):
    """The cached :class:`Baseline` of ``dut.cpu_infer(model, images, code)``, or None."""
    path = _path(dut, model, images, code)
    hit = None if path is None else load(path)
    return hit if hit is not None and len(hit.results) == len(images) else None


def describe(times, runs):
    """'3 of 4 C runs from the cache of $NNHIL_HOME/cpu-baselines, measured 2026-12-07 21:58 UTC' from
    the entries' write times (ISO 8601) and the number of runs."""
    when = sorted({datetime.datetime.fromisoformat(t).strftime("%Y-%m-%d %H:%M") for t in times})
    span = when[0] if len(when) == 1 else f"{when[0]} to {when[-1]}"
    return f"{len(times)} of {runs} C runs from the cache of {root()}, measured {span} UTC"
