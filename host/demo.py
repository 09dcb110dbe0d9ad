"""The main job: the project's models trained (or reused), run on the SoC, checked and reported.

Trains or reuses the cached model (the MLP by default, or the CNN, on Fashion-MNIST or
MNIST; ``--arch all``: all three in one SoC session), then runs each through
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
import logging
import multiprocessing
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

from nnhil.training import datasets, modelfile, workflow

from . import history, options, report
from .options import InputError
from .run import Job, open_targets, prepare_host, run_job
from .timeline import Timeline

log = logging.getLogger(__name__)

ALL = "all"
TRAINING = "train"            # the timeline's place of the worker processes' spans


@dataclasses.dataclass(frozen=True)
class Options:
    """What a demo runs and where: ``nnhil demo``'s options, as data (host.options declares
    the shared ones)."""
    arch: str = "mlp"             # an architecture of workflow.ARCHS, in its default configuration, or "all"
    data: options.Data = options.Data()          # the dataset of a single --arch, and the files
    images: int = None            # the first N test images (default: all)
    target: options.Target = options.Target()
    results: options.Results = options.Results()

    def __post_init__(self):
        if self.arch not in (*workflow.ARCHS, ALL):
            raise InputError(f"--arch {self.arch}: expected one of {', '.join([*sorted(workflow.ARCHS), ALL])}")
        if self.data.dataset is not None and self.data.dataset not in datasets.DATASETS:
            raise InputError(f"--dataset {self.data.dataset}: expected one of {', '.join(sorted(datasets.DATASETS))}")
        if self.images is not None and self.images < 1:
            raise InputError(f"--images {self.images}: give a number of test images, 1 or more")
        self.target.simulations()                           # a bad --sims before any training

    @classmethod
    def from_args(cls, args):
        """The Options of a parsed ``nnhil demo`` command line."""
        return cls(arch=args.arch, data=options.from_namespace(options.Data, args), images=args.images,
                   target=options.from_namespace(options.Target, args),
                   results=options.from_namespace(options.Results, args))


def add_arguments(p):
    """The options of ``nnhil demo`` (host.options declares the shared ones)."""
    p.add_argument("--arch", choices=sorted(workflow.ARCHS) + [ALL], default=Options.arch,
                   help="the architecture, in its default configuration, or 'all': every model of "
                        f"the project ({', '.join(workflow.MODELS)}) in one session (default: mlp)")
    options.deprecated(p, "--model", "--arch", "--model names a model file elsewhere (pytest --model)")
    options.add_arguments(p, options.Data, only=("dataset", "data_dir"))
    options.add_arguments(p, options.Images, only=("images",))
    options.add_arguments(p, options.Results, only=("results_dir",))
    options.deprecated(p, "--out", "--results-dir", options.OUT_FILE)
    options.add_arguments(p, options.Target)
    options.deprecated(p, "--board", "--target")


def run(opts=Options()):
    """Every selected model through one SoC session; returns 0 if all are exact."""
    timeline = Timeline()
    results_dir = opts.results.directory()
    selected = (list(workflow.MODELS.values()) if opts.arch == ALL else [(opts.arch, opts.data.name())])
    ok = True
    with contextlib.ExitStack() as stack:
        trainers = stack.enter_context(_trainers(min(len(selected), options.default_sims())))
        pending = {trainers.submit(_prepare, arch, dataset, opts.data.data_dir, opts.images): k
                   for k, (arch, dataset) in enumerate(selected)}
        duts = stack.enter_context(open_targets(opts.target, timeline))      # beside the trainings
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
                log.info("")
                ok &= run_job(job, duts, results_dir, opts.target.baud, kind="demo", timeline=timeline,
                              baseline_cache=True)
    if len(selected) > 1:
        log.info("")
        records = history.read(results_dir / history.NAME)
        log.info("\n".join(report.side_by_side(records)))
        log.info(f"report           {report.write(results_dir / 'report', results_dir / history.NAME)}")
    return 0 if ok else 1


@contextlib.contextmanager
def _trainers(n):
    """``n`` worker processes that make the models ready; a failed or interrupted run stops them
    at once rather than waiting out a training."""
    pool = ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn"),
                               initializer=options.worker_logging, initargs=(log.getEffectiveLevel(),))
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
