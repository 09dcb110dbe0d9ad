"""Run history and the report built from it."""
import pytest

from host import history, report


def _run(board_accuracy, cycles):
    return {"accelerator_cycles": cycles, "batch_cycles_per_image": 2 * cycles,
            "cpu_cycles_per_inference": 600 * cycles, "board_accuracy": board_accuracy,
            "software_int_accuracy": board_accuracy, "float_test_accuracy": board_accuracy + 0.001}


def test_append_keeps_every_run_in_order(tmp_path):
    path = tmp_path / "h.jsonl"
    history.append("demo", _run(0.89, 1806), path)
    history.append("demo", _run(0.90, 1700), path)
    runs = history.read(path)
    assert [r["accelerator_cycles"] for r in runs] == [1806, 1700]
    assert all(r["kind"] == "demo" and r["time"] and r["commit"] for r in runs)


def test_report_plots_and_summarises_the_latest_run(tmp_path):
    path = tmp_path / "h.jsonl"
    for i, acc in enumerate((0.89, 0.895, 0.8964)):
        history.append("demo", _run(acc, 1806 - i), path)
    md = report.write(tmp_path / "report", path)
    text = md.read_text()
    assert "3 runs" in text and "| accelerator_cycles | 1804 |" in text
    png = (tmp_path / "report" / "history.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_report_without_runs_says_what_to_do(tmp_path):
    with pytest.raises(RuntimeError, match="run 'nnhil demo' or the test suite"):
        report.write(tmp_path, tmp_path / "none.jsonl")


def test_corrupt_history_line_is_named(tmp_path):
    path = tmp_path / "h.jsonl"
    path.write_text('{"kind": "demo"}\nnot json\n')
    with pytest.raises(ValueError, match=r"h.jsonl:2 is not a JSON record"):
        history.read(path)
