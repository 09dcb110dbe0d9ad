"""The accelerator's window address generator: which input and weight word each MAC cycle reads."""
from migen import *

from litex.gen import LiteXModule

from . import faults
from .layout import DIM_BITS as DIM, GEOM_BITS as G


class AddressGenerator(LiteXModule):
    """Walks a layer's windows: for each tile of ``lanes`` output channels, each output position
    (pr, pc) and, pooled, each of its four conv positions q, the window elements (ci, ky, kx).

    Each ``step`` issues one element: ``addr`` is its input byte address, ci h w + (r + ky) w
    + (c + kx) at conv position (r, c), and ``w_adr`` its weight word, w_base + t window + i.
    Both advance by adding strides (no multiplier): one register per loop level holds the
    address where that level started. ``clear`` restarts at the first element of a layer,
    ``init`` loads w_base. With the last element of a window (``last``) the ``*_more`` flags
    say which loop goes on; ``out_index``, ``chan``, ``merge`` and ``publish`` say where the
    window's sums go (see :class:`gateware.macarray.MACArray`).

    With ``pair`` (layout.LayerShape.pairs) a window is the output positions (pr, pc) and
    (pr, pc + 1), the second one's inputs in the lanes' second group (MACArray): ``addr``
    is the first's, and ``single`` says that a row's odd last window has only the first.

    ``select``: a fault build's fault_select (gateware.faults), None in an ordinary build.
    """
    def __init__(self, lanes, select=None):
        # The layer, from the sequencer.
        self.c_in   = Signal(DIM)
        self.kernel = Signal(G)
        self.width  = Signal(G)
        self.hw     = Signal(2*G)          # height * width: input channel stride
        self.pool   = Signal()
        self.pair   = Signal()             # two adjacent output positions per window
        self.window = Signal(DIM + 2*G)    # c_in k^2 weight words per tile
        self.plane  = Signal(2*G)          # output positions
        self.out_h, self.out_w = Signal(G), Signal(G)
        self.n_tiles = Signal(DIM - (lanes - 1).bit_length() + 1)
        self.w_base  = Signal(32)
        # Control.
        self.clear = Signal()              # restart at the layer's first window
        self.init  = Signal()              # load w_base
        self.step  = Signal()              # issue the current element, advance
        # The current element.
        self.addr  = Signal(DIM)
        self.w_adr = Signal(32)
        self.first = Signal()              # first element of its window
        self.last  = Signal()              # last element of its window
        # With ``last``: what comes after this window.
        self.phase_more = Signal()         # another conv position of the pool window
        self.col_more   = Signal()         # another output position in the row
        self.row_more   = Signal()         # another output row
        self.tile_more  = Signal()         # another tile
        # Where the current window's sums go.
        self.out_index = Signal(DIM)       # output index of its lane 0
        self.chan      = Signal(DIM)       # channel of its lane 0
        self.merge     = Signal()          # max-merge into the shadow bank (pool phases 1-3)
        self.publish   = Signal()          # last window of its output position
        self.single    = Signal()          # a pair's second position is past its row

        # # #

        lg_lanes  = (lanes - 1).bit_length()
        tile      = Signal(DIM)
        w_tile    = Signal(32)             # first weight word of the tile
        w_ptr     = self.w_adr
        out_base  = Signal(DIM)            # output index of the tile's channel 0 at position 0
        chan_base = Signal(DIM)
        pr, pc    = Signal(G), Signal(G)
        q         = Signal(2)
        pos       = Signal(DIM)            # output position pr * out_w + pc
        row_base  = Signal(DIM)            # input address of the position's top-left conv position
        pos_addr  = Signal(DIM)
        ci        = Signal(DIM)
        ky, kx    = Signal(G), Signal(G)
        addr      = self.addr
        row_addr  = Signal(DIM)
        chan_addr = Signal(DIM)
        pool, width = self.pool, self.width
        step_col  = Mux(pool, 2, 1) << self.pair   # input columns from one window to the next
        pc_next   = Signal(G + 1)
        pos_next  = Signal(DIM)
        step_row  = Mux(pool, width << 1, width)
        row_step  = faults.site(select, "kernel_row_stride", width, width + 1)   # next kernel row

        # The next window and its first input address.
        q_next    = Signal(2)
        next_base = Signal(DIM)
        self.comb += [
            q_next.eq(q + 1),
            self.single.eq(self.pair & (pc == self.out_w - 1)),
            pc_next.eq(pc + 1 + self.pair),
            pos_next.eq(pos + 1 + (self.pair & ~self.single)),
            self.phase_more.eq(pool & (q != 3)),
            self.col_more.eq((pc != self.out_w - 1) & ~(self.pair & (pc == self.out_w - 2))),
            self.row_more.eq(pr != self.out_h - 1),
            self.tile_more.eq(tile != self.n_tiles - 1),
            If(self.phase_more,
                next_base.eq(pos_addr + Mux(q_next[1], width, 0) + q_next[0]),
            ).Elif(self.col_more,
                next_base.eq(pos_addr + step_col),
            ).Elif(self.row_more,
                next_base.eq(row_base + step_row),
            ).Else(next_base.eq(0)),
        ]
        next_window = If(self.phase_more,
            q.eq(q_next),
        ).Elif(self.col_more,
            q.eq(0), pc.eq(pc_next), pos.eq(pos_next), pos_addr.eq(next_base),
        ).Elif(self.row_more,
            q.eq(0), pc.eq(0), pr.eq(pr + 1), pos.eq(pos_next),
            row_base.eq(next_base), pos_addr.eq(next_base),
        ).Else(
            q.eq(0), pc.eq(0), pr.eq(0), pos.eq(0), row_base.eq(0), pos_addr.eq(0),
            tile.eq(tile + 1),
            w_tile.eq(w_tile + self.window),
            w_ptr.eq(w_tile + self.window),
            out_base.eq(out_base + (self.plane << lg_lanes)),
            chan_base.eq(chan_base + lanes),
        )

        last_kx = kx == self.kernel - 1
        last_ky = ky == self.kernel - 1
        last_ci = ci == self.c_in - 1
        self.comb += [
            self.first.eq((ci == 0) & (ky == 0) & (kx == 0)),
            self.last.eq(last_kx & last_ky & last_ci),
        ]
        self.sync += [
            If(self.clear,
                [r.eq(0) for r in (tile, out_base, chan_base, pr, pc, q, pos, row_base, pos_addr,
                                   ci, ky, kx, addr, row_addr, chan_addr)],
            ),
            If(self.init, w_tile.eq(self.w_base), w_ptr.eq(self.w_base)),
            If(self.step,
                w_ptr.eq(w_ptr + 1),
                If(~last_kx,
                    kx.eq(kx + 1), addr.eq(addr + 1),
                ).Elif(~last_ky,
                    kx.eq(0), ky.eq(ky + 1),
                    row_addr.eq(row_addr + row_step), addr.eq(row_addr + row_step),
                ).Elif(~last_ci,
                    kx.eq(0), ky.eq(0), ci.eq(ci + 1),
                    chan_addr.eq(chan_addr + self.hw), row_addr.eq(chan_addr + self.hw),
                    addr.eq(chan_addr + self.hw),
                ).Else(   # the window is complete
                    kx.eq(0), ky.eq(0), ci.eq(0),
                    w_ptr.eq(w_tile),
                    addr.eq(next_base), row_addr.eq(next_base), chan_addr.eq(next_base),
                    next_window,
                )
            ),
        ]

        # explicit width: a sum inside a Verilog concatenation is as wide as its widest
        # operand, in Migen one more
        self.comb += [
            self.out_index.eq(out_base + pos),
            self.chan.eq(chan_base),
            self.merge.eq(pool & (q != 0)),
            self.publish.eq(~pool | (q == 3)),
        ]
