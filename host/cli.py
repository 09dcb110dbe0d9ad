"""nnhil: train small networks in NumPy, quantize them, and run them on a LiteX SoC (in
Verilator or on an Arty A7), checking every output bit-exact and every cycle count.

Start with `nnhil demo`; `nnhil <command> --help` explains each command, with examples.
Builds, trained models and run history go under $NNHIL_HOME (default ~/.cache/nnhil)."""
import argparse
import dataclasses
import json
import logging
import signal
import sys
import textwrap
from pathlib import Path

from nnhil.gateware import analyzer, program
from nnhil.training import datasets, home, modelfile, workflow
from nnhil.training.cnn import CNNConfig
from nnhil.training.train import TrainConfig

from nnhil.training.onnx_import import ImportRefused

from . import options
from .options import InputError, deprecated

log = logging.getLogger(__name__)
RAW = argparse.RawDescriptionHelpFormatter      # keeps the examples' lines as written


def _layers(text):
    try:
        sizes = tuple(int(s) for s in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--layers takes comma-separated sizes such as 784,128,10, got {text!r}")
    if len(sizes) < 2 or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"--layers needs at least two positive sizes, got {text!r}")
    return sizes


def _sizes(text):
    try:
        sizes = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated sizes such as 16,32, got {text!r}")
    if min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"sizes must be positive, got {text!r}")
    return sizes


TUPLE_FLAGS = {"layers": _layers, "channels": _sizes}
CHOICE_FLAGS = {"schedule": TrainConfig.SCHEDULES, "inputs": TrainConfig.INPUTS}


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
                       choices=CHOICE_FLAGS.get(f.name),
                       help=("one of: %(choices)s; " if f.name in CHOICE_FLAGS else "")
                       + "default: " + ", ".join(defaults))


def _train_config(args):
    cls = workflow.ARCHS[args.arch]
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
             if getattr(args, f.name, None) is not None}
    try:
        return cls(**given)
    except ValueError as e:
        raise SystemExit(f"nnhil train: error: {e}") from None


def _load_data(args, recorded=None, val_size=5000, seed=0):
    """The dataset of the Data options (or the one a model file records), loaded."""
    d = options.from_namespace(options.Data, args)
    return workflow.load_data(d.name(recorded), d.data_dir, val_size, seed, not d.no_download)


def cmd_train(args):
    cfg = _train_config(args)
    data = _load_data(args, None, cfg.val_size, cfg.seed)
    out = Path(args.model_dir or workflow.default_out_dir(cfg, data.name))
    m = workflow.train_and_quantize(cfg, data, out)
    print(f"float test accuracy    {m['float_test_accuracy']:.4f}  ({m['test_images']} images)")
    print(f"integer test accuracy  {m['int_test_accuracy']:.4f}  (agrees with float on "
          f"{m['int_float_agreement']:.2%}), {m['weights']} int8 weights")
    print(f"trained in {m['train_seconds']:.1f} s; model, metrics and plots in {out}/")


def cmd_quantize(args):
    model, st, meta = modelfile.load_float(args.model)
    data = _load_data(args, meta.get("dataset"), meta.get("train_config", {}).get("val_size", 5000),
                      meta.get("train_config", {}).get("seed", 0))
    from nnhil.training.quantize import quantize
    meta = dict(meta, dataset=data.name)             # calibrated on it, tested on it
    q = quantize(model, st, data.train[0][:workflow.CALIBRATION_IMAGES], data.classes, meta)
    out = Path(args.out or Path(args.model).with_name("quantized.npz"))
    digest = modelfile.save_quantized(out, q)
    print(f"wrote {out} (model hash {digest[:12]}, {q.macs} MACs per inference)")


def cmd_eval(args):
    try:
        q = modelfile.load_quantized(args.model)
        meta, predict, kind = q.meta, q.predict, "integer"
    except modelfile.ModelFileError as e:
        if "expected a quantized one" not in str(e):
            raise
        model, st, meta = modelfile.load_float(args.model)
        predict, kind = (lambda x: model.predict(st(x))), "float"
    data = _load_data(args, meta.get("dataset"))
    images, labels = data.test
    pred = predict(images)
    print(json.dumps({"model": str(args.model), "kind": kind, "dataset": data.name,
                      "test_images": len(labels), "test_accuracy": workflow.accuracy(pred, labels)}))


def _accel_config(args):
    """The variant's accelerator with the --lanes, ... given; a bad value stops the command."""
    try:
        return options.accel_config(args.variant, args)
    except ValueError as e:
        raise SystemExit(f"nnhil {args.command}: error: {e}") from None


def cmd_selftest(args):
    from . import selftest
    return selftest.run(args.model, args.faults, args.strict, args.sims,
                        options.from_namespace(options.Data, args), options.from_namespace(options.Images, args),
                        options.from_namespace(options.Target, args), options.from_namespace(options.Results, args))


def cmd_build(args):
    from nnhil.gateware import build_cli
    try:
        build_cli.check(args.target, args.variant, args.traced, args.litescope)
    except ValueError as e:
        raise SystemExit(f"nnhil build: error: {e}") from None
    print(build_cli.run(args.target, _accel_config(args), args.variant, args.jobs, args.traced, args.litescope))


def cmd_resources(args):
    from nnhil.gateware import resources
    record = home.out() / "resources.json" if args.record is None else Path(args.record) if args.record else None
    return resources.run(args.design, args.variant, _accel_config(args), args.work_dir, record)


def cmd_cycles(args):
    from . import cycles
    cycles.print_cycles(_accel_config(args))


def cmd_demo(args):
    from . import demo
    return demo.run(demo.Options.from_args(args))


def cmd_run(args):
    from . import run
    return run.run(args.model, *(options.from_namespace(c, args)
                                 for c in (options.Target, options.Data, options.Images, options.Results)))


def cmd_report(args):
    from . import report
    print(f"wrote {report.write(args.report_dir or home.out() / 'report')}")


def _require_tools(args):
    """Stop before any work (a demo trains first) if a tool the command needs is missing."""
    from . import doctor
    if args.command in ("demo", "run"):
        doctor.require("firmware", *(() if args.target != "sim" else ("sim",)))
    elif args.command == "build":
        doctor.require("sim" if args.target == "sim" else "firmware")


def _command(sub, name, help, description, examples):
    """A subcommand whose --help has a description and examples (lines kept as written)."""
    p = sub.add_parser(name, help=help, description=textwrap.fill(description, 88),
                       epilog="examples:\n" + textwrap.indent(examples, "  "), formatter_class=RAW)
    options.add_verbosity(p, top=False)
    return p


def build_parser():
    """The ``nnhil`` parser with every subcommand (the docs' CLI reference renders it)."""
    import nnhil
    parser = argparse.ArgumentParser(prog="nnhil", description=__doc__, formatter_class=RAW)
    parser.add_argument("--version", action="version", version=f"%(prog)s {nnhil.__version__}")
    options.add_verbosity(parser)
    sub = parser.add_subparsers(dest="command", required=True)

    p = _command(sub, "train", "train an MLP or a CNN in NumPy, quantize it, report test accuracy, plot",
                 "Train a model in NumPy on Fashion-MNIST or MNIST, quantize it to the integer "
                 "format the accelerator runs, and write float.npz, quantized.npz, metrics.json "
                 "and plots. Every hyperparameter is a flag; unset ones take the architecture's "
                 "default.",
                 "nnhil train                                  # the default MLP (784-128-10)\n"
                 "nnhil train --arch cnn --dataset mnist       # the default CNN on MNIST\n"
                 "nnhil train --layers 784,64,32,10 --model-dir mine   # your own shape, into ./mine/")
    options.add_arguments(p, options.Data)
    _add_train_args(p)
    p.add_argument("--model-dir", metavar="DIR",
                   help="the folder of the model files (default: $NNHIL_HOME/out/<dataset>-<architecture>-<config hash>)")
    deprecated(p, "--out", "--model-dir", options.OUT_FILE)
    p.set_defaults(func=cmd_train)

    p = _command(sub, "quantize", "quantize a float model file to the integer format",
                 "Calibrate a float model file on its dataset's training images and write the "
                 "quantized model file that nnhil run and the SoC take.",
                 "nnhil quantize mine/float.npz\n"
                 "nnhil quantize float.npz --dataset mnist --out q.npz")
    p.add_argument("model", help="float model file (float.npz)")
    p.add_argument("--out", metavar="FILE", help="the quantized model file to write (default: quantized.npz beside the input)")
    options.add_arguments(p, options.Data)
    p.set_defaults(func=cmd_quantize)

    p = _command(sub, "eval", "test-set accuracy of a float or quantized model file",
                 "Print the test-set accuracy of a float or quantized model file as one JSON line.",
                 "nnhil eval mine/quantized.npz\n"
                 "nnhil eval float.npz --dataset mnist")
    p.add_argument("model", help="a float or quantized model file")
    options.add_arguments(p, options.Data)
    p.set_defaults(func=cmd_eval)

    p = _command(sub, "demo", "the main job: train or reuse a model (--arch mlp|cnn|all), run it on the SoC, report",
                 "The main job: train (or reuse) the project's models, build (or reuse) the "
                 "simulated SoC, load each model with read-back, run the test images through the "
                 "accelerator, check every image bit-exact against the integer model and every "
                 "cycle count against the cycle model, measure the CPU for the speedup, and "
                 "report. Exits 0 only if everything is exact.",
                 "nnhil demo                        # the MLP, all 10,000 test images\n"
                 "nnhil demo --arch all             # the three models (make demo)\n"
                 "nnhil demo --arch cnn --images 100 --sims 2\n"
                 "nnhil demo --target arty --port /dev/ttyUSB1")
    from . import demo
    demo.add_arguments(p)
    p.set_defaults(func=cmd_demo)

    p = _command(sub, "run", "any quantized model file on the SoC: bit-exact, cycles, accuracy, speedup",
                 "Put any quantized model file on the SoC and check it the way the demo checks the"
                 " project's models: load with read-back, the images through the accelerator, "
                 "logits and argmax against the integer reference, cycles against the cycle model,"
                 " accuracy when there are labels, the CPU for the speedup; a differing image is "
                 "traced layer by layer. Exits 0 only if everything is exact; a model that does "
                 "not fit is refused before anything is written.",
                 "nnhil run mine/quantized.npz                 # its dataset's test images, on the sim\n"
                 "nnhil run mine.npz --images 500 --sims 2     # the first 500, over two simulations\n"
                 "nnhil run mine.npz --images-npy x.npy --labels-npy y.npy\n"
                 "nnhil run mine.npz --images 100 --trace 7    # and image 7 layer by layer\n"
                 "nnhil run mine.npz --trace 7 --wave          # and the waveform of its diverging layer\n"
                 "nnhil run mine.npz --target arty --port /dev/ttyUSB1")
    from . import run
    run.add_arguments(p)
    p.set_defaults(func=cmd_run)

    from . import selftest
    p = _command(sub, "selftest", "how well the checks catch a broken accelerator: the model once per injected fault",
                 selftest.__doc__,
                 "nnhil selftest out/mnist-cnn.../quantized.npz --images 300\n"
                 "nnhil selftest model.npz --images-npy x.npy --faults relu_broken,maxpool_min --strict")
    selftest.add_arguments(p)
    p.set_defaults(func=cmd_selftest)

    p = _command(sub, "report", "the models side by side, latency and accuracy history of the runs",
                 "Write report.md (the models side by side) and history.png (latency and accuracy "
                 "of the recorded runs) from the run history.",
                 "nnhil report")
    p.add_argument("--report-dir", metavar="DIR",
                   help="the folder report.md and history.png go to (default: $NNHIL_HOME/out/report, beside the run history)")
    deprecated(p, "--out", "--report-dir", options.OUT_FILE)
    p.set_defaults(func=cmd_report)

    p = _command(sub, "build", "build the SoC: a cached Verilator model, or the Arty A7 gateware",
                 "Build the SoC: the Verilator model of the simulation (cached by everything that "
                 "shapes it), or the Arty A7 gateware, BIOS and Vivado project (the bitstream too "
                 "when Vivado is on PATH and the routed design meets timing). Prints the build "
                 "directory.",
                 "nnhil build                          # the sim (about 40 s cold, under 1 s cached)\n"
                 "nnhil build --target arty --variant a7-100\n"
                 "nnhil build --lanes 32                # a sim with a 32-lane accelerator")
    options.add_arguments(p, options.Target, only=("target", "variant"))
    p.add_argument("--jobs", type=int, default=2, help="parallel compile jobs (sim; default: %(default)s)")
    p.add_argument("--traced", action="store_true",
                   help="the sim model with trace support: a run that arms its trace window dumps it to "
                        "the file $NNHIL_TRACE_FILE names (a build of its own, slower; docs/waveforms.md)")
    p.add_argument("--litescope", action="store_true",
                   help="the Arty build with the LiteScope analyzer of a layer's window (a build of its own; "
                        f"{', '.join(analyzer.VARIANTS)} only; docs/waveforms.md)")
    deprecated(p, "--trace", "--traced", "--trace IMAGE_INDEX is the image nnhil run traces", flag=True)
    options.add_accel_arguments(p)
    p.set_defaults(func=cmd_build)

    p = _command(sub, "resources", "Yosys estimate of the accelerator (cells, timing) and the Arty SoC; check they fit",
                 "Synthesise the accelerator and the Arty SoC with Yosys (synth_xilinx): cells, "
                 "block RAM, DSPs, the logic-only timing of every path against the 100 MHz budget,"
                 " and whether the SoC fits the variant's part. Exits 1 if something misses. Takes"
                 " minutes.",
                 "nnhil resources --design accelerator\n"
                 "nnhil resources --variant a7-100")
    from nnhil.gateware import resources
    p.add_argument("--design", choices=resources.DESIGNS, default="both",
                   help="what is synthesised: the accelerator alone, the Arty SoC, or both (default: %(default)s)")
    deprecated(p, "--target", "--design", "--target names where the SoC runs (nnhil build, run, demo)")
    options.add_arguments(p, options.Target, only=("variant",))
    p.add_argument("--work-dir", metavar="DIR", help="Yosys's work folder (default: $NNHIL_HOME/builds/resources)")
    deprecated(p, "--out", "--work-dir", options.OUT_FILE)
    p.add_argument("--record", metavar="FILE",
                   help="where to record the estimate for 'nnhil report' (default: $NNHIL_HOME/out/resources.json; "
                        "'' to skip)")
    options.add_accel_arguments(p, only=("lanes", "weight_words"))
    p.set_defaults(func=cmd_resources)

    p = _command(sub, "cycles", "cycles per inference of the default MLP and CNN, layer by layer",
                 "Print the cycle model's cycles per inference of the default MLP and CNN, layer "
                 "by layer, with MACs per cycle and what bounds each layer (MAC, drain or memory "
                 "port). Needs no build: the figures are the cycle model's, which the RTL is "
                 "tested against.",
                 "nnhil cycles\n"
                 "nnhil cycles --variant a7-100\n"
                 "nnhil cycles --lanes 128")
    options.add_arguments(p, options.Target, only=("variant",))
    options.add_accel_arguments(p, only=("lanes",))
    p.set_defaults(func=cmd_cycles)

    from . import onnx_import_cmd
    p = _command(sub, "import", "an ONNX model (float, or QDQ from quantize_static) into a model file",
                 onnx_import_cmd.__doc__, onnx_import_cmd.EXAMPLES)
    onnx_import_cmd.add_arguments(p)
    p.set_defaults(func=lambda a: onnx_import_cmd.run(a.onnx, a.out, a.input_range,
                                                      options.from_namespace(options.Data, a).name()))
    from . import onnx_export_cmd
    p = _command(sub, "export", "a quantized model file as an integer ONNX graph, bit-exact on ONNX Runtime",
                 onnx_export_cmd.__doc__, onnx_export_cmd.EXAMPLES)
    onnx_export_cmd.add_arguments(p)
    p.set_defaults(func=lambda a: onnx_export_cmd.run(a.model, a.out))

    from . import doctor
    p = _command(sub, "doctor", "the tools and C libraries nnhil needs beside pip's: found or missing, versions",
                 doctor.DESCRIPTION, "nnhil doctor\nnnhil doctor --apt-packages")
    doctor.add_arguments(p)
    p.set_defaults(func=lambda args: doctor.run(args.apt_packages))
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    # a kill (CI timeout, systemd) unwinds like Ctrl-C: the sim and socat are stopped in order
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        with options.console_logging(args.log_level):
            log.debug(f"nnhil {args.command}: " + ", ".join(f"{k}={v!r}" for k, v in sorted(vars(args).items())
                                                           if k not in ("func", "command", "log_level")))
            _require_tools(args)
            return args.func(args) or 0
    except (datasets.DataError, modelfile.ModelFileError, program.ModelDoesNotFit, InputError,
            RuntimeError, OSError, ImportRefused) as e:     # host.doctor.MissingTools too
        print(f"nnhil: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nnhil: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
