"""Shared validation vectors: layer programs at and past every limit of the validation rules.

:func:`gateware.program.check_layers` gives each vector's verdict; the accelerator's
ProgramValidator (tests/gateware: Migen simulation and cocotb) and the firmware's model_ok
(tests/hil: on the SoC) must answer the same. Pure Python.
"""
import dataclasses

import numpy as np

from . import layout
from .layout import DESCRIPTOR, DIM_BITS, LayerShape

S = LayerShape


def encode(shapes, lanes, n_layers=None, **bases):
    """(n_layers, program words) of shapes packed back to back in the weight and bias
    memories, outputs at word 0; ``bases`` maps a layer index to its (w_base, b_base) or
    (w_base, b_base, out_base) instead."""
    words, w, b = [], 0, 0
    for l, s in enumerate(shapes):
        wb, bb, ob = (*bases.get(f"l{l}", (w, b)), 0)[:3]
        words += s.encode(wb, bb, ob)
        w, b = w + s.weight_words(lanes), b + s.c_out
    return (len(shapes) if n_layers is None else n_layers), words


def decode(words, n_layers):
    """[(LayerShape, w_base, b_base, out_base)] of the first n_layers descriptors of program
    words (missing words read as 0)."""
    words = list(words) + [0] * max(0, 4 * n_layers - len(words))
    return [(*S.decode(words[4 * l:4 * l + 4]), layout.out_base(words[4 * l:4 * l + 4]))
            for l in range(n_layers)]


def program_vectors(cfg, rng):
    """[(name, n_layers, program words)]: valid programs at each limit of ``cfg`` and just past
    it, and programs breaking each validation rule once, around a pooled conv and a dense
    layer (a (1, 4, 5) input, 2 channels, 3 logits)."""
    A, L, P = cfg.act_bytes, cfg.logit_words, cfg.lanes
    conv, dense = S(1, 4, 5, 2, 2, pool=True), S.dense(4, 3, logits=True)
    base = [conv, dense]
    n, words = encode(base, P)

    def edit(layer, w_base=None, b_base=None, out_base=None, **fields):
        out = list(words)
        shape, wb, bb = S.decode(out[4 * layer:4 * layer + 4])
        ob = layout.out_base(out[4 * layer:4 * layer + 4])
        shape = dataclasses.replace(shape, **fields)
        out[4 * layer:4 * layer + 4] = shape.encode(wb if w_base is None else w_base,
                                                    bb if b_base is None else b_base,
                                                    ob if out_base is None else out_base)
        return out

    last = n - 1
    chain = [S.dense(1, 1)] * (cfg.max_layers - 1) + [S.dense(1, 1, logits=True)]
    at_limits = [
        ("conv, pool, dense", *encode(base, P)),
        ("one dense layer", *encode([S.dense(5, 2, logits=True)], P)),
        ("input of act_bytes", *encode([S.dense(A, 1, logits=True)], P)),
        ("input past act_bytes", *encode([S.dense(A + 1, 1, logits=True)], P)),
        ("hidden output of act_bytes", *encode([S.dense(1, A), S.dense(A, 1, logits=True)], P)),
        ("hidden output past act_bytes", *encode([S.dense(1, A + 1), S.dense(A + 1, 1, logits=True)], P)),
        ("logit_words logits", *encode([S.dense(2, L, logits=True)], P)),
        ("max_layers layers", *encode(chain, P)),
        ("weights end at the last word", *encode(base, P, l1=(cfg.weight_words - dense.weight_words(P), 0))),
        ("weights one past the last word",
         *encode(base, P, l1=(cfg.weight_words - dense.weight_words(P) + 1, 0))),
        ("bias ends at the last entry", *encode(base, P, l1=(0, cfg.bias_entries - dense.c_out))),
        ("bias one past the last entry", *encode(base, P, l1=(0, cfg.bias_entries - dense.c_out + 1))),
        ("conv logits", *encode([S(1, 2, 3, 2, 2, logits=True)], P)),   # several positions
        ("pool of a 2x2 conv output", *encode([S(1, 3, 3, 2, 2, pool=True), S.dense(2, 2, logits=True)], P)),
        # output bases: a hidden output and the next layer's input ending at the buffer's
        # last byte and one word past it; logits ending at the region's last word and past it
        ("hidden output based to the last byte",
         *encode([S.dense(1, 8), S.dense(8, 1, logits=True)], P, l0=(0, 0, A // 4 - 2))),
        ("hidden output based one word past",
         *encode([S.dense(1, 8), S.dense(8, 1, logits=True)], P, l0=(0, 0, A // 4 - 1))),
        ("logits based to the last word", *encode([S.dense(2, 2, logits=True)], P, l0=(0, 0, L - 2))),
        ("logits based one past", *encode([S.dense(2, 2, logits=True)], P, l0=(0, 0, L - 1))),
    ]
    rules = [
        ("no layers", 0, words),
        ("too many layers", cfg.max_layers + 1, words + [0] * 4 * (cfg.max_layers + 1 - n)),
        ("c_in 0", n, edit(0, c_in=0)),
        ("c_out 0", n, edit(last, c_out=0)),
        ("kernel 0", n, edit(0, kernel=0)),
        ("height 0", n, edit(0, height=0)),
        ("kernel taller than the input", n, edit(0, kernel=conv.height + 1)),
        ("kernel wider than the input", n, edit(0, kernel=conv.width + 1, height=conv.width + 1)),
        ("pool of a one-row conv output", n, edit(0, kernel=conv.height)),
        ("n_in too big", n, edit(0, c_in=A + 1)),
        ("input plane too big", n, edit(0, height=255, width=255)),
        ("hidden n_out too big", n, edit(0, c_out=A + 1)),
        ("weights past the end", n, edit(last, w_base=cfg.weight_words - 1)),
        ("weights base huge", n, edit(0, w_base=DESCRIPTOR["w_base"].mask)),
        ("many tiles", n, edit(last, c_out=min(cfg.weight_words * P, (1 << DIM_BITS) - 1))),
        ("bias past the end", n, edit(last, b_base=cfg.bias_entries - 1)),
        ("bias base huge", n, edit(0, b_base=DESCRIPTOR["b_base"].mask)),
        ("output base huge", n, edit(0, out_base=DESCRIPTOR["out_base"].mask)),
        ("logits base huge", n, edit(last, out_base=DESCRIPTOR["out_base"].mask)),
        ("chain", n, edit(last, c_in=conv.c_out + 1)),
        ("hidden logits", n, edit(0, logits=True)),
        ("last not logits", n, edit(last, logits=False)),
        ("last pooled", n, edit(last, pool=True)),
        ("last has positions", n, edit(last, c_in=1, height=conv.n_out, kernel=1)),
        ("too many logits", n, edit(last, c_out=L + 1)),
        ("random", n, [int(v) for v in rng.integers(0, 1 << 32, len(words), dtype=np.int64)]),
    ]
    return at_limits + rules
