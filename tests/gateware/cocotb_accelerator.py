"""cocotb tests of the accelerator, driven over Wishbone exactly as the host will.

Run by test_accelerator_sim.py through cocotb's Python runner; the top and its JSON map
(build configuration, CSR addresses) come from sim_harness.py. Every result is compared
with training.intmodel (values), gateware.cyclemodel (cycles) or gateware.program
(validation errors).
"""
import dataclasses
import json
import os

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, RisingEdge

from gateware import cyclemodel, layout, program
from tests.gateware import accel_models
from tests.gateware.accel_models import EDGE_VALUES, cnn, random_model
from training import fixedpoint as fx

with open(os.environ["NNHIL_ACCEL_SIM_MAP"]) as f:
    MAP = json.load(f)
CFG = layout.AccelConfig(**MAP["config"])
CSR = MAP["csr"]
BASE = CFG.region_base
SEED = int(os.environ.get("NNHIL_SIM_SEED", "1"))


class Host:
    """Wishbone master and the host-side protocol (load, start, poll, read back)."""

    def __init__(self, dut):
        self.dut = dut

    async def reset(self):
        dut = self.dut
        cocotb.start_soon(Clock(dut.sys_clk, 10, units="ns").start())
        dut.wb_cyc.value = dut.wb_stb.value = dut.wb_we.value = 0
        dut.wb_adr.value = dut.wb_dat_w.value = 0
        dut.wb_sel.value = 0xF
        dut.sys_rst.value = 1
        for _ in range(3):
            await RisingEdge(dut.sys_clk)
        dut.sys_rst.value = 0
        await FallingEdge(dut.sys_clk)

    async def _access(self, adr, we, data=0, strict=True):
        """One Wishbone cycle; signals change on falling edges, the slave samples on rising ones.

        Unwritten RAM reads as X in simulation: an error unless ``strict`` is off, then 0.
        """
        dut = self.dut
        dut.wb_adr.value = adr
        dut.wb_we.value = we
        dut.wb_dat_w.value = data
        dut.wb_cyc.value = dut.wb_stb.value = 1
        for _ in range(16):
            await FallingEdge(dut.sys_clk)
            if dut.wb_ack.value:
                value = dut.wb_dat_r.value
                value = int(value) if strict else int(value.binstr.replace("x", "0").replace("z", "0"), 2)
                await FallingEdge(dut.sys_clk)
                dut.wb_cyc.value = dut.wb_stb.value = 0
                return value
        raise AssertionError(f"no Wishbone ack at word {adr:#x}")

    async def write(self, adr, data):
        await self._access(adr, 1, data)

    async def read(self, adr, strict=True):
        return await self._access(adr, 0, strict=strict)

    async def csr(self, name, value=None):
        if value is None:
            return await self.read(CSR[name])
        await self.write(CSR[name], value)

    async def write_region(self, region, words, offset=0):
        assert offset + len(words) <= CFG.region_words[region]
        for k, w in enumerate(words):
            await self.write(BASE[region] + offset + k, int(w))

    async def read_region(self, region, n, offset=0, strict=True):
        return [await self.read(BASE[region] + offset + k, strict) for k in range(n)]

    async def status(self):
        return layout.decode_status(await self.csr("status"))

    async def load(self, model):
        image = program.compile_model(model, CFG)
        for region, words in image.regions.items():
            await self.write_region(region, words)
        await self.csr("n_layers", image.n_layers)
        return image

    async def start(self):
        await self.csr("control", layout.CTRL_START)

    async def wait_done(self, limit):
        """Poll status until done; fail (never hang) after ``limit`` cycles."""
        for _ in range(limit // 2 + 10):   # a poll takes at least two cycles
            busy, done, error = await self.status()
            if done and not busy:
                return error
        raise AssertionError(f"not done after {limit} cycles")

    async def infer(self, model, image):
        """Write the input, run, and check logits, argmax, cycles and the last hidden layer."""
        await self.write_region("act0", program.pack_input(image))
        await self.start()
        expect_cycles = cyclemodel.cycles(model, CFG)
        error = await self.wait_done(expect_cycles)
        assert error == layout.ERR_NONE, layout.ERROR_NAMES[error]
        acts = model.activations(image[None])
        logits = program.unpack_logits(await self.read_region("logits", model.n_out))
        np.testing.assert_array_equal(logits, acts[-1][0])
        assert await self.csr("argmax") == model.predict(image[None])[0]
        assert await self.csr("cycles") == expect_cycles
        shapes = program.check_fits(model, CFG)
        if len(shapes) > 1:   # the last hidden layer (a pool fused into its conv) stays in act[(L - 1) % 2]
            n = shapes[-2].n_out
            buf = f"act{(len(shapes) - 1) % 2}"
            # the bytes past n in the last word were never written
            got = program.unpack_acts(await self.read_region(buf, -(-n // 4), strict=False), n)
            np.testing.assert_array_equal(got, acts[-2][0].ravel())


# Models -----------------------------------------------------------------------------------------

def random_cnn(rng):
    """A CNN of random odd-or-even shape that fits CFG: 1-2 conv blocks, pooled or not."""
    while True:
        c = int(rng.integers(1, 4))
        h, w = (int(v) for v in rng.integers(2, 12, 2))
        blocks, shape = [], (c, h, w)
        for _ in range(int(rng.integers(1, 3))):
            k = int(rng.integers(1, min(shape[1:]) + 1))
            ho, wo = shape[1] - k + 1, shape[2] - k + 1
            pooled = bool(rng.integers(0, 2)) and ho >= 2 and wo >= 2
            c_out = int(rng.integers(1, 2 * CFG.lanes + 2))
            blocks.append((c_out, k, pooled))
            shape = (c_out, ho // 2, wo // 2) if pooled else (c_out, ho, wo)
            if min(shape[1:]) < 2:
                break
        model = cnn(rng, (c, h, w), blocks, int(rng.integers(1, CFG.logit_words + 1)))
        try:
            program.check_fits(model, CFG)
            return model
        except program.ModelDoesNotFit:
            continue


def random_sizes(rng, n_layers):
    """Layer sizes that fit CFG, mostly not multiples of the lane count."""
    while True:
        sizes = [int(rng.integers(1, CFG.act_bytes + 1)) for _ in range(n_layers)]
        sizes.append(int(rng.integers(1, CFG.logit_words + 1)))
        model = random_model(rng, sizes)
        try:
            program.check_fits(model, CFG)
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


async def setup(dut):
    host = Host(dut)
    await host.reset()
    return host, np.random.default_rng(SEED)


# Tests ------------------------------------------------------------------------------------------

@cocotb.test()
async def identification(dut):
    host, _ = await setup(dut)
    assert await host.csr("magic") == layout.MAGIC
    version = await host.csr("version")
    assert version & ((1 << layout.VERSION_FORMAT_SHIFT) - 1) == layout.VERSION
    assert version >> layout.VERSION_FORMAT_SHIFT == fx.FORMAT_VERSION
    for name, value in CFG.to_dict().items():
        assert await host.csr(name) == value, name
    assert await host.status() == (False, False, layout.ERR_NONE)


@cocotb.test()
async def random_models(dut):
    """Random shapes (1 to max_layers layers), two images each, back to back."""
    host, rng = await setup(dut)
    counts = [1, 2, 3, CFG.max_layers, int(rng.integers(1, CFG.max_layers + 1))]
    await infer_twice(host, rng, [random_model(rng, random_sizes(rng, min(n, CFG.max_layers))) for n in counts])


@cocotb.test()
async def headline_shape(dut):
    """A two-layer model filling the activation buffer and a few full tiles."""
    host, rng = await setup(dut)
    n_out = min(CFG.act_bytes, 2 * CFG.lanes)
    model = random_model(rng, [int(os.environ.get("NNHIL_SIM_N_IN", CFG.act_bytes)), n_out,
                               min(10, CFG.logit_words)])
    await host.load(model)
    # the weights read back, as the host verifies a load
    words = program.compile_model(model, CFG).regions["weights"]
    assert await host.read_region("weights", len(words)) == words
    await host.infer(model, image_for(rng, model))


@cocotb.test()
async def edge_values(dut):
    """Single neurons, weights at the int8 limits, ReLU of negatives, saturation, zero bias."""
    host, rng = await setup(dut)
    P, A = CFG.lanes, CFG.act_bytes
    cases = [
        random_model(rng, [1, 1]),
        random_model(rng, [1, 1, 1, 1][:CFG.max_layers + 1]),
        random_model(rng, [A, 1, min(P + 1, CFG.logit_words)]),
        random_model(rng, [P + 1, P - 1, P + 1, 2][:CFG.max_layers] + [CFG.logit_words]),
    ] + [random_model(rng, [A, P + 3, 5], **kw) for kw in EDGE_VALUES]
    await infer_extreme_images(host, rng, cases)


@cocotb.test()
async def requantization_extremes(dut):
    """Shift 1 and 47, mult 0 and MULT_MAX, accumulators near the int32 limits."""
    host, rng = await setup(dut)
    model = accel_models.requantization_extremes(rng, min(CFG.act_bytes, 2 * CFG.lanes + 1), CFG.lanes + 1)
    await host.load(model)
    for _ in range(3):
        await host.infer(model, image_for(rng, model))


@cocotb.test()
async def argmax_ties(dut):
    """Equal logits: the lowest index wins."""
    host, rng = await setup(dut)
    for model in accel_models.argmax_ties(rng, min(CFG.logit_words, CFG.lanes + 2)):
        await host.load(model)
        await host.infer(model, image_for(rng, model))


@cocotb.test()
async def conv_shapes(dut):
    """Conv and pool geometry: odd sizes, 1x1 and whole-input kernels, 1 and many channels,
    more channels than lanes, windows shorter and longer than the lanes, pooling that drops
    an odd row and column, and a pool of the smallest (2x2) conv output."""
    host, rng = await setup(dut)
    P = CFG.lanes
    cases = [
        ((1, 5, 7), [(3, 2, True)]),              # odd sizes: conv 4x6, pool 2x3
        ((1, 6, 6), [(2, 3, True)]),              # conv 4x4 -> pool 2x2
        ((1, 4, 5), [(2, 2, True)]),              # conv 3x4: pool drops a row
        ((2, 3, 3), [(P + 3, 2, True)]),          # two tiles, pool of the minimal 2x2 conv output
        ((3, 3, 4), [(2, 3, False)]),             # kernel as tall as the input: one output row
        ((2, 3, 3), [(3, 3, False)]),             # whole-input kernel: one position, like dense
        ((5, 2, 3), [(P + 1, 1, False)]),         # 1x1 conv, channels past the lanes
        ((1, 7, 5), [(1, 2, True), (2, 2, False)]),   # one channel in and out, two blocks
        ((1, 5, 5), [(P, 1, False)]),             # window of 1 under P lanes: drain-bound
    ]
    ran = 0
    for in_shape, blocks in cases:
        model = cnn(rng, in_shape, blocks, min(5, CFG.logit_words))
        try:
            program.check_fits(model, CFG)
        except program.ModelDoesNotFit:
            assert CFG.act_bytes < 256, "every case fits a build with 256 activation bytes"
            continue
        await host.load(model)
        await host.infer(model, image_for(rng, model))
        ran += 1
    assert ran >= 3


@cocotb.test()
async def conv_edge_values(dut):
    """Conv at the int8 limits, all-negative weights (ReLU gives 0 before the pool), saturation
    at 255 inside the pool, zero bias, and black and white images."""
    host, rng = await setup(dut)
    await infer_extreme_images(host, rng, [cnn(rng, (1, 5, 5), [(3, 2, True)], 3, **kw) for kw in EDGE_VALUES])


@cocotb.test()
async def random_cnns(dut):
    """Random conv/pool/dense programs, back to back, two images each."""
    host, rng = await setup(dut)
    await infer_twice(host, rng, [random_cnn(rng) for _ in range(int(os.environ.get("NNHIL_SIM_CNNS", "4")))])


@cocotb.test()
async def cnn_headline_shape(dut):
    """The headline CNN's shape: 28x28, conv 2x2 (16) pool, conv 2x2 (32) pool, dense 64, dense 10."""
    host, rng = await setup(dut)
    model = cnn(rng, (1, 28, 28), [(16, 2, True), (32, 2, True)], [64, 10])
    await host.load(model)
    await host.infer(model, image_for(rng, model))


@cocotb.test()
async def start_while_busy(dut):
    """A second start during a run reports ERR_BUSY and does not disturb the run."""
    host, rng = await setup(dut)
    model = random_model(rng, [CFG.act_bytes, 2 * CFG.lanes, 3])
    await host.load(model)
    image = image_for(rng, model)
    await host.write_region("act0", program.pack_input(image))
    await host.start()
    assert (await host.status())[0]
    await host.start()
    assert await host.status() == (True, False, layout.ERR_BUSY)
    assert await host.wait_done(cyclemodel.cycles(model, CFG)) == layout.ERR_BUSY
    assert await host.csr("cycles") == cyclemodel.cycles(model, CFG)
    logits = program.unpack_logits(await host.read_region("logits", model.n_out))
    np.testing.assert_array_equal(logits, model.logits(image[None])[0])
    await host.infer(model, image_for(rng, model))   # the next start clears the code


@cocotb.test()
async def soft_reset(dut):
    """Soft reset aborts a run and returns to idle; the next run is exact."""
    host, rng = await setup(dut)
    model = random_model(rng, [CFG.act_bytes, 2 * CFG.lanes, 3])
    await host.load(model)
    await host.write_region("act0", program.pack_input(image_for(rng, model)))
    await host.start()
    for _ in range(int(rng.integers(2, 20))):
        await FallingEdge(dut.sys_clk)
    await host.csr("control", layout.CTRL_SOFT_RESET)
    assert await host.status() == (False, False, layout.ERR_NONE)
    await host.csr("control", layout.CTRL_SOFT_RESET)   # also harmless when idle
    assert await host.status() == (False, False, layout.ERR_NONE)
    await host.infer(model, image_for(rng, model))


def invalid_programs(rng, model, image):
    """(name, n_layers, program words) breaking each validation rule once (model: a pooled conv
    then a dense layer)."""
    words = image.regions["program"]
    L = image.n_layers
    def edit(layer, w_base=None, b_base=None, **fields):
        out = list(words)
        shape, wb, bb = layout.LayerShape.decode(out[4 * layer:4 * layer + 4])
        shape = dataclasses.replace(shape, **fields)
        d = shape.encode(0, 0)[:2] + [wb if w_base is None else w_base, bb if b_base is None else b_base]
        out[4 * layer:4 * layer + 4] = d
        return out
    last = L - 1
    first = layout.LayerShape.decode(words[:4])[0]
    return [
        ("no layers", 0, words),
        ("too many layers", CFG.max_layers + 1, words + [0] * 4 * (CFG.max_layers + 1 - L)),
        ("c_in 0", L, edit(0, c_in=0)),
        ("c_out 0", L, edit(last, c_out=0)),
        ("kernel 0", L, edit(0, kernel=0)),
        ("height 0", L, edit(0, height=0)),
        ("kernel taller than the input", L, edit(0, kernel=first.height + 1)),
        ("kernel wider than the input", L, edit(0, kernel=first.width + 1, height=first.width + 1)),
        ("pool of a one-row conv output", L, edit(0, kernel=first.height)),
        ("n_in too big", L, edit(0, c_in=CFG.act_bytes + 1)),
        ("input plane too big", L, edit(0, height=255, width=255)),
        ("hidden n_out too big", L, edit(0, c_out=CFG.act_bytes + 1)),
        ("weights past the end", L, edit(last, w_base=CFG.weight_words - 1)),
        ("weights base huge", L, edit(0, w_base=0xFFFFFFFF)),
        ("many tiles", L, edit(last, c_out=min(CFG.weight_words * CFG.lanes, 0xFFFF))),
        ("bias past the end", L, edit(last, b_base=CFG.bias_entries - 1)),
        ("bias base huge", L, edit(0, b_base=0xFFFFFFFF)),
        ("chain", L, edit(last, c_in=first.n_out // first.plane + 1)),
        ("hidden logits", L, edit(0, logits=True)),
        ("last not logits", L, edit(last, logits=False)),
        ("last pooled", L, edit(last, pool=True)),
        ("last has positions", L, edit(last, c_in=1, height=first.n_out, kernel=1)),
        ("too many logits", L, edit(last, c_out=CFG.logit_words + 1)),
        ("random", L, [int(v) for v in rng.integers(0, 1 << 32, len(words), dtype=np.int64)]),
    ]


@cocotb.test()
async def invalid_programs_rejected(dut):
    """Every ERR_* code, checked against program.check_program; nothing runs, nothing hangs."""
    host, rng = await setup(dut)
    model = cnn(rng, (1, 4, 5), [(2, 2, True)], 3)
    image = await host.load(model)
    seen = set()
    for name, n_layers, words in invalid_programs(rng, model, image):
        expect, layer = program.check_program(words, n_layers, CFG)
        assert expect != layout.ERR_NONE, name
        await host.write_region("program", words[:CFG.region_words["program"]])
        await host.csr("n_layers", n_layers)
        await host.start()
        assert await host.wait_done(100) == expect, name
        assert await host.csr("cycles") == cyclemodel.rejected_cycles(layer), name
        seen.add(expect)
    assert seen >= set(layout.ERROR_NAMES) - {layout.ERR_NONE, layout.ERR_BUSY}
    await host.load(model)   # a valid program runs again
    await host.infer(model, image_for(rng, model))


@cocotb.test()
async def read_back(dut):
    """Every writable region reads back what was written, lane words included."""
    host, rng = await setup(dut)
    for region in ("weights", "bias", "program", "act0", "act1"):
        n = min(CFG.region_words[region], 3 * max(1, CFG.lanes // 4) + 5)
        offset = CFG.region_words[region] - n
        words = [int(v) for v in rng.integers(0, 1 << 32, n, dtype=np.int64)]
        await host.write_region(region, words, offset)
        assert await host.read_region(region, n, offset) == words, region


