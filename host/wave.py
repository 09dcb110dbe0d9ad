"""The waveform of a diverging layer: a traced sim rerun of one image, cut to that layer.

:func:`capture` reruns an image on the traced sim build (gateware.buildcache.SimVariant(trace=True),
built and cached on first use) with the gateware trace window (gateware.tracewindow) armed for
the cycles of one layer, which gateware.cyclemodel gives exactly: the model dumps an FST of that
window only, to a file of this run's own. :func:`read_writes` reads the trace back
(pywellen) and replays the requantizer's writes to the output buffer, cycle by cycle, against the
integer model's output of the layer; :func:`save_file` writes a GTKWave save file with the
accelerator's signals grouped as the datapath runs (sequencer, address generator, the MAC lanes of
the differing channel, requantizer, output buffer write port) and its marker at the first wrong
write. :func:`record` and :func:`analyse` are the two halves of :func:`capture` for a caller that
does something to the DUT between the load and the run (the tests' fault).
Migen flattens the design into one Verilog module: the accelerator's signals are found by the
names of its blocks (``<prefix>sequencer_``, ``<prefix>requant_``, ...), the prefix read from the
trace itself.
"""
import dataclasses
import logging
import re
import time
from pathlib import Path

import numpy as np

from nnhil.gateware import buildcache, cyclemodel, program
from nnhil.gateware.tracewindow import NAME as TRACE_WINDOW

log = logging.getLogger(__name__)

WRITE_PORT = "requant_out_adr"     # the requantizer's output index: what names the accelerator's prefix
# How long the traced sim may take to dump a window, on top of the run's untraced pace, and then
# to finish the file: the window's cycles at DUMP_CYCLES_PER_S, at least CLOSE_FLOOR_S. Measured
# on the docs' example (a 4,659-cycle window, load average 35 on 2 cores): the run to the layer's
# end took 1.06 s longer armed than not with every SoC signal (--wave-all; 0.38 s with the
# accelerator's), about 4,400 window cycles a second, and the file was there as the run ended.
# The figure is under a quarter of that; the floor is a loaded host's scheduling of the model.
DUMP_CYCLES_PER_S = 1_000
CLOSE_FLOOR_S = 10.0


class WaveError(RuntimeError):
    """The trace could not be made or read; the message says what to do."""


def layer_window(compiled, k):
    """(first, last): the accelerator cycles (its ``cycles`` count from start) of layer k, from
    the cycle model: validation of every layer, then the layers before k."""
    shapes, lanes = compiled.shapes, compiled.config.lanes
    first = 1 + cyclemodel.VALIDATE_CYCLES * len(shapes) + sum(
        cyclemodel.layer_cycles(s, lanes) for s in shapes[:k])
    return first, first + cyclemodel.layer_cycles(shapes[k], lanes) - 1


@dataclasses.dataclass
class Write:
    """One value the requantizer wrote to the layer's output (a byte, or a logit word)."""
    time_ps: int        # the clock edge that writes it
    cycle: int          # the accelerator's cycle count at that edge
    index: int          # output index (channel * plane + position, or the neuron)
    address: int        # byte address in the output buffer (a logit: its word)
    value: int
    expected: int


@dataclasses.dataclass
class Trace:
    """A traced layer: the FST file, its window and what it holds."""
    path: Path
    layer: int
    window: tuple                    # (first, last) accelerator cycle
    time_ps: tuple                   # (first, last) dump time in the file
    signals: int
    writes: list                     # every write of the layer's output in the window
    first_wrong: Write | None
    save_file: Path | None = None

    def text(self):
        size = self.path.stat().st_size
        lines = [f"  waveform: {self.path} ({size / 1024:.0f} KiB, {self.signals} signals), "
                 f"layer {self.layer}'s cycles {self.window[0]}-{self.window[1]} "
                 f"(sim time {self.time_ps[0]}-{self.time_ps[1]} ps); {len(self.writes)} writes to its output"]
        w = self.first_wrong
        if w is None:
            lines.append("  every write in the window equals the integer model's value")
        else:
            lines.append(f"  first wrong write: cycle {w.cycle} (sim time {w.time_ps} ps), output index "
                         f"{w.index} at address {w.address:#x}: wrote {w.value}, expected {w.expected}")
        if self.save_file:
            lines.append(f"  GTKWave save file{' (marker at that write)' if w else ''}: {self.save_file}")
        return "\n".join(lines)


def _read(path):
    try:
        from pywellen import Waveform
    except ImportError:
        raise WaveError("reading FST needs pywellen (pip install -r requirements.txt)") from None
    if not Path(path).is_file():
        raise WaveError(f"no trace at {path}")
    try:
        return Waveform(str(path))
    except Exception as e:          # pywellen's parse errors have no class of their own
        raise WaveError(f"{path} is not a waveform pywellen can read (FST or VCD): {e}") from None


class _Signals:
    """The trace's signals by name (the flattened design's: one scope), their value at any time."""
    def __init__(self, path):
        self.wave = _read(path)
        self.vars = {}
        for var in self.wave.all_vars():
            self.vars.setdefault(var.name, var)
        self._signals = {}

    def names(self):
        return list(self.vars)

    def width(self, name):
        return self.vars[name].bitwidth or 1

    def full_name(self, name):
        return self.vars[name].full_name

    def rising_edges(self, name):
        """The times at which the 1-bit signal ``name`` goes to 1."""
        times = []
        self.wave.stream_changes(lambda t, _, v: times.append(t) if v == 1 else None, [self.vars[name]])
        return times

    def at(self, name, t):
        """The value of ``name`` at time t (0 before its first change; x and z read as 0)."""
        if name not in self._signals:
            self._signals[name] = self.vars[name].signal
        v = self._signals[name].value_at(t)
        if v is None:
            return 0
        return v if isinstance(v, int) else int(str(v).lower().replace("x", "0").replace("z", "0"), 2)


def _prefix(names):
    for n in names:
        if n.endswith(WRITE_PORT):
            return n[:-len(WRITE_PORT)]
    raise WaveError(f"the trace has no signal named *{WRITE_PORT}: it is not of an nnhil accelerator")


def read_writes(path, expected, logits):
    """Every write to the layer's output in the trace at ``path``, sampled before each rising
    clock edge, against ``expected`` (the integer model's output of the layer; ``logits``: the
    last layer's, written as words): (its signals, the accelerator's name prefix, the (first,
    last) clock edge's time, the :class:`Write` list, the first wrong one or None)."""
    s = _Signals(path)
    p = _prefix(s.names())
    clk = next((n for n in s.names() if n == "sys_clk"), None)
    if clk is None:
        raise WaveError(f"{path} has no sys_clk: not a trace of the nnhil sim SoC")
    edges = s.rising_edges(clk)
    flat = np.asarray(expected).reshape(-1)
    writes = []
    for t in edges[1:]:
        before = t - 1                     # the registered state this edge acts on
        if logits:
            if not s.at(p + "requant_logit_we", before):
                continue
            j = s.at(p + "requant_out_adr", before)
            raw = s.at(p + "requant_out_dat", before)
            bits = s.width(p + "requant_out_dat")
            got = raw - (1 << bits) if raw >> (bits - 1) else raw
            word = j + s.at(p + "sequencer_out_base", before)
            writes.append(Write(t, s.at(p + "sequencer_cycles", before), j, word, got, int(flat[j])))
            continue
        we, we_next = s.at(p + "requant_act_we", before), s.at(p + "requant_act_we_next", before)
        if not (we or we_next):
            continue
        j = s.at(p + "requant_out_adr", before)
        dat = s.at(p + "requant_out_dat", before)
        base = 4 * s.at(p + "sequencer_out_base", before)
        cycle = s.at(p + "sequencer_cycles", before)
        for n, on in ((0, we), (1, we_next)):
            if on and j + n < flat.size:
                writes.append(Write(t, cycle, j + n, base + j + n, (dat >> (8 * n)) & 0xFF, int(flat[j + n])))
    first_wrong = next((w for w in writes if w.value != w.expected), None)
    span = (edges[0], edges[-1]) if edges else (0, 0)
    return s, p, span, writes, first_wrong


def lanes_of(shape, lanes, channel):
    """The MAC lanes that compute ``channel`` of a layer of layout.LayerShape ``shape``: lane
    channel mod lanes of each of its G lane groups (a split dense layer's, or a conv's pairs)."""
    g = max(shape.groups(lanes), shape.pairs(lanes))
    per = lanes // g
    return [i * per + channel % per for i in range(g)]


def groups(names, prefix, lanes):
    """The save file's groups: [(title, [signal names])], each signal one of ``names``; ``lanes``
    the MAC lanes of the differing channel."""
    def pick(*stems, exact=()):
        got = [n for n in names if n.startswith(prefix) and any(n[len(prefix):].startswith(s) for s in stems)]
        got += [prefix + e for e in exact if prefix + e in names]
        return sorted(set(got), key=names.index)
    lane_re = re.compile(rf"^{re.escape(prefix)}mac_[a-z_]+?({'|'.join(map(str, lanes))})$")
    return [
        ("sequencer: layer, position, lane group", ["sys_clk"] + pick(exact=(
            "sequencer_cycles", "sequencer_layer", "sequencer_valid", "sequencer_first", "sequencer_last",
            "sequencer_split", "sequencer_pair", "sequencer_tile_out", "sequencer_tile_chan",
            "sequencer_addressgenerator_pos", "sequencer_addressgenerator_tile",
            "sequencer_addressgenerator_step"))),
        ("address generator: read addresses", pick(exact=(
            "sequencer_addr", "sequencer_w_adr", "w_port_adr", "word", "odd"))),
        (f"MAC lanes {', '.join(map(str, lanes))}", [n for n in names if lane_re.match(n)]),
        ("requantizer pipeline", pick("requant_")),
        ("activation buffer write port", pick("a_ports_memory", "l_port_", exact=("j_next",))),
    ]


SHOWN_CYCLES = 16     # the save file opens on this many cycles before the marker
ZOOM = -23            # GTKWave's zoom: about 32 cycles of the sim's 1 MHz clock (1 us, FST in ps) in 800 pixels


def save_file(path, fst, signals, prefix, lanes, marker_ps, window_ps, period_ps):
    """A GTKWave save file for ``fst``: the groups of :func:`groups`, the marker at ``marker_ps``
    (the view opening SHOWN_CYCLES clock periods before it)."""
    names = signals.names()
    start = window_ps[0] if marker_ps is None else max(window_ps[0], marker_ps - SHOWN_CYCLES * period_ps)
    lines = [f'[dumpfile] "{Path(fst).resolve()}"', f"[timestart] {start}",
             f"*{ZOOM:.6f} {marker_ps if marker_ps is not None else -1} " + " ".join(["-1"] * 26),
             "[size] 1400 1300", "[pos] 0 0", "[sst_width] 120", "[signals_width] 430", "[sst_expanded] 0"]
    for title, members in groups(names, prefix, lanes):
        lines += ["@800200", f"-{title}"]
        for n in members:
            w = signals.width(n)
            lines += ["@28" if w == 1 else "@22",
                      signals.full_name(n) + (f"[{w - 1}:0]" if w > 1 else "")]
        lines += ["@1000200", f"-{title}"]
    Path(path).write_text("\n".join(lines) + "\n")
    return [n for _, members in groups(names, prefix, lanes) for n in members]


def dump_timeout(window):
    """Seconds the traced sim may spend dumping the (first, last) cycle ``window``, and waiting
    for its file once the layer has run."""
    return max(CLOSE_FLOOR_S, (window[1] - window[0] + 1) / DUMP_CYCLES_PER_S)


def record(dut, image, k, path, timeout=None):
    """Run ``image`` to the end of layer k on ``dut``, a DUT on a traced sim started with
    $NNHIL_TRACE_FILE = ``path`` and its model loaded, with layer k's window armed; wait for the
    model to finish the file, at most ``timeout`` seconds (default :func:`dump_timeout` of the
    window). Each wait of the run gets the window's dump_timeout on top of the sim's pace: the
    sim runs slower while it dumps. Returns the window (first, last cycle)."""
    path, bridge = Path(path), dut.bridge
    if f"{TRACE_WINDOW}_first" not in bridge.csr.registers:
        raise WaveError(f"the SoC of {dut.build_dir} has no trace window: run the traced sim build "
                        f"(host.wave.traced_build)")
    first, last = layer_window(dut.compiled, k)
    bridge.csr_write(f"{TRACE_WINDOW}_first", first)
    bridge.csr_write(f"{TRACE_WINDOW}_last", last)
    bridge.csr_write(f"{TRACE_WINDOW}_control", 1)
    pace = bridge.pace
    bridge.pace = dataclasses.replace(pace, allowance_s=pace.allowance_s + dump_timeout((first, last)))
    try:
        dut.accelerator.run_layers(image, k + 1)
    finally:
        bridge.pace = pace
    timeout = dump_timeout((first, last)) if timeout is None else timeout
    deadline = time.monotonic() + timeout
    while not path.exists():
        dut.sim.check_alive()
        if time.monotonic() > deadline:
            closed = bridge.csr_read(TRACE_WINDOW + "_closed")
            raise WaveError(
                f"the traced sim did not finish {path} within {timeout:g} s of layer {k}'s end (its window, "
                f"cycles {first}-{last}, {'closed' if closed else 'NOT closed'} in the gateware): "
                + ("was the sim started with $NNHIL_TRACE_FILE naming that file (host.wave.trace_env)?"
                   if closed else "the window never saw those cycles of a run"))
        time.sleep(0.05)
    return first, last


def analyse(path, model, compiled, image, k, window, channel=None):
    """The :class:`Trace` of layer k of ``image`` in the FST at ``path``, and its save file
    (``path`` with .gtkw) showing ``channel``'s lanes (default: the first wrong write's channel)."""
    expected = program.layer_outputs(model, image[None])[k][0]
    signals, prefix, span, writes, wrong = read_writes(path, expected, k == compiled.n_layers - 1)
    trace = Trace(Path(path), k, window, span, len(signals.names()), writes, wrong)
    shape = compiled.shapes[k]
    if channel is None:
        channel = (wrong.index // (expected.size // len(expected)) if wrong else 0)
    trace.save_file = Path(path).with_suffix(".gtkw")
    save_file(trace.save_file, path, signals, prefix, lanes_of(shape, compiled.config.lanes, channel),
              wrong.time_ps if wrong else None, span, (span[1] - span[0]) // (window[1] - window[0] + 1))
    return trace


def trace_env(path):
    """The traced model's environment for one run: its own trace file."""
    return {"NNHIL_TRACE_FILE": str(Path(path).resolve())}


def capture(sim_build, model, image, k, path, channel=None, start_timeout=20.0):
    """Rerun ``image`` on the traced ``sim_build`` with layer k's window armed, the FST to
    ``path``, and :func:`analyse` it."""
    from .dut import DUT
    from .simulator import Simulator

    path = Path(path).resolve()
    for p in (path, path.with_name(path.name + ".part")):
        p.unlink(missing_ok=True)
    with Simulator(sim_build, start_timeout=start_timeout, env=trace_env(path)) as sim, \
            sim.bridge() as bridge:
        dut = DUT("sim", bridge, sim_build.dir, sim=sim)
        compiled = dut.load(model, verify=False)
        if not 0 <= k < compiled.n_layers:
            raise WaveError(f"layer {k}: the model has layers 0 to {compiled.n_layers - 1}")
        window = record(dut, image, k, path)
    return analyse(path, model, compiled, image, k, window, channel)


def traced_build(cfg, scope=buildcache.TRACE_SCOPES[0]):
    """The traced sim variant of ``cfg`` dumping ``scope``'s signals (the accelerator's, or
    "all" of the SoC's: a build of its own), built and cached on first use."""
    return buildcache.build_sim(cfg, variant=buildcache.SimVariant(trace=True, trace_scope=scope))


def trace_image(model, image, k, out_dir, index, cfg, channel=None, scope=buildcache.TRACE_SCOPES[0]):
    """Layer k of ``image`` on the traced variant of ``cfg`` for ``scope``: trace-<index>.fst and
    .gtkw in ``out_dir``; the :class:`Trace`."""
    build = traced_build(cfg, scope)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    return capture(build, model, image, k, Path(out_dir) / f"trace-{index}.fst", channel)


def diverging_layer(npz_path):
    """(layer, channel) of the first diverging layer in a host.divergence trace-<i>.npz (the first
    differing value's channel, or neuron), or None when every layer equals the model's."""
    with np.load(npz_path) as z:
        for k in range(len(z["cycles"])):
            diff = z[f"board_{k}"] != z[f"model_{k}"]
            if diff.any():
                return k, int(np.argwhere(diff)[0][0])
    return None


def wave_for_run(model, images, index, board_dir, cfg, scope=buildcache.TRACE_SCOPES[0]):
    """``nnhil run --wave`` (``--wave-all``: ``scope`` "all"): the waveform of image ``index``'s
    first diverging layer (its trace-<index>.npz from host.divergence in ``board_dir``), or of
    its last layer when none diverges; the report's lines."""
    found = diverging_layer(Path(board_dir) / f"trace-{index}.npz")
    k, channel = found if found else (len(program.layer_shapes(model)) - 1, None)
    why = f"layer {k}, the first to diverge" if found else f"layer {k} (the last: none diverges)"
    log.info(f"waveform of image {index}, {why}: rerunning it on the traced sim build")
    trace = trace_image(model, images[index], k, board_dir, index, cfg, channel, scope)
    return f"image {index}:\n" + trace.text()
