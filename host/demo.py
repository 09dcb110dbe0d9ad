"""The main job: the project's models trained (or reused), run on the SoC, checked and reported.

Trains or reuses the cached model (the MLP by default, or the CNN, on Fashion-MNIST or
MNIST; ``--model all``: all three in one SoC session), then runs each through
:func:`host.run.run_job`, the code path of ``nnhil run``, over ``--sims`` simulations (one
per core): load with read-back, the test images through the accelerator, bit-exact checks,
cycles, accuracy and the speedup.

Every core is kept on the job's work: the models are made ready (trained, or taken from the
cache, with their images) in worker processes, one per core, while this process builds the
sim and boots the firmware; each model runs as soon as it is ready, the later ones training
meanwhile; while none is ready the sims are paused (a running sim simulates its idle firmware
at a core's cost), so the trainings have the cores. The CPU baselines in C come from
host.cpu_cache when this SoC, firmware, model and image were measured before.
"""
import contextlib
import dataclasses
import multiprocessing
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

from nnhil.gateware import link, variants
from nnhil.training import datasets, home, modelfile, workflow

from . import history, report
from .run import (FULL_IMAGES, InputError, Job, add_target_arguments, default_sims, open_targets, prepare_host,
                  run_job, simulations)
from .timeline import Timeline

ALL = "all"
TRAINING = "train"            # the timeline's place of the worker processes' spans


@dataclasses.dataclass(frozen=True)
class Options:
    """What a demo runs and where: ``nnhil demo``'s options, as data (the target's are those of
    host.run.add_target_arguments)."""
    model: str = "mlp"            # an architecture of workflow.ARCHS, in its default configuration, or "all"
    dataset: str = "fashion-mnist"    # of a single model
    data_dir: str = None          # the gzip IDX files (default: the datasets' own lookup)
    images: int = FULL_IMAGES     # the first N test images
    board: str = None
    variant: str = variants.DEFAULT
    port: str = None
    baud: int = link.BAUD
    build_dir: str = None
    bitstream: str = None
    sim_fallback: bool = False
    sims: int = None              # default: one per core (host.run.default_sims), 1 with a board
    out: str = None               # default: $NNHIL_HOME/out

    def __post_init__(self):
        if self.model not in (*workflow.ARCHS, ALL):
            raise InputError(f"--model {self.model}: expected one of {', '.join([*sorted(workflow.ARCHS), ALL])}")
        if self.dataset not in datasets.DATASETS:
            raise InputError(f"--dataset {self.dataset}: expected one of {', '.join(sorted(datasets.DATASETS))}")
        if self.images < 1:
            raise InputError(f"--images {self.images}: give a number of test images, 1 or more")
        if self.out is None:
            object.__setattr__(self, "out", str(home.out()))
        simulations(self)                                   # a bad --sims before any training

    @classmethod
    def from_args(cls, args):
        """The Options of a parsed command line (its attributes of the same names)."""
        return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls)})


def add_arguments(p):
    p.add_argument("--model", choices=sorted(workflow.ARCHS) + [ALL], default=Options.model,
                   help="the architecture, in its default configuration, or 'all': every model of "
                        f"the project ({', '.join(workflow.MODELS)}) in one session (default: mlp)")
    p.add_argument("--dataset", choices=sorted(datasets.DATASETS), default=Options.dataset,
                   help="the dataset of a single --model")
    p.add_argument("--data-dir", help="folder with the gzip IDX files")
    p.add_argument("--images", type=int, default=Options.images, help="test images to run (default: all)")
    add_target_arguments(p)


def run(options=Options(), log=print):
    """Every selected model through one SoC session; returns 0 if all are exact."""
    timeline = Timeline()
    selected = list(workflow.MODELS.values()) if options.model == ALL else [(options.model, options.dataset)]
    ok = True
    with contextlib.ExitStack() as stack:
        trainers = stack.enter_context(_trainers(min(len(selected), default_sims())))
        pending = {trainers.submit(_prepare, arch, dataset, options.data_dir, options.images): k
                   for k, (arch, dataset) in enumerate(selected)}
        duts = stack.enter_context(open_targets(options, log, timeline))      # beside the trainings
        while pending:
            ready = [f for f in pending if f.done()]
            if not ready:
                with _paused(duts), timeline.phase("waiting for training"):
                    ready = wait(pending, return_when=FIRST_COMPLETED).done
            for future in sorted(ready, key=pending.get):         # in the order selected
                del pending[future]
                job, start, end = future.result()
                timeline.add(f"{job.name} on {job.dataset}", TRAINING, start - timeline.t0, end - timeline.t0)
                with _paused(duts):                         # the host's own timings on quiet cores
                    prepare_host([job], timeline)
                log("")
                ok &= run_job(job, duts, options, log, kind="demo", timeline=timeline, baseline_cache=True)
    if len(selected) > 1:
        log("")
        records = history.read(Path(options.out) / history.NAME)
        log("\n".join(report.side_by_side(records)))
        log(f"report           {report.write(Path(options.out) / 'report', Path(options.out) / history.NAME)}")
    return 0 if ok else 1


@contextlib.contextmanager
def _trainers(n):
    """``n`` worker processes that make the models ready; a failed or interrupted run stops them
    at once rather than waiting out a training."""
    pool = ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn"))
    try:
        yield pool
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        for child in multiprocessing.active_children():     # the pool's workers: ours alone
            child.terminate()
        raise
    pool.shutdown()


@contextlib.contextmanager
def _paused(duts):
    """The simulations among ``duts`` paused for the block (host.simulator.Simulator.paused)."""
    with contextlib.ExitStack() as stack:
        for dut in duts:
            if dut.sim is not None:
                stack.enter_context(dut.sim.paused())
        yield


def _prepare(arch, dataset, data_dir, n_images):
    """(the Job of one of the project's models: trained or taken from the cache, and its images;
    and when this worker started and ended on it, by time.perf_counter, which all processes share)."""
    start = time.perf_counter()
    data = workflow.load_data(dataset, data_dir)
    cfg = workflow.ARCHS[arch]()
    model, out_dir = workflow.ensure_model(cfg, data)
    images, labels = data.test[0][:n_images], data.test[1][:n_images]
    fmodel, standardizer, _ = modelfile.load_float(out_dir / "float.npz")
    job = Job(name=arch, arch=workflow.arch_name(cfg), model=model,
              images=images.reshape((-1,) + tuple(model.input_shape)), labels=labels,
              classes=data.classes, dataset=data.name, float_model=(fmodel, standardizer),
              record={"training_dir": str(out_dir)})
    return job, start, time.perf_counter()
