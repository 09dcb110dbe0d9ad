"""``nnhil cycles``: the accelerator's cycles per inference of each architecture's default shape,
layer by layer, from the analytic cycle model (which the RTL's counter matches exactly)."""
from nnhil.gateware import cyclemodel
from nnhil.gateware.compiled import CompiledModel
from nnhil.gateware.layout import AccelConfig
from nnhil.training import workflow

from .testmodels import random_default_model


def print_cycles(cfg=AccelConfig()):
    """``nnhil cycles``: cycles per inference, lanes and MACs/cycle of each architecture's
    default shape, layer by layer; returns {arch: cycles}."""
    out = {}
    for arch in workflow.ARCHS:
        compiled = CompiledModel.of(random_default_model(arch), cfg)
        cycles = out[arch] = compiled.cycles
        print(f"{arch}: {cycles} cycles per inference on {cfg.lanes} lanes, "
              f"{compiled.hardware_macs} MACs, {compiled.macs_per_cycle:.1f} MACs/cycle")
        for s in compiled.shapes:
            c = cyclemodel.layer_cycles(s, cfg.lanes)
            print(f"  {str(s):38s} {c:7d} cycles  {s.macs / c:5.1f} MACs/cycle  "
                  f"({cyclemodel.layer_bound(s, cfg.lanes)}-bound)")
    return out
