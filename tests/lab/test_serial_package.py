"""The one `serial` package installed is labgrid's pyserial fork, which ser2net's RFC 2217 port needs."""
import importlib.metadata

import serial
import serial.rfc2217


def test_serial_is_the_labgrid_fork():
    assert serial.VERSION == importlib.metadata.version("pyserial-labgrid")


def test_rfc2217_client_takes_ign_set_control():
    """pyserial 3.5 rejects the option ('unknown option'); without it, opening ser2net's port on a
    UART without modem lines waits for a control answer that never comes."""
    assert serial.rfc2217.Serial().from_url("rfc2217://127.0.0.1:2217?ign_set_control") == ("127.0.0.1", 2217)
