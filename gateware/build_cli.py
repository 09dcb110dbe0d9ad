"""``nnhil build``'s work: the SoC built for a target (gateware.buildcache); host/cli.py
declares its options."""
from .buildcache import SimBuild, SimVariant, build


def run(target="sim", cfg=None, variant=None, jobs=2, traced=False):
    """Build ``target`` ("sim" or "arty") with accelerator ``cfg`` (default: the variant's) and
    return where it went: the sim's build directory, or the Arty build's."""
    from . import variants

    variant = variant or variants.DEFAULT
    cfg = cfg or variants.get(variant).accel
    if traced and target != "sim":
        raise ValueError("--traced is for --target sim")
    kwargs = ({"jobs": jobs, "variant": SimVariant(trace=traced)} if target == "sim" else {"variant": variant})
    result = build(target, cfg, **kwargs)
    return result.dir if isinstance(result, SimBuild) else result
