"""The seed table behind every accuracy target: each model trained at several seeds, tested in full.

    nice -n 5 .venv/bin/python tests/benchmarks/seed_table.py --models mlp cnn cnn-mnist --seeds 0 1 2 3 4 \\
        --results seeds.jsonl
    OPENBLAS_CORETYPE=Haswell .venv/bin/python tests/benchmarks/seed_table.py --models mlp --results seeds.jsonl
    .venv/bin/python tests/benchmarks/seed_table.py --results seeds.jsonl --table      # print only

Training is bit-reproducible for a seed, a BLAS kernel and a thread count, not across kernels:
OpenBLAS picks its kernel by CPU (SkylakeX on an AVX-512 CPU, Haswell on one with AVX2 only),
and `OPENBLAS_CORETYPE` forces one, so a single machine measures what another CPU kind gets.
A test's target is only safe below the worst seed by the seed spread plus the difference a
kernel makes; `--table` prints per model the seeds, mean, min and max for each kernel, and
the highest target that keeps that margin (for another CPU kind: `--cpu-images`, or the
largest difference measured between two kernels at one seed of any model, if that is more).

Each (model, seed, kernel) is trained once, as `workflow.train_and_quantize` trains it for the
suite (BLAS pinned to workflow.BLAS_THREADS), into a temporary folder; its result is appended
to `--results` as a JSON line at once, so an interrupted run resumes where it stopped.
The models are the suite's: workflow.MODELS with their defaults, and the configurations of
the slow tests (the A7-100's 90% MLP, the larger MLP), taken from those tests.
"""
import argparse
import dataclasses
import datetime
import importlib.util
import json
import platform
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import threadpoolctl

from nnhil.training import workflow

TESTS = Path(__file__).resolve().parents[1]
# model name -> (file of the test that holds its configuration, its name there)
TEST_CONFIGS = {"a7-100": ("soc/test_a7_100.py", "MLP_90"), "large-mlp": ("training/test_large_mlp.py", "LARGE")}
CPU_IMAGES = 13     # issue 23: one seed moved by 13 of the 10,000 test images on another CPU kind


def _from_test(file, name):
    spec = importlib.util.spec_from_file_location(f"_seed_table_{Path(file).stem}", TESTS / file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)


def model_config(name):
    """(training configuration, dataset name) of a model, at its default seed."""
    if name in workflow.MODELS:
        arch, dataset = workflow.MODELS[name]
        return workflow.ARCHS[arch](), dataset
    return _from_test(*TEST_CONFIGS[name]), "fashion-mnist"


MODELS = (*workflow.MODELS, *TEST_CONFIGS)


def blas_kernel():
    """The BLAS library and the kernel it chose (or was told to use), e.g. 'openblas 0.3.31 SkylakeX'."""
    import numpy  # noqa: F401  (threadpoolctl sees only loaded libraries)
    libs = [lib for lib in threadpoolctl.threadpool_info() if lib["user_api"] == "blas"]
    return ", ".join(f"{lib['internal_api']} {lib['version']} {lib.get('architecture')}" for lib in libs)


def cpu_name():
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def read_results(path):
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def measure(names, seeds, results, log):
    kernel, done = blas_kernel(), {(r["model"], r["seed"], r["blas"]) for r in read_results(results)}
    data = {}
    for name in names:
        cfg, dataset = model_config(name)
        for seed in seeds:
            if (name, seed, kernel) in done:
                log(f"{name} seed {seed} on {kernel}: in {results} already")
                continue
            if dataset not in data:
                data[dataset] = workflow.load_data(dataset)
            with tempfile.TemporaryDirectory(prefix="seed-table-") as tmp:
                m = workflow.train_and_quantize(dataclasses.replace(cfg, seed=seed), data[dataset], tmp)
            row = {"model": name, "seed": seed, "default_seed": cfg.seed, "dataset": dataset,
                   "float": m["float_test_accuracy"], "int": m["int_test_accuracy"],
                   "test_images": m["test_images"], "train_seconds": m["train_seconds"],
                   "blas": kernel, "cpu": cpu_name(), "numpy": np.__version__,
                   "blas_threads": workflow.BLAS_THREADS, "date": datetime.date.today().isoformat()}
            with results.open("a") as f:
                f.write(json.dumps(row) + "\n")
            log(f"{name} seed {seed} on {kernel}: float {row['float']:.4f} integer {row['int']:.4f} "
                f"({row['train_seconds']:.0f} s)")


def highest_target(accuracies, images, cpu_images=CPU_IMAGES):
    """The highest target (a multiple of 0.001) at least (spread + cpu_images) test images below
    the worst of the accuracies."""
    worst, spread = min(accuracies), max(accuracies) - min(accuracies)
    return np.floor((worst - spread - cpu_images / images) * 1000 + 1e-9) / 1000


def kernel_difference(rows, kind):
    """The most test images by which two BLAS kernels' results differ at one seed of one model
    (0 where no model was measured on two kernels)."""
    by = {}
    for r in rows:
        by.setdefault((r["model"], r["seed"]), []).append(r[kind] * r["test_images"])
    return max(round(max(a) - min(a)) for a in by.values())


def table(rows, cpu_images=CPU_IMAGES):
    """Markdown: per model and kernel, float and integer accuracy (%) at each seed, mean, min,
    max, and the highest target: for another CPU kind the larger of cpu_images and the largest
    difference between two kernels measured at one seed of any model."""
    cpu = {kind: max(cpu_images, kernel_difference(rows, kind)) for kind in ("float", "int")}
    out = []
    for name in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == name]
        seeds, n = sorted({r["seed"] for r in mine}), mine[0]["test_images"]
        out += [f"\n### {name} ({mine[0]['dataset']}, default seed {mine[0]['default_seed']}, {n:,} test images)\n",
                "| kernel | accuracy | " + " | ".join(f"seed {s}" for s in seeds) + " | mean | min | max | spread |",
                "|---" * (len(seeds) + 6) + "|"]
        for kernel in dict.fromkeys(r["blas"] for r in mine):
            by_seed = {r["seed"]: r for r in mine if r["blas"] == kernel}
            for kind in ("float", "int"):
                acc = [by_seed[s][kind] for s in seeds if s in by_seed]
                cells = [f"{100 * by_seed[s][kind]:.2f}" if s in by_seed else "" for s in seeds]
                out.append(f"| {kernel.split()[-1]} | {kind} | " + " | ".join(cells) +
                           f" | {100 * statistics.mean(acc):.2f} | {100 * min(acc):.2f} | {100 * max(acc):.2f}"
                           f" | {round((max(acc) - min(acc)) * n)} images |")
        out.append("")
        for kind in ("float", "int"):
            acc = [r[kind] for r in mine]
            out.append(f"- {kind}: highest target {highest_target(acc, n, cpu[kind]):.3f}: the worst, less the "
                       f"spread of every seed and kernel ({round((max(acc) - min(acc)) * n)} images) and "
                       f"{cpu[kind]} images for another CPU kind (the larger of --cpu-images {cpu_images} and "
                       f"the kernels' difference measured, {kernel_difference(rows, kind)})")
        dates = sorted({r["date"] for r in mine})
        out.append(f"- CPU {', '.join(sorted({r['cpu'] for r in mine}))}; numpy {mine[0]['numpy']}, "
                   f"{mine[0]['blas_threads']} BLAS thread; measured {dates[0]}"
                   + (f" to {dates[-1]}" if len(dates) > 1 else ""))
    return "\n".join(out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", choices=MODELS, default=list(workflow.MODELS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    p.add_argument("--results", type=Path, required=True, help="JSON lines, appended to (and resumed from)")
    p.add_argument("--table", action="store_true", help="print the table of --results only, train nothing")
    p.add_argument("--cpu-images", type=int, default=CPU_IMAGES)
    args = p.parse_args(argv)
    if not args.table:
        measure(args.models, args.seeds, args.results, lambda s: print(s, flush=True))
    print(table(read_results(args.results), args.cpu_images))


if __name__ == "__main__":
    sys.exit(main())
