"""Latency baselines: the cycle counts a model takes on a build configuration, kept in the repository.

The accelerator's cycles are deterministic, so they must match exactly: any change is a
regression or an intended improvement, to be recorded with ``--update-baselines``. The
CPU-measured cycles (the firmware's batch loop, the CPU inference) share the bus with the
host's bridge traffic and vary by a few cycles, so they get a relative tolerance.
"""
import json
from pathlib import Path

from training.intmodel import Conv2D, MaxPool2D

BASELINES = Path(__file__).resolve().parent.parent / "tests" / "baselines" / "latency.json"
EXACT = ("accelerator_cycles",)
TOLERANCE = 0.02


def key(model, cfg):
    """Baselines are per model shape and per accelerator build configuration."""
    shape = " ".join(_describe(layer) for layer in model.layers)
    build = ",".join(f"{k}={v}" for k, v in cfg.to_dict().items())
    return f"{model.n_in} -> {shape} on {build}"


def _describe(layer):
    if isinstance(layer, Conv2D):
        return f"conv{layer.kernel}x{layer.kernel}:{'x'.join(map(str, layer.in_shape))}->{layer.c_out}"
    if isinstance(layer, MaxPool2D):
        return "pool2x2"
    return f"dense:{layer.n_out}"


def load(path=BASELINES):
    path = Path(path)
    return json.loads(path.read_text()) if path.exists() else {}


def update(name, measured, path=BASELINES):
    data = load(path)
    data[name] = dict(measured)
    Path(path).write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


def compare(name, measured, baselines):
    """Lines describing every difference from the baseline (empty when within bounds)."""
    base = baselines.get(name)
    if base is None:
        return [f"no baseline for {name}: record one with --update-baselines"]
    lines = []
    for metric, now in sorted(measured.items()):
        was = base.get(metric)
        if was is None:
            lines.append(f"{metric}: no baseline, now {now}")
        elif metric in EXACT and now != was:
            lines.append(f"{metric}: baseline {was}, now {now} ({now - was:+d}, must match exactly)")
        elif metric not in EXACT and abs(now - was) > TOLERANCE * was:
            lines.append(f"{metric}: baseline {was}, now {now} ({(now - was) / was:+.1%}, "
                         f"tolerance {TOLERANCE:.0%})")
    if lines:
        lines = [f"latency differs from the baseline for {name} ({BASELINES.name}):"] + \
                [f"  {line}" for line in lines] + \
                ["  if the change is intended, rerun with --update-baselines and commit the file"]
    return lines
