"""cocotb tests of the accelerator, driven over Wishbone exactly as the host will.

Each test is declared with the builds it runs on (:func:`on`, a build of :data:`BUILDS`
and the test's parameters for it); test_accelerator_sim.py collects them from here and runs
each through cocotb's Python runner, passing the build's name and its JSON map (build
configuration, CSR addresses, from sim_harness.py) as plusargs. Every result is compared
with training.intmodel (values), gateware.cyclemodel (cycles) or gateware.program
(validation errors).
"""
import functools
import json

import cocotb
import numpy as np
from cocotb.triggers import Edge, FallingEdge, RisingEdge

from nnhil.gateware import cyclemodel, layout, program, vectors
from nnhil.gateware.layout import AccelConfig
from tests.gateware import accel_models, cycle_literals
from tests.gateware.accel_models import EDGE_VALUES, cnn, random_model
from nnhil.training import fixedpoint as fx

BUILDS = {
    # small memories so sizes are never multiples of the lanes and every limit is reachable
    "p4": AccelConfig(lanes=4, weight_words=512, bias_entries=96, act_bytes=40, logit_words=12,
                      max_layers=4),
    "p8": AccelConfig(lanes=8, weight_words=256, bias_entries=64, act_bytes=28, logit_words=20,
                      max_layers=3),
    # the headline lane count with small memories
    "p64": AccelConfig(lanes=64, weight_words=512, bias_entries=256, act_bytes=160, logit_words=16,
                       max_layers=2),
    # room for multi-channel conv layers on few lanes
    "conv8": AccelConfig(lanes=8, weight_words=512, bias_entries=128, act_bytes=512, logit_words=16,
                         max_layers=4),
    "headline": AccelConfig(),
    # the smallest memories: one- and two-word regions in the address decoder
    "tiny": AccelConfig(lanes=4, weight_words=2, bias_entries=2, act_bytes=8, logit_words=2,
                        max_layers=2),
}
SEED = 1


def on(**builds):
    """A cocotb test of the accelerator, run on each named build with the keyword arguments
    given for it: ``test(host, rng, **arguments)``. The runner passes ``+build=<name>`` and
    ``+map=<map.json>``."""
    unknown = set(builds) - set(BUILDS)
    if unknown:
        raise ValueError(f"no build named {sorted(unknown)}: the builds are {sorted(BUILDS)}")

    def wrap(fn):
        @functools.wraps(fn)
        async def run(dut):
            with open(cocotb.plusargs["map"]) as f:
                m = json.load(f)
            build = cocotb.plusargs["build"]
            assert AccelConfig(**m["config"]) == BUILDS[build], f"map.json is not of build {build}"
            host = Host(dut, BUILDS[build], m["csr"])
            await host.reset()
            await fn(host, np.random.default_rng(SEED), **builds[build])
        test = cocotb.test()(run)
        test.builds = builds
        return test
    return wrap


def tests():
    """{test name: {build: arguments}} of every test of this module."""
    return {name: t.builds for name, t in globals().items() if isinstance(t, cocotb.test)}


class Host:
    """The host-side protocol (load, start, poll, read back) over the testbench's Wishbone master
    (nnhil_accel_tb.v): each access, burst or poll is one command the simulator runs alone."""

    def __init__(self, dut, cfg, csr):
        self.dut = dut
        self.cfg = cfg
        self.csr_map = csr
        self.base = cfg.region_base

    async def reset(self):
        """The testbench clock runs from time 0; bus idle, reset for three cycles, then a falling edge."""
        dut = self.dut
        dut.wb_cyc.value = dut.wb_stb.value = dut.wb_we.value = 0
        dut.wb_adr.value = dut.wb_dat_w.value = 0
        dut.wb_sel.value = 0xF
        dut.sys_rst.value = 1
        for _ in range(3):
            await RisingEdge(dut.sys_clk)
        dut.sys_rst.value = 0
        await FallingEdge(dut.sys_clk)

    async def _command(self, adr, count, we=False, words=(), poll=None):
        """Run ``count`` accesses from word ``adr`` (a poll: of ``adr``, until ``(word & mask) ==
        value``); returns the number acknowledged. Never hangs: 16 cycles at most per access."""
        dut = self.dut
        assert count <= len(dut.data), f"{count} words: the testbench moves {len(dut.data)} at most"
        for k, w in enumerate(words):
            dut.data[k].value = w
        dut.cmd_adr.value = adr
        dut.cmd_count.value = count
        dut.cmd_we.value = int(we)
        dut.cmd_poll.value = int(poll is not None)
        if poll is not None:
            dut.poll_mask.value, dut.poll_value.value = poll
        dut.cmd_go.value = 1 - int(dut.cmd_go.value)
        await Edge(dut.cmd_done)
        acked = int(dut.acked.value)
        if dut.no_ack.value:
            raise AssertionError(f"no Wishbone ack at word {adr if poll else adr + acked:#x}")
        return acked

    def _word(self, k, strict):
        """Word ``k`` the last command read. Unwritten RAM reads as X in simulation: an error
        unless ``strict`` is off, then 0."""
        value = self.dut.data[k].value
        return int(value) if strict else int(value.binstr.replace("x", "0").replace("z", "0"), 2)

    async def write(self, adr, data):
        await self._command(adr, 1, True, [data])

    async def read(self, adr, strict=True):
        await self._command(adr, 1)
        return self._word(0, strict)

    async def csr(self, name, value=None):
        if value is None:
            return await self.read(self.csr_map[name])
        await self.write(self.csr_map[name], value)

    async def write_region(self, region, words, offset=0):
        assert offset + len(words) <= self.cfg.region_words[region]
        await self._command(self.base[region] + offset, len(words), True, [int(w) for w in words])

    async def read_region(self, region, n, offset=0, strict=True):
        await self._command(self.base[region] + offset, n)
        return [self._word(k, strict) for k in range(n)]

    async def status(self):
        return layout.decode_status(await self.csr("status"))

    async def load(self, model):
        memory_image = program.compile_model(model, self.cfg)
        for region, words in memory_image.regions.items():
            await self.write_region(region, words)
        await self.csr("n_layers", memory_image.n_layers)
        self.memory_image = memory_image
        return memory_image

    async def start(self):
        await self.csr("control", layout.CTRL_START)

    async def wait_done(self, limit):
        """Poll status until done; fail (never hang) after ``limit`` cycles."""
        polls = limit // 2 + 10   # a poll takes at least two cycles
        done = layout.STATUS_DONE
        await self._command(self.csr_map["status"], polls, poll=(layout.STATUS_BUSY | done, done))
        busy, done, error = layout.decode_status(self._word(0, strict=True))
        if done and not busy:
            return error
        raise AssertionError(f"not done after {limit} cycles")

    async def infer(self, model, image, slot=0):
        """Write the input into ``slot``, run, and check logits (in bank ``slot``), argmax, cycles
        and the last hidden layer, each read at the loaded program's out_base."""
        await self.write_region("act0", program.pack_input(image), slot * self.cfg.slot_words)
        await self.csr("slot", slot)
        await self.start()
        expect_cycles = cyclemodel.cycles(model, self.cfg)
        error = await self.wait_done(expect_cycles)
        assert error == layout.ERR_NONE, layout.ERROR_NAMES[error]
        acts = model.activations(image[None])
        await self.check_logits(model, image, slot)
        assert await self.csr("argmax") == model.predict(image[None])[0]
        assert await self.csr("cycles") == expect_cycles
        shapes = program.check_fits(model, self.cfg)
        if len(shapes) > 1:   # the last hidden layer (a pool fused into its conv) stays in act[(L - 1) % 2]
            n = shapes[-2].n_out
            buf = f"act{(len(shapes) - 1) % 2}"
            # the bytes past n in the last word were never written
            got = program.unpack_acts(await self.read_region(buf, -(-n // 4), self.memory_image.out_bases[-2],
                                                             strict=False), n)
            np.testing.assert_array_equal(got, acts[-2][0].ravel())

    async def check_logits(self, model, image, slot):
        """Logits bank ``slot`` holds the integer model's logits of ``image``."""
        offset = slot * self.cfg.slot_logits + self.memory_image.out_bases[-1]
        logits = program.unpack_logits(await self.read_region("logits", model.n_out, offset))
        np.testing.assert_array_equal(logits, model.logits(image[None])[0])


# Models -----------------------------------------------------------------------------------------

def random_cnn(rng, cfg):
    """A CNN of random odd-or-even shape that fits cfg: 1-2 conv blocks, pooled or not."""
    while True:
        c = int(rng.integers(1, 4))
        h, w = (int(v) for v in rng.integers(2, 12, 2))
        blocks, shape = [], (c, h, w)
        for _ in range(int(rng.integers(1, 3))):
            k = int(rng.integers(1, min(shape[1:]) + 1))
            ho, wo = shape[1] - k + 1, shape[2] - k + 1
            pooled = bool(rng.integers(0, 2)) and ho >= 2 and wo >= 2
            c_out = int(rng.integers(1, 2 * cfg.lanes + 2))
            blocks.append((c_out, k, pooled))
            shape = (c_out, ho // 2, wo // 2) if pooled else (c_out, ho, wo)
            if min(shape[1:]) < 2:
                break
        model = cnn(rng, (c, h, w), blocks, int(rng.integers(1, cfg.logit_words + 1)))
        try:
            program.check_fits(model, cfg)
            return model
        except program.ModelDoesNotFit:
            continue


def random_sizes(rng, cfg, n_layers):
    """Layer sizes that fit cfg, mostly not multiples of the lane count."""
    while True:
        sizes = [int(rng.integers(1, cfg.act_bytes + 1)) for _ in range(n_layers)]
        sizes.append(int(rng.integers(1, cfg.logit_words + 1)))
        model = random_model(rng, sizes)
        try:
            program.check_fits(model, cfg)
            return sizes
        except program.ModelDoesNotFit:
            continue


def image_for(rng, model):
    return rng.integers(0, fx.ACT_MAX + 1, model.input_shape, dtype=np.int64).astype(np.uint8)


async def infer_twice(host, rng, models):
    """Load each model and run two random images, back to back."""
    for model in models:
        await host.load(model)
        for _ in range(2):
            await host.infer(model, image_for(rng, model))


async def infer_extreme_images(host, rng, models):
    """Load each model and run a random, an all-255 and an all-zero image."""
    for model in models:
        await host.load(model)
        await host.infer(model, image_for(rng, model))
        await host.infer(model, np.full(model.input_shape, fx.ACT_MAX, np.uint8))
        await host.infer(model, np.zeros(model.input_shape, np.uint8))


# Tests ------------------------------------------------------------------------------------------

SMALL = dict(p4={}, p8={})


@on(**SMALL, p64={}, tiny={})
async def identification(host, rng):
    assert await host.csr("magic") == layout.MAGIC
    version = await host.csr("version")
    assert version & ((1 << layout.VERSION_FORMAT_SHIFT) - 1) == layout.VERSION
    assert version >> layout.VERSION_FORMAT_SHIFT == fx.FORMAT_VERSION
    for name, value in host.cfg.to_dict().items():
        assert await host.csr(name) == value, name
    assert await host.status() == (False, False, layout.ERR_NONE)


@on(**SMALL)
async def random_models(host, rng):
    """Random shapes (1 to max_layers layers), two images each, back to back."""
    cfg = host.cfg
    counts = [1, 2, 3, cfg.max_layers, int(rng.integers(1, cfg.max_layers + 1))]
    await infer_twice(host, rng, [random_model(rng, random_sizes(rng, cfg, min(n, cfg.max_layers)))
                                  for n in counts])


@on(**SMALL, p64={}, headline=dict(n_in=784))
async def headline_shape(host, rng, n_in=None):
    """A two-layer model filling the activation buffer (or of n_in inputs) and a few full tiles."""
    cfg = host.cfg
    n_out = min(cfg.act_bytes, 2 * cfg.lanes)
    model = random_model(rng, [n_in or cfg.act_bytes, n_out, min(10, cfg.logit_words)])
    await host.load(model)
    # the weights read back, as the host verifies a load
    words = program.compile_model(model, cfg).regions["weights"]
    assert await host.read_region("weights", len(words)) == words
    await host.infer(model, image_for(rng, model))


@on(**SMALL, p64={})
async def edge_values(host, rng):
    """Single neurons, weights at the int8 limits, ReLU of negatives, saturation, zero bias."""
    cfg = host.cfg
    P, A = cfg.lanes, cfg.act_bytes
    cases = [
        random_model(rng, [1, 1]),
        random_model(rng, [1, 1, 1, 1][:cfg.max_layers + 1]),
        random_model(rng, [A, 1, min(P + 1, cfg.logit_words)]),
        random_model(rng, [P + 1, P - 1, P + 1, 2][:cfg.max_layers] + [cfg.logit_words]),
    ] + [random_model(rng, [A, P + 3, 5], **kw) for kw in EDGE_VALUES]
    await infer_extreme_images(host, rng, cases)


@on(**SMALL)
async def requantization_extremes(host, rng):
    """Shift 1 and 47, mult 0 and MULT_MAX, accumulators near the int32 limits."""
    cfg = host.cfg
    model = accel_models.requantization_extremes(rng, min(cfg.act_bytes, 2 * cfg.lanes + 1), cfg.lanes + 1)
    await host.load(model)
    for _ in range(3):
        await host.infer(model, image_for(rng, model))


@on(p4={}, p64={})
async def accumulator_extremes(host, rng):
    """Registers at the full width the spec allows (accel_models.accumulator_extremes): the
    largest fan-in, accumulators within 2**8 of both int32 bounds in every lane (a tile of
    extremes, then a tile aimed inside 0..255), products at both extremes, every shift on
    a 64-lane build, logits within 2**8 of both bounds."""
    cfg = host.cfg
    n_extreme = max(cfg.lanes, min(32, cfg.act_bytes - cfg.lanes))   # every lane, every combination
    model, images = accel_models.accumulator_extremes(rng, cfg.act_bytes, n_extreme, cfg.lanes,
                                                      min(4, cfg.logit_words))
    await host.load(model)
    for image in images:
        await host.infer(model, image)


@on(**SMALL)
async def argmax_ties(host, rng):
    """Equal logits: the lowest index wins."""
    for model in accel_models.argmax_ties(rng, min(host.cfg.logit_words, host.cfg.lanes + 2)):
        await host.load(model)
        await host.infer(model, image_for(rng, model))


def lanes_plus(n):
    """A channel count of the lane count P plus n."""
    return lambda P: P + n


CONV_SHAPES = {   # name: (input shape, conv blocks (c_out, k, pool))
    "odd sizes": ((1, 5, 7), [(3, 2, True)]),                     # conv 4x6, pool 2x3
    "pool 2x2": ((1, 6, 6), [(2, 3, True)]),                      # conv 4x4 -> pool 2x2
    "pool drops a row": ((1, 4, 5), [(2, 2, True)]),              # conv 3x4
    "two tiles, minimal pool": ((2, 3, 3), [(lanes_plus(3), 2, True)]),   # pool of the 2x2 conv output
    "kernel as tall as the input": ((3, 3, 4), [(2, 3, False)]),  # one output row
    "whole-input kernel": ((2, 3, 3), [(3, 3, False)]),           # one position, like dense
    "1x1, channels past the lanes": ((5, 2, 3), [(lanes_plus(1), 1, False)]),
    "1x1, channels past the lanes, 2 positions": ((5, 1, 2), [(lanes_plus(1), 1, False)]),
    "one channel in and out, two blocks": ((1, 7, 5), [(1, 2, True), (2, 2, False)]),
    "window of 1 under P lanes": ((1, 5, 5), [(lanes_plus(0), 1, False)]),   # drain-bound
    "window of 1 under P lanes, 2 positions": ((1, 1, 2), [(lanes_plus(0), 1, False)]),
}


@on(p4=dict(expect=set(CONV_SHAPES) - {"window of 1 under P lanes"}),   # 4 x 25 outputs > 40 bytes
    p8=dict(expect={"pool drops a row", "two tiles, minimal pool", "whole-input kernel",   # inputs
                    "1x1, channels past the lanes, 2 positions",                        # of at most
                    "window of 1 under P lanes, 2 positions"}),                         # 28 bytes
    p64=dict(expect=set(CONV_SHAPES) - {"1x1, channels past the lanes",       # 6 x 65 outputs and
                                        "window of 1 under P lanes",          # 25 x 64 > 160 bytes,
                                        "one channel in and out, two blocks"}),   # 3 > 2 layers
    conv8=dict(expect=set(CONV_SHAPES)))
async def conv_shapes(host, rng, expect):
    """Conv and pool geometry: odd sizes, 1x1 and whole-input kernels, 1 and many channels,
    more channels than lanes, windows shorter and longer than the lanes, pooling that drops
    an odd row and column, and a pool of the smallest (2x2) conv output. ``expect``: the
    cases that fit the build, each of which must run."""
    P = host.cfg.lanes
    ran = set()
    for name, (in_shape, blocks) in CONV_SHAPES.items():
        blocks = [(c(P) if callable(c) else c, k, pool) for c, k, pool in blocks]
        model = cnn(rng, in_shape, blocks, min(5, host.cfg.logit_words))
        try:
            program.check_fits(model, host.cfg)
        except program.ModelDoesNotFit:
            continue
        await host.load(model)
        await host.infer(model, image_for(rng, model))
        ran.add(name)
    assert ran == expect, f"ran {sorted(ran)}, expected {sorted(expect)}"


@on(**SMALL, conv8={})
async def conv_edge_values(host, rng):
    """Conv at the int8 limits, all-negative weights (ReLU gives 0 before the pool), saturation
    at 255 inside the pool, zero bias, and black and white images."""
    await infer_extreme_images(host, rng, [cnn(rng, (1, 5, 5), [(3, 2, True)], 3, **kw) for kw in EDGE_VALUES])


@on(**SMALL, conv8=dict(count=8))
async def random_cnns(host, rng, count=4):
    """Random conv/pool/dense programs, back to back, two images each."""
    await infer_twice(host, rng, [random_cnn(rng, host.cfg) for _ in range(count)])


@on(headline={})
async def cnn_headline_shape(host, rng):
    """The headline CNN's shape: 28x28, conv 2x2 (16) pool, conv 2x2 (32) pool, dense 64, dense 10."""
    model = cnn(rng, (1, 28, 28), [(16, 2, True), (32, 2, True)], [64, 10])
    await host.load(model)
    await host.infer(model, image_for(rng, model))


@on(conv8={})
async def hand_derived_cycles(host, rng):
    """The hardware counter equals the cycle counts derived by hand from the documented
    schedule (cycle_literals.py), not only the cycle model it shares its depths with."""
    assert host.cfg.lanes == cycle_literals.LANES
    for name, in_shape, layers, cycles in cycle_literals.CASES:
        model = cycle_literals.build(rng, in_shape, layers)
        await host.load(model)
        await host.infer(model, image_for(rng, model))
        assert await host.csr("cycles") == cycles, name


@on(**SMALL, p64={})
async def start_while_busy(host, rng):
    """A second start during a run reports ERR_BUSY and does not disturb the run."""
    cfg = host.cfg
    model = random_model(rng, [cfg.act_bytes, 2 * cfg.lanes, 3])
    await host.load(model)
    image = image_for(rng, model)
    await host.write_region("act0", program.pack_input(image))
    await host.start()
    assert (await host.status())[0]
    await host.start()
    assert await host.status() == (True, False, layout.ERR_BUSY)
    assert await host.wait_done(cyclemodel.cycles(model, cfg)) == layout.ERR_BUSY
    assert await host.csr("cycles") == cyclemodel.cycles(model, cfg)
    logits = program.unpack_logits(await host.read_region("logits", model.n_out))
    np.testing.assert_array_equal(logits, model.logits(image[None])[0])
    await host.infer(model, image_for(rng, model))   # the next start clears the code


@on(**SMALL)
async def soft_reset(host, rng):
    """Soft reset aborts a run and returns to idle; the next run is exact."""
    cfg = host.cfg
    model = random_model(rng, [cfg.act_bytes, 2 * cfg.lanes, 3])
    await host.load(model)
    await host.write_region("act0", program.pack_input(image_for(rng, model)))
    await host.start()
    for _ in range(int(rng.integers(2, 20))):
        await FallingEdge(host.dut.sys_clk)
    await host.csr("control", layout.CTRL_SOFT_RESET)
    assert await host.status() == (False, False, layout.ERR_NONE)
    await host.csr("control", layout.CTRL_SOFT_RESET)   # also harmless when idle
    assert await host.status() == (False, False, layout.ERR_NONE)
    await host.infer(model, image_for(rng, model))


@on(**SMALL, p64={}, conv8={})
async def program_vectors(host, rng):
    """The shared vectors (gateware/vectors.py): every ERR_* code as program.check_program
    gives it, each limit reached and passed; a rejected program runs nothing and takes
    cyclemodel.rejected_cycles, a valid one the cycle model's count; nothing hangs."""
    cfg = host.cfg
    model = cnn(rng, (1, 4, 5), [(2, 2, True)], 3)
    await host.load(model)
    seen = set()
    for name, n_layers, words in vectors.program_vectors(cfg, rng):
        expect, layer = program.check_program(words, n_layers, cfg)
        await host.write_region("program", words[:cfg.region_words["program"]])
        await host.csr("n_layers", n_layers)
        await host.start()
        if expect == layout.ERR_NONE:
            shapes = [s for s, *_ in vectors.decode(words, n_layers)]
            cycles = cyclemodel.shape_cycles(shapes, cfg.lanes)
        else:
            cycles = cyclemodel.rejected_cycles(layer)
        assert await host.wait_done(cycles + 100) == expect, name
        assert await host.csr("cycles") == cycles, name
        seen.add(expect)
    # ERR_STOP_AFTER is a run's (stop_after past n_layers), not a program's: test_stop_after* has it
    assert seen == set(layout.ERROR_NAMES) - {layout.ERR_BUSY, layout.ERR_STOP_AFTER}
    await host.load(model)   # a valid program runs again
    await host.infer(model, image_for(rng, model))


@on(conv8={})
async def stop_after(host, rng):
    """stop_after = k on random CNN and MLP programs: for every k the run takes the cycle
    model's count of the prefix and act[k % 2] holds exactly the integer model's output of
    layer k - 1 (the logits for k = n_layers); past n_layers: ERR_STOP_AFTER, nothing runs;
    0 runs the whole program again."""
    cfg = host.cfg
    models = [random_cnn(rng, cfg) for _ in range(2)]
    models += [random_model(rng, random_sizes(rng, cfg, n)) for n in (2, cfg.max_layers - 1)]
    for model in models:
        n = (await host.load(model)).n_layers
        image = image_for(rng, model)
        expect = program.layer_outputs(model, image[None])
        for k in range(1, n + 1):   # layer 1 overwrites the input in act0: written for each run
            await host.write_region("act0", program.pack_input(image))
            await host.csr("stop_after", k)
            await host.start()
            cycles = cyclemodel.cycles(model, cfg, k)
            assert await host.wait_done(cycles) == layout.ERR_NONE, k
            assert await host.csr("cycles") == cycles, k
            want = expect[k - 1][0].ravel()
            base = host.memory_image.out_bases[k - 1]
            if k == n:
                got = program.unpack_logits(await host.read_region("logits", len(want), base))
            else:   # the bytes past the output in its last word were never written
                got = program.unpack_acts(await host.read_region(f"act{k % 2}", -(-len(want) // 4), base,
                                                                 strict=False), len(want))
            np.testing.assert_array_equal(got, want, err_msg=f"layer {k - 1} of {n}")
        await host.csr("stop_after", n + 1)
        await host.start()
        assert await host.wait_done(cyclemodel.rejected_cycles()) == layout.ERR_STOP_AFTER
        assert await host.csr("cycles") == cyclemodel.rejected_cycles()
        await host.csr("stop_after", 0)
        await host.infer(model, image_for(rng, model))


@on(**SMALL, tiny={})
async def read_back(host, rng):
    """Every writable region reads back what was written, lane words included."""
    cfg = host.cfg
    for region in ("weights", "bias", "program", "act0", "act1"):
        n = min(cfg.region_words[region], 3 * max(1, cfg.lanes // 4) + 5)
        offset = cfg.region_words[region] - n
        words = [int(v) for v in rng.integers(0, 1 << 32, n, dtype=np.int64)]
        await host.write_region(region, words, offset)
        assert await host.read_region(region, n, offset) == words, region


def two_slot_cnn(rng, cfg):
    """A random CNN of random_cnn whose program keeps act0's two input slots free."""
    while True:
        model = random_cnn(rng, cfg)
        shapes = program.check_fits(model, cfg)
        if len(shapes) > 2 and program.place_outputs(shapes, cfg)[1] == 2:
            return model


@on(conv8=dict(count=4), headline=dict(count=3))
async def two_slots(host, rng, count):
    """The firmware's double-buffered batch: image i + 1 written into the other input slot
    while image i runs, each run's logits in its own bank, every result exact; the CNN's act0
    output (conv2's) lies between the slots. Images written during a run do not disturb it."""
    cfg = host.cfg
    if cfg == AccelConfig():
        models = [cnn(rng, (1, 28, 28), [(16, 2, True), (32, 2, True)], [64, 10]),
                  random_model(rng, [784, 128, 10])]
    else:
        models = [two_slot_cnn(rng, cfg) for _ in range(2)] + [random_model(rng, [40, 24, 9, 5])]
    for model in models:
        image = await host.load(model)
        assert image.slots == 2, image.out_bases
        if len(image.out_bases) > 2:
            assert image.out_bases[1] >= -(-model.n_in // 4), "act0's output overlaps slot 0"
        images = [image_for(rng, model) for _ in range(count)]
        cycles = cyclemodel.cycles(model, cfg)
        await host.write_region("act0", program.pack_input(images[0]))
        await host.csr("slot", 0)
        await host.start()
        await host.write_region("act0", program.pack_input(images[1]), cfg.slot_words)
        for i in range(len(images)):
            assert await host.wait_done(cycles) == layout.ERR_NONE, i
            assert await host.csr("cycles") == cycles
            assert await host.csr("argmax") == model.predict(images[i][None])[0]
            if i + 1 < len(images):
                await host.csr("slot", (i + 1) % 2)
                await host.start()
            await host.check_logits(model, images[i], i % 2)
            if i + 2 < len(images):
                await host.write_region("act0", program.pack_input(images[i + 2]), (i % 2) * cfg.slot_words)
        await host.check_logits(model, images[-2], len(images) % 2)   # the other bank is intact
        await host.infer(model, images[0], slot=1)                    # and single runs in either
        await host.infer(model, images[1], slot=0)


@on(p4={}, p8={})
async def output_bases_at_edges(host, rng):
    """Bases placed by hand: a hidden output ending at act1's last byte, logits ending at the
    last logit word (slot 0) or bank 1's last (slot 1), the input of slot 1 ending at act0's
    last byte: exact. One word further each: refused with program.check_program's code."""
    cfg = host.cfg
    act_words, half = cfg.act_bytes // 4, cfg.slot_words
    n_in = 4 * (act_words - half)                     # slot 1's input fills act0's end
    model = random_model(rng, [n_in, 8, 3])
    hidden = act_words - 2                            # 8 bytes: the last two words of act1
    for slot, logit in [(0, cfg.logit_words - 3), (1, cfg.logit_words - cfg.slot_logits - 3)]:
        image = await host.load(model)
        words = list(image.regions["program"])
        shapes = [s for s, *_ in vectors.decode(words, 2)]
        for l, base in enumerate([hidden, logit]):
            _, wb, bb = layout.LayerShape.decode(words[4 * l:4 * l + 4])
            words[4 * l:4 * l + 4] = shapes[l].encode(wb, bb, base)
        await host.write_region("program", words)
        host.memory_image.out_bases = [hidden, logit]
        assert program.check_program(words, 2, cfg, slot=slot) == (layout.ERR_NONE, None)
        await host.infer(model, image_for(rng, model), slot=slot)
        for l, code in [(0, layout.ERR_ACT_CAPACITY), (1, layout.ERR_OUTPUT_KIND)]:
            bad = list(words)
            _, wb, bb = layout.LayerShape.decode(bad[4 * l:4 * l + 4])
            bad[4 * l:4 * l + 4] = shapes[l].encode(wb, bb, [hidden, logit][l] + 1)
            assert program.check_program(bad, 2, cfg, slot=slot) == (code, l)
            await host.write_region("program", bad)
            await host.start()
            assert await host.wait_done(cyclemodel.rejected_cycles(l)) == code
            assert await host.csr("cycles") == cyclemodel.rejected_cycles(l)
    # slot 1 of an input one word longer runs past act0
    model = random_model(rng, [n_in + 4, 8, 3])
    await host.load(model)
    await host.csr("slot", 1)
    await host.start()
    assert await host.wait_done(cyclemodel.rejected_cycles(0)) == layout.ERR_ACT_CAPACITY
    await host.infer(model, image_for(rng, model), slot=0)
