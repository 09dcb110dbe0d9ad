"""The main job: a model trained (or reused), run on the SoC, checked and reported.

Trains or reuses the cached model (the MLP by default, or the CNN, on Fashion-MNIST or
MNIST), builds or reuses the sim SoC (or opens a board), loads the weights over the
bridge, runs the test images through the accelerator (batched by the firmware from main
RAM), and prints on-board accuracy, bit-exact agreement with the integer reference model,
cycles per inference and the speedup over the CPU.
"""
import contextlib
import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from gateware import cyclemodel, layout, link, program, sim as simbuild
from training import datasets, modelfile, plots, workflow

from . import board, history, pace, report
from .bridge import Bridge
from .driver import AcceleratorDriver
from .firmware import Firmware, build_firmware
from .simulator import Simulator

CPU_IMAGES = 2                # the CPU takes millions of cycles per image
PROGRESS_EVERY_S = 5          # a long batch reports how far it is at most this often


def add_arguments(p):
    p.add_argument("--model", choices=sorted(workflow.ARCHS) + ["all"], default="mlp",
                   help="the architecture, in its default configuration, or 'all': every model of "
                        f"the project ({', '.join(workflow.MODELS)}) in one session (default: mlp)")
    p.add_argument("--dataset", choices=sorted(datasets.DATASETS), default="fashion-mnist",
                   help="the dataset of a single --model")
    p.add_argument("--data-dir", help="folder with the gzip IDX files")
    p.add_argument("--images", type=int, default=10_000, help="test images to run (default: all)")
    p.add_argument("--board", choices=["arty"], help="run on a board instead of the simulation")
    p.add_argument("--port", help="the board's serial port (default: find the Arty's FTDI)")
    p.add_argument("--baud", type=int, default=link.BAUD, help="the board's link rate (default: %(default)s)")
    p.add_argument("--build-dir", help="the board's build directory (default: the cached Arty build)")
    p.add_argument("--out", default=str(history.HISTORY.parent),
                   help="where the run goes: history.jsonl, board/<model>/ (board.json, on-board "
                        "confusion matrix) and, for 'all', report/ (default: %(default)s)")


@contextlib.contextmanager
def _target(args, log):
    """(bridge, build_dir) of the simulation or the board."""
    if not args.board:
        build = simbuild.build_sim(layout.AccelConfig(), log=log)
        with Simulator(build) as sim:
            log(f"sim SoC answering on {sim.url} after {sim.boot_seconds:.1f} s")
            with sim.bridge() as bridge:
                yield bridge, build.dir
        return
    port = args.port or board.find_arty()
    if port is None:
        raise board.BoardError(f"no Arty found (looked for {board.describe_search()}); pass --port")
    build_dir = Path(args.build_dir or simbuild.build_arty(layout.AccelConfig(), log=log))
    with Bridge(port, build_dir / "csr.json", baudrate=args.baud) as bridge:
        yield bridge, build_dir


def run(args, log=print):
    """Every selected model through one SoC session; returns 0 if all are exact."""
    selected = (list(workflow.MODELS.values()) if args.model == "all" else [(args.model, args.dataset)])
    prepared = [_prepare(arch, dataset, args, log) for arch, dataset in selected]   # train first
    ok = True
    with _target(args, log) as (bridge, build_dir):
        accel = AcceleratorDriver(bridge)
        fw = Firmware(bridge, build_firmware(build_dir))
        fw.boot()
        for p in prepared:
            ok &= _run_model(p, accel, fw, args, log)
    if len(prepared) > 1:
        log("")
        records = history.read(Path(args.out) / history.HISTORY.name)
        log("\n".join(report.side_by_side(records)))
        log(f"report           {report.write(Path(args.out) / 'report', Path(args.out) / history.HISTORY.name)}")
    return 0 if ok else 1


@dataclasses.dataclass
class Job:
    """One model to run: trained or cached, with its test images and their reference logits."""
    arch: str
    cfg: object               # its TrainConfig or CNNConfig
    data: workflow.Data
    model: object             # the quantized IntModel
    out_dir: Path
    images: np.ndarray
    labels: np.ndarray
    ref: np.ndarray           # int32 logits of the integer reference model
    float_acc: float


def _prepare(arch, dataset, args, log):
    data = workflow.load_data(dataset, args.data_dir)
    cfg = workflow.ARCHS[arch]()
    model, out_dir = workflow.ensure_model(cfg, data, log=log)
    images, labels = data.test[0][:args.images], data.test[1][:args.images]
    fmodel, standardizer, _ = modelfile.load_float(out_dir / "float.npz")
    float_acc = float((fmodel.predict(standardizer(images)) == labels).mean())
    return Job(arch, cfg, data, model, out_dir, images, labels, model.logits(images), float_acc)


def _progress(log):
    """A progress(done, total) that logs at most every PROGRESS_EVERY_S, and the end."""
    last = time.monotonic()

    def progress(done, total):
        nonlocal last
        if done == total or time.monotonic() - last >= PROGRESS_EVERY_S:
            last = time.monotonic()
            log(f"  {done}/{total} images")
    return progress


def _run_model(job, accel, fw, args, log):
    model, images, labels, ref, data = job.model, job.images, job.labels, job.ref, job.data
    board_dir = Path(args.out) / "board" / f"{job.arch}-{data.name}"
    board_dir.mkdir(parents=True, exist_ok=True)
    log(f"{workflow.arch_name(job.cfg)} on {data.name}:")
    t0, link0 = time.perf_counter(), accel.bridge.traffic()
    accel.load(model)
    load_s, load_bytes = time.perf_counter() - t0, accel.bridge.traffic() - link0
    log(f"loaded {model.weight_count} weights over the bridge and read them back in {load_s:.2f} s")
    t0, link0 = time.perf_counter(), accel.bridge.traffic()
    r = fw.accel_batch(accel, images, progress=_progress(log))
    batch_s, batch_bytes = time.perf_counter() - t0, accel.bridge.traffic() - link0
    cpu = fw.cpu_infer(model, images[:CPU_IMAGES])
    exact = (r["logits"] == ref).all(axis=1) & (r["prediction"] == ref.argmax(1))
    cpu_exact = bool((cpu["logits"] == ref[:CPU_IMAGES]).all()
                     and (cpu["prediction"] == ref[:CPU_IMAGES].argmax(1)).all())
    accel_cycles = int(np.median(r["accel_cycles"]))
    batch_cycles = int(np.median(r["cpu_cycles"]))
    cpu_cycles = int(np.median(cpu["cpu_cycles"]))
    board_acc = float((r["prediction"] == labels).mean())
    usage = program.usage(model, accel.config)
    board_pace = pace.board(args.baud)
    summary = {
        "target": args.board or "sim", "model": job.arch, "dataset": data.name,
        "arch": workflow.arch_name(job.cfg), "images": len(labels), "model_hash": model.hash,
        "float_test_accuracy": job.float_acc,
        "software_int_accuracy": float((ref.argmax(1) == labels).mean()),
        "board_accuracy": board_acc, "bit_exact_images": int(exact.sum()),
        "accelerator_cycles": accel_cycles,
        "model_cycles": cyclemodel.cycles(model, accel.config),
        "macs": cyclemodel.hardware_macs(model, accel.config),
        "macs_per_cycle": round(cyclemodel.hardware_macs(model, accel.config) / accel_cycles, 1),
        **{f"{k}_used": v for k, v in usage.items()},
        "batch_cycles_per_image": batch_cycles, "cpu_cycles_per_inference": cpu_cycles,
        "cpu_bit_exact": bool(cpu_exact),
        "speedup_accelerator": round(cpu_cycles / accel_cycles, 1),
        "speedup_with_driver": round(cpu_cycles / batch_cycles, 1),
        "weight_load_s": round(load_s, 3), "batch_wall_s": round(batch_s, 2),
        "weight_load_link_bytes": load_bytes, "batch_link_bytes": batch_bytes,
        # what a board at the build's link rate would take: the link bytes one after the
        # other (UARTBone answers each request in turn), and the batch's cycles at its clock
        "board_weight_load_s": round(load_bytes / board_pace.link_bytes_per_s, 2),
        "board_batch_s": round(batch_bytes / board_pace.link_bytes_per_s
                               + int(r["cpu_cycles"].sum()) / link.CLOCK_HZ, 2),
    }
    np.savez_compressed(board_dir / "results.npz", **r)      # every image's on-board outputs
    cm = plots.confusion_matrix(labels, r["prediction"], len(data.classes))
    plots.confusion(cm, data.classes, board_dir / "confusion.png", f"on-board ({summary['target']})")
    summary["confusion_png"] = str(board_dir / "confusion.png")
    (board_dir / "board.json").write_text(json.dumps(summary, indent=1) + "\n")
    history.append("demo", summary, Path(args.out) / history.HISTORY.name)

    us = 1e6 / link.CLOCK_HZ
    log("")
    log(f"model            {summary['arch']} on {data.name}, {summary['macs']} MACs, hash {model.hash[:12]}")
    log(f"accuracy         on-board {board_acc:.4f}  software integer {summary['software_int_accuracy']:.4f}  "
        f"float {summary['float_test_accuracy']:.4f}  ({len(labels)} test images)")
    log(f"bit-exact        {int(exact.sum())}/{len(labels)} images: logits and argmax equal the integer "
        f"reference model; CPU inference {'bit-exact' if cpu_exact else 'DIFFERS'}")
    log(f"accelerator      {accel_cycles} cycles per inference ({accel_cycles * us:.2f} us at {link.CLOCK_HZ / 1e6:g} MHz), "
        f"model {summary['model_cycles']}, {summary['macs_per_cycle']} MACs/cycle, {accel.config.lanes} lanes")
    log(f"with driver      {batch_cycles} cycles per image ({batch_cycles * us:.2f} us) through the firmware")
    log(f"CPU (VexRiscv)   {cpu_cycles} cycles per inference ({cpu_cycles * us / 1000:.2f} ms)")
    log(f"speedup          {summary['speedup_accelerator']}x (accelerator), "
        f"{summary['speedup_with_driver']}x (with the driver)")
    log(f"weight load      {load_s:.2f} s over the bridge, verified by read-back; uses "
        + ", ".join(f"{v}/{getattr(accel.config, k)} {k.replace('_', ' ')}" for k, v in usage.items()))
    log(f"board link       {summary['board_weight_load_s']} s for the weight load and "
        f"{summary['board_batch_s']} s for the {len(labels)} images on a board at {args.baud} baud "
        f"({load_bytes + batch_bytes} bytes; the sim's link is unpaced: {load_s:.1f} s and {batch_s:.1f} s here)")
    log(f"outputs          {board_dir}/ (board.json, results.npz, confusion.png); training plots in {job.out_dir}/; "
        f"history in {Path(args.out) / history.HISTORY.name}, plotted by 'nnhil report'")
    return bool(exact.all() and cpu_exact and accel_cycles == summary["model_cycles"])
