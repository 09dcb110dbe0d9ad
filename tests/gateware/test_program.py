"""gateware.program: packing against the layout contract, and check_fits messages."""
import numpy as np
import pytest

from nnhil.gateware import layout, program
from nnhil.gateware.layout import AccelConfig
from nnhil.training import fixedpoint as fx
from nnhil.training.intmodel import Conv2D, Dense, IntModel, MaxPool2D

LayerShape = layout.LayerShape


def model(sizes, seed=0):
    rng = np.random.default_rng(seed)
    layers = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        last = i == len(sizes) - 2
        layers.append(Dense(rng.integers(-128, 128, (b, a)).astype(np.int8),
                            rng.integers(-1000, 1000, b).astype(np.int32),
                            rng.integers(0, 1 << 16, b).astype(np.uint16),
                            rng.integers(1, 48, b).astype(np.uint8),
                            fx.OUTPUT_I32 if last else fx.OUTPUT_U8))
    return IntModel(layers, input_shape=(sizes[0],))


def weight_bytes(words, lanes):
    """The int8 weights of each wide word, lane k at index k."""
    return np.asarray(words, dtype="<u4").view(np.int8).reshape(-1, lanes)


@pytest.mark.parametrize("lanes", [4, 8, 64])
def test_weights_follow_the_layout(lanes):
    cfg = AccelConfig(lanes=lanes)
    m = model([13, 2 * lanes + 3, 5, lanes // 2])   # 1 lane group; 4 on 64 lanes; 2
    memory_image = program.compile_model(m, cfg)
    wide = weight_bytes(memory_image.regions["weights"], lanes)
    desc = memory_image.regions["program"]
    for l, layer in enumerate(m.layers):
        shape, w_base, b_base = LayerShape.decode(desc[4 * l:4 * l + 4])
        assert shape == LayerShape.dense(layer.n_in, layer.n_out, logits=l == len(m.layers) - 1)
        groups, steps = shape.groups(lanes), shape.steps(lanes)
        assert groups == (4 if l == 1 and lanes == 64 else 2 if l == 2 else 1)
        for t in range(layout.tiles(layer.n_out, lanes)):
            for i in range(steps):
                for k in range(lanes):
                    g, c = divmod(k, lanes // groups)      # lane group g takes input G i + g
                    j, n = t * lanes + c, groups * i + g
                    expect = layer.weights[j, n] if j < layer.n_out and n < layer.n_in else 0
                    assert wide[w_base + t * steps + i, k] == expect
        entries = np.asarray(memory_image.regions["bias"], dtype="<u4").view("<u8")[b_base:b_base + layer.n_out]
        bias = layout.BIAS.decode(entries)
        np.testing.assert_array_equal(bias["bias"], layer.bias)
        np.testing.assert_array_equal(bias["mult"], layer.mult)
        np.testing.assert_array_equal(bias["shift"], layer.shift)
    assert memory_image.n_layers == 3
    assert program.check_program(desc, memory_image.n_layers, cfg) == (layout.ERR_NONE, None)


@pytest.mark.parametrize("lanes", [4, 64])
def test_narrow_conv_weights_feed_both_positions_of_a_pair(lanes):
    """A conv of at most lanes/2 channels: both lane groups (two output positions) hold the
    channels' weights, window element i at step i."""
    rng = np.random.default_rng(1)
    c_out, c_in, k = lanes // 2, 3, 3
    w = rng.integers(-128, 128, (c_out, c_in, k, k)).astype(np.int8)
    shape = LayerShape(c_in, 9, 9, k, c_out)
    assert (shape.groups(lanes), shape.pairs(lanes)) == (1, 2)
    wide = weight_bytes(program.pack_weights(w, lanes, 1, 2), lanes)
    assert wide.shape == (shape.weight_words(lanes), lanes) == (c_in * k * k, lanes)
    for g in range(2):
        np.testing.assert_array_equal(wide[:, g * c_out:(g + 1) * c_out], w.reshape(c_out, -1).T)


def test_input_and_output_words():
    x = np.arange(7, dtype=np.uint8) * 37
    words = program.pack_input(x)
    assert len(words) == 2 and words[0] == int.from_bytes(bytes(x[:4]), "little")
    np.testing.assert_array_equal(program.unpack_acts(words, 7), x)
    logits = np.array([-5, 2**31 - 1, -2**31], dtype=np.int32)
    np.testing.assert_array_equal(program.unpack_logits(logits.view(np.uint32).tolist()), logits)
    with pytest.raises(TypeError):
        program.pack_input(x.astype(np.int16))


def test_headline_fits_the_default_build():
    program.check_fits(model([784, 128, 10]), AccelConfig())


def test_usage_of_each_memory():
    assert program.usage(model([784, 128, 10]), AccelConfig()) == {
        "max_layers": 2, "act_bytes": 784, "logit_words": 10, "weight_words": 2 * 784 + 128 // 4,
        "bias_entries": 138}
    m = conv_model()                                       # (2, 7, 6) -> conv 2x2 (5) + pool -> 3
    assert program.usage(m, AccelConfig(lanes=4)) == {
        "max_layers": 2, "act_bytes": 2 * 7 * 6, "logit_words": 3,
        "weight_words": 2 * 8 + 30, "bias_entries": 5 + 3}


@pytest.mark.parametrize("cfg, sizes, words", [
    (AccelConfig(max_layers=2), [4, 4, 4, 4], ["layers (a max-pool shares its conv's): needs 3, "
                                               "the accelerator has 2 (1 too many)"]),
    (AccelConfig(act_bytes=512), [784, 128, 10],
     ["inputs of a layer (activation buffer bytes): needs 784, the accelerator has 512 (272 too many)"]),
    (AccelConfig(act_bytes=64), [8, 100, 10], ["outputs of a hidden layer", "needs 100", "36 too many"]),
    (AccelConfig(logit_words=8), [8, 10], ["logits: needs 10", "(2 too many)"]),
    (AccelConfig(weight_words=1024), [784, 128, 10],
     ["weight words (64 int8 each): needs 1600, the accelerator has 1024 (576 too many)"]),
    (AccelConfig(bias_entries=100), [784, 128, 10], ["bias entries: needs 138", "(38 too many)"]),
])
def test_check_fits_names_what_and_by_how_much(cfg, sizes, words):
    m = model(sizes)
    with pytest.raises(program.ModelDoesNotFit) as e:
        program.check_fits(m, cfg)
    assert isinstance(e.value, ValueError)
    for w in words:
        assert w in str(e.value)
    with pytest.raises(program.ModelDoesNotFit):   # nothing is compiled either
        program.compile_model(m, cfg)


def test_check_fits_lists_every_problem():
    with pytest.raises(program.ModelDoesNotFit) as e:
        program.check_fits(model([784, 128, 10]), AccelConfig(weight_words=16, bias_entries=16, act_bytes=64))
    assert str(e.value).count("too many") == 4   # inputs, hidden outputs, weights, bias


def test_check_program_order():
    cfg = AccelConfig(lanes=4, weight_words=64, bias_entries=16, act_bytes=16, logit_words=4, max_layers=2)
    good = LayerShape.dense(16, 8).encode(0, 0) + LayerShape.dense(8, 4, True).encode(32, 8)
    assert program.check_program(good, 2, cfg) == (layout.ERR_NONE, None)
    assert program.check_program(good, 3, cfg) == (layout.ERR_LAYER_COUNT, None)
    assert program.check_program(good, 0, cfg) == (layout.ERR_LAYER_COUNT, None)
    # one layer alone is not a logits layer
    assert program.check_program(good, 1, cfg) == (layout.ERR_OUTPUT_KIND, 0)
    bad = LayerShape.dense(16, 8).encode(0, 0) + LayerShape.dense(9, 4, True).encode(60, 8)
    # weights run past the end before the chain is even considered
    assert program.check_program(bad, 2, cfg) == (layout.ERR_WEIGHT_RANGE, 1)
    # a kernel larger than its input is a shape error before any capacity is considered
    huge = LayerShape(1000, 2, 2, 3, 8).encode(0, 0) + good[4:]
    assert program.check_program(huge, 2, cfg) == (layout.ERR_SHAPE, 0)


def test_descriptor_round_trip():
    shape = LayerShape(3, 255, 7, 2, 65535, pool=True)
    words = shape.encode(12345, 789, 4321)
    assert LayerShape.decode(words) == (shape, 12345, 789) and layout.out_base(words) == 4321
    assert shape.conv_hw == (254, 6) and shape.out_hw == (127, 3) and shape.window == 12


def conv_model(seed=0, in_shape=(2, 7, 6), c_out=5, k=2):
    rng = np.random.default_rng(seed)
    conv = Conv2D(rng.integers(-128, 128, (c_out, in_shape[0], k, k)).astype(np.int8),
                  rng.integers(-1000, 1000, c_out).astype(np.int32),
                  rng.integers(0, 1 << 16, c_out).astype(np.uint16),
                  rng.integers(1, 48, c_out).astype(np.uint8), fx.OUTPUT_U8, in_shape)
    pool = MaxPool2D(conv.shape_out)
    n = pool.n_out
    dense = Dense(rng.integers(-128, 128, (3, n)).astype(np.int8), np.zeros(3, np.int32),
                  np.ones(3, np.uint16), np.ones(3, np.uint8), fx.OUTPUT_I32)
    return IntModel([conv, pool, dense], in_shape)


@pytest.mark.parametrize("lanes", [4, 8])
def test_conv_pool_is_one_descriptor(lanes):
    cfg = AccelConfig(lanes=lanes)
    m = conv_model()
    conv = m.layers[0]
    memory_image = program.compile_model(m, cfg)
    assert memory_image.n_layers == 2
    shape, w_base, b_base = LayerShape.decode(memory_image.regions["program"][:4])
    assert shape == LayerShape(2, 7, 6, 2, 5, pool=True) and (w_base, b_base) == (0, 0)
    assert shape.n_out == m.layers[1].n_out == 5 * 3 * 2
    # tile t, window element (ci, ky, kx) in row-major order, lane k = channel t * lanes + k
    wide = weight_bytes(memory_image.regions["weights"], lanes)
    for t in range(layout.tiles(5, lanes)):
        for i, (ci, ky, kx) in enumerate(np.ndindex(2, 2, 2)):
            for k in range(lanes):
                o = t * lanes + k
                assert wide[t * 8 + i, k] == (conv.weights[o, ci, ky, kx] if o < 5 else 0)
    dense, w_base, b_base = LayerShape.decode(memory_image.regions["program"][4:8])
    assert dense == LayerShape.dense(30, 3, True)
    assert (w_base, b_base) == (shape.weight_words(lanes), 5)


def test_pool_must_follow_a_conv():
    m = conv_model()
    dense = m.layers[2]
    alone = IntModel([MaxPool2D((1, 4, 4)), Dense(dense.weights[:, :4], dense.bias, dense.mult,
                                                  dense.shift, fx.OUTPUT_I32)], (1, 4, 4))
    with pytest.raises(program.ModelDoesNotFit, match="layer 0 is a max-pool that does not follow a conv"):
        program.check_fits(alone, AccelConfig())


def test_last_layer_must_be_dense():
    m = conv_model()
    conv = m.layers[0]
    conv.output = fx.OUTPUT_I32
    with pytest.raises(program.ModelDoesNotFit, match=r"output positions of the last layer \(it must be dense\): needs 30"):
        program.check_fits(IntModel([conv], conv.in_shape), AccelConfig())


def test_outputs_placed_clear_of_both_input_slots():
    """Two slots when act0's outputs fit beside both images: the CNN's conv2 output after slot
    0's image, the MLP's (none in act0) anywhere; both slots then validate."""
    cfg = AccelConfig()
    S = LayerShape
    cnn = [S(1, 28, 28, 2, 16, pool=True), S(16, 13, 13, 2, 32, pool=True), S.dense(1152, 64),
           S.dense(64, 10, logits=True)]
    assert program.place_outputs(cnn, cfg) == ([0, 196, 0, 0], 2)
    assert program.place_outputs([S.dense(784, 128), S.dense(128, 10, logits=True)], cfg) == ([0, 0], 2)
    # act0's output ending at slot 1's first word; one word more: one slot, bases 0
    half = cfg.slot_words
    wide = [S.dense(4 * 100, 8), S.dense(8, 4 * (half - 100)), S.dense(4 * (half - 100), 3, logits=True)]
    assert program.place_outputs(wide, cfg) == ([0, 100, 0], 2)
    wider = [S.dense(4 * 100, 8), S.dense(8, 4 * (half - 99)), S.dense(4 * (half - 99), 3, logits=True)]
    assert program.place_outputs(wider, cfg) == ([0, 0, 0], 1)
    # an input of more than half act0, too many logits for two banks: one slot
    assert program.place_outputs([S.dense(4 * half + 1, 3, logits=True)], cfg) == ([0], 1)
    assert program.place_outputs([S.dense(4, cfg.slot_logits + 1, logits=True)], cfg) == ([0], 1)
    assert program.place_outputs([S.dense(4, cfg.slot_logits, logits=True)], cfg) == ([0], 2)


@pytest.mark.parametrize("dims", [[13, 7, 5], [40, 9, 6, 3]])
def test_two_slots_validate_in_both(dims):
    cfg = AccelConfig(lanes=8, act_bytes=160, logit_words=16)
    image = program.compile_model(model(dims), cfg)
    assert image.slots == 2
    desc = image.regions["program"]
    assert [layout.out_base(desc[4 * l:4 * l + 4]) for l in range(image.n_layers)] == image.out_bases
    for slot in (0, 1):
        assert program.check_program(desc, image.n_layers, cfg, slot=slot) == (layout.ERR_NONE, None)
