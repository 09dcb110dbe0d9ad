"""host.wave's pure parts: which layer and channel to trace, which lanes hold a channel, and
what a VCD's writes say (a hand-written VCD of the requantizer's write port)."""
import numpy as np
import pytest

from nnhil.gateware import layout
from nnhil.gateware.layout import LayerShape
from nnhil.host import wave


def test_the_first_diverging_layer_and_channel_come_from_the_divergence_npz(tmp_path):
    same = np.arange(12, dtype=np.uint8).reshape(3, 2, 2)
    bad = same.copy()
    bad[2, 1, 0] += 1
    np.savez(tmp_path / "t.npz", board_0=same, model_0=same, board_1=bad, model_1=same,
             board_2=np.ones(4), model_2=np.zeros(4), cycles=[10, 20, 30])
    assert wave.diverging_layer(tmp_path / "t.npz") == (1, 2)
    np.savez(tmp_path / "ok.npz", board_0=same, model_0=same, cycles=[10])
    assert wave.diverging_layer(tmp_path / "ok.npz") is None


@pytest.mark.parametrize("shape, channel, lanes", [
    # a conv of more channels than lanes: one lane, channel mod 64
    (LayerShape(c_in=1, c_out=100, kernel=3, height=8, width=8, pool=False), 70, [6]),
    # a conv of position pairs (c_out <= lanes / 2): lanes c and 32 + c
    (LayerShape(c_in=16, c_out=32, kernel=2, height=13, width=13, pool=True), 7, [7, 39]),
    # a dense layer of 10 outputs: four lane groups of 16
    (LayerShape.dense(64, 10), 3, [3, 19, 35, 51]),
])
def test_the_lanes_of_a_channel(shape, channel, lanes):
    assert wave.lanes_of(shape, layout.AccelConfig().lanes, channel) == lanes


VCD = """$timescale 1ps $end
$scope module TOP $end
$scope module sim $end
$var wire 1 ! sys_clk $end
$var wire 1 " x_requant_act_we $end
$var wire 1 # x_requant_act_we_next $end
$var wire 16 $ x_requant_out_adr [15:0] $end
$var wire 32 % x_requant_out_dat [31:0] $end
$var wire 17 & x_sequencer_out_base [16:0] $end
$var wire 32 ' x_sequencer_cycles [31:0] $end
$upscope $end
$upscope $end
$enddefinitions $end
#0
0!
0"
0#
b0 $
b0 %
b10 &
b101 '
#5
1!
#10
0!
1"
1#
b10 $
b1100100000001001 %
b110 '
#15
1!
#20
0!
0"
0#
b111 '
#25
1!
"""


def test_writes_are_read_before_each_rising_edge_and_compared(tmp_path):
    """One write of a pair at the edge of cycle 6: bytes 2 and 3 (out_dat's low byte 9, next 0xC8)
    at out_base word 2 (byte 8); the model says 9 and 7."""
    (tmp_path / "w.vcd").write_text(VCD)
    expected = np.array([0, 0, 9, 7, 0], np.uint8)
    _, prefix, span, writes, wrong = wave.read_writes(tmp_path / "w.vcd", expected, logits=False)
    assert prefix == "x_" and span == (5, 25)
    assert [(w.time_ps, w.cycle, w.index, w.address, w.value, w.expected) for w in writes] == [
        (15, 6, 2, 10, 9, 9), (15, 6, 3, 11, 0xC8, 7)]
    assert wrong is writes[1]


def test_a_file_that_is_not_a_trace_is_named(tmp_path):
    (tmp_path / "bad.fst").write_bytes(b"not a waveform")
    with pytest.raises(wave.WaveError, match="bad.fst is not a waveform"):
        wave.read_writes(tmp_path / "bad.fst", np.zeros(1), logits=False)
    with pytest.raises(wave.WaveError, match="no trace at"):
        wave.read_writes(tmp_path / "missing.fst", np.zeros(1), logits=False)
    (tmp_path / "other.vcd").write_text(VCD.replace("requant_out_adr", "something_else"))
    with pytest.raises(wave.WaveError, match="not of an nnhil accelerator"):
        wave.read_writes(tmp_path / "other.vcd", np.zeros(1), logits=False)


def test_the_wait_for_the_trace_grows_with_the_window_from_a_floor():
    """A short window gets the floor; past it the wait is proportional to the window's cycles
    (the default CNN's conv layer of 4,659 cycles and a window a thousand times longer)."""
    short = wave.dump_timeout((1520, 6178))
    assert short == wave.CLOSE_FLOOR_S
    long_ = wave.dump_timeout((1, 4_659_000))
    assert long_ > wave.CLOSE_FLOOR_S and wave.dump_timeout((1, 2 * 4_659_000)) == 2 * long_
