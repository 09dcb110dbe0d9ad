"""What a batch of images gave on the target: the one result type of every batch run."""
from dataclasses import dataclass

import numpy as np


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

    def exact(self, model, images):
        """Per image: logits and argmax both equal the integer reference model's."""
        return self.matches(model.logits(images))

    def matches(self, ref):
        """Per image: logits and argmax both equal ``ref``, the reference model's logits."""
        return (self.logits == ref).all(axis=1) & (self.argmax == ref.argmax(axis=1))

    @classmethod
    def concatenate(cls, parts):
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in cls.__dataclass_fields__))
