"""Fixtures of the hardware-in-the-loop tests: the DUT's bridge, accelerator and firmware, and each
model (the project's trained ones, or the files given with --model) loaded and run on test images.
The options (--model, --images, --baselines, ...) are the repository's conftest.py's."""
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest

from nnhil.host.firmware_abi import CPU_CODES
from nnhil.training import modelfile, workflow
from nnhil.training.workflow import MODELS


def pytest_generate_tests(metafunc):
    if "model_name" in metafunc.fixturenames and not hasattr(metafunc.module, "model_name"):
        files = metafunc.config.getoption("--model")
        metafunc.parametrize("model_name", files or sorted(MODELS), scope="module")


def pytest_collection_modifyitems(items):
    """With pytest -n --dist loadgroup, a module's tests of one model go to one worker: their
    module fixtures (the model loaded, its batch of images run) are made once."""
    for item in items:
        model = getattr(item, "callspec", None) and item.callspec.params.get("model_name")
        if model:
            item.add_marker(pytest.mark.xdist_group(f"{item.module.__name__}-{model}"))


@pytest.fixture(scope="session")
def history_file(tmp_path_factory, request):
    """Where this run's figures go: a temporary history, not the user's out/history.jsonl. The
    workers of ``pytest -n`` share one, in the run's base directory (theirs are inside it)."""
    base = tmp_path_factory.getbasetemp()
    return (base.parent if hasattr(request.config, "workerinput") else base) / "history.jsonl"


@pytest.fixture(scope="session")
def baselines_path(request, repo_baselines):
    """--baselines; else this repository's for its own models, and a file in the rootdir (as
    --baselines's help says) for the models of --model."""
    given = request.config.getoption("--baselines")
    if given:
        return Path(given)
    if request.config.getoption("--model"):
        return request.config.rootpath / "nnhil-baselines.json"
    return repo_baselines


@pytest.fixture(scope="session")
def bridge(dut):
    return dut.bridge


@pytest.fixture(scope="session")
def accelerator(dut):
    return dut.accelerator


@pytest.fixture(scope="session")
def firmware(dut):
    return dut.firmware


@pytest.fixture(scope="module")
def loaded(accelerator, trained, dataset, model_name):
    """The model on the accelerator (verified by read-back) and its test data."""
    if model_name in MODELS:
        t = trained(model_name)
    else:                           # a file of --model: its test data is the dataset it records
        model = modelfile.load_quantized(model_name)
        name = model.meta.get("dataset")
        if name is None:
            pytest.fail(f"--model {model_name}: the file does not record its dataset (meta.dataset)")
        t = workflow.Trained(model_name, model, Path(model_name).parent, dataset(name))
    accelerator.load(t.model)
    return t


class Batch(NamedTuple):
    """Test images, their labels and what the target gave for them (a host.results.Results)."""
    images: np.ndarray
    labels: np.ndarray
    results: object


class CpuRuns(NamedTuple):
    """Images and the Results of each of the firmware's C inferences on them, by code."""
    images: np.ndarray
    results: dict


@pytest.fixture(scope="module")
def batch(firmware, accelerator, loaded, n_images):
    """The first n_images test images through the accelerator, batched by the firmware."""
    images, labels = (a[:n_images] for a in loaded.data.test)
    images = images.reshape((len(images),) + tuple(loaded.model.input_shape))
    return Batch(images, labels, firmware.accel_batch(accelerator, images))


@pytest.fixture(scope="module")
def cpu(firmware, batch, loaded):
    """Two images through the integer model on the CPU in each of the firmware's C inferences
    (host.firmware_abi.CPU_CODES: "optimised", the speedup's baseline, and "plain"), by name."""
    images = batch.images[:2]
    return CpuRuns(images, {code: firmware.cpu_infer(loaded.model, images, code=code) for code in CPU_CODES})
