"""fdem: Fast Diffusion EM for blind image deconvolution."""

__version__ = "0.1.0"
