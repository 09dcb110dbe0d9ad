"""The accelerator in Icarus Verilog: each cocotb test of cocotb_accelerator.py on a few builds."""
import functools

import pytest


from gateware.layout import AccelConfig

import sim_harness

CONFIGS = {
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
TESTS = ["identification", "random_models", "headline_shape", "edge_values",
         "requantization_extremes", "argmax_ties", "start_while_busy", "soft_reset",
         "invalid_programs_rejected", "read_back", "conv_shapes", "conv_edge_values", "random_cnns"]
P64_TESTS = ["identification", "headline_shape", "edge_values", "start_while_busy",
             "invalid_programs_rejected", "conv_shapes"]
CONV_TESTS = ["conv_shapes", "conv_edge_values", "random_cnns", "invalid_programs_rejected"]


@functools.cache
def built(name):
    return sim_harness.build(CONFIGS[name], name)


def run(name, testcase, **env):
    runner, out = built(name)
    sim_harness.run(runner, out, testcase, env)


@pytest.mark.parametrize("testcase", TESTS)
@pytest.mark.parametrize("config", ["p4", "p8"])
def test_small(config, testcase):
    run(config, testcase)


@pytest.mark.parametrize("testcase", P64_TESTS)
def test_p64(testcase):
    run("p64", testcase)


@pytest.mark.parametrize("testcase", CONV_TESTS)
def test_conv8(testcase):
    run("conv8", testcase, NNHIL_SIM_CNNS="8")


@pytest.mark.parametrize("testcase", ["identification", "read_back"])
def test_tiny(testcase):
    run("tiny", testcase)


def test_headline_784_128_10():
    """The headline shape and build configuration: 784-128-10 on 64 lanes (about 15 s)."""
    run("headline", "headline_shape", NNHIL_SIM_N_IN="784")


def test_headline_cnn():
    """The headline CNN shape on the headline build (conv, pool, conv, pool, dense, dense)."""
    run("headline", "cnn_headline_shape")
