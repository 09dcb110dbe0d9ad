"""The waveform of a diverging layer (host.wave) on the traced sim build.

A fault in one lane: after the load, one weight byte of a small CNN is overwritten through the
bus in the lanes that hold it (tests/soc/test_divergence.py's fault, chosen so it changes the
logits). The integer model with that weight changed says which outputs are wrong; the cycle model
says when the requantizer writes each of them (gateware.cyclemodel.layer_cycles's decomposition:
the windows issue m MAC cycles each, gap cycles apart, and the requantizer writes a window's
channels one per cycle, the last window's last in the layer's last cycle but one). The report's
first wrong write must be that cycle, at the output buffer address the layout gives
(4 out_base + index), with the faulty model's value.

Each traced run builds nothing: the traced variant is built once (minutes: slow tier).
"""
import re
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from nnhil.gateware import cyclemodel, layout, program
from nnhil.host import wave
from nnhil.host.dut import DUT
from nnhil.host.simulator import Simulator
from nnhil.training import modelfile
from tests.soc.test_divergence import choose_fault, weight_bytes

pytestmark = [pytest.mark.sim, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


def program_compiled(model):
    from nnhil.gateware.compiled import CompiledModel
    return CompiledModel.of(model, layout.AccelConfig())


@pytest.fixture(scope="module")
def traced():
    return wave.traced_build(layout.AccelConfig())


@pytest.fixture(scope="module")
def traced_all():
    """The --wave-all build: every signal of the SoC (a second traced build)."""
    return wave.traced_build(layout.AccelConfig(), scope="all")


def write_cycle(shape, lanes, first, index):
    """The accelerator cycle at which a conv layer (one tile) starting at cycle ``first`` writes
    output ``index`` (channel-major), from the cycle model's decomposition (see the module doc):
    the last window's last channel is written in the layer's last cycle but one (the model's
    final + 1 is the cycle after it); each earlier channel one cycle before, each earlier
    window m + gap cycles before."""
    c, pos = divmod(index, shape.plane)
    r, col = divmod(pos, shape.out_hw[1])
    per_row = shape.windows(lanes) // shape.out_hw[0]
    w = r * per_row + col // shape.pairs(lanes)
    m = shape.phases * shape.steps(lanes)
    gap = max(0, shape.c_out - m)
    last_write = first + cyclemodel.layer_cycles(shape, lanes) - 2
    return last_write - (shape.windows(lanes) - 1 - w) * (m + gap) - (shape.c_out - 1 - c)


def full_names(path):
    return {v.full_name for v in wave._read(path).all_vars()}


def cpu_signals(names):
    """The CPU's signals: VexRiscv is a Verilog module of its own inside the flattened SoC."""
    return {n for n in names if ".VexRiscv." in n}


def assert_window_only(path, window):
    """The file at ``path`` holds layer's ``window`` only: the accelerator's cycle count at its
    clock edges runs from the window's first cycle to its last, plus the edge at which the window
    closes, and nothing is dumped before the first of those edges or after the half cycle past
    the last. Returns the edges' times."""
    s = wave._Signals(path)
    cycles = s.vars[f"{wave._prefix(s.names())}sequencer_cycles"]
    edges = s.rising_edges("sys_clk")
    assert [s.at(cycles.name, e) for e in edges] == list(range(window[0], window[1] + 2))
    times = []
    s.wave.stream_time_steps(lambda t, *_: times.append(t), None)      # every time with a change
    period = (edges[-1] - edges[0]) // (len(edges) - 1)
    assert times[0] == edges[0] and edges[-1] <= times[-1] <= edges[-1] + period // 2
    return edges


@pytest.mark.parametrize("layer", [0, 1])
def test_the_first_wrong_write_is_where_and_when_the_fault_implies(traced, model, images, layer, tmp_path):
    path = tmp_path / "trace-0.fst"
    image = images[0]
    with Simulator(traced, env=wave.trace_env(path)) as sim, sim.bridge() as bridge:
        dut = DUT("sim", bridge, traced.dir, sim=sim)
        compiled = dut.load(model)
        channel, element, value, bad = choose_fault(model, image, layer, np.random.default_rng(layer))
        for addr, byte in weight_bytes(dut, model, layer, channel, element):
            good = dut.bridge.read(addr)[0]
            dut.bridge.write(addr, [good & ~(0xFF << 8 * byte) | (value & 0xFF) << 8 * byte])
        window = wave.record(dut, image, layer, path)
    assert not path.with_name(path.name + ".part").exists()
    t = wave.analyse(path, model, compiled, image, layer, window)

    lanes = layout.AccelConfig().lanes
    shape = compiled.shapes[layer]
    ref, faulty = (program.layer_outputs(m, image[None])[layer][0].reshape(-1) for m in (model, bad))
    wrong = np.flatnonzero(ref != faulty)
    assert wrong.size and set(wrong // shape.plane) == {channel}
    first = min(wrong, key=lambda i: write_cycle(shape, lanes, window[0], i))
    w = t.first_wrong
    assert (w.index, w.value, w.expected) == (first, faulty[first], ref[first])
    assert w.address == 4 * compiled.memory_image.out_bases[layer] + first
    assert w.cycle == write_cycle(shape, lanes, window[0], first)
    assert f"first wrong write: cycle {w.cycle} (sim time {w.time_ps} ps), output index {first}" in t.text()

    # the window is the layer's, from the cycle model: its last write is the layer's last cycle but one
    assert window == (1 + cyclemodel.VALIDATE_CYCLES * 4 + sum(cyclemodel.layer_cycles(s, lanes) for s in compiled.shapes[:layer]),
                      cyclemodel.shape_cycles(compiled.shapes, lanes, layer + 1) - 2)
    # every output of the layer written once, each as the faulty model says, in the predicted cycle
    assert sorted(x.index for x in t.writes) == list(range(ref.size))
    assert all(x.value == faulty[x.index] and x.cycle == write_cycle(shape, lanes, window[0], x.index)
               for x in t.writes)

    # the file holds the window only, and the accelerator's signals only (no CPU: that is --wave-all)
    edges = assert_window_only(path, window)
    assert (t.time_ps[0], t.time_ps[1]) == (edges[0], edges[-1])
    s = wave._Signals(path)
    assert not cpu_signals(full_names(path))

    # the save file names signals of the trace, in its groups, the marker at the first wrong write
    gtkw = t.save_file.read_text()
    named = [re.sub(r"\[\d+:\d+\]$", "", line) for line in gtkw.splitlines() if line.startswith("TOP.")]
    full = {v.full_name for v in s.vars.values()}
    assert named and set(named) <= full
    assert f"*{wave.ZOOM:.6f} {w.time_ps} " in gtkw
    for lane in wave.lanes_of(shape, lanes, channel):
        assert re.search(rf"mac_acc{lane}\b", gtkw)
    for group in ("sequencer", "address generator", "MAC lanes", "requantizer", "write port"):
        assert re.search(rf"^-.*{group}", gtkw, re.M)


def test_two_traced_runs_of_one_build_at_once_write_two_files(traced, model, images, tmp_path):
    """Two sims of the same traced build, each its own file, running at the same time."""
    results, errors = {}, []

    def run(i):
        try:
            path = tmp_path / f"trace-{i}.fst"
            with Simulator(traced, env=wave.trace_env(path)) as sim, sim.bridge() as bridge:
                dut = DUT("sim", bridge, traced.dir, sim=sim)
                compiled = dut.load(model)
                window = wave.record(dut, images[i], 1, path)
            results[i] = wave.analyse(path, model, compiled, images[i], 1, window)
        except BaseException as e:            # re-raised below, in the test's thread
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in (1, 2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=300)
    assert not errors, errors
    for i in (1, 2):
        t = results[i]
        assert t.path == (tmp_path / f"trace-{i}.fst").resolve() and t.first_wrong is None
        expected = program.layer_outputs(model, images[i][None])[1][0].reshape(-1)
        assert [x.value for x in sorted(t.writes, key=lambda x: x.index)] == expected.tolist()
    assert not (traced.gateware_dir / "sim.fst").exists()


def test_wave_all_holds_the_whole_socs_signals_in_the_window_only(traced, traced_all, model, images, tmp_path):
    """The same layer of the same image on both traced builds: the --wave-all file holds the
    CPU's signals besides every one of the accelerator's, the other none of them; both hold
    only the window, and the writes replayed from either are the model's."""
    names = {}
    for scope, build in (("accelerator", traced), ("all", traced_all)):
        path = tmp_path / f"{scope}.fst"
        with Simulator(build, env=wave.trace_env(path)) as sim, sim.bridge() as bridge:
            dut = DUT("sim", bridge, build.dir, sim=sim)
            compiled = dut.load(model)
            window = wave.record(dut, images[3], 1, path)
        t = wave.analyse(path, model, compiled, images[3], 1, window)
        expected = program.layer_outputs(model, images[3][None])[1][0].reshape(-1)
        assert t.first_wrong is None and sorted(x.index for x in t.writes) == list(range(expected.size))
        assert_window_only(path, window)
        names[scope] = full_names(path)
    assert cpu_signals(names["all"]) and not cpu_signals(names["accelerator"])
    assert names["accelerator"] < names["all"]
    assert traced_all.dir != traced.dir


def test_a_trace_that_never_comes_is_an_error_naming_the_window(traced, model, images, tmp_path):
    """The model writes the file $NNHIL_TRACE_FILE names; a wait for another one ends at its
    timeout (one second here: the default is the window's) with the layer's window, said closed."""
    given, other = tmp_path / "given.fst", tmp_path / "other.fst"
    with Simulator(traced, env=wave.trace_env(given)) as sim, sim.bridge() as bridge:
        dut = DUT("sim", bridge, traced.dir, sim=sim)
        compiled = dut.load(model)
        first, last = wave.layer_window(compiled, 1)
        with pytest.raises(wave.WaveError, match=rf"{other} within 1 s of layer 1's end \(its window, cycles "
                                                 rf"{first}-{last}, closed in the gateware\).*NNHIL_TRACE_FILE"):
            wave.record(dut, images[0], 1, other, timeout=1)
        sim.check_alive()
    assert given.exists() and not other.exists()


@pytest.mark.parametrize("option, build", [("--wave", "traced"), ("--wave-all", "traced_all")])
def test_nnhil_run_wave_writes_the_waveform_beside_the_report(option, build, request, model, images, tmp_path):
    """`nnhil run --trace 1 --wave` on a passing run: the last layer's window (none diverges),
    its FST and save file beside trace-1.npz, every logit written as the model's; with
    --wave-all, the file of the whole SoC's signals (its build made beforehand by the fixture)."""
    request.getfixturevalue(build)
    modelfile.save_quantized(tmp_path / "m.npz", model)
    np.save(tmp_path / "x.npy", images)
    r = subprocess.run([sys.executable, "-m", "nnhil.host.cli", "run", tmp_path / "m.npz", "--images-npy",
                        tmp_path / "x.npy", "--trace", "1", option, "--results-dir", tmp_path / "run"],
                       capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    (board,) = (tmp_path / "run" / "board").iterdir()
    first, last = wave.layer_window(program_compiled(model), 3)
    assert "waveform of image 1, layer 3 (the last: none diverges)" in r.stdout
    assert f"layer 3's cycles {first}-{last}" in r.stdout
    assert f"{model.n_out} writes to its output" in r.stdout
    assert "every write in the window equals the integer model's value" in r.stdout
    assert (board / "trace-1.fst").stat().st_size > 0 and (board / "trace-1.gtkw").exists()
    assert (board / "trace-1.npz").exists()
    assert bool(cpu_signals(full_names(board / "trace-1.fst"))) == (option == "--wave-all")


@pytest.mark.parametrize("option", ["--wave", "--wave-all"])
def test_wave_with_a_board_is_refused_before_any_work(model, images, tmp_path, option):
    modelfile.save_quantized(tmp_path / "m.npz", model)
    np.save(tmp_path / "x.npy", images)
    r = subprocess.run([sys.executable, "-m", "nnhil.host.cli", "run", tmp_path / "m.npz", "--images-npy",
                        tmp_path / "x.npy", "--trace", "0", option, "--target", "arty", "--results-dir", tmp_path / "run"],
                       capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode != 0 and f"{option}: a board has no waveform dump" in r.stdout + r.stderr
    assert not (tmp_path / "run").exists()
