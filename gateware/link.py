"""The board's clock and host link: one declaration for the gateware, the host and the tests.

The Arty's one USB-serial channel (an FTDI FT2232H) carries the Wishbone bridge and the
console. 2 Mbaud is exact on both ends: the FT2232H makes it as 12 MHz / 6, and LiteX's
UART at 100 MHz as 50 clocks per bit (1 and 3 Mbaud are the other usual LiteX rates; the
FT2232H goes to 12 Mbaud, but 3 Mbaud is 33.3 clocks per bit here). At 115200 baud, the
LiteX default, the weights of the default MLP and their read-back take about 19 s.
"""
CLOCK_HZ = 100_000_000          # sys_clk of the Arty SoC
BAUD = 2_000_000                # the bridge's UART, set into the Arty build and used by the host
