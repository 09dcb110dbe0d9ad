"""``nnhil run MODEL``: any quantized model file on the SoC, checked and reported.

It loads the model with read-back, runs the images through the accelerator (the
firmware's batch runner), checks every image's logits and argmax against the integer
reference model, the cycles against the cycle model and the firmware's batch timing against
the accelerator's own counts (host.firmware.batch_timing), measures on-board accuracy
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
import logging
import threading
import time
from concurrent.futures import Future
from pathlib import Path

import numpy as np
import threadpoolctl

from nnhil.gateware import link
from nnhil.training import datasets, modelfile, plots
from nnhil.training.intmodel import as_chw

from . import cpu_cache, divergence, history, latency, options, oracle, pace, shards
from .dut import open_dut
from .firmware import CPU_CODES, batch_timing
from .options import InputError
from .results import Results
from .timeline import Timeline

CPU_IMAGES = 2                # the CPU takes millions of cycles per image (each C inference)
PROGRESS_EVERY_S = 5          # a long batch reports how far it is at most this often

log = logging.getLogger(__name__)


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


def add_arguments(p):
    """The options of ``nnhil run`` (host.options declares them)."""
    p.add_argument("model", help="a quantized model file (quantized.npz; docs/model-format.md)")
    options.add_arguments(p, options.Data)
    options.add_arguments(p, options.Images)
    options.add_arguments(p, options.Results)
    options.deprecated(p, "--out", "--results-dir", options.OUT_FILE)
    options.add_arguments(p, options.Target)
    options.deprecated(p, "--board", "--target")


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
    images = fit_images(model, images, images_npy)
    labels = None if not labels_npy else user_labels(model, _load_npy(labels_npy, "labels"), len(images),
                                                      labels_npy)
    return images, labels


def fit_images(model, images, where):
    """``images`` [N, ...] as [N, *model.input_shape], if each holds the model's input: flat
    ([N, n_in]), in its shape (one channel: [N, H, W] or [N, 1, H, W]), or of any shape of n_in
    values for a model whose input is flat (an MLP takes [N, 28, 28] as [N, 784]); else InputError."""
    shape = tuple(model.input_shape)
    per_image = images.shape[1:]
    if images.ndim < 1 or not (per_image == (model.n_in,) or
                               images.ndim in (3, 4) and as_chw(per_image) == as_chw(shape) or
                               len(shape) == 1 and images.ndim > 1 and int(np.prod(per_image)) == model.n_in):
        takes = f" ({model.n_in} values an image, in any shape)" if len(shape) == 1 else f" (or [N, {model.n_in}])"
        raise InputError(f"{where}: images are {list(images.shape)}, the model takes "
                         f"[N, {', '.join(map(str, shape))}]{takes}")
    return images.reshape((len(images),) + shape)


def dataset_classes(model, path, dataset):
    """The classes of a dataset whose labels score ``model``; InputError unless it has one
    output per class (a model of more outputs predicts classes the dataset does not have)."""
    if dataset not in datasets.DATASETS:
        raise InputError(f"{path} records the dataset {dataset!r}, not one of {sorted(datasets.DATASETS)}: "
                         f"pass --dataset, or its images with --images-npy or --images-csv")
    classes = datasets.DATASETS[dataset].classes
    if model.n_out != len(classes):
        raise InputError(f"{path} has {model.n_out} outputs, {dataset} has {len(classes)} classes: its "
                         f"labels cannot score this model; give images of its own classes with "
                         f"--images-npy (and --labels-npy, indices 0 to {model.n_out - 1})")
    return classes


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


def job_from_file(model_path, data=options.Data(), images=options.Images()):
    """The Job of ``nnhil run``: the model file and its images (host.options.Data, .Images)."""
    path = Path(model_path)
    model = modelfile.load_quantized(path)
    if images.images is not None and images.images < 1:
        raise InputError(f"--images {images.images}: give a number of images, 1 or more")
    if images.images_csv:
        if images.images_npy:
            raise InputError("--images-csv and --images-npy: give your images one way")
        pixels, labels = datasets.read_csv(images.images_csv, model.n_in, model.n_out)
        pixels, classes, dataset = fit_images(model, pixels, images.images_csv), model.classes, \
            Path(images.images_csv).stem
    elif images.images_npy:
        pixels, labels = user_images(model, images.images_npy, images.labels_npy)
        classes, dataset = model.classes, Path(images.images_npy).stem
    else:
        dataset = data.dataset or model.meta.get("dataset")
        if dataset is None:
            raise InputError(f"{path} does not record its dataset: pass --dataset or --images-npy")
        classes = dataset_classes(model, path, dataset)
        pixels, labels = datasets.load_split(dataset, "test", data.data_dir, not data.no_download)
        pixels = fit_images(model, pixels, f"{dataset}'s test set")
    if images.images:
        pixels = pixels[:images.images]
        labels = None if labels is None else labels[:images.images]
    float_model = None
    if (path.parent / "float.npz").exists():                             # nnhil train's layout
        float_model = modelfile.load_float(path.parent / "float.npz")[:2]
    return Job(name=path.stem if path.stem != "quantized" else path.parent.name,
               arch=describe(model), model=model, images=pixels, labels=labels, classes=classes,
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


def progress_logger():
    """A progress(done, total) that logs at most every PROGRESS_EVERY_S, and the end."""
    last = time.monotonic()

    def progress(done, total):
        nonlocal last
        if done == total or time.monotonic() - last >= PROGRESS_EVERY_S:
            last = time.monotonic()
            log.info(f"  {done}/{total} images")
    return progress


def run_job(job, duts, results_dir, baud=link.BAUD, trace=None, wave=None, kind="run", timeline=None,
            baseline_cache=False):
    """One model through the DUTs (the CPU inferences and its images shared out among them);
    logs the figures and where the time went, writes the outputs under ``results_dir`` (the
    history and board/<model>-<dataset>/); True if all is exact. ``baud`` is the link rate a
    board's figures are estimated at; ``trace`` an image index to trace layer by layer anyway;
    ``wave``, a trace scope (gateware.buildcache.TRACE_SCOPES), writes the waveform of the traced
    (or first diverging) image on the simulation with that scope's signals; ``baseline_cache``:
    the CPU inferences through host.cpu_cache (the demo's)."""
    timeline = timeline or Timeline()
    if job.reference is None:
        prepare_host([job], timeline)
    model, images, labels = job.model, job.images, job.labels
    out = Path(results_dir)
    board_dir = out / "board" / f"{job.name}-{job.dataset}"
    board_dir.mkdir(parents=True, exist_ok=True)
    log.info(f"{job.arch} on {job.dataset}:")
    dut = duts[0]

    def traffic():
        return sum(d.bridge.traffic() for d in duts)
    t0, link0 = time.perf_counter(), traffic()
    shards.run_each(duts, lambda d: d.load(model), "load", timeline)
    load_s, load_bytes = time.perf_counter() - t0, (traffic() - link0) // len(duts)
    log.info(f"loaded {model.weight_count} weights over the bridge and read them back in {load_s:.2f} s"
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
    log.info(f"{CPU_IMAGES} images in plain and in optimised C on the CPU"
             + (f" ({cpu_cache.describe([b.cached for b in cached.values()], 2 * n_cpu)})" if cached else "")
             + f", {len(images)} through the accelerator" + (f", over {len(duts)} simulations" if len(duts) > 1 else ""))
    try:
        done = shards.run(duts, images, cpu_tasks, progress_logger(), timeline)
    except shards.ShardError as e:
        ref = _wait_reference(job, timeline)[0]
        for (lo, hi), part in sorted(e.done.items()):
            log.info(f"images {lo}-{hi - 1}: {int(part.matches(ref[lo:hi]).sum())}/{hi - lo} bit-exact")
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
    cpu_cycles, plain_cycles = cycles["cpu_optimised_cycles_per_inference"], cycles["cpu_plain_cycles_per_inference"]
    model_cycles = dut.accelerator.model_cycles
    macs = dut.compiled.hardware_macs
    board_pace = pace.board(baud)
    summary = {
        "target": dut.target, "model": job.name, "dataset": job.dataset, "arch": job.arch,
        "images": len(images), "model_hash": model.hash, **job.record,
        "float_test_accuracy": float_acc,
        "software_int_accuracy": None if labels is None else float((ref.argmax(1) == labels).mean()),
        "board_accuracy": None if labels is None else float((r.argmax == labels).mean()),
        "bit_exact_images": int(exact.sum()), "differing_images": np.flatnonzero(~exact)[:100].tolist(),
        **cycles, "model_cycles": model_cycles,
        "cycles_exact": bool((r.cycles == model_cycles).all()),
        "batch_timing_errors": batch_timing(r, model.n_in, model.n_out),
        "macs": macs, "macs_per_cycle": round(macs / accel_cycles, 1),
        **{f"{k}_used": v for k, v in dut.compiled.usage.items()},
        # the CPU baseline: the optimised C (the speedups), and the plain C (cycles: above)
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
    summary.update(oracle.check(job, r))
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
    _log_summary(summary, exact, r, ref, dut, board_dir, out, baud)
    log.info("\n".join(["time             " + timeline.lines()[0]] + timeline.lines()[1:]))
    traced = np.flatnonzero(~exact)[:divergence.TRACED_IMAGES].tolist()
    if traced:                      # only a failing run pays for the layer-by-layer reruns
        log.info("")
        log.info(divergence.explain(dut, images, r, board_dir))
    wanted = trace
    if wanted is not None and wanted not in traced:
        log.info("")
        log.info(divergence.trace(dut, images[wanted], wanted, board_dir).text())
    if traced or wanted is not None:
        log.info(f"traces           {board_dir}/trace-<image>.npz (every layer, board and model), .txt, .png")
    if wave and dut.target == "sim" and (wanted is not None or traced):
        from . import wave as waveform
        log.info(waveform.wave_for_run(model, images, traced[0] if wanted is None else wanted, board_dir,
                                       dut.config, scope=wave))
    return bool(exact.all() and cpu_exact and summary["cycles_exact"] and not summary["batch_timing_errors"])


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


def _log_summary(s, exact, r, ref, dut, board_dir, results_dir, baud):
    us = 1e6 / link.CLOCK_HZ
    n = s["images"]
    log.info("")
    log.info(f"model            {s['arch']} on {s['dataset']}, {s['macs']} MACs, hash {s['model_hash'][:12]}")
    if s["board_accuracy"] is not None:
        float_acc = "" if s["float_test_accuracy"] is None else f"  float {s['float_test_accuracy']:.4f}"
        log.info(f"accuracy         on-board {s['board_accuracy']:.4f}  software integer "
            f"{s['software_int_accuracy']:.4f}{float_acc}  ({n} images)")
    log.info(f"bit-exact        {s['bit_exact_images']}/{n} images: logits and argmax equal the integer "
        f"reference model; CPU inference (optimised and plain C) {'bit-exact' if s['cpu_bit_exact'] else 'DIFFERS'}")
    if not exact.all():
        i = int(np.flatnonzero(~exact)[0])
        log.info(f"                 first differing image {i}: board {r.logits[i].tolist()} "
            f"(argmax {int(r.argmax[i])}) vs model {ref[i].tolist()}")
    log.info(f"accelerator      {s['accelerator_cycles']} cycles per inference "
        f"({s['accelerator_cycles'] * us:.2f} us at {link.CLOCK_HZ / 1e6:g} MHz), model {s['model_cycles']}"
        f"{'' if s['cycles_exact'] else ' (DIFFERS)'}, {s['macs_per_cycle']} MACs/cycle, "
        f"{dut.config.lanes} lanes")
    log.info(f"with driver      {s['batch_cycles_per_image']} cycles per image "
             f"({s['batch_cycles_per_image'] * us:.2f} us) through the firmware, "
             + ("within the bounds of the accelerator's counts" if not s["batch_timing_errors"]
                else "OUT OF BOUNDS: " + "; ".join(s["batch_timing_errors"])))
    log.info(f"CPU (VexRiscv)   {s['cpu_optimised_cycles_per_inference']} cycles per inference in optimised C "
             f"({s['cpu_optimised_cycles_per_inference'] * us / 1000:.2f} ms), {s['cpu_plain_cycles_per_inference']} "
             f"in plain C ({s['cpu_plain_cycles_per_inference'] * us / 1000:.2f} ms)"
             + (f"; {cpu_cache.describe(s['cpu_cached'], s['cpu_runs'])}" if s["cpu_cached"] else ""))
    log.info(f"speedup          {s['speedup_accelerator']}x (accelerator), {s['speedup_with_driver']}x (with the driver) "
        f"over the optimised C; {s['speedup_plain_accelerator']}x, {s['speedup_plain_with_driver']}x over the plain C")
    log.info(f"host CPU         {s['host_int_us_batch1']} us per image (integer model, NumPy, one at a time), "
        f"{s['host_int_us_batched']} us batched"
        + (f", float {s['host_float_us_batched']} us batched" if "host_float_us_batched" in s else "")
        + f"; the accelerator {s['accelerator_cycles'] * us:.2f} us at {link.CLOCK_HZ / 1e6:g} MHz")
    log.info(f"weight load      {s['weight_load_s']:.2f} s over the bridge, verified by read-back; uses "
        + ", ".join(f"{s[k + '_used']}/{getattr(dut.config, k)} {k.replace('_', ' ')}"
                    for k in dut.compiled.usage))
    log.info(f"board link       {s['board_weight_load_s']} s for the weight load and {s['board_batch_s']} s "
        f"for the {n} images on a board at {baud} baud ({s['weight_load_link_bytes'] + s['batch_link_bytes']} "
        f"bytes; the sim's link is unpaced: {s['weight_load_s']:.1f} s and {s['batch_wall_s']:.1f} s here)")
    log.info(f"outputs          {board_dir}/ (board.json, results.npz{', confusion.png' if 'confusion_png' in s else ''}); "
        f"history in {Path(results_dir) / history.NAME}, plotted by 'nnhil report'")


def open_targets(target, timeline=None):
    """The DUTs of a run (a host.options.Target): the board, or its simulations, started and
    their firmware booted all at once."""
    return shards.open_all(lambda: open_dut(target.board, target.port, target.baud, target.build_dir,
                                            target.bitstream, target.sim_fallback, variant=target.variant),
                           target.simulations(), ready=lambda d: d.firmware, timeline=timeline)


def run(model_path, target=options.Target(), data=options.Data(), images=options.Images(),
        results=options.Results()):
    """nnhil run: 0 if every image, the CPU inference and the cycles are exact, else 1."""
    target.simulations()
    if results.wave_scope() and target.board:
        raise InputError(f"{'--wave-all' if results.wave_all else '--wave'}: a board has no waveform dump "
                         "(docs/waveforms.md shows LiteScope for it); run on the simulation (--target sim) to trace")
    timeline = Timeline()
    with timeline.phase("model and images"):
        job = job_from_file(model_path, data, images)
    if results.trace is not None and not 0 <= results.trace < len(job.images):
        raise InputError(f"--trace {results.trace}: the run has images 0 to {len(job.images) - 1}; "
                         f"give one of them")
    prepare_host([job], timeline)
    with open_targets(target, timeline) as duts:
        return 0 if run_job(job, duts, results.directory(), target.baud, results.trace, results.wave_scope(),
                            timeline=timeline) else 1
