"""The ``fdem deblur`` and ``fdem presets`` flags (their commands: :mod:`fdem.cli.deblur`)."""

from __future__ import annotations

import argparse

from fdem.cli.deblur import cmd_deblur, cmd_presets
from fdem.method_table import method_names


def add_parsers(sub) -> None:
    """Add ``deblur`` and ``presets`` to an ``add_subparsers()`` object."""
    q = sub.add_parser("presets", help="list the diffusion presets and their resolved options")
    q.add_argument("--method", default="fastem-pigdm", help="the diffusion method to resolve them for (default: fastem-pigdm)")
    q.set_defaults(func=cmd_presets)
    p = sub.add_parser("deblur", help="deblur your images with any method (default: Fast EM PiGDM, shipped prior)")
    p.add_argument("images", nargs="*", help="blurry images (PNG/JPEG/TIFF..., RGB, RGBA or gray, 8 or 16 bit), "
                   "folders of them, glob patterns, or .npy observations written by `fdem blur`")
    p.add_argument("--sigma", help="noise level of the images, 255 scale, in [0, 255], or auto (default: estimated "
                   "from each image, printed and written with its outputs; reads low on JPEG files, docs/results.md)")
    p.add_argument("--method", default="fastem-pigdm", help=f"one of {', '.join(method_names())} (default: fastem-pigdm)")
    p.add_argument("--preset", help="diffusion methods: the named configuration to start from, one of those `fdem presets` "
                   "lists (default: photo); each option flag below overrides one of its fields")
    p.add_argument("--show", action="store_true", help="print the method's resolved options (preset and flags) and exit")
    p.add_argument("--prior", help="score UNet: guided-diffusion .pt (e.g. ffhq_10m.pt), a `fdem fit` checkpoint "
                   "or a shipped prior's name (default: bsds64, the shipped natural-image prior; small64: the 7-photo one)")
    p.add_argument("--prior-config", help="UNet architecture: ffhq256 (default for a user file), imagenet256, small64, kernel64 or a YAML of ADMConfig fields")
    p.add_argument("--prior-prefix", help="prefix of the UNet keys in the checkpoint (default: detected)")
    p.add_argument("--kernel-prior", help="blind-dps: kernel score UNet, a file or a shipped name (default: kernel-small32 for --kernel-size 32, else kernel-small64)")
    p.add_argument("--weights", help="mprnet: network weights (default: the shipped mprnet-small)")
    p.add_argument("--kernel-size", type=int, help="size of the estimated kernel, >= 3 (blind methods; default: the preset's, see --show)")
    p.add_argument("--particles", type=int, help="posterior samples per image, >= 1; the output is their mean (default: the preset's)")
    p.add_argument("--restarts", type=int, help="diffusion methods: run this many chains per image and keep the one that "
                   "explains the blurry image best (smallest residual |y - k*x|^2), >= 1; costs that many times the "
                   "network calls and memory (default: the preset's)")
    p.add_argument("--combine", help="with several chains: keep the best fit (best), the chains' mean image and "
                   "kernel (mean: a posterior mean, smoother) or the image the prior finds most natural (natural: "
                   "its smallest denoising loss, 4 more network calls per chain) (default: the preset's)")
    p.add_argument("--steps", type=int, help="network calls (diffusion steps), >= 2 (default: the preset's)")
    p.add_argument("--iters", type=int, help="selfdeblur: optimisation iterations, >= 1 (default 5000); diffusion methods: "
                   "HQS iterations of each M-step, >= 0 (default: the preset's)")
    p.add_argument("--seed", type=int, default=0, help="image j uses seed + j (default 0)")
    p.add_argument("--device", help="cpu or an accelerator (e.g. cuda, cuda:1; default: the accelerator if there is one)")
    p.add_argument("--max-memory", type=float, help="memory limit of a plan in GB (default: 80%% of the free memory "
                   "of the device); a larger plan is refused before it runs")
    p.add_argument("--max-side", type=int, help="downscale larger images to this side (aspect kept) before "
                   "deblurring; the result is that size: a blur larger than --kernel-size fits, and it runs faster")
    p.add_argument("--max-pixels", type=int, help="refuse images of more pixels than this (default 50,000,000)")
    p.add_argument("--border", help="diffusion methods: impute (photographs, the photo preset's: pad by the kernel radius, so the "
                   "circular blur model wraps inside a cropped margin, and treat that margin as missing data, refilled by "
                   "the model every step), smooth (the margin a smooth periodisation, taken as data), reflect (the margin "
                   "mirrored, taken as data) or circular (observations made by circular blur)")
    p.add_argument("--tile", type=int, help="diffusion methods: run the network on tiles of this side for larger images "
                   "(default: the prior's native size, at least 128, for images with a side over 256); one kernel and full-size FFTs for the whole image")
    p.add_argument("--overlap", type=int, help="overlap of neighbouring tiles in pixels, in [0, tile) (default: tile/4)")
    p.add_argument("--kernel-window", type=int, help="blind diffusion methods: on an image with a side over this, "
                   "estimate the kernel on the window of this side with the most detail, then restore the whole image "
                   "with it (one non-blind chain); 0: the whole image is the blind run's (default: the preset's)")
    p.add_argument("--sigma-floor", type=float, help="diffusion methods: the sampler takes the noise level as at least "
                   "this, 255 scale (ΠGDM with few steps inverts too hard at low sigma; default: the preset's)")
    p.add_argument("--linear-light", action=argparse.BooleanOptionalAction, default=None, help="diffusion methods: "
                   "deblur the sRGB-decoded light (a camera blurs light before its tone curve) and encode the result "
                   "back (default: the preset's; docs/design.md §18)")
    p.add_argument("--saturation", help="diffusion methods: pixels at or above this level in any channel (and the "
                   "--saturation-reach box around them) are missing data, as clipped lamps break the blur model; a level in "
                   "(0, 1] or off (default: the preset's; docs/design.md §15)")
    p.add_argument("--saturation-reach", type=int, help="with --saturation: the side of the box around each clipped pixel "
                   "also left out, >= 1 (default: the preset's, 1: the clipped pixels alone)")
    p.add_argument("--missing", help="diffusion methods: how the M-step treats unobserved pixels (imputed margin, "
                   "saturation): impute (refilled with the model's prediction) or exclude (left out, exact least "
                   "squares; docs/design.md §15) (default: the preset's)")
    p.add_argument("--kernel-grid", help="diffusion methods: the blur varies across the frame, estimate a field of GxH "
                   "kernels blended by smooth windows (e.g. 3x3; 1x1: one kernel; given without --preset, the field "
                   "preset; auto: one kernel first, then the field preset's grid for the photos whose verdict finds "
                   "the blur varying; docs/design.md §19)")
    p.add_argument("--field-shrink", type=float, help="with --kernel-grid: each cell's kernel is pulled this fraction "
                   "towards the cells' mean at every step, in [0, 1) (default: the preset's)")
    p.add_argument("--field-gate", type=float, help="with --kernel-grid: a cell keeps the share g/(g + GATE) of its "
                   "kernel's difference from the whole image's kernel, g how much better it explains its window's data "
                   "(sigma^2 per pixel); >= 0, 0 off (default: the preset's)")
    p.add_argument("--field-solve", help="with --kernel-grid: the cells' M-step data step, windowed (each cell on its "
                   "window's data) or joint (all cells at once, the exact product-convolution least squares; "
                   "docs/design.md §19) (default: the preset's)")
    p.add_argument("--max-batch", type=int, help="tiles per network call, >= 1 (default: the preset's); bounds the peak memory")
    p.add_argument("--out", help="output folder (made when the first image is done; required)")
    p.add_argument("--true-kernel", help="kernel .npy or bank: required by dps/pigdm; blind methods only report the kernel MSE")
    p.add_argument("--step-rule", help="diffusion methods: ddpm (ancestral), ddim, or mean (PiGDM methods: DDIM from the posterior mean, no VJP; docs/design.md §8)")
    p.add_argument("--start", type=float, help="diffusion methods: start from the observation noised to start·T, in (0, 1]; "
                   "the --steps then cover [0, start·T] (1 = from pure noise; default: the preset's)")
    p.add_argument("--kernel-init", help="blind diffusion methods: where the kernel starts, dirac (the paper's), l0 (the l0 baseline's), "
                   "alternation (the prior-free Wiener alternation's kernel; docs/design.md §11), coarse (Fast EM at half size, §14) "
                   "or streak (the clipped light streaks of a night photo, on the whole photo; the alternation's where there are none, §15)")
    p.add_argument("--kernel-relax", type=float, help="blind diffusion methods: over-relaxation γ of each M-step from its "
                   "warm start, in (0, 4) (1: the paper's; default: the preset's; docs/design.md §12)")
    p.add_argument("--kernel-uncertainty", type=float, help="blind PiGDM methods: kappa >= 0, how far the guidance "
                   "counts the kernel's error as noise (0: the kernel taken as exact; default: the preset's; docs/design.md §14)")
    p.add_argument("--passes", type=int, help="Fast EM: runs of the sampler, each started from the last one's kernel, >= 1 "
                   "(default: the preset's)")
    p.add_argument("--refine", action=argparse.BooleanOptionalAction, default=None, help="blind diffusion methods: "
                   "run the sampler again, non-blind, with the blind run's last kernel (twice the calls; default: the preset's)")
    p.add_argument("--eta", type=float, help="ddim: noise level in [0, 1] (1: ancestral variance, 0: deterministic; default: the preset's)")
    p.add_argument("--r2-rule", help="PiGDM's r^2: official (the authors' code) or paper (the paper's 1 - abar)")
    p.add_argument("--weighting", help="M-step data weight: official (the authors' alpha = sigma^2 beta) or paper (Eqs. 24, 33)")
    p.add_argument("--recenter", help="Fast EM's kernel re-centring: spline (the authors'), bilinear (fdem's) or none")
    p.add_argument("--lam", type=float, help="M-step PnP weight, >= 0 (default: the kernel denoiser's own)")
    p.add_argument("--lam-rule", help="fixed (lambda as given) or noise (Fast EM: lambda x3, x2 from sigma = 20/255)")
    p.add_argument("--em-iters", type=int, help="outer iterations of Diffusion EM, >= 1 (default: the preset's)")
    p.add_argument("--kernel-denoiser", help="kernel denoiser state_dict (default: the shipped one)")
    p.add_argument("--trace", action="store_true", help="also save the progress (x0 estimate and kernel)")
    p.add_argument("--trace-every", type=int, help="steps between trace frames, >= 1 (default 10; needs --trace)")
    p.add_argument("--trace-format", default="gif", help="gif (animation) or png (grid of frames) (default: gif)")
    p.set_defaults(func=cmd_deblur)
