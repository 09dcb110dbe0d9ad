"""Migen/LiteX gateware: the inference accelerator and the SoC around it."""
