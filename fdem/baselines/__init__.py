"""Blind-deconvolution methods that are not diffusion samplers."""
