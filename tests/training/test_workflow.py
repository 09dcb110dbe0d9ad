"""The model cache: a cached model is reused only while its configuration, the training
sources and the libraries that change its numbers are what made it."""
import contextlib
import logging
import shutil

import pytest
import threadpoolctl

from nnhil.training import modelfile, workflow
from nnhil.training.train import TrainConfig

CFG = TrainConfig(layers=(784, 8, 10), epochs=1, val_size=200)


@contextlib.contextmanager
def logged(name="nnhil"):
    """The messages logged under ``name`` (INFO and up) while the block runs, in a list."""
    lines, logger = [], logging.getLogger(name)
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())
    saved = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved)


@pytest.fixture(scope="module")
def small(fashion):
    return workflow.Data(fashion.name, fashion.classes, tuple(a[:600] for a in fashion.train),
                         tuple(a[:200] for a in fashion.val), tuple(a[:200] for a in fashion.test),
                         fashion.standardizer)


@pytest.fixture(scope="module")
def cached(small, tmp_path_factory):
    """A model trained once into a cache directory; each test works on a copy of it."""
    out = tmp_path_factory.mktemp("cached") / "out"
    with logged() as lines:
        workflow.ensure_model(CFG, small, out)
    assert lines and lines[0].startswith("training MLP 784-8-10")
    return out


@pytest.fixture
def sources(tmp_path, monkeypatch):
    """A copy of the training package's sources that the cache key digests instead."""
    copy = tmp_path / "sources"
    shutil.copytree(workflow.SOURCES, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(workflow, "SOURCES", copy)
    return copy


def _ensure(small, out_dir):
    """(model hash, log lines) of ensure_model."""
    with logged() as lines:
        model, _ = workflow.ensure_model(CFG, small, out_dir)
    return model.hash, lines


def test_changed_source_retrains_then_the_new_model_is_reused(small, cached, sources, tmp_path):
    out = shutil.copytree(cached, tmp_path / "out")
    first, lines = _ensure(small, out)
    assert lines == []                                         # nothing changed: reused as it is
    path = sources / "quantize.py"
    path.write_text(path.read_text() + "\n# any edit\n")
    _, lines = _ensure(small, out)
    assert lines[0] == f"retraining: the cached {out / 'quantized.npz'} was trained with other sources"
    assert lines[1].startswith("training MLP 784-8-10")
    assert _ensure(small, out)[1] == []


@pytest.mark.parametrize("change", ["source", "numpy", "blas", "threads"])
def test_stale_names_what_changed(cached, sources, monkeypatch, change):
    meta = modelfile.load_quantized(cached / "quantized.npz").meta
    assert workflow.stale(meta, CFG, "fashion-mnist") is None
    if change == "source":
        path = sources / "mlp.py"
        path.write_text(path.read_text().replace("def ", "def  ", 1))
        what = "sources"
    elif change == "numpy":
        monkeypatch.setattr(workflow.np, "__version__", "0.0")
        what = "numpy"
    elif change == "blas":
        info = [{**lib, "architecture": "Prescott"} for lib in threadpoolctl.threadpool_info()]
        monkeypatch.setattr(workflow.threadpoolctl, "threadpool_info", lambda: info)
        what = "blas"
    else:
        monkeypatch.setattr(workflow, "BLAS_THREADS", workflow.BLAS_THREADS + 1)
        what = "blas_threads"
    assert workflow.stale(meta, CFG, "fashion-mnist") == f"trained with other {what}"


def test_another_configuration_or_dataset_is_stale(cached):
    meta = modelfile.load_quantized(cached / "quantized.npz").meta
    assert workflow.stale(meta, TrainConfig(layers=(784, 8, 10), epochs=1, val_size=200, seed=1),
                          "fashion-mnist") == "trained with another configuration"
    assert workflow.stale(meta, CFG, "mnist") == "trained with another configuration"


def test_blas_is_pinned_while_training_and_evaluating():
    with workflow.pinned_blas():
        threads = {lib["num_threads"] for lib in threadpoolctl.threadpool_info() if lib["user_api"] == "blas"}
    assert threads == {workflow.BLAS_THREADS}
