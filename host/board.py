"""Finding and preparing a real board: the Arty A7's FTDI UART, and programming its FPGA."""
import shutil
import subprocess

from serial.tools import list_ports

ARTY_VID_PID = (0x0403, 0x6010)   # FT2232H: interface 0 is JTAG, interface 1 the UART
ARTY_UART_INTERFACE = 1


class BoardError(RuntimeError):
    """No board, or the board could not be prepared; the message says what was looked for."""


def find_arty():
    """The serial device of an attached Arty A7, or None."""
    for port in sorted(list_ports.comports(), key=lambda p: p.device):
        if (port.vid, port.pid) != ARTY_VID_PID:
            continue
        # pyserial reports the USB interface as location "...:1.<n>" on Linux
        if (port.location or "").endswith(f".{ARTY_UART_INTERFACE}"):
            return port.device
    return None


def describe_search():
    return (f"a USB serial device {ARTY_VID_PID[0]:04x}:{ARTY_VID_PID[1]:04x} "
            f"(the Arty's FTDI), interface {ARTY_UART_INTERFACE}")


def program(bitstream, variant="a7-35", timeout=120, cable=None, via=(), board=None):
    """Load a bitstream into the FPGA of the Arty ``variant`` (gateware.variants) with
    openFPGALoader (Debian package openfpgaloader).

    ``board`` overrides the variant's openFPGALoader board name (a lab's exporter names it);
    ``cable`` picks one of several FTDI cables by serial number; ``via`` is a command prefix
    that runs openFPGALoader on another host (ssh to a lab's exporter, see host.lab).
    """
    from nnhil.gateware import variants

    board = board or variants.get(variant).loader_board
    tool = "openFPGALoader" if via else shutil.which("openFPGALoader")
    if tool is None:
        raise BoardError("openFPGALoader is not installed: sudo apt-get install openfpgaloader")
    cmd = [*via, tool, "-b", board, *(["--ftdi-serial", cable] if cable else []), str(bitstream)]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BoardError(f"openFPGALoader did not finish within {timeout} s") from None
    if r.returncode:
        raise BoardError(f"openFPGALoader failed to program {bitstream}:\n{r.stdout[-1500:]}{r.stderr[-1500:]}")
