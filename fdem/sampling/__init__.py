"""Guided diffusion samplers: DPS, ΠGDM, Fast EM and Diffusion EM on one shared DDPM loop."""

from fdem.sampling.guidance import DPS, PiGDM, make_guidance, r2_schedule
from fdem.sampling.loop import guided_step, run_loop
from fdem.sampling.methods import run_method
from fdem.sampling.result import SamplingResult, Trace, TraceRecorder, save_trace

__all__ = [
    "DPS",
    "PiGDM",
    "SamplingResult",
    "Trace",
    "TraceRecorder",
    "guided_step",
    "make_guidance",
    "r2_schedule",
    "run_loop",
    "run_method",
    "save_trace",
]
