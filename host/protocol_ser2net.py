"""pyserial URL ``ser2net://HOST:PORT``: a serial port that a labgrid exporter serves through ser2net.

ser2net speaks RFC 2217. pyserial's ``rfc2217://`` client refuses a write timeout, which
:class:`host.bridge.Bridge` sets on every link; its socket has a timeout all the same, so
here the write timeout is that socket's. The exported UART (an FTDI, or a pty in the
tests) has no modem lines to confirm, hence the ``ign_set_control`` option.
Registered with pyserial by :mod:`host.lab`.
"""
import serial.rfc2217

SCHEME = "ser2net"


class Serial(serial.rfc2217.Serial):
    def from_url(self, url):
        host_port = url.split("://", 1)[1].split("?", 1)[0]
        return super().from_url(f"rfc2217://{host_port}?ign_set_control")

    def _reconfigure_port(self):
        write_timeout, self._write_timeout = self._write_timeout, None
        try:
            super()._reconfigure_port()
        finally:
            self._write_timeout = write_timeout
        self._socket.settimeout(write_timeout)
