"""The ``nnhil`` command line."""
import argparse
import dataclasses
import json
import signal
import sys
from pathlib import Path

from nnhil.gateware import program
from nnhil.training import datasets, home, modelfile, workflow
from nnhil.training.cnn import CNNConfig
from nnhil.training.train import TrainConfig

from .run import InputError


def _layers(text):
    try:
        sizes = tuple(int(s) for s in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--layers takes comma-separated sizes such as 784,128,10, got {text!r}")
    if len(sizes) < 2 or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"--layers needs at least two positive sizes, got {text!r}")
    return sizes


def _add_data_args(p):
    p.add_argument("--data-dir", help=f"folder with the gzip IDX files (default ${datasets.DATA_DIR_ENV} "
                                      f"or {datasets.data_dir()})")
    p.add_argument("--dataset", default="fashion-mnist", choices=sorted(datasets.DATASETS))
    p.add_argument("--no-download", action="store_true", help="fail instead of downloading missing files")


def _sizes(text):
    try:
        sizes = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated sizes such as 16,32, got {text!r}")
    if min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"sizes must be positive, got {text!r}")
    return sizes


TUPLE_FLAGS = {"layers": _layers, "channels": _sizes}


def _add_train_args(p):
    """One flag per hyperparameter; unset flags take the chosen architecture's default."""
    p.add_argument("--arch", choices=sorted(workflow.ARCHS), default="mlp",
                   help="mlp, or cnn (conv-ReLU-maxpool blocks, then dense layers)")
    mlp, cnn = TrainConfig(), CNNConfig()
    for f in dataclasses.fields(CNNConfig):
        if f.name == "input_shape":
            continue
        defaults = [f"{a} {getattr(c, f.name)}" for a, c in (("mlp", mlp), ("cnn", cnn)) if hasattr(c, f.name)]
        p.add_argument("--" + f.name.replace("_", "-"), default=None,
                       type=TUPLE_FLAGS.get(f.name, type(getattr(cnn, f.name))),
                       help="default: " + ", ".join(defaults))


def _train_config(args):
    cls = workflow.ARCHS[args.arch]
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
             if getattr(args, f.name, None) is not None}
    try:
        return cls(**given)
    except ValueError as e:
        raise SystemExit(f"nnhil train: error: {e}") from None


def _load_data(args, val_size=5000, seed=0):
    return workflow.load_data(args.dataset, args.data_dir, val_size, seed, not args.no_download)


def cmd_train(args):
    cfg = _train_config(args)
    data = _load_data(args, cfg.val_size, cfg.seed)
    out = Path(args.out or workflow.default_out_dir(cfg, args.dataset))
    m = workflow.train_and_quantize(cfg, data, out)
    print(f"float test accuracy    {m['float_test_accuracy']:.4f}  ({m['test_images']} images)")
    print(f"integer test accuracy  {m['int_test_accuracy']:.4f}  (agrees with float on "
          f"{m['int_float_agreement']:.2%}), {m['weights']} int8 weights")
    print(f"trained in {m['train_seconds']:.1f} s; model, metrics and plots in {out}/")


def cmd_quantize(args):
    model, st, meta = modelfile.load_float(args.model)
    data = _load_data(args, meta.get("train_config", {}).get("val_size", 5000),
                      meta.get("train_config", {}).get("seed", 0))
    from nnhil.training.quantize import quantize
    meta = dict(meta, dataset=meta.get("dataset", args.dataset))     # calibrated on it, tested on it
    q = quantize(model, st, data.train[0][:workflow.CALIBRATION_IMAGES], data.classes, meta)
    out = Path(args.out or Path(args.model).with_name("quantized.npz"))
    digest = modelfile.save_quantized(out, q)
    print(f"wrote {out} (model hash {digest[:12]}, {q.macs} MACs per inference)")


def cmd_eval(args):
    data = _load_data(args)
    images, labels = data.test
    try:
        q = modelfile.load_quantized(args.model)
        pred, kind = q.predict(images), "integer"
    except modelfile.ModelFileError as e:
        if "expected a quantized one" not in str(e):
            raise
        model, st, _ = modelfile.load_float(args.model)
        pred, kind = model.predict(st(images)), "float"
    print(json.dumps({"model": str(args.model), "kind": kind, "dataset": args.dataset,
                      "test_images": len(labels), "test_accuracy": workflow.accuracy(pred, labels)}))


def cmd_build(args):
    from nnhil.gateware import build_cli
    build_cli.run(args)


def cmd_resources(args):
    from nnhil.gateware import resources
    return resources.run(args)


def cmd_cycles(args):
    from nnhil.gateware.layout import AccelConfig
    from . import cycles
    cycles.print_cycles(AccelConfig(lanes=args.lanes))


def cmd_demo(args):
    from . import demo
    return demo.run(args)


def cmd_run(args):
    from . import run
    return run.run(args)


def cmd_report(args):
    from . import report
    print(f"wrote {report.write(args.out)}")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="nnhil", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train an MLP or a CNN in NumPy, quantize it, report test accuracy, plot")
    _add_data_args(p)
    _add_train_args(p)
    p.add_argument("--out", help="output folder (default out/<dataset>-<architecture>-<config hash>)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("quantize", help="quantize a float model file to the integer format")
    p.add_argument("model", help="float model file (float.npz)")
    p.add_argument("--out", help="quantized model file (default: quantized.npz beside the input)")
    _add_data_args(p)
    p.set_defaults(func=cmd_quantize)

    p = sub.add_parser("eval", help="test-set accuracy of a float or quantized model file")
    p.add_argument("model")
    _add_data_args(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("demo", help="the main job: train or reuse a model (--model mlp|cnn), run it on the SoC, report")
    from . import demo
    demo.add_arguments(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("run", help="any quantized model file on the SoC: bit-exact, cycles, accuracy, speedup")
    from . import run
    run.add_arguments(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("report", help="the models side by side, latency and accuracy history of the runs")
    p.add_argument("--out", default=str(home.out() / "report"), help="output folder (default: %(default)s)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("build", help="build the SoC: a cached Verilator model, or the Arty A7 gateware")
    from nnhil.gateware import build_cli
    build_cli.add_arguments(p)
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("resources", help="Yosys estimate of the accelerator (cells, timing) and the Arty SoC; check they fit")
    from nnhil.gateware import resources
    resources.add_arguments(p)
    p.set_defaults(func=cmd_resources)

    p = sub.add_parser("cycles", help="cycles per inference of the default MLP and CNN, layer by layer")
    p.add_argument("--lanes", type=int, default=64)
    p.set_defaults(func=cmd_cycles)

    args = parser.parse_args(argv)
    # a kill (CI timeout, systemd) unwinds like Ctrl-C: the sim and socat are stopped in order
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        return args.func(args) or 0
    except (datasets.DataError, modelfile.ModelFileError, program.ModelDoesNotFit, InputError,
            RuntimeError, OSError) as e:
        print(f"nnhil: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nnhil: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
