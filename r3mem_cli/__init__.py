"""r3mem: a personal memory archive built on the R3Mem memory network."""

__version__ = "0.1.0"
