"""Host side: the driver that talks to the SoC over its UART bridge, and the nnhil CLI."""
