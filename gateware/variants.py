"""The Arty A7 boards nnhil builds for, named as litex-boards names them (``--variant``).

Each variant fixes its FPGA, the openFPGALoader board that programs it, and the accelerator
configuration its default build uses (a larger part gets a larger accelerator). Pure
Python, so the host, the build and the resource check share it without importing LiteX.
"""
import dataclasses

from .layout import AccelConfig


@dataclasses.dataclass(frozen=True)
class Variant:
    name: str                 # litex-boards' digilent_arty variant
    device: str               # key of resources.DEVICES
    part: str                 # the exact part on the board
    loader_board: str         # openFPGALoader -b
    accel: AccelConfig        # the default accelerator of this board's build
    ramb36_limit: int         # most RAMB36 (Yosys count) the default SoC may use: room for users


# The A7-35's accelerator is AccelConfig()'s defaults, which the sim runs by default: its sim
# twin. The A7-100 (135 RAMB36, 240 DSP48E1) doubles the lanes (128 DSPs, 3.2x the A7-35's
# weight bits: 3072 words of 1024 bits) and its two bias RAMB36 hold 1024 entries; its
# SoC must keep 10% of the block RAM free, as the A7-35's (45 of 50).
VARIANTS = {v.name: v for v in (
    Variant("a7-35", "xc7a35t", "xc7a35ticsg324-1L", "arty_a7_35t", AccelConfig(), ramb36_limit=45),
    Variant("a7-100", "xc7a100t", "xc7a100tcsg324-1", "arty_a7_100t",
            AccelConfig(lanes=128, weight_words=3072, bias_entries=1024), ramb36_limit=121),
)}
DEFAULT = "a7-35"


def get(name):
    try:
        return VARIANTS[name]
    except KeyError:
        raise ValueError(f"unknown Arty variant {name!r}: expected one of {', '.join(VARIANTS)}") from None
