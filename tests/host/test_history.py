"""Run history and the report built from it."""
import json

import pytest

from nnhil.host import history, latency, report


def _run(board_accuracy, cycles):
    return {"accelerator_cycles": cycles, "batch_cycles_per_image": 2 * cycles,
            "cpu_plain_cycles_per_inference": 600 * cycles, "board_accuracy": board_accuracy,
            "software_int_accuracy": board_accuracy, "float_test_accuracy": board_accuracy + 0.001}


def test_append_keeps_every_run_in_order(tmp_path):
    path = tmp_path / "h.jsonl"
    history.append("demo", _run(0.89, 1806), path)
    history.append("demo", _run(0.90, 1700), path)
    runs = history.read(path)
    assert [r["accelerator_cycles"] for r in runs] == [1806, 1700]
    assert all(r["kind"] == "demo" and r["time"] and r["commit"] for r in runs)


def test_report_shows_the_models_side_by_side(tmp_path):
    path = tmp_path / "h.jsonl"
    for i, acc in enumerate((0.89, 0.895, 0.8964)):
        history.append("demo", _run(acc, 1806 - i), path)           # an old record: no model field
    history.append("demo", {**_run(0.9178, 15372), "model": "cnn", "dataset": "fashion-mnist",
                            "macs_per_cycle": 26.8}, path)
    history.append("pytest", {**_run(0.5, 1), "model": "cnn", "dataset": "mnist"}, path)
    resources = tmp_path / "resources.json"
    resources.write_text(json.dumps({"config": "AccelConfig()", "device": "xc7a35t",
                                     "capacity": {"LUT": 20800, "RAMB36": 50},
                                     "designs": {"Arty SoC": {"LUT": 12000, "RAMB36": 49.5}}}))
    text = report.write(tmp_path / "report", path, resources).read_text()
    assert "5 runs" in text
    assert "| | cnn on fashion-mnist | mlp on fashion-mnist |" in text
    assert "| accelerator cycles | 15372 | 1804 |" in text           # the latest demo of each
    assert "| on-board accuracy | 0.9178 | 0.8964 |" in text
    assert "cnn on mnist" not in text.split("## FPGA")[0]             # a pytest run is not a demo
    assert "| Arty SoC | 12000 | 49.5 |" in text and "| xc7a35t | 20800 | 50 |" in text
    png = (tmp_path / "report" / "history.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


# A demo record as the history held it before the plain C's cycles were named so: its line
# verbatim (sorted keys, as append() writes them).
OLD_LINE = ('{"accelerator_cycles": 1728, "batch_cycles_per_image": 3945, "board_accuracy": 0.8964, '
            '"commit": "8e7bf21", "cpu_cycles_per_inference": 1168348, "cpu_optimised_cycles_per_inference": '
            '563393, "float_test_accuracy": 0.8971, "kind": "demo", "model": "mlp", "software_int_accuracy": '
            '0.8964, "time": "2026-11-30T10:00:00+00:00"}')


def test_an_old_record_is_read_under_the_new_key(tmp_path):
    """cpu_cycles_per_inference held the plain C's cycles: read() gives such a record the name
    cpu_plain_cycles_per_inference, the report shows it in that row beside a new record, and the
    history's line stays as written (append-only)."""
    path = tmp_path / "h.jsonl"
    path.write_text(OLD_LINE + "\n")
    history.append("demo", {**_run(0.9178, 7460), "model": "cnn"}, path)
    old, new = history.read(path)
    assert old["cpu_plain_cycles_per_inference"] == 1168348 and "cpu_cycles_per_inference" not in old
    assert old["cpu_optimised_cycles_per_inference"] == 563393 and old["commit"] == "8e7bf21"
    assert new["cpu_plain_cycles_per_inference"] == 600 * 7460 and "cpu_cycles_per_inference" not in new
    text = report.write(tmp_path / "report", path, tmp_path / "absent.json").read_text()
    assert f"| CPU cycles / inference, plain C | {600 * 7460} | 1168348 |" in text    # cnn, mlp
    assert path.read_text().splitlines()[0] == OLD_LINE


def test_a_record_with_both_keys_keeps_the_new_ones_value():
    record = {"cpu_cycles_per_inference": 1, "cpu_plain_cycles_per_inference": 2, "kind": "demo"}
    assert history.upgrade(record) == {"cpu_plain_cycles_per_inference": 2, "kind": "demo"}


def test_a_baselines_file_of_the_old_key_compares_clean(tmp_path):
    """A baselines file recorded before the rename (a user's --baselines) still holds the run."""
    setup = {"program": [], "config": {}}
    path = tmp_path / "latency.json"
    path.write_text(json.dumps({"m": {"setup": setup, "measured": {"accelerator_cycles": 1728,
                                                                  "cpu_cycles_per_inference": 1168348}}}))
    measured = {"accelerator_cycles": 1728, "cpu_plain_cycles_per_inference": 1168350}
    assert latency.compare("m", setup, measured, latency.load(path)) == []
    slower = {**measured, "cpu_plain_cycles_per_inference": 1300000}
    assert "cpu_plain_cycles_per_inference: baseline 1168348, now 1300000" in \
        "\n".join(latency.compare("m", setup, slower, latency.load(path)))


def test_report_says_how_to_get_missing_parts(tmp_path):
    path = tmp_path / "h.jsonl"
    history.append("pytest", _run(0.9, 1806), path)
    text = report.write(tmp_path / "report", path, tmp_path / "absent.json").read_text()
    assert "run `nnhil demo`" in text and "run `nnhil resources`" in text


def test_report_without_runs_says_what_to_do(tmp_path):
    with pytest.raises(RuntimeError, match="run 'nnhil demo' or the test suite"):
        report.write(tmp_path, tmp_path / "none.jsonl")


def test_corrupt_history_line_is_named(tmp_path):
    path = tmp_path / "h.jsonl"
    path.write_text('{"kind": "demo"}\nnot json\n')
    with pytest.raises(ValueError, match=r"h.jsonl:2 is not a JSON record"):
        history.read(path)


def test_nnhil_report_writes_into_the_home_by_default(tmp_path):
    """`nnhil report` with no --out: the report goes beside the history, in $NNHIL_HOME/out/report
    (where the demo writes it), not into the folder it was started from."""
    import os
    import subprocess
    import sys
    home, elsewhere = tmp_path / "home", tmp_path / "elsewhere"
    elsewhere.mkdir()
    history.append("demo", _run(0.9, 1806), home / "out" / history.NAME)
    r = subprocess.run([sys.executable, "-m", "nnhil.host.cli", "report"], cwd=elsewhere, capture_output=True,
                       text=True, timeout=120, env={**os.environ, "NNHIL_HOME": str(home)})
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip() == f"wrote {home / 'out' / 'report' / 'report.md'}"
    assert "1 runs" in (home / "out" / "report" / "report.md").read_text()
    assert list(elsewhere.iterdir()) == []
