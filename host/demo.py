"""The main job: the project's models trained (or reused), run on the SoC, checked and reported.

Trains or reuses the cached model (the MLP by default, or the CNN, on Fashion-MNIST or
MNIST; ``--arch all``: all three in one SoC session, the later ones training while the
sims run the first), then runs each through :func:`host.run.run_job`, the code path of
``nnhil run``, over ``--sims`` simulations (one per core): load with read-back, the test
images through the accelerator, bit-exact checks, cycles, accuracy and the speedup.
"""
import contextlib
import logging
import multiprocessing
from concurrent.futures import ProcessPoolExecutor

from nnhil.training import modelfile, workflow

from . import history, options, report
from .run import Job, open_targets, prepare_host, run_job
from .timeline import Timeline

log = logging.getLogger(__name__)


def add_arguments(p):
    """The options of ``nnhil demo`` (host.options declares the shared ones)."""
    p.add_argument("--arch", choices=sorted(workflow.ARCHS) + ["all"], default="mlp",
                   help="the architecture, in its default configuration, or 'all': every model of "
                        f"the project ({', '.join(workflow.MODELS)}) in one session (default: mlp)")
    options.deprecated(p, "--model", "--arch", "--model names a model file elsewhere (pytest --model)")
    options.add_arguments(p, options.Data, only=("dataset", "data_dir"))
    options.add_arguments(p, options.Images, only=("images",))
    options.add_arguments(p, options.Results, only=("results_dir",))
    options.deprecated(p, "--out", "--results-dir", options.OUT_FILE)
    options.add_arguments(p, options.Target)
    options.deprecated(p, "--board", "--target")


def run(args):
    """Every selected model through one SoC session; returns 0 if all are exact.

    The first model is made ready here (trained if it is not cached) and the others in a
    worker process meanwhile, on the other core: the sims build, boot and run the first
    model while the next ones train, and each later model waits only for its own training."""
    target = options.from_namespace(options.Target, args)
    data = options.from_namespace(options.Data, args)
    results_dir = options.from_namespace(options.Results, args).directory()
    target.simulations()                                # a bad --sims before any training
    timeline = Timeline()
    selected = (list(workflow.MODELS.values()) if args.arch == "all" else [(args.arch, data.name())])
    ok = True
    with contextlib.ExitStack() as stack:
        later = []
        if len(selected) > 1:
            trainer = stack.enter_context(_trainer())
            later = [trainer.submit(_prepare, arch, dataset, data.data_dir, args.images)
                     for arch, dataset in selected[1:]]
        with timeline.phase("models and images"):
            first = _prepare(*selected[0], data.data_dir, args.images)
        prepare_host([first], timeline)
        duts = stack.enter_context(open_targets(target, timeline))
        for k, job in enumerate([first, *later]):
            if k:
                with timeline.phase("waiting for training"):
                    job = job.result()
                log.info("")
            ok &= run_job(job, duts, results_dir, target.baud, kind="demo", timeline=timeline)
    if len(selected) > 1:
        log.info("")
        records = history.read(results_dir / history.NAME)
        log.info("\n".join(report.side_by_side(records)))
        log.info(f"report           {report.write(results_dir / 'report', results_dir / history.NAME)}")
    return 0 if ok else 1


@contextlib.contextmanager
def _trainer():
    """A worker process that prepares the later models; a failed or interrupted run stops it
    at once rather than waiting out a training."""
    pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                               initializer=options.worker_logging, initargs=(log.getEffectiveLevel(),))
    try:
        yield pool
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        for child in multiprocessing.active_children():     # the pool's worker: ours alone
            child.terminate()
        raise
    pool.shutdown()


def _prepare(arch, dataset, data_dir, n_images):
    """The Job of one of the project's models: trained (or taken from the cache) and its images."""
    data = workflow.load_data(dataset, data_dir)
    cfg = workflow.ARCHS[arch]()
    model, out_dir = workflow.ensure_model(cfg, data)
    images, labels = data.test[0][:n_images], data.test[1][:n_images]
    fmodel, standardizer, _ = modelfile.load_float(out_dir / "float.npz")
    return Job(name=arch, arch=workflow.arch_name(cfg), model=model,
               images=images.reshape((-1,) + tuple(model.input_shape)), labels=labels,
               classes=data.classes, dataset=data.name, float_model=(fmodel, standardizer),
               record={"training_dir": str(out_dir)})
