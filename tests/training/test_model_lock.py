"""One process trains a model at a time: two workers asking for the same model train it once,
and a waiter whose trainer died, or hangs, says so instead of hanging. Real processes training."""
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from nnhil.training import filelock, workflow
from nnhil.training.train import TrainConfig

REPO = Path(__file__).resolve().parents[2]
LONG_EPOCHS = 5000                # minutes of training: the trainer is killed long before
# A child asks for the small MLP in an output directory once the test writes a line to its stdin.
CHILD = """
import logging, sys
from nnhil.training import workflow
logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout, force=True)
from nnhil.training.train import TrainConfig
out, epochs = sys.argv[1], int(sys.argv[2])
d = workflow.load_data("fashion-mnist")
small = workflow.Data(d.name, d.classes, tuple(a[:600] for a in d.train), tuple(a[:200] for a in d.val),
                      tuple(a[:200] for a in d.test), d.standardizer)
print("ready", flush=True)
sys.stdin.readline()
model, _ = workflow.ensure_model(TrainConfig(layers=(784, 8, 10), epochs=epochs, val_size=200), small, out)
print("model", model.hash, flush=True)
"""


def cfg(epochs):
    return TrainConfig(layers=(784, 8, 10), epochs=epochs, val_size=200)


@pytest.fixture(scope="module")
def small(fashion):
    return workflow.Data(fashion.name, fashion.classes, tuple(a[:600] for a in fashion.train),
                         tuple(a[:200] for a in fashion.val), tuple(a[:200] for a in fashion.test),
                         fashion.standardizer)


def child(out, epochs):
    """A process that asks for the model once started (see CHILD)."""
    return subprocess.Popen([sys.executable, "-c", CHILD, str(out), str(epochs)], cwd=REPO, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def start(p):
    """Let the child ask for its model, once it has loaded the data."""
    assert p.stdout.readline().strip() == "ready"
    p.stdin.write("go\n")
    p.stdin.flush()


def wait_for_line(p, prefix):
    """Read the child's output up to a line starting with ``prefix``; the lines read."""
    lines = []
    for line in p.stdout:
        lines.append(line.rstrip())
        if line.startswith(prefix):
            return lines
    raise AssertionError(f"the child ended (status {p.wait()}) without '{prefix}':\n" + "\n".join(lines))


@pytest.fixture
def killed_at_end():
    """Children still running at the end of a test are killed."""
    procs = []
    yield procs.append
    for p in procs:
        p.kill()
        p.wait(timeout=10)


def test_two_processes_asking_for_one_model_train_it_once(tmp_path, killed_at_end):
    a, b = child(tmp_path, 2), child(tmp_path, 2)
    for p in (a, b):
        killed_at_end(p)
    start(a)
    wait_for_line(a, "training MLP")            # a holds the lock; b asks meanwhile
    start(b)
    out = {}
    for name, p in (("a", a), ("b", b)):
        stdout, _ = p.communicate(timeout=300)
        assert p.returncode == 0, stdout[-3000:]
        out[name] = stdout.splitlines()
    assert not any(line.startswith("training") for line in out["b"]), out["b"]
    assert any(line.startswith(f"waiting up to") and f"process {a.pid} " in line for line in out["b"]), out["b"]
    assert out["a"][-1] == out["b"][-1] and out["a"][-1].startswith("model ")    # the one model


def test_a_waiter_gives_up_after_the_training_time_or_when_the_trainer_died(tmp_path, small, killed_at_end,
                                                                           monkeypatch):
    """The wait is the work's FLOPs at the floor rate (a floor made absurdly slow shortens it
    here); a trainer killed meanwhile is named as dead, at once."""
    trainer = child(tmp_path, LONG_EPOCHS)
    killed_at_end(trainer)
    start(trainer)
    wait_for_line(trainer, "training MLP")
    assert workflow.training_timeout(cfg(2), small) - workflow.TRAIN_OVERHEAD_S == pytest.approx(
        2 * (workflow.training_timeout(cfg(1), small) - workflow.TRAIN_OVERHEAD_S))
    with monkeypatch.context() as m:
        m.setattr(workflow, "TRAIN_OVERHEAD_S", 0.5)
        m.setattr(workflow, "TRAIN_FLOPS_FLOOR", 1e18)
        with pytest.raises(filelock.LockTimeout, match=rf"held by process {trainer.pid} .* after 0.5 s of waiting"):
            workflow.ensure_model(cfg(LONG_EPOCHS), small, tmp_path)
    assert trainer.poll() is None                 # the trainer goes on: only the waiter gave up

    class KillOnceWaiting(logging.Handler):         # the waiter's message: the trainer dies then
        def emit(self, record):
            if record.getMessage().startswith("waiting up to"):
                os.kill(trainer.pid, signal.SIGKILL)
    logger, handler = logging.getLogger("nnhil.training.filelock"), KillOnceWaiting()
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        with pytest.raises(workflow.TrainingLockError,
                           match=rf"process {trainer.pid} \(.*\) was training {tmp_path} and died before it finished"):
            workflow.ensure_model(cfg(LONG_EPOCHS), small, tmp_path)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert trainer.wait(timeout=10) == -signal.SIGKILL
    assert not (tmp_path / "quantized.npz").exists()
