"""Fixtures of the hardware-in-the-loop tests: a bridge to the target, the accelerator, the firmware."""
import pytest

from host.driver import AcceleratorDriver
from host.firmware import Firmware, build_firmware


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
