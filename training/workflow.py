"""Data preparation, training, quantization and reporting as one reusable pipeline.

The CLI and the test fixtures both go through here, so a model trained by a test is
the same as the one a user trains with the same configuration. Outputs are cached by
a hash of the configuration, and reused only while everything else that determines them
(the training package's sources, numpy, its BLAS and matplotlib) is what made them.
"""
import contextlib
import hashlib
import importlib.metadata
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import threadpoolctl

from . import datasets, filelock, home, modelfile, plots
from .cnn import CNNConfig
from .quantize import quantize
from .train import Standardizer, TrainConfig, train

log = logging.getLogger(__name__)

CALIBRATION_IMAGES = 5000
ARCHS = {"mlp": TrainConfig, "cnn": CNNConfig}   # the architectures, by name, with their defaults
# The models the project trains, checks and runs on the hardware: name -> (architecture, dataset),
# each with its architecture's default configuration.
MODELS = {"mlp": ("mlp", "fashion-mnist"), "cnn": ("cnn", "fashion-mnist"), "cnn-mnist": ("cnn", "mnist")}
# Float results depend on the BLAS thread count (it changes the summation order), so training
# and float evaluation run on a fixed count; one is also the fastest on a shared 2-core machine.
BLAS_THREADS = 1
SOURCES = Path(__file__).resolve().parent      # the training package: every module shapes the outputs
# One process trains a model at a time (a test worker, the CLI); another that wants it waits for
# as long as the training may take: its FLOPs at an eighth of the slower trainer's rate (the CNN's:
# its 2.1 TFLOP take about 2 minutes on one core of this project's 2-core machine, 17 GFLOP/s),
# plus quantization, evaluation and plots; about 20 minutes for either default model.
TRAINING_LOCK = ".training.lock"
TRAIN_FLOPS_FLOOR = 2e9
TRAIN_OVERHEAD_S = 120


class TrainingLockError(RuntimeError):
    """The process this one waited for to train a model ended without it."""


@dataclass
class Data:
    name: str
    classes: tuple
    train: tuple          # (uint8 images, labels)
    val: tuple
    test: tuple
    standardizer: Standardizer


@dataclass
class Trained:
    """A quantized model with the data it was trained and is tested on."""
    name: str
    model: object         # the quantized IntModel
    out_dir: Path         # its float.npz, metrics.json and plots (or the folder of its file)
    data: Data


def load_data(name="fashion-mnist", data_dir=None, val_size=5000, seed=0, download=True):
    train_split = datasets.load_split(name, "train", data_dir, download)
    test_split = datasets.load_split(name, "test", data_dir, download)
    tr, va = datasets.train_val_split(*train_split, val_size, seed)
    return Data(name, datasets.DATASETS[name].classes, tr, va, test_split, Standardizer.fit(tr[0]))


def config_hash(cfg, dataset):
    """Identifies a trained model: its dataset and every training hyperparameter."""
    blob = json.dumps({"dataset": dataset, "train": cfg.to_dict()}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


@contextlib.contextmanager
def pinned_blas():
    """Run float training or evaluation on BLAS_THREADS threads, whatever the machine has."""
    with threadpoolctl.threadpool_limits(BLAS_THREADS, user_api="blas"):
        yield


def provenance():
    """Everything besides the configuration that changes a trained model or its plots: a digest
    of the training package's sources, and the versions of numpy, its BLAS and matplotlib."""
    digest = hashlib.sha256()
    for path in sorted(SOURCES.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    blas = [f"{lib['internal_api']} {lib['version']} {lib.get('architecture')} {lib['threading_layer']}"
            for lib in threadpoolctl.threadpool_info() if lib["user_api"] == "blas"]
    return {"sources": digest.hexdigest()[:16], "numpy": np.__version__, "blas": blas,
            "blas_threads": BLAS_THREADS, "matplotlib": importlib.metadata.version("matplotlib")}


def arch_name(cfg):
    """A short name of the architecture: 'mlp784-128-10' or 'cnn16-32-k2-64-10'."""
    layers = "-".join(str(n) for n in cfg.layers)
    if isinstance(cfg, CNNConfig):
        return f"cnn{'-'.join(str(c) for c in cfg.channels)}-k{cfg.kernel}-{layers}"
    return f"mlp{layers}"


def default_out_dir(cfg, dataset):
    return home.out() / f"{dataset}-{arch_name(cfg)}-{config_hash(cfg, dataset)}"


def accuracy(pred, labels):
    return float((np.asarray(pred) == labels).mean())


def train_and_quantize(cfg, data, out_dir):
    """Train, checkpoint, quantize, evaluate on the test set and plot; returns metrics.

    cfg is a TrainConfig (an MLP) or a CNNConfig (a CNN); both write float.npz,
    quantized.npz, metrics.json and the plots into out_dir.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cnn = isinstance(cfg, CNNConfig)
    if cnn:
        name = (f"CNN conv{cfg.kernel}x{cfg.kernel} {'-'.join(map(str, cfg.channels))} "
                f"dense {'-'.join(map(str, cfg.layers))}")
    else:
        name = f"MLP {'-'.join(map(str, cfg.layers))}"
    log.info(f"training {name} on {data.name}: "
        f"{len(data.train[1])} train / {len(data.val[1])} validation images")
    t0 = time.perf_counter()
    st = data.standardizer if cfg.inputs == "standardize" else Standardizer(0.0, 1.0)
    with pinned_blas():
        model, hist = train(cfg, st(data.train[0]), data.train[1].astype(np.int64),
                            st(data.val[0]), data.val[1])
        train_s = time.perf_counter() - t0
        meta = {"dataset": data.name, "train_config": cfg.to_dict(),
                "config_hash": config_hash(cfg, data.name), "provenance": provenance()}
        modelfile.save_float(out_dir / "float.npz", model, st, meta)
        # calibration runs the float model too
        qmodel = quantize(model, st, data.train[0][:CALIBRATION_IMAGES], data.classes, meta)
        qhash = modelfile.save_quantized(out_dir / "quantized.npz", qmodel)
        test_x, test_y = data.test
        float_pred = model.predict(st(test_x))
    int_pred = qmodel.predict(test_x)
    metrics = {
        "dataset": data.name, "layers": list(cfg.layers), "config_hash": meta["config_hash"],
        "model_hash": qhash, "train_seconds": round(train_s, 2),
        "best_val_accuracy": max(hist.val_acc),
        "float_test_accuracy": accuracy(float_pred, test_y),
        "int_test_accuracy": accuracy(int_pred, test_y),
        "int_float_agreement": accuracy(int_pred, float_pred),
        "test_images": int(len(test_y)), "macs": qmodel.macs,
        "weights": int(sum(layer.weights.size for layer in qmodel.layers if hasattr(layer, "weights"))),
    }
    if cnn:
        metrics.update(arch="cnn", channels=list(cfg.channels), kernel=cfg.kernel,
                       epochs=cfg.epochs, seconds_per_epoch=round(float(np.mean(hist.seconds)), 2),
                       conv_weights=int(sum(layer.weights.size for layer in qmodel.layers
                                            if getattr(layer, "weights", None) is not None
                                            and layer.weights.ndim == 4)))
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    title = f"{name} on {data.name}"
    plots.training_curves(hist, out_dir / "curves.png", title)
    plots.confusion(plots.confusion_matrix(test_y, int_pred, len(data.classes)), data.classes,
                    out_dir / "confusion.png", f"{title}, integer model,")
    plots.sample_predictions(test_x, test_y, int_pred, data.classes, out_dir / "samples.png",
                             title=f"{title}, integer model: predicted (true)")
    return metrics


def train_cnn(data, out_dir, **overrides):
    """train_and_quantize for CNNConfig(**overrides): the entry point of 'nnhil train --arch cnn'."""
    return train_and_quantize(CNNConfig(**overrides), data, out_dir)


def stale(meta, cfg, dataset):
    """Why a cached model's meta does not describe what cfg would train here now (None if it does)."""
    if meta.get("config_hash") != config_hash(cfg, dataset):
        return "trained with another configuration"
    was, now = meta.get("provenance") or {}, provenance()
    changed = [k for k in now if was.get(k) != now[k]]
    return f"trained with other {', '.join(changed)}" if changed else None


def training_flops(cfg, data):
    """FLOPs of training cfg on data: per epoch three products (forward and two backward) of
    2 FLOPs per multiply-add on every training image, and a forward pass on the validation set."""
    model = cfg.build_model()
    macs = getattr(model, "macs", None) or sum(w.size for w in model.weights)   # an MLP's MACs
    return 2 * macs * cfg.epochs * (3 * len(data.train[1]) + len(data.val[1]))


def training_timeout(cfg, data):
    """How long a process waits for another one training the same model (seconds)."""
    return training_flops(cfg, data) / TRAIN_FLOPS_FLOOR + TRAIN_OVERHEAD_S


def _cached(path, cfg, dataset):
    """The cached model at path if it is what cfg would train here now, else None (saying why)."""
    if not path.exists():
        return None
    try:
        model = modelfile.load_quantized(path)
    except modelfile.ModelFileError as e:
        log.info(f"retraining: cached model unusable ({e})")
        return None
    why = stale(model.meta, cfg, dataset)
    if why is None:
        return model
    log.info(f"retraining: the cached {path} was {why}")
    return None


def ensure_model(cfg, data, out_dir=None):
    """The quantized model for cfg, trained only if no cached copy made by the same
    configuration, sources and libraries exists.

    Under the model's lock: a second process asking for it meanwhile waits (at most
    training_timeout) and takes the cached model, or fails saying the trainer died."""
    out_dir = Path(out_dir or default_out_dir(cfg, data.name))
    path = out_dir / "quantized.npz"
    with filelock.held(out_dir / TRAINING_LOCK, training_timeout(cfg, data), f"training {out_dir}") as waited_for:
        model = _cached(path, cfg, data.name)
        if model is not None:
            return model, out_dir
        if waited_for is not None:
            fate = ("died before it finished" if not filelock.alive(waited_for.get("pid"))
                    else "finished without a usable model (see its output)")
            raise TrainingLockError(f"{filelock.describe(waited_for)} was training {out_dir} and {fate}; "
                                    f"nothing is cached there: run again to train it in this process")
        train_and_quantize(cfg, data, out_dir)
        return modelfile.load_quantized(path), out_dir
