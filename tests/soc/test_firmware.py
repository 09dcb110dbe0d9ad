"""The firmware on the VexRiscv: CPU inference and the accelerator batch runner vs training.intmodel."""
import numpy as np
import pytest

from gateware import cyclemodel
from host.driver import AcceleratorDriver
from host.firmware import FIRMWARE_MAX, CMD_CPU_INFER, Firmware, FirmwareError


@pytest.fixture(scope="module")
def firmware(sim, firmware_bin):
    with sim.bridge() as b:
        fw = Firmware(b, firmware_bin)
        fw.boot()
        yield fw


@pytest.fixture(scope="module")
def images(fashion):
    return fashion.test[0][:4]


def test_cpu_inference_is_bit_exact(firmware, model_784_128_10, images, record_property):
    r = firmware.cpu_infer(model_784_128_10, images)
    np.testing.assert_array_equal(r["logits"], model_784_128_10.logits(images))
    np.testing.assert_array_equal(r["prediction"], model_784_128_10.predict(images))
    cycles = int(np.median(r["cpu_cycles"]))
    print(f"\nCPU inference 784-128-10: {cycles} cycles/image, "
          f"{cycles / model_784_128_10.macs:.1f} cycles/MAC")
    record_property("cpu_cycles_per_inference", cycles)


def test_accelerator_batch_matches_reference(firmware, model_784_128_10, images, record_property):
    accel = AcceleratorDriver(firmware.bridge)
    n_layers = accel.load(model_784_128_10).n_layers
    r = firmware.accel_batch(n_layers, model_784_128_10.n_out, images)
    np.testing.assert_array_equal(r["logits"], model_784_128_10.logits(images))
    np.testing.assert_array_equal(r["prediction"], model_784_128_10.predict(images))
    assert (r["accel_cycles"] == cyclemodel.cycles(model_784_128_10, accel.config)).all()
    e2e = int(np.median(r["cpu_cycles"]))
    print(f"\naccelerator batch: {r['accel_cycles'][0]} accelerator cycles, "
          f"{e2e} CPU-measured cycles per image (driver included)")
    record_property("batch_cycles_per_image", e2e)


def test_missing_and_oversized_firmware_are_refused(firmware, tmp_path):
    with pytest.raises(FirmwareError, match="no firmware"):
        Firmware(firmware.bridge, tmp_path / "absent.bin").boot()
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(FIRMWARE_MAX + 1))
    with pytest.raises(FirmwareError, match="more than"):
        Firmware(firmware.bridge, big).boot()


def test_unresponsive_firmware_times_out(firmware, firmware_bin):
    """Last in the module: it stops the CPU, then boots the firmware again."""
    firmware.bridge.csr_write("ctrl_reset", 2)          # hold the CPU: nobody serves the mailbox
    try:
        with pytest.raises(FirmwareError, match="did not finish"):
            firmware.run(CMD_CPU_INFER, timeout=1.0)
    finally:
        firmware.boot()
