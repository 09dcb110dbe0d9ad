"""``nnhil build``'s work: the SoC built for a target (gateware.buildcache); host/cli.py
declares its options."""
from . import analyzer
from .buildcache import SimBuild, SimVariant, build


def check(target="sim", variant=None, traced=False, litescope=False):
    """Refuse a combination no build has, before any work: ValueError naming the option."""
    from . import variants

    if traced and target != "sim":
        raise ValueError("--traced is for --target sim")
    if litescope:
        if target != "arty":
            raise ValueError("--litescope is for --target arty (the sim has --traced)")
        try:
            analyzer.check(variant or variants.DEFAULT)
        except ValueError as e:                         # "litescope: ..." names the option
            raise ValueError(f"--{e}") from None


def run(target="sim", cfg=None, variant=None, jobs=2, traced=False, litescope=False):
    """Build ``target`` ("sim" or "arty") with accelerator ``cfg`` (default: the variant's; with
    ``litescope``, the Arty build with gateware.analyzer) and return where it went: the sim's build
    directory, or the Arty build's."""
    from . import variants

    check(target, variant, traced, litescope)
    variant = variant or variants.DEFAULT
    cfg = cfg or variants.get(variant).accel
    kwargs = ({"jobs": jobs, "variant": SimVariant(trace=traced)} if target == "sim"
              else {"variant": variant, "litescope": litescope})
    result = build(target, cfg, **kwargs)
    return result.dir if isinstance(result, SimBuild) else result
