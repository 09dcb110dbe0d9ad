"""gateware.vivado and the Arty build's timing gate, on report_timing_summary texts.

The two reports in vivado_reports/ are written to the layout of Vivado's post-route
``report_timing_summary -datasheet -max_paths 10`` (UG906): header, timer settings, Design
Timing Summary table, clock tables, then the detailed Max (setup) and Min (hold) paths.
"""
from pathlib import Path

import pytest

from nnhil.gateware import arty, vivado

REPORTS = Path(__file__).parent / "vivado_reports"


def test_a_report_that_meets_timing():
    s = vivado.check_timing(REPORTS / "timing_met.rpt")
    assert s.met and (s.wns, s.tns, s.failing_endpoints, s.whs) == (0.274, 0.0, 0, 0.041)
    assert s.worst("Setup").source == "nnhil_bias_reg_0/CLKBWRCLK"
    assert s.worst("Setup").slack_ns == 0.274 and s.worst("Hold").slack_ns == 0.041


def test_a_report_that_misses_timing_names_the_worst_path_and_slack():
    s = vivado.parse_timing_summary((REPORTS / "timing_violated.rpt").read_text())
    assert not s.met and (s.wns, s.tns, s.failing_endpoints) == (-0.412, -3.071, 14)
    with pytest.raises(vivado.TimingNotMet) as e:
        vivado.check_timing(REPORTS / "timing_violated.rpt")
    msg = str(e.value)
    assert "WNS -0.412 ns" in msg and "TNS -3.071 ns" in msg
    assert "slack -0.412 ns from nnhil_bias_reg_0/CLKBWRCLK to nnhil_requant_prod0_reg/A[12]" in msg


def test_negative_total_or_hold_slack_fails_too():
    text = (REPORTS / "timing_met.rpt").read_text()
    row = next(line for line in text.splitlines() if line.strip().startswith("0.274"))
    hold = row.replace("0.041", "-0.020", 1)
    assert not vivado.parse_timing_summary(text.replace(row, hold)).met
    tns = row.replace("0.000", "-0.001", 1)
    assert not vivado.parse_timing_summary(text.replace(row, tns)).met


def test_not_a_timing_summary_is_refused(tmp_path):
    (tmp_path / "x.rpt").write_text("Utilization report\n| Slice LUTs | 12000 |\n")
    with pytest.raises(vivado.VivadoReportError, match="Design Timing Summary"):
        vivado.check_timing(tmp_path / "x.rpt")
    with pytest.raises(vivado.VivadoReportError, match="did Vivado finish routing"):
        vivado.check_timing(tmp_path / "missing.rpt")


def _gateware(tmp_path, report):
    (tmp_path / "digilent_arty.bit").write_bytes(b"bitstream")
    (tmp_path / "digilent_arty_timing.rpt").write_text((REPORTS / report).read_text())
    return tmp_path


def test_arty_build_refuses_a_bitstream_that_misses_timing(tmp_path):
    gw = _gateware(tmp_path, "timing_violated.rpt")
    with pytest.raises(vivado.TimingNotMet, match="nnhil_requant_prod0_reg/A\\[12\\]") as e:
        arty.check_routed_timing(gw, "digilent_arty")
    assert "-0.412" in str(e.value)
    # the bitstream is set aside under a name no one programs by mistake
    assert not (gw / "digilent_arty.bit").exists()
    assert (gw / "digilent_arty.bit.timing-failed").read_bytes() == b"bitstream"


def test_arty_build_keeps_a_bitstream_that_meets_timing(tmp_path):
    gw = _gateware(tmp_path, "timing_met.rpt")
    assert arty.check_routed_timing(gw, "digilent_arty").met
    assert (gw / "digilent_arty.bit").exists()
