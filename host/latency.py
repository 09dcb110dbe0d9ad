"""Latency baselines: the cycle counts a model takes on a platform, kept in the repository.

A baseline belongs to a model (its architecture and dataset: the CPU's cycles depend on the
weights) on a platform (the SoC build's ``config_platform_name``: "sim", or a board's, whose
DDR3 main RAM changes the CPU's cycles), and records what was measured: the accelerator
program's layer shapes and the build configuration. A run of another program or
configuration differs from its baseline.

The accelerator's cycles are deterministic, so they must match exactly: any change is a
regression or an intended improvement, to be recorded with ``--update-baselines``. The
CPU-measured cycles (the firmware's batch loop, the CPU inference) share the bus with the
host's bridge traffic and vary by a few cycles, so they get a relative tolerance.

The baselines file is the caller's (the pytest plugin's ``--baselines``, or a repository's own).
"""
import dataclasses
import json
import os
from pathlib import Path

import numpy as np

from nnhil.gateware import layout, variants
from nnhil.training import filelock

from . import history

EXACT = ("accelerator_cycles",)
TOLERANCE = 0.02
LOCK_TIMEOUT_S = 30           # an update holds the lock for one read and one write of the file


def key(arch, dataset, platform, variant=variants.DEFAULT):
    """'cnn on mnist, sim': the architecture (training.workflow.ARCHS), dataset and platform, and
    the Arty variant (gateware.variants) unless the default: 'mlp on fashion-mnist, sim, a7-100'
    is the A7-100's sim twin."""
    return f"{arch} on {dataset}, {platform}" + ("" if variant == variants.DEFAULT else f", {variant}")


def figures(batch, cpu):
    """The cycle figures a baseline and a run's record keep: each the median over the images
    of an accelerator batch (host.results.Results) and of the CPU runs ({"optimised": Results,
    "plain": Results})."""
    return {"accelerator_cycles": int(np.median(batch.cycles)),
            "batch_cycles_per_image": int(np.median(batch.driver_cycles)),
            "cpu_optimised_cycles_per_inference": int(np.median(cpu["optimised"].driver_cycles)),
            "cpu_plain_cycles_per_inference": int(np.median(cpu["plain"].driver_cycles))}


def setup(compiled):
    """What a measurement ran: the layer shapes and build configuration of a
    gateware.compiled.CompiledModel."""
    return {"program": [dataclasses.asdict(s) for s in compiled.shapes], "config": compiled.config.to_dict()}


def program_of(baseline):
    """(layout.LayerShape list, layout.AccelConfig) a baseline was recorded with."""
    return ([layout.LayerShape(**s) for s in baseline["setup"]["program"]],
            layout.AccelConfig(**baseline["setup"]["config"]))


def load(path):
    """The baselines of a file ({} if there is none), measured figures under today's names
    (a file recorded before a rename: host.history.RENAMED)."""
    path = Path(path)
    data = json.loads(path.read_text()) if path.exists() else {}
    for base in data.values():
        base["measured"] = history.upgrade(base["measured"])
    return data


def update(name, ran, measured, path):
    """Record one baseline; under the file's lock, so the workers of ``pytest -n`` that record
    others at the same time each keep theirs."""
    path = Path(path)
    with filelock.held(path.with_name(path.name + ".lock"), LOCK_TIMEOUT_S, f"updating {path}"):
        data = load(path)
        data[name] = {"setup": ran, "measured": dict(measured)}
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
        tmp.replace(path)            # a reader sees the old file or the new one, never half of it


def _describe(ran):
    shapes = "; ".join(str(layout.LayerShape(**s)) for s in ran["program"])
    return f"{shapes} on {','.join(f'{k}={v}' for k, v in ran['config'].items())}"


def compare(name, ran, measured, baselines, source="the baselines"):
    """Lines describing every difference from the baseline (empty when within bounds); ``source``
    names the file the baselines came from."""
    base = baselines.get(name)
    if base is None:
        return [f"no baseline for {name}: record one with --update-baselines"]
    if base["setup"] != ran:
        lines = [f"the baseline was recorded for {_describe(base['setup'])}", f"this run is {_describe(ran)}"]
    else:
        lines = []
        for metric, now in sorted(measured.items()):
            was = base["measured"].get(metric)
            if was is None:
                lines.append(f"{metric}: no baseline, now {now}")
            elif metric in EXACT and now != was:
                lines.append(f"{metric}: baseline {was}, now {now} ({now - was:+d}, must match exactly)")
            elif metric not in EXACT and abs(now - was) > TOLERANCE * was:
                lines.append(f"{metric}: baseline {was}, now {now} ({(now - was) / was:+.1%}, "
                             f"tolerance {TOLERANCE:.0%})")
    if lines:
        lines = [f"latency differs from the baseline for {name} ({source}):"] + \
                [f"  {line}" for line in lines] + \
                ["  if the change is intended, rerun with --update-baselines and commit the file"]
    return lines
