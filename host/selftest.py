"""``nnhil selftest MODEL``: how well the harness's checks, with this model and these images,
would catch a broken accelerator.

It starts the sim SoC's fault build (gateware.faults: one Verilator build, each fault picked
at run time by the fault_select CSR), checks that with no fault selected every image is
exact, then runs the model once per fault with the checks that fault can meet (bit-exact
logits and argmax, cycles equal to the cycle model, read-back after the load, accuracy
against the integer model, the layer-by-layer divergence report, the images shuffled and
repeated, the batch's driver cycles within the bounds of the accelerator's) and gives each a verdict: **caught** (by which checks), **not exercised** (the
images never reached the edge the fault needs: host.coverage says which), or **survived**
(exercised and not caught: a weakness of the harness). It fails on any survivor, and with
``strict`` on faults not exercised; the table goes to selftest.json and a JUnit report
beside the run's other outputs.
"""
import dataclasses
import json
import logging
import threading
import time
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np

from nnhil.gateware import buildcache, faults as fault_list
from nnhil.gateware.compiled import CompiledModel

from . import coverage, divergence, shards
from .driver import AcceleratorError
from .dut import open_dut
from .firmware import batch_timing
from .firmware_abi import FirmwareError
from .options import InputError

log = logging.getLogger(__name__)

REPEAT_SEED = 26              # the order of the shuffled pass
CLEAN_IMAGES = 4              # run exact after each fault, no fault selected


class SelftestError(RuntimeError):
    """The campaign cannot give verdicts: the fault build fails with no fault selected."""


@dataclasses.dataclass
class Verdict:
    fault: str
    stands_for: str
    verdict: str                      # "caught", "not exercised" or "survived"
    caught_by: list                   # names of faults.CHECKS
    reason: str = ""                  # why not exercised
    first_layer: int | None = None    # the divergence report's first diverging layer
    accuracy: float | None = None     # on the faulty design (labels), or agreement with the model
    seconds: float = 0.0
    sim: int = 1                      # which of the campaign's simulations ran it (1, 2, ...)


def _accuracy(argmax, labels, ref):
    """Accuracy against the labels, or without labels agreement with the integer model."""
    return float((argmax == (labels if labels is not None else ref.argmax(axis=1))).mean())


def _batch(dut, images):
    return dut.infer(images)


def _repeat_order(n):
    """The shuffled-and-repeated pass: every image in another order, then the first ones again."""
    order = np.random.default_rng(REPEAT_SEED).permutation(n)
    return np.concatenate([order, np.arange(min(n, 4))])


def run_checks(dut, compiled, images, labels, ref, fault, trace_image=0):
    """The checks of ``fault`` on the DUT as it is now (fault selected): ({check: caught},
    the first diverging layer, the accuracy, an error that ended the run or None). The
    layer-by-layer report traces the first image that differs, or if none does
    ``trace_image`` (the first image that reached the fault's edge)."""
    caught, layer, acc = {}, None, None
    sent = images
    if fault.name == "image_byte_flip":    # a link fault: one byte flipped on its way to the SoC
        sent = images.copy()
        flat = sent.reshape(len(sent), -1)
        flat[0, flat.shape[1] // 2] ^= 0x80
    try:
        r = _batch(dut, sent)
    except (AcceleratorError, FirmwareError, TimeoutError) as e:
        return {"completes": True}, None, None, str(e)
    exact = r.matches(ref)
    acc = _accuracy(r.argmax, labels, ref)
    checks = set(fault.checks)
    if "logits" in checks:
        caught["logits"] = not bool(exact.all())
    if "cycles" in checks:
        caught["cycles"] = not bool((r.cycles == compiled.cycles).all())
    if "timing" in checks:
        caught["timing"] = bool(batch_timing(r, compiled.model.n_in, compiled.model.n_out))
    if "accuracy" in checks:
        caught["accuracy"] = acc != _accuracy(ref.argmax(axis=1), labels, ref)
    if "repeat" in checks:
        order = _repeat_order(len(images))
        again = _batch(dut, sent[order])
        caught["repeat"] = not (np.array_equal(again.logits, r.logits[order])
                                and np.array_equal(again.argmax, r.argmax[order])
                                and np.array_equal(again.cycles, r.cycles[order]))
    if "divergence" in checks:
        bad = np.flatnonzero(~exact)
        i = int(bad[0]) if bad.size else trace_image
        report = divergence.trace(dut, sent[i], i)
        caught["divergence"] = report.first is not None or not report.cycles_exact
        layer = report.first.index if report.first is not None else None
    return caught, layer, acc, None


def _load_corrupted(dut, compiled):
    """A load whose first weight word has bit 6 flipped on the way (a link fault), then the
    driver's read-back: True if the read-back saw it."""
    accel = dut.accelerator
    image = compiled.memory_image
    words = list(image.regions["weights"])
    words[0] ^= 1 << 6
    for region, data in image.regions.items():
        accel.bridge.write(accel.region_addr(region), words if region == "weights" else data)
    try:
        accel.verify(image)
        return False
    except AcceleratorError:
        return True


def one_fault(dut, compiled, images, labels, ref, cov, fault):
    """The Verdict of one fault on ``dut`` (its fault build, the model loaded)."""
    t0 = time.perf_counter()
    accel = dut.accelerator
    caught, error = {}, None
    layer = acc = None
    traced = cov.first.get(fault.edge, 0)
    if fault.kind == "hardware":
        accel.write_csr("fault_select", fault_list.code(fault.name))
        try:
            caught, layer, acc, error = run_checks(dut, compiled, images, labels, ref, fault, traced)
        finally:
            accel.write_csr("fault_select", 0)
            accel.soft_reset()
    elif fault.kind == "firmware":
        dut.boot_firmware({fault_list.define(fault): 1})
        try:
            caught, layer, acc, error = run_checks(dut, compiled, images, labels, ref, fault, traced)
        finally:
            dut.boot_firmware()
    elif fault.name == "weight_bit_flip":
        caught["readback"] = _load_corrupted(dut, compiled)
        checks = dataclasses.replace(fault, checks=tuple(c for c in fault.checks if c != "readback"))
        more, layer, acc, error = run_checks(dut, compiled, images, labels, ref, checks, traced)
        caught.update(more)
        dut.load(compiled.model)            # the clean model again
    else:
        caught, layer, acc, error = run_checks(dut, compiled, images, labels, ref, fault, traced)
    if error:                               # a run that failed may leave the firmware waiting
        dut.boot_firmware()
    _clean(dut, compiled, images[:CLEAN_IMAGES], ref[:CLEAN_IMAGES], f"after {fault.name}")
    by = [c for c, hit in caught.items() if hit]
    if by:
        verdict, reason = "caught", error or ""
    else:
        why = cov.reason(fault.edge)
        verdict, reason = ("not exercised", why) if why else ("survived", "")
    return Verdict(fault.name, fault.stands_for, verdict, by, reason, layer, acc,
                   round(time.perf_counter() - t0, 1))


def _clean(dut, compiled, images, ref, when):
    """SelftestError unless the DUT, no fault selected, gives exact results, cycles and batch
    timing: a fault's leftovers must not decide the next fault's verdict."""
    r = _batch(dut, images)
    bad = np.flatnonzero(~r.matches(ref) | (r.cycles != compiled.cycles))
    if bad.size:
        raise SelftestError(f"with no fault selected, {when}, {bad.size} of {len(images)} images differ "
                            f"from the integer model or the cycle model: that fault left state behind")
    timing = batch_timing(r, compiled.model.n_in, compiled.model.n_out)
    if timing:
        raise SelftestError(f"with no fault selected, {when}, the batch's timing is wrong: {timing[0]}; "
                            f"that fault left its firmware behind")


def baseline(dut, compiled, images, ref):
    """With no fault selected, every image and cycle count must be exact, and the batch's
    driver cycles within their bounds (host.firmware.batch_timing), twice."""
    dut.accelerator.write_csr("fault_select", 0)
    for what, order in (("the images", np.arange(len(images))), ("shuffled", _repeat_order(len(images)))):
        r = _batch(dut, images[order])
        bad = np.flatnonzero(~r.matches(ref[order]) | (r.cycles != compiled.cycles))
        if bad.size:
            raise SelftestError(f"the fault build with no fault selected differs from the integer model or "
                                f"the cycle model on {bad.size} of {len(order)} images ({what}): the "
                                f"campaign's verdicts would mean nothing; run 'nnhil run' on this model first")
        timing = batch_timing(r, compiled.model.n_in, compiled.model.n_out)
        if timing:
            raise SelftestError(f"the fault build with no fault selected breaks the batch's timing bounds "
                                f"({what}): {timing[0]}; the campaign's verdicts would mean nothing")


def campaign(duts, model, images, labels=None, faults=None):
    """Every fault of ``faults`` (gateware.faults.Fault; default all) on the fault-build DUTs
    (the faults shared out among them, a thread each): ([Verdict] in the list's order,
    coverage.Coverage)."""
    faults = list(faults or fault_list.FAULTS)
    compiled = CompiledModel.of(model, duts[0].config)
    ref = model.logits(images)
    cov = coverage.measure(compiled, images)
    shards.run_each(duts, lambda d: (d.load(model), baseline(d, compiled, images, ref)), "baseline")
    log.info(f"with no fault selected: all {len(images)} images exact and as modelled ({compiled.cycles} cycles)")
    verdicts, lock, todo = {}, threading.Lock(), list(enumerate(faults))

    def worker(dut):
        while True:
            with lock:
                if not todo:
                    return
                i, fault = todo.pop(0)
            v = one_fault(dut, compiled, images, labels, ref, cov, fault)
            v.sim = duts.index(dut) + 1
            with lock:
                verdicts[i] = v
                log.info(f"  [{len(verdicts)}/{len(faults)}] {fault.name}: {v.verdict}"
                    + (f" by {', '.join(v.caught_by)}" if v.caught_by else f" ({v.reason})" if v.reason else "")
                    + f" in {v.seconds:.1f} s" + (f" on sim {v.sim}" if len(duts) > 1 else ""))
    shards.run_each(duts, worker, "faults")
    return [verdicts[i] for i in range(len(faults))], cov


def table(verdicts):
    """The campaign's table, as text."""
    rows = [("fault", "stands for", "verdict", "caught by", "first layer", "accuracy")]
    for v in verdicts:
        verdict = v.verdict + (f" ({v.reason})" if v.verdict == "not exercised" else "")
        rows.append((v.fault, v.stands_for, verdict, ", ".join(v.caught_by) or "-",
                     "-" if v.first_layer is None else str(v.first_layer),
                     "-" if v.accuracy is None else f"{v.accuracy:.4f}"))
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows)


def failed(verdicts, strict=False):
    """The verdicts that fail the command: survivors, and with ``strict`` those not exercised."""
    bad = {"survived"} | ({"not exercised"} if strict else set())
    return [v for v in verdicts if v.verdict in bad]


def junit(verdicts, strict, seconds):
    """A JUnit XML report: a test case per fault, a failure per survivor (with ``strict``,
    per fault not exercised too), a skip per fault not exercised otherwise."""
    bad = {id(v) for v in failed(verdicts, strict)}
    cases = []
    for v in verdicts:
        body = ""
        if id(v) in bad:
            body = f"<failure message={quoteattr(v.verdict + (': ' + v.reason if v.reason else ''))}/>"
        elif v.verdict == "not exercised":
            body = f"<skipped message={quoteattr(v.reason)}/>"
        cases.append(f'  <testcase classname="nnhil.selftest" name={quoteattr(v.fault)} time="{v.seconds}">'
                     f"{body}</testcase>")
    skipped = sum(v.verdict == "not exercised" and id(v) not in bad for v in verdicts)
    return (f'<?xml version="1.0" encoding="utf-8"?>\n<testsuite name="nnhil selftest" tests="{len(verdicts)}" '
            f'failures="{len(bad)}" skipped="{skipped}" time="{seconds:.1f}">\n' + "\n".join(cases) + "\n</testsuite>\n")


def write_reports(out_dir, verdicts, cov, strict, seconds, extra=None):
    """selftest.json (the table, the coverage) and selftest-junit.xml in ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "selftest.json").write_text(json.dumps(
        {**(extra or {}), "strict": strict, "seconds": round(seconds, 1),
         "faults": [dataclasses.asdict(v) for v in verdicts], "coverage": cov.to_dict()}, indent=1) + "\n")
    (out_dir / "selftest-junit.xml").write_text(junit(verdicts, strict, seconds))
    return out_dir / "selftest.json", out_dir / "selftest-junit.xml"


def open_fault_duts(sims, variant):
    """``sims`` simulations of the fault build, their firmware booted."""
    return shards.open_all(lambda: open_dut(variant=variant,
                                            sim_variant=buildcache.SimVariant(faults=True)),
                           sims, ready=lambda d: d.firmware)


def add_arguments(p):
    from . import options
    p.add_argument("model", help="a quantized model file (quantized.npz)")
    p.add_argument("--faults", default="all",
                   help="all, or comma-separated names of gateware/faults.py (default: all): "
                        + ", ".join(fault_list.BY_NAME))
    p.add_argument("--strict", action="store_true", help="also fail on faults the images did not exercise")
    options.add_arguments(p, options.Data)
    options.add_arguments(p, options.Images)
    p.add_argument("--sims", type=int, default=1, help="share the faults over this many simulations (default 1)")
    options.add_arguments(p, options.Target, only=("variant",))
    options.add_arguments(p, options.Results, only=("results_dir",))
    options.deprecated(p, "--out", "--results-dir", options.OUT_FILE)


def run(model_path, faults="all", strict=False, sims=1, data=None, images=None, target=None, results=None):
    """nnhil selftest of the quantized model at ``model_path`` on ``images`` (host.options.Images
    of ``data``, host.options.Data), the faults named in ``faults`` ("all", or comma-separated
    names of gateware.faults) shared over ``sims`` simulations of ``target``'s variant; the
    reports under ``results`` (host.options.Results). 0 if no fault survived (with ``strict``:
    and every fault was exercised), else 1."""
    from . import options
    from . import run as run_mod
    data, images = data or options.Data(), images or options.Images()
    target, results = target or options.Target(), results or options.Results()
    names = "all" if faults == "all" else [n.strip() for n in faults.split(",") if n.strip()]
    try:
        chosen = fault_list.get(names)
    except ValueError as e:
        raise InputError(f"--faults: {e}") from None
    if sims < 1:
        raise InputError(f"--sims {sims}: give a number of simulations, 1 or more")
    job = run_mod.job_from_file(model_path, data, images)
    if len(job.images) < 2:
        raise InputError(f"{len(job.images)} image(s): the selftest needs two or more (the "
                         f"double-buffered batch, state left between images)")
    t0 = time.perf_counter()
    sims = min(sims, len(chosen))               # a simulation without a fault to run is not started
    log.info(f"selftest of {job.arch} on {len(job.images)} {job.dataset} images, {len(chosen)} faults, "
             f"{sims} simulation(s) of the fault build")
    with open_fault_duts(sims, target.variant) as duts:
        verdicts, cov = campaign(duts, job.model, job.images, job.labels, chosen)
    seconds = time.perf_counter() - t0
    log.info(cov.text())
    log.info(table(verdicts))
    out_dir = results.directory() / "board" / f"{job.name}-{job.dataset}"
    paths = write_reports(out_dir, verdicts, cov, strict, seconds,
                          {"model": job.name, "dataset": job.dataset, "images": len(job.images)})
    bad = failed(verdicts, strict)
    counts = {k: sum(v.verdict == k for v in verdicts) for k in ("caught", "not exercised", "survived")}
    log.info(f"{counts['caught']} caught, {counts['not exercised']} not exercised, {counts['survived']} survived "
             f"of {len(verdicts)} faults in {seconds:.0f} s; reports {paths[0]} and {paths[1].name}")
    return 1 if bad else 0
