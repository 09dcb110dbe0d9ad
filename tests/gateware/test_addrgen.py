"""The AddressGenerator alone (Migen simulation) against a Python walk of each layer's windows.

For every MAC cycle of a layer: the input byte address ci h w + (r + ky) w + (c + kx) at
conv position (r, c), the weight word w_base + t window + i, the first/last flags, and at
each window's end where its sums go and which loop goes on. Shapes: dense, 1x1, whole-input
and odd kernels, pools dropping a row and a column, one and several tiles, position pairs
(LayerShape.pairs) of even and odd rows.
"""
import pytest
from migen.sim import run_simulation

from nnhil.gateware import layout
from nnhil.gateware.addrgen import AddressGenerator
from nnhil.gateware.layout import LayerShape as S

LANES = 4


def reference(s, w_base):
    """Per MAC cycle: (addr, w_adr, first, last) and, on the last element, the window's place
    (out_index, chan, merge, publish, single) and (phase_more, col_more, row_more, tile_more).
    A pair's window is its first position's."""
    out = []
    oh, ow = s.out_hw
    pairs = s.pairs(LANES)
    n_tiles = layout.tiles(s.c_out, LANES)
    for t in range(n_tiles):
        for pr in range(oh):
            for pc in range(0, ow, pairs):
                for q in range(s.phases):
                    r, c = (2 * pr + q // 2, 2 * pc + q % 2) if s.pool else (pr, pc)
                    for i, (ci, ky, kx) in enumerate((ci, ky, kx) for ci in range(s.c_in)
                                                     for ky in range(s.kernel) for kx in range(s.kernel)):
                        last = i == s.window - 1
                        row = ((ci * s.height + r + ky) * s.width + c + kx, w_base + t * s.window + i,
                               int(i == 0), int(last))
                        if last:
                            row += ((t * LANES * s.plane + pr * ow + pc, t * LANES,
                                     int(s.pool and q != 0), int(not s.pool or q == 3),
                                     int(pairs == 2 and pc == ow - 1)),
                                    (int(s.pool and q != 3), int(pc + pairs < ow), int(pr != oh - 1),
                                     int(t != n_tiles - 1)))
                        out.append(row)
    return out


def simulate(layers):
    """The walk of each (shape, w_base), one layer after the other as the sequencer runs them."""
    ag = AddressGenerator(LANES)
    got = []

    def tb():
        for s, w_base in layers:
            oh, ow = s.out_hw
            params = dict(c_in=s.c_in, kernel=s.kernel, width=s.width, hw=s.height * s.width,
                          pool=int(s.pool), pair=int(s.pairs(LANES) == 2), window=s.window, plane=s.plane, out_h=oh, out_w=ow,
                          n_tiles=layout.tiles(s.c_out, LANES), w_base=w_base)
            for name, value in params.items():
                yield getattr(ag, name).eq(value)
            yield ag.step.eq(0)
            yield ag.clear.eq(1)
            yield
            yield ag.clear.eq(0)
            yield ag.init.eq(1)
            yield
            yield ag.init.eq(0)
            yield ag.step.eq(1)
            walk = []
            for _ in range(s.phases * s.windows(LANES) * s.window * layout.tiles(s.c_out, LANES)):
                yield
                row = ((yield ag.addr), (yield ag.w_adr), (yield ag.first), (yield ag.last))
                if row[-1]:
                    row += (((yield ag.out_index), (yield ag.chan), (yield ag.merge), (yield ag.publish),
                             (yield ag.single)),
                            ((yield ag.phase_more), (yield ag.col_more), (yield ag.row_more),
                             (yield ag.tile_more)))
                walk.append(row)
            got.append(walk)

    run_simulation(ag, tb())
    return got


SHAPES = [
    S.dense(5, 9),                       # three tiles of one window each
    S(3, 2, 3, 1, 6),                    # 1x1 conv, two tiles
    S(2, 3, 3, 3, 2),                    # whole-input kernel: one position
    S(2, 5, 7, 3, 5),                    # odd sizes, 3x3 over two channels
    S(1, 5, 7, 2, 3, pool=True),         # conv 4x6 -> pool 2x3
    S(2, 4, 5, 2, 5, pool=True),         # conv 3x4: the pool drops a row; two tiles
    S(1, 6, 3, 2, 1, pool=True),         # conv 5x2: drops a row, keeps both columns
    S(1, 5, 7, 2, 2, pool=True),         # pairs: pool 2x3, each row's last position alone
    S(2, 4, 5, 2, 2),                    # pairs: conv 3x4, two per row
    S(1, 3, 6, 2, 1),                    # pairs: conv 2x5
]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_walk_matches_the_reference(shape):
    assert simulate([(shape, 1000)]) == [reference(shape, 1000)]


def test_clear_restarts_each_layer():
    """Layers one after the other, each from its own first element and weight word."""
    layers = [(S(1, 4, 4, 2, 5, pool=True), 0), (S.dense(7, 3), 17), (S(2, 3, 4, 2, 9), 40)]
    assert simulate(layers) == [reference(s, w) for s, w in layers]
