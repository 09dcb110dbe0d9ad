"""The board tests through a labgrid place on loopback: acquire, bridge over ser2net, program, release.

The board is the sim behind a pty that a real labgrid-exporter exports (ser2net, RFC 2217);
openFPGALoader is a stand-in on PATH that records its arguments, since no FPGA is attached.
"""
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

pytestmark = pytest.mark.sim           # the "board" is the simulation

REPO = Path(__file__).parents[2]
HIL_SUBSET = "identification or refused"       # the bridge, the firmware and the refusals: seconds
# ... and a test that takes seconds (it waits for a firmware timeout), started right after BEFORE_SLOW
MID_RUN_SUBSET = "identification or refused or times_out"
BEFORE_SLOW = "test_missing_and_oversized_firmware_are_refused PASSED"
STAND_IN = """#!/bin/sh
# records its arguments; fails like openFPGALoader when the bitstream does not exist
printf '%s\\n' "$@" > "$(dirname "$0")/args"
for last; do :; done
test -f "$last" || { echo "unable to open $last" >&2; exit 1; }
"""


@contextlib.contextmanager
def board_run(lab, *args, select=HIL_SUBSET, bitstream=None, stand_in_dir=None):
    """``pytest --nnhil-target arty --nnhil-place`` on the HIL subset, as a CI job on another host would run it;
    killed on leaving the block if it still runs."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")      # results arrive as they happen
    if stand_in_dir:
        env["PATH"] = f"{stand_in_dir}{os.pathsep}{env['PATH']}"
    cmd = [sys.executable, "-m", "pytest", "tests/hil", "-k", select, "--images", "20", "-p", "no:cacheprovider",
           "--nnhil-target", "arty", "--nnhil-build-dir", str(lab.build_dir), *args,
           *(["--nnhil-bitstream", str(bitstream)] if bitstream else [])]
    # SIGINT at its default in the run, as in a terminal: a CI job or shell that started this
    # suite in the background without job control hands its children SIGINT ignored
    run = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, start_new_session=True,
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        yield run
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
        run.wait(timeout=10)
        run.stdout.close()


def place_args(lab, place=None):
    return ["--lg-coordinator", lab.address, "--nnhil-place", place or lab.PLACE]


def read_until(run, text, timeout=120):
    """Read the run's output up to the line with ``text``; return what was read.
    A run that says nothing for ``timeout`` seconds is killed, which ends the read."""
    head = []
    watchdog = threading.Timer(timeout, os.killpg, (run.pid, signal.SIGKILL))
    watchdog.start()
    try:
        for line in run.stdout:
            head.append(line)
            if text in line:
                return "".join(head)
    finally:
        watchdog.cancel()
    pytest.fail(f"the run ended (or was killed after {timeout} s) before {text!r}:\n" + "".join(head)[-3000:])


def refusal(out, text):
    """The line of the run's output that says ``text``, shown in the test's output."""
    line = next((l for l in out.splitlines() if text in l), None)
    assert line is not None, f"no {text!r} in:\n{out[-3000:]}"
    print(f"\n{line}")
    return line


def finish(proc, timeout=300):
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate(timeout=10)
        pytest.fail(f"the board run did not finish within {timeout} s:\n{out[-3000:]}")
    return proc.returncode, out


def test_hil_subset_runs_through_a_place(loopback_lab, tmp_path):
    bitstream = tmp_path / "arty.bit"
    bitstream.write_bytes(b"\xff" * 64)
    stand_in = tmp_path / "bin"
    stand_in.mkdir()
    (stand_in / "openFPGALoader").write_text(STAND_IN)
    (stand_in / "openFPGALoader").chmod(0o755)
    with loopback_lab() as lab:
        with board_run(lab, *place_args(lab), bitstream=bitstream, stand_in_dir=stand_in) as run:
            rc, out = finish(run)
        assert rc == 0, out[-3000:] + lab.logs()
        summary = out.strip().splitlines()[-1]
        print(f"\nthrough the place: {summary}")
        assert "passed" in summary and "skipped" not in summary and "failed" not in summary, summary
        assert (stand_in / "args").read_text().split() == ["-b", "arty_a7_35t", "--ftdi-serial", lab.FTDI_SERIAL,
                                                           str(bitstream)]
        assert lab.holder() is None, "the run did not release its place"
        assert lab.ser2net() == [], "the exporter kept ser2net after the release"
    assert lab.leftovers() == []


def test_a_place_held_by_someone_else_is_refused(loopback_lab, tmp_path):
    """Named the labgrid way: an environment file with a RemotePlace and the coordinator's address."""
    env = tmp_path / "env.yaml"
    with loopback_lab(board_used=False) as lab:
        env.write_text(f"targets:\n  main:\n    resources:\n      RemotePlace:\n        name: {lab.PLACE}\n"
                       f"options:\n  coordinator_address: {lab.address}\n")
        assert lab.client("-p", lab.PLACE, "acquire", user="nightly").returncode == 0
        with board_run(lab, "--lg-env", str(env)) as run:
            rc, out = finish(run, timeout=60)
        assert rc == pytest.ExitCode.USAGE_ERROR, out[-3000:]
        assert refusal(out, f"Place {lab.PLACE} is already acquired by ").split(" by ")[1].startswith(
            f"{socket.gethostname()}/nightly")
        assert lab.holder().endswith("/nightly"), "the refused run took the place"
    assert lab.leftovers() == []


def test_an_unknown_place_is_refused(loopback_lab):
    with loopback_lab(board_used=False) as lab:
        with board_run(lab, *place_args(lab, "no-such-board")) as run:
            rc, out = finish(run, timeout=60)
        assert rc == pytest.ExitCode.USAGE_ERROR, out[-3000:]
        refusal(out, "place pattern no-such-board matches nothing")
    assert lab.leftovers() == []


def test_exporter_gone_mid_run_stops_the_run_and_releases(loopback_lab):
    with loopback_lab() as lab:
        with board_run(lab, *place_args(lab), "-v", select=MID_RUN_SUBSET) as run:
            head = read_until(run, BEFORE_SLOW)
            assert lab.ser2net(), "no ser2net serves the place"
            lab.kill_exporter()
            rc, out = finish(run, timeout=120)
        out = head + out
        assert rc == pytest.ExitCode.TESTS_FAILED, out[-3000:]
        assert f"exporter {lab.EXPORTER} is gone" in refusal(out, "the run stops here")
        assert lab.holder() is None, "the run did not release its place"
    assert lab.leftovers() == []


@pytest.mark.serial   # the SIGINT must land within one test of a few seconds: not beside another worker
def test_ctrl_c_mid_run_releases_the_place(loopback_lab):
    with loopback_lab() as lab:
        with board_run(lab, *place_args(lab), "-v", select=MID_RUN_SUBSET) as run:
            read_until(run, BEFORE_SLOW)
            os.kill(run.pid, signal.SIGINT)
            rc, out = finish(run, timeout=60)
        assert rc == pytest.ExitCode.INTERRUPTED, out[-3000:]
        assert "KeyboardInterrupt" in out, out[-3000:]
        assert lab.holder() is None, "the interrupted run did not release its place"
    assert lab.leftovers() == []



def test_ctrl_c_during_the_release_is_delivered_after_it(lab_coordinator):
    """The interrupt is held while labgrid-client releases the place, then raised: not lost."""
    from nnhil.host.lab import Place

    class InterruptedRelease(Place):
        def _client(self, *args):
            if args == ("release",):
                os.kill(os.getpid(), signal.SIGINT)     # the user's Ctrl-C, just as the release starts
            return super()._client(*args)

    lab = lab_coordinator
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)   # xdist workers may ignore SIGINT
    try:
        place = InterruptedRelease(lab.PLACE, coordinator=lab.address).acquire()
        assert lab.holder() is not None
        with pytest.raises(KeyboardInterrupt):
            place.release()
        assert not place.acquired and lab.holder() is None, "the interrupt stopped the release"
    finally:
        signal.signal(signal.SIGINT, previous)
