"""A model compiled once for an accelerator build: its layer program, memory image, usage and
cycle count, computed together and passed around, so nothing recompiles the model to ask."""
from dataclasses import dataclass

from . import cyclemodel, program
from .layout import AccelConfig


@dataclass(frozen=True)
class CompiledModel:
    model: object                       # the training.intmodel.IntModel
    config: AccelConfig                 # the build it was compiled for
    layers: list                        # [(LayerShape, conv or dense layer)]: program.layer_shapes
    memory_image: program.MemoryImage   # the words of each region, and n_layers
    usage: dict                         # program.usage: how much of each memory, by AccelConfig field
    cycles: int                         # per inference (cyclemodel: the hardware counter's figure)
    hardware_macs: int                  # MACs per inference (a pool's dropped row/column skipped)

    @classmethod
    def of(cls, model, cfg):
        """Compile ``model`` for ``cfg``; ModelDoesNotFit names every capacity it exceeds."""
        layers = program.layer_shapes(model)
        shapes = program.check_shapes([s for s, _ in layers], cfg)
        return cls(model, cfg, layers, program.compile_layers(layers, cfg), program.shape_usage(shapes, cfg),
                   cyclemodel.shape_cycles(shapes, cfg.lanes), sum(s.macs for s in shapes))

    @property
    def shapes(self):
        return [s for s, _ in self.layers]

    @property
    def n_layers(self):
        return self.memory_image.n_layers

    @property
    def macs_per_cycle(self):
        return self.hardware_macs / self.cycles

    def cycles_after(self, stop_after):
        """Cycles of a run stopped after its first ``stop_after`` layers (0: the whole program)."""
        return cyclemodel.shape_cycles(self.shapes, self.config.lanes, stop_after)
