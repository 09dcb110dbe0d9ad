"""The one statement of the validation rules (program.check_layers) and the ProgramValidator
block against it (Migen simulation), on the shared vectors of gateware/vectors.py; the
firmware's model_ok is checked against the same vectors on the SoC (tests/hil).
"""
import numpy as np
import pytest
from migen.sim import run_simulation

from nnhil.gateware import layout, program, vectors
from nnhil.gateware.layout import GEOM_BITS, DIM_BITS, AccelConfig, LayerShape as S
from nnhil.gateware.validator import ProgramValidator
from nnhil.host.cpu_model import cpu_layers, cpu_limits
from nnhil.host.firmware_abi import MAX_DIM, MAX_WIDTH, FirmwareError
from nnhil.training import fixedpoint as fx
from nnhil.training.intmodel import Conv2D, Dense, IntModel, MaxPool2D

CONFIGS = {
    "p4": AccelConfig(lanes=4, weight_words=512, bias_entries=96, act_bytes=40, logit_words=12, max_layers=4),
    "p8": AccelConfig(lanes=8, weight_words=256, bias_entries=64, act_bytes=28, logit_words=20, max_layers=3),
    "p64": AccelConfig(lanes=64, weight_words=512, bias_entries=256, act_bytes=160, logit_words=16, max_layers=2),
}


def sizes(s, w_base, b_base, lanes):
    """The sizes the sequencer computes from a descriptor, in its register widths (they wrap
    where a rule already failed: a kernel larger than the input)."""
    conv_h, conv_w = ((v - s.kernel + 1) % (1 << GEOM_BITS + 1) for v in (s.height, s.width))
    out_h, out_w = ((v >> 1 if s.pool else v) % (1 << GEOM_BITS) for v in (conv_h, conv_w))
    plane = out_h * out_w
    window = s.steps(lanes) % (1 << DIM_BITS)   # weight words per tile
    return dict(conv_h=conv_h, conv_w=conv_w, n_in=s.n_in, n_out=s.c_out * plane, plane=plane,
                w_end=w_base + layout.tiles(s.c_out, lanes) * window, b_end=b_base + s.c_out)


def simulate(cfg, n_layers, words, slot=0):
    """The validator's verdict, layer by layer as the sequencer presents them, the program
    run in input ``slot``: (code, layer)."""
    v = ProgramValidator(cfg)
    verdict = []

    def tb():
        yield v.n_layers.eq(n_layers)
        yield
        if (yield v.bad_count):
            verdict.append((layout.ERR_LAYER_COUNT, None))
            return
        prev, in_base = 0, slot * cfg.slot_words
        for l, (s, w_base, b_base, out_base) in enumerate(vectors.decode(words, n_layers)):
            last = l == n_layers - 1
            inputs = dict(layer=l, is_last=int(last), prev_out=prev, c_in=s.c_in,
                          c_out=s.c_out, height=s.height, width=s.width, kernel=s.kernel,
                          pool=int(s.pool), logits=int(s.logits), in_base=in_base,
                          out_base=out_base + (slot * cfg.slot_logits if last and s.logits else 0),
                          **sizes(s, w_base, b_base, cfg.lanes))
            for name, value in inputs.items():
                yield getattr(v, name).eq(value)
            yield
            code = yield v.check
            if code != layout.ERR_NONE:
                verdict.append((code, l))
                return
            prev, in_base = inputs["n_out"], out_base
        verdict.append((layout.ERR_NONE, None))

    run_simulation(v, tb())
    return verdict[0]


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_validator_block_matches_the_rules(name):
    cfg = CONFIGS[name]
    seen = set()
    for vector, n_layers, words in vectors.program_vectors(cfg, np.random.default_rng(1)):
        expect = program.check_program(words, n_layers, cfg)
        assert simulate(cfg, n_layers, words) == expect, vector
        seen.add(expect[0])
        # in input slot 1 the input and the logits move up by half their region
        assert simulate(cfg, n_layers, words, 1) == program.check_program(words, n_layers, cfg, slot=1), vector
    # ERR_STOP_AFTER is a run's (stop_after past n_layers), not a program's: test_stop_after* has it
    assert seen == set(layout.ERROR_NAMES) - {layout.ERR_BUSY, layout.ERR_STOP_AFTER}


def test_layer_count_limits():
    cfg = CONFIGS["p8"]
    words = vectors.encode([S.dense(1, 1, logits=True)] * 5, cfg.lanes)[1]
    for n in (0, cfg.max_layers + 1, 1 << 31, (1 << 32) - 1):
        assert simulate(cfg, n, words) == program.check_program(words, n, cfg) == (layout.ERR_LAYER_COUNT, None)


def test_vectors_reach_each_limit_from_both_sides():
    """Each limit of the build has a vector exactly at it (valid) and one just past it."""
    cfg = CONFIGS["p4"]
    verdicts = {name: program.check_program(w, n, cfg)[0]
                for name, n, w in vectors.program_vectors(cfg, np.random.default_rng(1))}
    ok = layout.ERR_NONE
    for at, past, code in [("input of act_bytes", "input past act_bytes", layout.ERR_ACT_CAPACITY),
                           ("hidden output of act_bytes", "hidden output past act_bytes", layout.ERR_ACT_CAPACITY),
                           ("weights end at the last word", "weights one past the last word", layout.ERR_WEIGHT_RANGE),
                           ("bias ends at the last entry", "bias one past the last entry", layout.ERR_BIAS_RANGE),
                           ("max_layers layers", "too many layers", layout.ERR_LAYER_COUNT),
                           ("logit_words logits", "too many logits", layout.ERR_OUTPUT_KIND),
                           ("hidden output based to the last byte", "hidden output based one word past",
                            layout.ERR_ACT_CAPACITY),
                           ("logits based to the last word", "logits based one past", layout.ERR_OUTPUT_KIND)]:
        assert (verdicts[at], verdicts[past]) == (ok, code), (at, past)


def test_slot_one_moves_input_and_logits():
    """In slot 1 the input starts at slot_words and the logits at slot_logits: a program
    valid in slot 0 whose input or logits pass half their region is refused there."""
    cfg = CONFIGS["p4"]
    half = 4 * cfg.slot_words
    for shapes, code in [([S.dense(half, 2, logits=True)], layout.ERR_NONE),
                         ([S.dense(half + 1, 2, logits=True)], layout.ERR_ACT_CAPACITY),
                         ([S.dense(4, cfg.slot_logits, logits=True)], layout.ERR_NONE),
                         ([S.dense(4, cfg.slot_logits + 1, logits=True)], layout.ERR_OUTPUT_KIND)]:
        n, words = vectors.encode(shapes, cfg.lanes)
        assert program.check_program(words, n, cfg) == (layout.ERR_NONE, None)
        assert simulate(cfg, n, words, 1)[0] == program.check_program(words, n, cfg, slot=1)[0] == code


def conv(in_shape, c_out, k, output=fx.OUTPUT_U8):
    rng = np.random.default_rng(0)
    return Conv2D(rng.integers(-128, 128, (c_out, in_shape[0], k, k)).astype(np.int8),
                  np.zeros(c_out, np.int32), np.ones(c_out, np.uint16), np.ones(c_out, np.uint8),
                  output, in_shape)


def test_cpu_layers_follow_the_firmware_limits():
    """cpu_layers refuses what check_layers refuses with cpu_limits, naming the limit."""
    wide = conv((1, 66, 66), 1, 1)                               # 4356 > MAX_WIDTH hidden outputs
    head = Dense(np.ones((2, wide.n_out), np.int8), np.zeros(2, np.int32), np.ones(2, np.uint16),
                 np.ones(2, np.uint8), fx.OUTPUT_I32)
    model = IntModel([wide, head], input_shape=(1, 66, 66))
    with pytest.raises(FirmwareError, match=rf"layer 0 \(Conv2D\) outputs 1 x 66 x 66 = 4356 activations, "
                                            rf"more than the {MAX_WIDTH} bytes"):
        cpu_layers(model)
    shapes = [s for s, _ in program.layer_shapes(model)]
    assert program.check_layers(2, lambda l: (shapes[l], 0, 0), cpu_limits(model.n_in)) == \
        (layout.ERR_ACT_CAPACITY, 0)
    # a conv producing logits at several positions runs on the CPU, not on the accelerator
    c = conv((1, 3, 3), 2, 2, fx.OUTPUT_I32)
    model = IntModel([c], input_shape=(1, 3, 3))
    assert [s for s, _ in cpu_layers(model)] == [S(1, 3, 3, 2, 2, logits=True)]
    with pytest.raises(program.ModelDoesNotFit):
        program.check_fits(model, AccelConfig())
    # a pooled conv into the next: the pool is fused, both run
    c1 = conv((1, 5, 5), 2, 2)
    p1 = MaxPool2D(c1.shape_out)
    c2 = conv(p1.shape_out, 3, 2, fx.OUTPUT_I32)
    assert [s for s, _ in cpu_layers(IntModel([c1, p1, c2], input_shape=(1, 5, 5)))] == \
        [S(1, 5, 5, 2, 2, pool=True), S(2, 2, 2, 2, 3, logits=True)]
    assert cpu_limits(10).field_max == MAX_DIM == (1 << DIM_BITS) - 1


def test_stop_after_limits():
    """stop_after is refused past n_layers (after the layer count), accepted up to it."""
    cfg = CONFIGS["p8"]
    words = vectors.encode([S.dense(1, 1, logits=True)] * 3, cfg.lanes)[1]
    for n_layers, stop_after in [(2, 0), (2, 1), (2, 2), (2, 3), (1, 1 << 31), (3, (1 << 32) - 1), (0, 5)]:
        v = ProgramValidator(cfg)
        got = {}

        def tb():
            yield v.n_layers.eq(n_layers)
            yield v.stop_after.eq(stop_after)
            yield
            got.update(count=(yield v.bad_count), stop=(yield v.bad_stop))
        run_simulation(v, tb())
        code = program.check_program(words, n_layers, cfg, stop_after)[0]
        verdict = (layout.ERR_LAYER_COUNT if got["count"] else layout.ERR_STOP_AFTER if got["stop"]
                   else program.check_program(words, n_layers, cfg)[0])
        assert verdict == code, (n_layers, stop_after)
        assert (code == layout.ERR_STOP_AFTER) == (n_layers >= 1 and stop_after > n_layers)
