"""The main job: the project's models trained (or reused), run on the SoC, checked and reported.

Trains or reuses the cached model (the MLP by default, or the CNN, on Fashion-MNIST or
MNIST; ``--model all``: all three in one SoC session), then runs each through
:func:`host.run.run_job`, the code path of ``nnhil run``: load with read-back, the test
images through the accelerator, bit-exact checks, cycles, accuracy and the speedup.
"""
from pathlib import Path

from nnhil.training import datasets, modelfile, workflow

from . import history, report
from .run import Job, add_target_arguments, open_targets, prepare_host, run_job
from .timeline import Timeline


def add_arguments(p):
    p.add_argument("--model", choices=sorted(workflow.ARCHS) + ["all"], default="mlp",
                   help="the architecture, in its default configuration, or 'all': every model of "
                        f"the project ({', '.join(workflow.MODELS)}) in one session (default: mlp)")
    p.add_argument("--dataset", choices=sorted(datasets.DATASETS), default="fashion-mnist",
                   help="the dataset of a single --model")
    p.add_argument("--data-dir", help="folder with the gzip IDX files")
    p.add_argument("--images", type=int, default=10_000, help="test images to run (default: all)")
    add_target_arguments(p)


def run(args, log=print):
    """Every selected model through one SoC session; returns 0 if all are exact."""
    timeline = Timeline()
    selected = (list(workflow.MODELS.values()) if args.model == "all" else [(args.model, args.dataset)])
    with timeline.phase("models and images"):
        jobs = [_prepare(arch, dataset, args, log) for arch, dataset in selected]   # train first
    prepare_host(jobs, timeline)
    ok = True
    with open_targets(args, log, timeline) as duts:
        for job in jobs:
            ok &= run_job(job, duts, args, log, kind="demo", timeline=timeline)
    if len(jobs) > 1:
        log("")
        records = history.read(Path(args.out) / history.NAME)
        log("\n".join(report.side_by_side(records)))
        log(f"report           {report.write(Path(args.out) / 'report', Path(args.out) / history.NAME)}")
    return 0 if ok else 1


def _prepare(arch, dataset, args, log):
    data = workflow.load_data(dataset, args.data_dir)
    cfg = workflow.ARCHS[arch]()
    model, out_dir = workflow.ensure_model(cfg, data, log=log)
    images, labels = data.test[0][:args.images], data.test[1][:args.images]
    fmodel, standardizer, _ = modelfile.load_float(out_dir / "float.npz")
    return Job(name=arch, arch=workflow.arch_name(cfg), model=model,
               images=images.reshape((-1,) + tuple(model.input_shape)), labels=labels,
               classes=data.classes, dataset=data.name, float_model=(fmodel, standardizer),
               record={"training_dir": str(out_dir)})
