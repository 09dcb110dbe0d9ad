"""Boards in a labgrid lab: hold a place for a test run, reach its serial port, program its FPGA.

A lab is a labgrid coordinator; each host with boards runs ``labgrid-exporter``, which
exports a board's UART through ser2net (RFC 2217) and names the board's JTAG cable with an
:class:`OpenFPGALoaderJTAG` entry (labgrid loads no FPGA bitstreams itself). A test run
acquires its place with ``labgrid-client`` for the whole session, so a second run gets
labgrid's own "already acquired by host/user" error instead of sharing the board, and
releases it however the run ends. Resources are read through labgrid's ``RemotePlace``.
"""
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import attr
import pytest
import serial
from labgrid import Target
from labgrid.exceptions import NoResourceFoundError
from labgrid.factory import target_factory
from labgrid.pytestplugin.hooks import LABGRID_ENV_KEY
from labgrid.resource.common import Resource
from labgrid.resource.remote import RemotePlace, RemotePlaceManager
from labgrid.util.ssh import sshmanager

from . import board, protocol_ser2net

DEFAULT_COORDINATOR = "127.0.0.1:20408"     # labgrid's own default
serial.protocol_handler_packages.append(__package__)        # ser2net:// (host.protocol_ser2net)


class LabError(RuntimeError):
    """The place cannot be had or used; the message is labgrid's and says what to do."""


@target_factory.reg_resource
@attr.s(eq=False)
class OpenFPGALoaderJTAG(Resource):
    """A board's JTAG cable as openFPGALoader picks it: by FTDI serial number, on the exporter's host.

    The exporter publishes an entry of this class as it is written in its configuration;
    it is programmed on the host of the place's serial port (the same FT2232H).
    """
    ftdi_serial = attr.ib(default=None, validator=attr.validators.optional(attr.validators.instance_of(str)))
    board = attr.ib(default="arty_a7_35t", validator=attr.validators.instance_of(str))


class Place:
    """One labgrid place, acquired for as long as a test run uses it."""

    def __init__(self, name, coordinator=None, timeout=30.0):
        self.name = name
        self.coordinator = coordinator or os.environ.get("LG_COORDINATOR", DEFAULT_COORDINATOR)
        self.timeout = timeout
        self.acquired = False
        self._target = None

    def _client(self, *args):
        """labgrid-client on this place, in a session of its own: a Ctrl-C at the terminal is the run's."""
        cmd = [str(Path(sys.executable).parent / "labgrid-client"), "-x", self.coordinator, "-p", self.name, *args]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                               timeout=self.timeout, start_new_session=True)
        except subprocess.TimeoutExpired:
            raise LabError(f"the labgrid coordinator at {self.coordinator} did not answer within "
                           f"{self.timeout:g} s: is labgrid-coordinator running there?") from None
        if r.returncode:
            why = (r.stderr.strip() or r.stdout.strip()).removeprefix("labgrid-client: ").removeprefix("Error: ")
            raise LabError(f"labgrid place {self.name!r} at {self.coordinator}: {why}")
        return r.stdout

    def acquire(self):
        self._client("acquire")
        self.acquired = True
        return self

    def release(self):
        """Release the place if this run holds it; safe to call twice.

        A Ctrl-C (or SIGTERM) that arrives meanwhile is held until the place is released and
        then delivered, so an interrupted run neither leaves the board taken nor loses the
        interrupt; the wait is bounded by the timeout.
        """
        if not self.acquired:
            return
        held = []
        previous = {sig: signal.signal(sig, lambda sig, _frame: held.append(sig))
                    for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            self._client("release")
            self.acquired = False
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if held:
            signal.raise_signal(held[0])

    # Resources --------------------------------------------------------------------------------
    @property
    def target(self):
        """A labgrid Target holding this place as its RemotePlace (the place must be acquired)."""
        if self._target is None:
            os.environ["LG_COORDINATOR"] = self.coordinator     # where RemotePlace looks
            target = Target(f"place-{self.name}")
            RemotePlace(target, name=self.name)
            self._target = target
        return self._target

    def _resource(self, cls, what):
        try:
            return self.target.get_resource(cls, wait_avail=False)
        except NoResourceFoundError as e:
            raise LabError(f"labgrid place {self.name!r} has no {what} ({cls}): add the exporter's "
                           f"group to it with 'labgrid-client -p {self.name} add-match EXPORTER/GROUP/*'") from e

    @property
    def serial_port(self):
        return self._resource("NetworkSerialPort", "serial port")

    def serial_url(self):
        """The exported UART as a pyserial URL."""
        port = self.serial_port
        if not port.avail or not port.port:
            raise LabError(f"the serial port of labgrid place {self.name!r} is not available on "
                           f"{port.host}: is the board plugged in and its exporter running?")
        return f"{protocol_ser2net.SCHEME}://{port.host}:{port.port}"

    def check_exporter(self):
        """Raise LabError if an exporter of this place's resources has left the coordinator."""
        manager = RemotePlaceManager.get()
        session = manager.session
        manager.loop.run_until_complete(session.sync_with_coordinator())
        gone = set()
        for exporter, group, _, name in session.get_place(self.name).acquired_resources:
            entry = session.resources.get(exporter, {}).get(group, {}).get(name)
            if entry is None or not entry.data.get("avail"):   # removed: labgrid-client shows "Orphaned"
                gone.add(exporter)
        if gone:
            raise LabError(f"labgrid place {self.name!r}: exporter {', '.join(sorted(gone))} is gone "
                           f"(its resources are orphaned: labgrid-client -p {self.name} show)")

    def program(self, bitstream):
        """Load a bitstream into the place's FPGA with openFPGALoader on the exporter's host."""
        jtag = self._resource("OpenFPGALoaderJTAG", "JTAG cable")
        host = self.serial_port.host
        if host in {"127.0.0.1", "localhost", "::1", socket.gethostname(), socket.getfqdn()}:
            board.program(bitstream, board=jtag.board, cable=jtag.ftdi_serial)
            return
        # labgrid's way to the exporter's host: its shared SSH connection
        conn = sshmanager.get(host)
        remote = f"/tmp/nnhil-{os.getpid()}-{Path(bitstream).name}"
        conn.put_file(str(bitstream), remote)
        board.program(remote, board=jtag.board, cable=jtag.ftdi_serial, via=conn.get_prefix() + ["--"])


def place_from_options(config, name=None):
    """The place a pytest run names: ``name`` (the plugin's ``--nnhil-place``), or the one
    RemotePlace of labgrid's ``--lg-env``; or None."""
    coordinator = config.getoption("--lg-coordinator", None)   # None too without labgrid's plugin
    env = config.stash.get(LABGRID_ENV_KEY, None)
    if name is None and env is not None:
        places = [place for t in env.config.get_targets().values()
                  for place in target_factory.normalize_config(t)[0].get("RemotePlace", {})]
        if len(places) != 1:
            raise pytest.UsageError(f"{env.config_file} names {len(places)} RemotePlace resources: "
                                    f"the board tests need exactly one (or pass --nnhil-place)")
        name = places[0]
        coordinator = coordinator or env.config.get_option("coordinator_address")
    return None if name is None else Place(name, coordinator)


def hold(config, place):
    """Acquire ``place`` for this pytest run and return its serial port's URL.

    The place is released at the end of the run, on Ctrl-C or failure; a place that cannot
    be had stops the run with labgrid's reason. A failing test whose place lost its exporter
    stops the run too, instead of every later test waiting for a board that is gone.
    """
    try:
        place.acquire()
        config.add_cleanup(place.release)
        url = place.serial_url()
    except LabError as e:
        pytest.exit(str(e), returncode=pytest.ExitCode.USAGE_ERROR)
    config.pluginmanager.register(ExporterWatch(place), f"nnhil-lab-{place.name}")
    return url


class ExporterWatch:
    """pytest plugin: after a failed test, stop the run if the place's exporter is gone."""

    def __init__(self, place):
        self.place = place

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        if outcome.get_result().failed:
            try:
                self.place.check_exporter()
            except LabError as e:
                pytest.exit(f"{e}; the run stops here", returncode=pytest.ExitCode.TESTS_FAILED)
