"""kwsbnn: binary neural-network keyword spotting, from PyTorch to an FPGA bitstream."""

__version__ = "0.1.0"
