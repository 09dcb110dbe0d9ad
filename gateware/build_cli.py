"""``nnhil build``: build the SoC for a target (gateware.buildcache), from the command line."""
import argparse
import dataclasses
import sys

from . import analyzer, layout
from .buildcache import SimBuild, SimVariant, build


def add_arguments(parser):
    """The ``nnhil build`` options: the target, the Arty variant and every AccelConfig field
    (default: the variant's configuration; the sim twin of a variant is ``--variant`` with
    ``--target sim``)."""
    from . import variants

    parser.add_argument("--target", choices=("sim", "arty"), default="sim")
    parser.add_argument("--variant", choices=sorted(variants.VARIANTS), default=variants.DEFAULT,
                        help="the Arty A7 (default %(default)s): its part and default accelerator")
    parser.add_argument("--jobs", type=int, default=2, help="parallel compile jobs (sim)")
    parser.add_argument("--trace", action="store_true",
                        help="the sim model with trace support: it writes sim.vcd beside itself "
                             "(a build of its own, slower; docs/simulation-speed.md)")
    parser.add_argument("--litescope", action="store_true",
                        help="the Arty build with the LiteScope analyzer of a layer's window (a build of "
                             f"its own; {', '.join(analyzer.VARIANTS)} only; docs/waveforms.md)")
    for f in dataclasses.fields(layout.AccelConfig):
        parser.add_argument("--" + f.name.replace("_", "-"), type=int, default=None,
                            help=f"accelerator {f.name} (default: the variant's)")


def run(args):
    from . import variants

    base = variants.get(args.variant).accel
    cfg = dataclasses.replace(base, **{f.name: getattr(args, f.name) for f in dataclasses.fields(layout.AccelConfig)
                                       if getattr(args, f.name) is not None})
    if args.trace and args.target != "sim":
        raise SystemExit("nnhil build: error: --trace is for --target sim")
    if args.litescope:
        if args.target != "arty":
            raise SystemExit("nnhil build: error: --litescope is for --target arty (the sim has --trace)")
        try:
            analyzer.check(args.variant)
        except ValueError as e:
            raise SystemExit(f"nnhil build: error: --{e}") from None
    kwargs = ({"jobs": args.jobs, "variant": SimVariant(trace=args.trace)} if args.target == "sim"
              else {"variant": args.variant, "litescope": args.litescope})
    result = build(args.target, cfg, **kwargs)
    print(result.dir if isinstance(result, SimBuild) else result)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="nnhil build", description="Build the nnhil SoC: a cached Verilator model for the sim, or the Arty A7 gateware.")
    add_arguments(parser)
    try:
        run(parser.parse_args(argv))
    except RuntimeError as e:           # a BuildError, or Vivado's timing not met
        print(f"nnhil build: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
