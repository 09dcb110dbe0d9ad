"""What the target gave: one type per kind of result, whichever path (the host driving the
accelerator, the firmware's batch, the CPU inference, a sim or a board) produced it.

An image gives an :class:`Inference`, a batch of images :class:`Results` (whose rows are
Inferences), a run stopped after a layer a :class:`LayerRun`.
"""
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Inference:
    """One image."""
    logits: np.ndarray          # int32 [n_out]
    argmax: int                 # the target's own argmax
    cycles: int                 # accelerator cycles by its hardware counter; 0 on the CPU
    driver_cycles: int = 0      # CPU cycles the firmware measured (0 when the host drove the run)


@dataclass(frozen=True)
class LayerRun:
    """One layer's on-board output: what a run stopped after it left in its buffer."""
    values: np.ndarray      # uint8 (C, H, W) of a conv (C-major, as the buffer holds it) or
                            # (n,) of a dense layer; int32 logits of the last layer
    cycles: int             # the stopped run's, from start (validation of every layer included)


@dataclass(frozen=True)
class Results:
    """One row per image."""
    logits: np.ndarray          # int32 [n, n_out]
    argmax: np.ndarray          # [n], the target's own argmax (the accelerator's, or the CPU's)
    cycles: np.ndarray          # [n] accelerator cycles by its hardware counter; 0 on the CPU
    driver_cycles: np.ndarray   # [n] CPU cycles the firmware measured: the image through the
                                # driver (an accelerator batch), or the whole CPU inference

    def __len__(self):
        return len(self.logits)

    def __getitem__(self, i):
        """Image ``i``'s row, as the Inference a single run gives."""
        return Inference(self.logits[i], int(self.argmax[i]), int(self.cycles[i]), int(self.driver_cycles[i]))

    def exact(self, model, images):
        """Per image: logits and argmax both equal the integer reference model's."""
        return self.matches(model.logits(images))

    def matches(self, ref):
        """Per image: logits and argmax both equal ``ref``, the reference model's logits."""
        return (self.logits == ref).all(axis=1) & (self.argmax == ref.argmax(axis=1))

    @classmethod
    def concatenate(cls, parts):
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in cls.__dataclass_fields__))
