"""The exact cycle count the accelerator's ``cycles`` CSR reports (pure Python).

A run of L layers on P lanes takes, from the start pulse to done::

    1 + 7 L                              count check, then FETCH/LOAD/SIZE1-4/CHECK per layer
    + sum over layers of
        6                                FETCH, LOAD, SIZE1-4
        + T N m                          m = F n MAC cycles per window: F = 4 conv positions
                                         with a 2x2 pool (else 1) of n = c_in k^2 inputs (a
                                         dense layer of G lane groups: n = ceil(n_in / G)); N =
                                         windows per tile: the output positions, or for
                                         a conv of position pairs out_h ceil(out_w / 2)
                                         (LayerShape.windows); T channel tiles
        + (T - 1) N max(0, P - m)        after each window the requantizer sweeps the tile's
        + (N - 1) max(0, v - m)          v valid lanes (P, or v = c_out - (T - 1) P in the last
                                         tile; both positions of a pair at once) before the
                                         next window may reload the drain bank
        + v + MAC_LATENCY + PUBLISH_LATENCY + DRAIN_LATENCY + 1
                                         the last window drains
    + 1                                  FINISH

A run stopped after k layers (``stop_after`` = k) validates all L layers and runs the
first k: the sum is over those k.

A dense layer is one window per tile (N = F = 1, n = n_in), so it costs about T n_in +
n_out mod P; one of at most P/2 (P/4) outputs splits its fan-in over 2 (4) lane groups
and costs about n_in / 2 (n_in / 4). A conv layer with c_out <= P costs about N max(F n,
c_out): it is MAC-bound when a window has at least as many MAC cycles as the layer has
channels, else drain-bound (a pool's four conv positions share one drain); with position
pairs (c_out <= P/2) N is about half the positions. The
gateware takes its pipeline depths from here; the tests compare this model with the
hardware counter exactly.
"""
from . import layout, program

MAC_LATENCY = 4      # issue -> RAM data -> operands -> product -> accumulator
PUBLISH_LATENCY = 1  # shadow bank -> drain bank
DRAIN_LATENCY = 7    # sweep -> groups -> their sum -> + bias -> product -> product -> rounded -> shifted
VALIDATE_CYCLES = 7  # per layer: FETCH, LOAD, SIZE1-4, CHECK
LOAD_CYCLES = 6      # per layer when running: FETCH, LOAD, SIZE1-4


def layer_cycles(shape, lanes):
    """Cycles of one layout.LayerShape."""
    t = layout.tiles(shape.c_out, lanes)
    last_valid = shape.c_out - (t - 1) * lanes
    m, positions = shape.phases * shape.steps(lanes), shape.windows(lanes)
    return (LOAD_CYCLES + t * positions * m
            + (t - 1) * positions * max(0, lanes - m) + (positions - 1) * max(0, last_valid - m)
            + last_valid + MAC_LATENCY + PUBLISH_LATENCY + DRAIN_LATENCY + 1)


def layer_bound(shape, lanes):
    """What limits a layer's MACs/cycle: "drain" (a window's requantizer sweep of its v
    channels outlasts its m MAC cycles), "memory port" (the one activation read per cycle, of
    the adjacent bytes its lane groups take, feeds c_out x groups x pairs < lanes lanes) or "MAC" (every
    lane busy but for the pipeline tails)."""
    t = layout.tiles(shape.c_out, lanes)
    last_valid = shape.c_out - (t - 1) * lanes
    m = shape.phases * shape.steps(lanes)
    if shape.windows(lanes) > 1 and last_valid > m:
        return "drain"
    if min(shape.c_out, lanes) * shape.groups(lanes) * shape.pairs(lanes) < lanes:
        return "memory port"
    return "MAC"


def shape_cycles(shapes, lanes, stop_after=0):
    """Cycles of a program of layout.LayerShape layers, run to its end or ``stop_after`` layers."""
    ran = shapes[:stop_after] if stop_after else shapes
    return 1 + VALIDATE_CYCLES * len(shapes) + sum(layer_cycles(s, lanes) for s in ran) + 1


def cycles(model, cfg, stop_after=0):
    """Cycles per inference of an IntModel (they do not depend on the values), or of its
    first ``stop_after`` layers."""
    return shape_cycles(program.check_fits(model, cfg), cfg.lanes, stop_after)


def rejected_cycles(failing_layer=None):
    """Cycles of a start whose program is rejected: at the layer count or stop_after check
    (None) or a layer."""
    return 2 if failing_layer is None else 2 + VALIDATE_CYCLES * (failing_layer + 1)
