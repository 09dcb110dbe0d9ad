"""The one `serial` package installed is labgrid's pyserial fork (make setup installs it over pyserial's)."""
import importlib.metadata

import serial


def test_serial_is_the_labgrid_fork():
    assert serial.VERSION == importlib.metadata.version("pyserial-labgrid")
