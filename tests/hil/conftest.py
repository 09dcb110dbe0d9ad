"""Fixtures of the hardware-in-the-loop tests: a bridge to the target, the accelerator, the
firmware, and each trained model (training.workflow.MODELS) loaded and run on a batch of test images."""
import pytest

from training.workflow import MODELS

from host.driver import AcceleratorDriver
from host.firmware import Firmware, build_firmware


@pytest.fixture(scope="session")
def history_file(tmp_path_factory):
    """Where this run's figures go: a temporary history, not the user's out/history.jsonl."""
    return tmp_path_factory.mktemp("history") / "history.jsonl"


@pytest.fixture(scope="module")
def bridge(target):
    with target.bridge() as b:
        yield b


@pytest.fixture(scope="module")
def accelerator(bridge):
    return AcceleratorDriver(bridge)


@pytest.fixture(scope="session")
def firmware_bin(target):
    return build_firmware(target.build_dir)


@pytest.fixture(scope="module")
def firmware(bridge, firmware_bin):
    fw = Firmware(bridge, firmware_bin)
    fw.boot()
    return fw


@pytest.fixture(scope="module", params=sorted(MODELS))
def model_name(request):
    return request.param


@pytest.fixture(scope="module")
def loaded(accelerator, trained, model_name):
    """The model on the accelerator (verified by read-back) and its test data."""
    t = trained(model_name)
    accelerator.load(t.model)
    return t


@pytest.fixture(scope="module")
def batch(firmware, accelerator, loaded, n_images):
    """The first n_images test images through the accelerator, batched by the firmware."""
    images, labels = (a[:n_images] for a in loaded.data.test)
    return images, labels, firmware.accel_batch(accelerator.image.n_layers, loaded.model.n_out, images)


@pytest.fixture(scope="module")
def cpu(firmware, batch, loaded):
    """Two images through the integer model on the CPU: the speedup's baseline."""
    images = batch[0][:2]
    return images, firmware.cpu_infer(loaded.model, images)
