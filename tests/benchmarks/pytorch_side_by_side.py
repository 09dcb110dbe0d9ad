"""NumPy against PyTorch, side by side: one training epoch of the MLP and of the CNN each.

    make bench-pytorch          (installs torch into build/torch-venv first, about 5 GB)

Same architectures, batch 64, SGD with momentum, the 55,000 Fashion-MNIST training images,
`--threads` threads for PyTorch, NumPy's BLAS on the threads `nnhil train` pins it to
(workflow.BLAS_THREADS, one). On a busy machine give PyTorch `--threads 1` too: two threads
that wait for each other at every operation lose far more to the other jobs than one. Each
epoch runs in a fresh process after a short warm-up; the frameworks alternate, each round
in the opposite order; the medians over the rounds are reported, and the median of the
rounds' NumPy/PyTorch ratios.
Each NumPy process also times the BLAS yardstick of the epoch's FLOPs (speed.py): PyTorch's
epoch over it is the bound of the default suite's test_training_speed.py.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ARCHS = ("mlp", "cnn")
BATCH = 64
WARMUP_IMAGES = 10 * BATCH


def torch_epoch(arch, x, y, threads):
    """Seconds (wall, CPU of all threads) of one PyTorch epoch of the NumPy trainer's model
    and optimiser."""
    import torch
    from torch import nn
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    if arch == "mlp":
        model = nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Dropout(0.1), nn.Linear(128, 10))
    else:
        x = x.reshape(-1, 1, 28, 28)
        model = nn.Sequential(nn.Conv2d(1, 16, 2), nn.ReLU(), nn.MaxPool2d(2),
                              nn.Conv2d(16, 32, 2), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                              nn.Dropout(0.1), nn.Linear(32 * 6 * 6, 64), nn.ReLU(),
                              nn.Dropout(0.1), nn.Linear(64, 10))
    weights = [p for p in model.parameters() if p.ndim >= 2]
    biases = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.SGD([{"params": weights, "weight_decay": 5e-4}, {"params": biases}],
                          lr=0.05, momentum=0.9, weight_decay=0.0)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    x, y = torch.from_numpy(x), torch.from_numpy(y)

    def epoch(n):
        order, correct = torch.randperm(n), 0
        for k in range(0, n, BATCH):
            idx = order[k:k + BATCH]
            opt.zero_grad(set_to_none=True)
            logits = model(x[idx])
            loss = loss_fn(logits, y[idx])
            loss.backward()
            opt.step()
            correct += int((logits.argmax(1) == y[idx]).sum())
        return correct

    model.train()
    epoch(WARMUP_IMAGES)
    t0, c0 = time.perf_counter(), time.process_time()
    epoch(len(y))
    return time.perf_counter() - t0, time.process_time() - c0


def numpy_epoch(arch, x, y):
    """Seconds (wall, CPU) of one epoch of the project's trainer, and of the BLAS yardstick of
    its FLOPs."""
    import speed
    from nnhil.training import workflow
    with workflow.pinned_blas():                 # as `nnhil train` runs the trainers
        speed.numpy_epoch(arch, x[:WARMUP_IMAGES], y[:WARMUP_IMAGES])
        t0, c0 = time.perf_counter(), time.process_time()
        speed.numpy_epoch(arch, x, y)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    return seconds, cpu, speed.yardstick_seconds(speed.training_flops(arch, len(y)))


def worker(framework, arch, data, threads, images):
    d = np.load(data)
    x, y = d["x"][:images], d["y"][:images]
    if framework == "torch":
        epoch_s, cpu_s = torch_epoch(arch, x, y, threads)
        result = {"epoch_s": epoch_s, "cpu_s": cpu_s}
    else:
        epoch_s, cpu_s, yardstick_s = numpy_epoch(arch, x, y)
        result = {"epoch_s": epoch_s, "cpu_s": cpu_s, "yardstick_s": yardstick_s}
    print(json.dumps(result))


def run_worker(python, framework, arch, data, threads, images):
    cmd = [python, __file__, "--worker", framework, arch, str(data), "--threads", str(threads),
           "--images", str(images)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"pytorch_side_by_side: the {framework} {arch} epoch failed:\n{r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def prepare_data(path):
    """The standardised Fashion-MNIST training split the trainer uses (55,000 images)."""
    from nnhil.training import workflow
    data = workflow.load_data("fashion-mnist")
    images, labels = data.train
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, x=data.standardizer(images), y=labels.astype(np.int64))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--torch-python", default="build/torch-venv/bin/python",
                   help="a Python with torch installed (make bench-pytorch makes build/torch-venv)")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    p.add_argument("--threads", type=int, default=2, help="PyTorch's threads (default 2)")
    p.add_argument("--images", type=int, default=55_000,
                   help="training images per epoch (default all 55,000; fewer for a quicker look)")
    p.add_argument("--data", type=Path, default=Path("build/bench/fashion-train.npz"))
    p.add_argument("--worker", nargs=3, metavar=("FRAMEWORK", "ARCH", "DATA"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker(*args.worker, args.threads, args.images)
    if not Path(args.torch_python).exists():
        sys.exit(f"pytorch_side_by_side: no {args.torch_python}; `make bench-pytorch` installs torch "
                 f"there, or pass --torch-python")
    if args.rounds < 1 or not WARMUP_IMAGES <= args.images <= 55_000:
        sys.exit(f"pytorch_side_by_side: --rounds must be at least 1 and --images between "
                 f"{WARMUP_IMAGES} and 55,000")
    prepare_data(args.data)
    n = args.images
    pythons = {"numpy": sys.executable, "torch": args.torch_python}
    runs = {(f, a): [] for f in pythons for a in ARCHS}
    for r in range(args.rounds):
        for arch in ARCHS:
            for framework in (("numpy", "torch") if r % 2 == 0 else ("torch", "numpy")):
                res = run_worker(pythons[framework], framework, arch, args.data, args.threads, n)
                runs[framework, arch].append(res)
                print(f"round {r + 1}/{args.rounds}  {arch}  {framework:5s}  {res['epoch_s']:7.2f} s "
                      f"(CPU {res['cpu_s']:.2f} s, load {os.getloadavg()[0]:.1f})", flush=True)
    print(f"\none epoch, {n:,} Fashion-MNIST images, batch {BATCH}, SGD momentum; PyTorch "
          f"{args.threads} threads; medians of {args.rounds} alternating rounds")
    print(f"{'model':5s}  {'NumPy':>8s}  {'PyTorch':>8s}  {'NumPy/PyTorch':>13s}  {'PyTorch/yardstick':>17s}")
    for arch in ARCHS:
        np_s = statistics.median(res["epoch_s"] for res in runs["numpy", arch])
        torch_s = statistics.median(res["epoch_s"] for res in runs["torch", arch])
        yard_s = statistics.median(res["yardstick_s"] for res in runs["numpy", arch])
        ratios = [a["epoch_s"] / b["epoch_s"] for a, b in zip(runs["numpy", arch], runs["torch", arch])]
        print(f"{arch:5s}  {np_s:7.2f}s  {torch_s:7.2f}s  {statistics.median(ratios):12.2f}x  "
              f"{torch_s / yard_s:16.1f}x"
              f"   (per-round ratios {', '.join(f'{q:.2f}' for q in ratios)})")


if __name__ == "__main__":
    main()
