"""A run's phases: spans on the host and on each simulation, a batch's chunks shown as one."""
import time

from nnhil.host.timeline import Timeline, process_age


def test_phases_are_kept_per_place_and_a_batchs_chunks_merge():
    t = Timeline()
    t.add("load", "sim 1", 1.0, 2.0)
    t.add("load", "sim 2", 1.0, 2.5)
    for start, end in ((2.0, 5.0), (5.0, 7.0), (7.0, 10.0)):     # three chunks in a row on sim 1
        t.add("images", "sim 1", start, end)
    t.add("outputs", "host", 3.0, 3.5)              # two models' outputs, the sims' work between them
    t.add("outputs", "host", 9.0, 10.0)
    t.add("CPU plain C", "sim 2", 2.5, 6.0)
    t.add("images", "sim 2", 6.0, 10.5)
    with t.phase("model and images"):              # now: at 0 s, first in order
        time.sleep(0.01)
    phases = t.records()["phases"]
    assert [(p["phase"], p["on"], p["start_s"], p["end_s"], p.get("count", 1)) for p in phases[1:]] == [
        ("load", "sim 1", 1.0, 2.0, 1), ("load", "sim 2", 1.0, 2.5, 1), ("images", "sim 1", 2.0, 10.0, 3),
        ("CPU plain C", "sim 2", 2.5, 6.0, 1), ("outputs", "host", 3.0, 10.0, 2), ("images", "sim 2", 6.0, 10.5, 1)]
    assert next(p for p in phases if p["phase"] == "outputs")["seconds"] == 1.5     # not the 7 s from-to
    assert phases[0]["phase"] == "model and images" and phases[0]["on"] == "host"
    assert phases[0]["end_s"] - phases[0]["start_s"] >= 0.01
    head, host, sim1, sim2 = t.lines()
    assert host.startswith("  host   model and images 0.0-") and host.endswith(", outputs (2) 3.0-10.0 (1.5)")
    assert sim1 == "  sim 1  load 1.0-2.0 (1.0), images (3) 2.0-10.0 (8.0)"
    assert sim2 == "  sim 2  load 1.0-2.5 (1.5), CPU plain C 2.5-6.0 (3.5), images 6.0-10.5 (4.5)"


def test_start_up_is_this_processs_age():
    before = process_age()
    time.sleep(0.05)
    assert 0 < before < process_age() - 0.04
