"""The firmware on the VexRiscv: CPU inference bit-exact with the reference, and its failures."""
import numpy as np
import pytest

from gateware import resources
from host.firmware import CMD_CPU_INFER, CTRL_CPU_RESET, FIRMWARE_MAX, Firmware, FirmwareError

pytestmark = pytest.mark.board


def test_cpu_inference_of_random_weights_is_bit_exact(firmware, fashion):
    """Random int8 weights drive hidden layers into saturation: the edges the trained model avoids."""
    model = resources.headline_model()
    images = fashion.test[0][:2]
    r = firmware.cpu_infer(model, images)
    np.testing.assert_array_equal(r["logits"], model.logits(images))
    np.testing.assert_array_equal(r["prediction"], model.predict(images))
    assert (model.activations(images)[0] == 255).any()


def test_missing_and_oversized_firmware_are_refused(firmware, tmp_path):
    with pytest.raises(FirmwareError, match="no firmware"):
        Firmware(firmware.bridge, tmp_path / "absent.bin").boot()
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(FIRMWARE_MAX + 1))
    with pytest.raises(FirmwareError, match="more than"):
        Firmware(firmware.bridge, big).boot()


def test_unresponsive_firmware_times_out(firmware):
    """Last in the module: it stops the CPU, then boots the firmware again."""
    firmware.bridge.csr_write("ctrl_reset", CTRL_CPU_RESET)   # hold the CPU: nobody serves the mailbox
    try:
        with pytest.raises(FirmwareError, match="did not finish"):
            firmware.run(CMD_CPU_INFER, timeout=1.0)
    finally:
        firmware.boot()
