"""``nnhil run MODEL``: any quantized model file on the SoC, checked and reported.

It loads the model with read-back, runs the images through the accelerator (the
firmware's batch runner), checks every image's logits and argmax against the integer
reference model and the cycles against the cycle model, measures on-board accuracy
when there are labels and the CPU's time on a couple of images for the speedup, and
writes board.json, every image's outputs (results.npz), the on-board confusion matrix
and a history record. When an image differs, the first few are rerun layer by layer
(host.divergence: the first diverging layer, channel and position); ``--trace`` does it for
one image anyway. With several simulations (``--sims``), host.shards shares the CPU
inferences and the images out among them; where the run's time went (host.timeline) is
printed and written to board.json. ``nnhil demo`` runs the project's own models through
this same code.
"""
import dataclasses
import functools
import json
import os
import threading
import time
from concurrent.futures import Future
from pathlib import Path

import numpy as np
import threadpoolctl

from nnhil.gateware import link, variants
from nnhil.training import datasets, home, modelfile, plots
from nnhil.training.intmodel import as_chw

from . import cpu_cache, divergence, history, latency, oracle, pace, shards
from .dut import open_dut
from .firmware import CPU_CODES
from .results import Results
from .timeline import Timeline

CPU_IMAGES = 2                # the CPU takes millions of cycles per image (each C inference)
PROGRESS_EVERY_S = 5          # a long batch reports how far it is at most this often
FULL_IMAGES = 10_000


@dataclasses.dataclass
class Job:
    """One model to run, with its images and (if known) their labels."""
    name: str                 # the model's short name: its architecture, or its file's
    arch: str                 # a short description of the architecture
    model: object             # the quantized IntModel
    images: np.ndarray        # uint8 [n, *input_shape]
    labels: np.ndarray = None
    classes: tuple = None
    dataset: str = "images"
    float_model: object = None    # (float MLP or CNN, its Standardizer), when there is one
    record: dict = dataclasses.field(default_factory=dict)    # extra fields for the history
    host_times: dict = None   # the host CPU's own time per image (host_times), before any sim runs
    reference: object = None  # a Future of the host's own model runs (reference), beside the sims


def add_target_arguments(p):
    """Where the SoC runs: the options of nnhil run and nnhil demo."""
    p.add_argument("--board", choices=["arty"], help="run on a board instead of the simulation")
    p.add_argument("--variant", choices=sorted(variants.VARIANTS), default=variants.DEFAULT,
                   help="the Arty A7 variant: its part and accelerator, on the board or in its sim twin "
                        "(default: %(default)s)")
    p.add_argument("--port", help="the board's serial port (default: find the Arty's FTDI)")
    p.add_argument("--baud", type=int, default=link.BAUD, help="the board's link rate (default: %(default)s)")
    p.add_argument("--build-dir", help="the board's build directory (default: the cached Arty build)")
    p.add_argument("--bitstream", help="program this bitstream into the board first (openFPGALoader)")
    p.add_argument("--sim-fallback", action="store_true",
                   help="with --board and no board found, run on the simulation")
    p.add_argument("--sims", type=int, default=None,
                   help="spread the CPU inferences and the images over this many simulations "
                        f"(default: one per core, {default_sims()} here; 1 with --board)")
    p.add_argument("--out", default=str(home.out()),
                   help="where the run goes: history.jsonl and board/<model>/ (default: %(default)s)")


def default_sims():
    """One simulation per core this process may run on (what ``pytest -n auto`` counts)."""
    return len(os.sched_getaffinity(0))


def add_arguments(p):
    p.add_argument("model", help="a quantized model file (quantized.npz; see the README's 'Model files')")
    p.add_argument("--dataset", choices=sorted(datasets.DATASETS),
                   help="its test images (default: the dataset the model was trained on, if recorded)")
    p.add_argument("--data-dir", help="folder with the gzip IDX files")
    p.add_argument("--images-npy", help="your own images instead: a .npy of uint8 in the model's input shape")
    p.add_argument("--labels-npy", help="their labels: a .npy of integer class indices (0 to the model's "
                                        "outputs - 1), one per image")
    p.add_argument("--images-csv", help="your own images as a CSV in the Kaggle layout: an optional header, "
                                        "then label,pixel1,... or pixel1,... per image (labels used when present)")
    n = p.add_mutually_exclusive_group()
    n.add_argument("--images", type=int, help="run the first N images (default: all of them)")
    n.add_argument("--full", action="store_true", help=f"all images ({FULL_IMAGES} of a dataset's test set)")
    p.add_argument("--trace", type=int, metavar="IMAGE_INDEX",
                   help="also rerun this image layer by layer and write every layer's on-board output "
                        "beside the model's (trace-IMAGE_INDEX.npz) and the report, even when nothing differs")
    p.add_argument("--wave", action="store_true",
                   help="with --trace (or, on the simulation, for the first diverging image): rerun it on the "
                        "traced sim build and write the waveform of its first diverging layer, trace-I.fst, "
                        "with a GTKWave save file trace-I.gtkw marking the first wrong write (docs/waveforms.md)")
    add_target_arguments(p)


class InputError(ValueError):
    """Images or labels given to nnhil run do not fit the model."""


def _load_npy(path, what):
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: cannot read the {what} ({e}); save them with numpy.save") from None


def user_images(model, images_npy, labels_npy=None):
    """(images, labels or None) from .npy files, checked against the model's input."""
    images = _load_npy(images_npy, "images")
    if images.dtype != np.uint8:
        raise InputError(f"{images_npy}: images are {images.dtype}, the model takes uint8 pixels "
                         f"(0-255, as the dataset files hold them)")
    shape = tuple(model.input_shape)
    if images.ndim < 1 or not (images.shape[1:] == (model.n_in,) or             # flat, or one channel
                               images.ndim in (3, 4) and as_chw(images.shape[1:]) == as_chw(shape)):
        raise InputError(f"{images_npy}: images are {list(images.shape)}, the model takes "
                         f"[N, {', '.join(map(str, shape))}] (or [N, {model.n_in}])")
    images = images.reshape((len(images),) + shape)
    labels = None if not labels_npy else user_labels(model, _load_npy(labels_npy, "labels"), len(images),
                                                      labels_npy)
    return images, labels


def user_labels(model, labels, n_images, where):
    """labels (as int64) if they are one class index of the model per image, else InputError."""
    classes = f"the model's {model.n_out} classes, 0 to {model.n_out - 1}"
    if not np.issubdtype(labels.dtype, np.integer):
        raise InputError(f"{where}: labels are {labels.dtype}, expected integers: an index into {classes} "
                         f"(save them with numpy.save(path, labels.astype(numpy.int64)))")
    if labels.shape != (n_images,):
        raise InputError(f"{where}: labels are {list(labels.shape)}, expected [{n_images}]: one per image "
                         f"({n_images} images)")
    bad = np.flatnonzero((labels < 0) | (labels >= model.n_out))
    if len(bad):
        raise InputError(f"{where}: label {labels[bad[0]]} (image {bad[0]}) is not one of {classes}; "
                         f"{len(bad)} of {n_images} labels are out of range")
    return labels.astype(np.int64)


def job_from_file(args, log=print):
    """The Job of ``nnhil run``: the model file and its images."""
    path = Path(args.model)
    model = modelfile.load_quantized(path)
    if getattr(args, "images_csv", None):
        if args.images_npy:
            raise InputError("--images-csv and --images-npy: give your images one way")
        images, labels = datasets.read_csv(args.images_csv, model.n_in, model.n_out)
        images, classes, dataset = images.reshape((-1,) + tuple(model.input_shape)), model.classes, \
            Path(args.images_csv).stem
    elif args.images_npy:
        images, labels = user_images(model, args.images_npy, args.labels_npy)
        classes, dataset = model.classes, Path(args.images_npy).stem
    else:
        dataset = args.dataset or model.meta.get("dataset")
        if dataset is None:
            raise InputError(f"{path} does not record its dataset: pass --dataset or --images-npy")
        split = datasets.load_split(dataset, "test", args.data_dir)
        images, labels = split[0].reshape((-1,) + tuple(model.input_shape)), split[1]
        classes = datasets.DATASETS[dataset].classes
    if args.images:
        images = images[:args.images]
        labels = None if labels is None else labels[:args.images]
    float_model = None
    if (path.parent / "float.npz").exists():                             # nnhil train's layout
        float_model = modelfile.load_float(path.parent / "float.npz")[:2]
    return Job(name=path.stem if path.stem != "quantized" else path.parent.name,
               arch=describe(model), model=model, images=images, labels=labels, classes=classes,
               dataset=dataset, float_model=float_model, record={"model_file": str(path)})


def describe(model):
    """'784-dense128-dense10' or '1x28x28-conv2x2:16-pool-...': the layers a model file holds."""
    parts = ["x".join(map(str, model.input_shape))]
    for layer in model.layers:
        kind = type(layer).__name__
        parts.append("pool" if kind == "MaxPool2D" else
                     f"conv{layer.kernel}x{layer.kernel}:{layer.c_out}" if kind == "Conv2D" else f"dense{layer.n_out}")
    return "-".join(parts)


HOST_IMAGES = 200             # images the host's own CPU times, one at a time and as one batch


def host_times(job):
    """The host machine's own microseconds per image (NumPy): the integer model one image at a
    time and batched, and the float model batched when there is one. Taken before any sim
    starts (a sim keeps its core busy even between commands), so the cores are idle."""
    images = job.images[:HOST_IMAGES]

    def per_image(fn, batches):
        t0 = time.perf_counter()
        for b in batches:
            fn(b)
        return round(1e6 * (time.perf_counter() - t0) / len(images), 1)
    times = {"host_int_us_batch1": per_image(job.model.logits, [im[None] for im in images]),
             "host_int_us_batched": per_image(job.model.logits, [images])}
    if job.float_model is not None:
        fmodel, standardizer = job.float_model
        flat = images.reshape(len(images), -1)
        times["host_float_us_batched"] = per_image(lambda b: fmodel.logits(standardizer(b)), [flat])
    return times


def reference(job):
    """The host's own runs of the job's images: the integer model's logits (every image's
    check) and the float model's accuracy (None without a float model or labels). BLAS on one
    thread: it runs beside the sims, one core for itself."""
    with threadpoolctl.threadpool_limits(1):
        logits, float_acc = job.model.logits(job.images), None
        if job.float_model is not None and job.labels is not None:
            fmodel, standardizer = job.float_model
            flat = job.images.reshape(len(job.images), -1)
            float_acc = float((fmodel.predict(standardizer(flat)) == job.labels).mean())
    return logits, float_acc


def prepare_host(jobs, timeline):
    """The host's own work of each job: its timings now, while no sim runs (call it before
    the sims start), then its reference in a thread, beside the sims' boot and batches."""
    for job in jobs:
        with timeline.phase("host timings"):
            job.host_times = host_times(job)
        job.reference = Future()

    def work():                 # a daemon: a run stopped by Ctrl-C does not wait for it
        for job in jobs:
            try:
                with timeline.phase("reference", "host2"):
                    job.reference.set_result(reference(job))
            except Exception as e:
                job.reference.set_exception(e)
    threading.Thread(target=work, name="nnhil-reference", daemon=True).start()


def progress_logger(log):
    """A progress(done, total) that logs at most every PROGRESS_EVERY_S, and the end."""
    last = time.monotonic()

    def progress(done, total):
        nonlocal last
        if done == total or time.monotonic() - last >= PROGRESS_EVERY_S:
            last = time.monotonic()
            log(f"  {done}/{total} images")
    return progress


def run_job(job, duts, args, log=print, kind="run", timeline=None, baseline_cache=False):
    """One model through the DUTs (the CPU inferences and its images shared out among them);
    logs the figures and where the time went, writes the outputs; True if all is exact.
    ``baseline_cache``: the CPU inferences through host.cpu_cache (the demo's)."""
    timeline = timeline or Timeline()
    if job.reference is None:
        prepare_host([job], timeline)
    model, images, labels = job.model, job.images, job.labels
    out = Path(args.out)
    board_dir = out / "board" / f"{job.name}-{job.dataset}"
    board_dir.mkdir(parents=True, exist_ok=True)
    log(f"{job.arch} on {job.dataset}:")
    dut = duts[0]

    def traffic():
        return sum(d.bridge.traffic() for d in duts)
    t0, link0 = time.perf_counter(), traffic()
    shards.run_each(duts, lambda d: d.load(model), "load", timeline)
    load_s, load_bytes = time.perf_counter() - t0, (traffic() - link0) // len(duts)
    log(f"loaded {model.weight_count} weights over the bridge and read them back in {load_s:.2f} s"
        + (f" (on each of {len(duts)} simulations at once)" if len(duts) > 1 else ""))
    # the CPU's C inferences (millions of cycles an image) first, the longest first, an image
    # each, on the first free simulation: on two sims each runs half of them, the images after
    # (with ``baseline_cache``, those host.cpu_cache holds for this SoC, firmware, model and
    # image are taken from it, and the others stored in it)
    n_cpu = len(images[:CPU_IMAGES])
    cached = {task: hit for task in (CPUImage(code, i) for code in ("plain", "optimised") for i in range(n_cpu))
              if baseline_cache and (hit := cpu_cache.lookup(dut, model, images[task[1]:task[1] + 1], task[0]))}
    measure = cpu_cache.cpu_infer if baseline_cache else _cpu_infer
    cpu_tasks = [(task, functools.partial(measure, model=model, images=images[i:i + 1], code=code))
                 for code in ("plain", "optimised") for i in range(n_cpu) if (task := CPUImage(code, i)) not in cached]
    log(f"{CPU_IMAGES} images in plain and in optimised C on the CPU"
        + (f" ({cpu_cache.describe([b.cached for b in cached.values()], 2 * n_cpu)})" if cached else "")
        + f", {len(images)} through the accelerator" + (f", over {len(duts)} simulations" if len(duts) > 1 else ""))
    try:
        done = shards.run(duts, images, cpu_tasks, progress_logger(log), timeline)
    except shards.ShardError as e:
        ref = _wait_reference(job, timeline)[0]
        for (lo, hi), part in sorted(e.done.items()):
            log(f"images {lo}-{hi - 1}: {int(part.matches(ref[lo:hi]).sum())}/{hi - lo} bit-exact")
        raise
    r = done.results
    baselines = {**cached, **done.tasks}
    cpu = {code: Results.concatenate([baselines[CPUImage(code, i)].results for i in range(n_cpu)]) for code in CPU_CODES}
    batch_s, batch_bytes = done.images_s, done.images_link_bytes
    ref, float_acc = _wait_reference(job, timeline)
    exact = r.matches(ref)
    cpu_exact = all(bool(c.matches(ref[:CPU_IMAGES]).all()) for c in cpu.values())
    cycles = latency.figures(r, cpu)
    accel_cycles, batch_cycles = cycles["accelerator_cycles"], cycles["batch_cycles_per_image"]
    cpu_cycles, plain_cycles = cycles["cpu_optimised_cycles_per_inference"], cycles["cpu_cycles_per_inference"]
    model_cycles = dut.accelerator.model_cycles
    macs = dut.compiled.hardware_macs
    board_pace = pace.board(args.baud)
    summary = {
        "target": dut.target, "model": job.name, "dataset": job.dataset, "arch": job.arch,
        "images": len(images), "model_hash": model.hash, **job.record,
        "float_test_accuracy": float_acc,
        "software_int_accuracy": None if labels is None else float((ref.argmax(1) == labels).mean()),
        "board_accuracy": None if labels is None else float((r.argmax == labels).mean()),
        "bit_exact_images": int(exact.sum()), "differing_images": np.flatnonzero(~exact)[:100].tolist(),
        **cycles, "model_cycles": model_cycles,
        "cycles_exact": bool((r.cycles == model_cycles).all()),
        "macs": macs, "macs_per_cycle": round(macs / accel_cycles, 1),
        **{f"{k}_used": v for k, v in dut.compiled.usage.items()},
        # the CPU baseline: the optimised C (the speedups), and the plain C that the history
        # has recorded as cpu_cycles_per_inference from the start
        "cpu_bit_exact": cpu_exact, "cpu_runs": 2 * n_cpu,
        "cpu_cached": sorted(b.cached for b in cached.values()),     # when each run from the cache was measured
        "speedup_accelerator": round(cpu_cycles / accel_cycles, 1),
        "speedup_with_driver": round(cpu_cycles / batch_cycles, 1),
        "speedup_plain_accelerator": round(plain_cycles / accel_cycles, 1),
        "speedup_plain_with_driver": round(plain_cycles / batch_cycles, 1),
        "weight_load_s": round(load_s, 3), "batch_wall_s": round(batch_s, 2), "sims": len(duts),
        "weight_load_link_bytes": load_bytes, "batch_link_bytes": batch_bytes,
        # what a board at the link rate would take: the bytes one after the other (UARTBone
        # answers each request in turn), and the batch's cycles at the board's clock
        "board_weight_load_s": round(load_bytes / board_pace.link_bytes_per_s, 2),
        "board_batch_s": round(batch_bytes / board_pace.link_bytes_per_s
                               + int(r.driver_cycles.sum()) / link.CLOCK_HZ, 2),
    }
    summary.update(job.host_times)
    summary.update(oracle.check(job, r, log))
    outputs = timeline.now()
    np.savez_compressed(board_dir / "results.npz", **dataclasses.asdict(r))
    if labels is not None:
        classes = job.classes or tuple(str(c) for c in range(model.n_out))
        cm = plots.confusion_matrix(labels, r.argmax, len(classes))
        plots.confusion(cm, classes, board_dir / "confusion.png", f"on-board ({dut.target})")
        summary["confusion_png"] = str(board_dir / "confusion.png")
    history.append(kind, summary, out / history.NAME)
    timeline.add("outputs", "host", outputs, timeline.now())
    summary["time"] = timeline.records()
    (board_dir / "board.json").write_text(json.dumps(summary, indent=1) + "\n")
    _log_summary(summary, exact, r, ref, dut, board_dir, args, log)
    log("\n".join(["time             " + timeline.lines()[0]] + timeline.lines()[1:]))
    traced = np.flatnonzero(~exact)[:divergence.TRACED_IMAGES].tolist()
    if traced:                      # only a failing run pays for the layer-by-layer reruns
        log("")
        log(divergence.explain(dut, images, r, board_dir))
    wanted = getattr(args, "trace", None)
    if wanted is not None and wanted not in traced:
        log("")
        log(divergence.trace(dut, images[wanted], wanted, board_dir).text())
    if traced or wanted is not None:
        log(f"traces           {board_dir}/trace-<image>.npz (every layer, board and model), .txt, .png")
    if getattr(args, "wave", False) and dut.target == "sim" and (wanted is not None or traced):
        from . import wave
        log(wave.wave_for_run(model, images, traced[0] if wanted is None else wanted, board_dir,
                              dut.config, log))
    return bool(exact.all() and cpu_exact and summary["cycles_exact"])


class CPUImage(tuple):
    """The task of one image in C on the SoC's CPU (``code``: host.firmware_abi.CPU_CODES),
    named by its code alone on the timeline."""

    def __new__(cls, code, index):
        return super().__new__(cls, (code, index))

    def __str__(self):
        return f"CPU {self[0]} C"


def _cpu_infer(dut, model, images, code):
    return cpu_cache.Baseline(dut.cpu_infer(model, images, code=code))


def _wait_reference(job, timeline):
    """The job's reference (logits, float accuracy), waiting for its thread if need be."""
    if job.reference.done():
        return job.reference.result()
    with timeline.phase("waiting for the reference"):
        return job.reference.result()


def _log_summary(s, exact, r, ref, dut, board_dir, args, log):
    us = 1e6 / link.CLOCK_HZ
    n = s["images"]
    log("")
    log(f"model            {s['arch']} on {s['dataset']}, {s['macs']} MACs, hash {s['model_hash'][:12]}")
    if s["board_accuracy"] is not None:
        float_acc = "" if s["float_test_accuracy"] is None else f"  float {s['float_test_accuracy']:.4f}"
        log(f"accuracy         on-board {s['board_accuracy']:.4f}  software integer "
            f"{s['software_int_accuracy']:.4f}{float_acc}  ({n} images)")
    log(f"bit-exact        {s['bit_exact_images']}/{n} images: logits and argmax equal the integer "
        f"reference model; CPU inference (optimised and plain C) {'bit-exact' if s['cpu_bit_exact'] else 'DIFFERS'}")
    if not exact.all():
        i = int(np.flatnonzero(~exact)[0])
        log(f"                 first differing image {i}: board {r.logits[i].tolist()} "
            f"(argmax {int(r.argmax[i])}) vs model {ref[i].tolist()}")
    log(f"accelerator      {s['accelerator_cycles']} cycles per inference "
        f"({s['accelerator_cycles'] * us:.2f} us at {link.CLOCK_HZ / 1e6:g} MHz), model {s['model_cycles']}"
        f"{'' if s['cycles_exact'] else ' (DIFFERS)'}, {s['macs_per_cycle']} MACs/cycle, "
        f"{dut.config.lanes} lanes")
    log(f"with driver      {s['batch_cycles_per_image']} cycles per image "
        f"({s['batch_cycles_per_image'] * us:.2f} us) through the firmware")
    log(f"CPU (VexRiscv)   {s['cpu_optimised_cycles_per_inference']} cycles per inference in optimised C "
        f"({s['cpu_optimised_cycles_per_inference'] * us / 1000:.2f} ms), {s['cpu_cycles_per_inference']} "
        f"in plain C ({s['cpu_cycles_per_inference'] * us / 1000:.2f} ms)"
        + (f"; {cpu_cache.describe(s['cpu_cached'], s['cpu_runs'])}" if s["cpu_cached"] else ""))
    log(f"speedup          {s['speedup_accelerator']}x (accelerator), {s['speedup_with_driver']}x (with the driver) "
        f"over the optimised C; {s['speedup_plain_accelerator']}x, {s['speedup_plain_with_driver']}x over the plain C")
    log(f"host CPU         {s['host_int_us_batch1']} us per image (integer model, NumPy, one at a time), "
        f"{s['host_int_us_batched']} us batched"
        + (f", float {s['host_float_us_batched']} us batched" if "host_float_us_batched" in s else "")
        + f"; the accelerator {s['accelerator_cycles'] * us:.2f} us at {link.CLOCK_HZ / 1e6:g} MHz")
    log(f"weight load      {s['weight_load_s']:.2f} s over the bridge, verified by read-back; uses "
        + ", ".join(f"{s[k + '_used']}/{getattr(dut.config, k)} {k.replace('_', ' ')}"
                    for k in dut.compiled.usage))
    log(f"board link       {s['board_weight_load_s']} s for the weight load and {s['board_batch_s']} s "
        f"for the {n} images on a board at {args.baud} baud ({s['weight_load_link_bytes'] + s['batch_link_bytes']} "
        f"bytes; the sim's link is unpaced: {s['weight_load_s']:.1f} s and {s['batch_wall_s']:.1f} s here)")
    log(f"outputs          {board_dir}/ (board.json, results.npz{', confusion.png' if 'confusion_png' in s else ''}); "
        f"history in {Path(args.out) / history.NAME}, plotted by 'nnhil report'")


def simulations(args):
    """How many simulations a run's target options ask for (``--sims``, default one per core;
    a board is one); an InputError for a count that cannot be: check it before any work."""
    sims = args.sims if args.sims is not None else 1 if args.board else default_sims()
    if sims < 1 or (args.board and sims > 1):
        raise InputError(f"--sims {sims}: give a number of simulations, 1 or more, and only "
                         f"without --board")
    return sims


def open_targets(args, log=print, timeline=None):
    """The DUTs of a run: the board, or ``--sims`` simulations, started and their firmware
    booted all at once."""
    sims = simulations(args)
    return shards.open_all(lambda: open_dut(args.board, args.port, args.baud, args.build_dir,
                                            args.bitstream, args.sim_fallback, log,
                                            variant=args.variant), sims,
                           ready=lambda d: d.firmware, timeline=timeline)


def run(args, log=print):
    """nnhil run: 0 if every image, the CPU inference and the cycles are exact, else 1."""
    if args.full:
        args.images = None
    simulations(args)
    timeline = Timeline()
    with timeline.phase("model and images"):
        job = job_from_file(args, log)
    if args.trace is not None and not 0 <= args.trace < len(job.images):
        raise InputError(f"--trace {args.trace}: the run has images 0 to {len(job.images) - 1}; "
                         f"give one of them")
    if getattr(args, "wave", False) and args.board:
        raise InputError("--wave: a board has no waveform dump (docs/waveforms.md shows LiteScope "
                         "for it); run without --board to trace on the simulation")
    prepare_host([job], timeline)
    with open_targets(args, log, timeline) as duts:
        return 0 if run_job(job, duts, args, log, timeline=timeline) else 1
