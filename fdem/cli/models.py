"""``fdem export`` and ``fdem sample``: a trained network's weights, and what its prior draws."""

from __future__ import annotations

import argparse

from fdem.cli.args import add_int, add_seed, add_steps, output_file
from fdem.validate import check_int


def cmd_export(args: argparse.Namespace) -> None:
    """Export the network weights of a ``fdem fit`` checkpoint as a plain state_dict file."""
    from fdem.export import export_checkpoint

    path = export_checkpoint(args.checkpoint, args.out)
    print(f"wrote {path}")


def cmd_sample(args: argparse.Namespace) -> None:
    """Draw unconditional samples from a score prior and write them as a PNG grid."""
    from fdem.devices import resolve_device
    from fdem.imageio import save_image
    from fdem.priors import load_prior
    from fdem.sampling.unconditional import sample_grid, sample_unconditional

    device = resolve_device(args.device)
    # the prior's own schedule (T = 1000 linear for a file without one); --T/--schedule override it
    prior = load_prior(args.prior, args.prior_config, device=device).overriding(T=args.T, kind=args.schedule)
    check_int(args.steps, "--steps", 2, prior.schedule.T)  # at most the prior's T
    samples = sample_unconditional(prior.net, args.n, steps=args.steps, schedule=prior.schedule, seed=args.seed)
    save_image(args.out, sample_grid(samples))
    print(f"wrote {args.n} samples ({args.steps} steps) to {args.out}")


def add_parsers(sub) -> None:
    """Add ``export`` and ``sample`` to an ``add_subparsers()`` object."""
    p = sub.add_parser("export", help="write a checkpoint's network weights as a state_dict .pt")
    p.add_argument("checkpoint", help="a `fdem fit` checkpoint (.ckpt)")
    p.add_argument("--out", required=True, help="output .pt file (written atomically)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("sample", help="unconditional samples of a score prior as a PNG grid")
    p.add_argument("--prior", required=True, help="guided-diffusion .pt state_dict, a `fdem fit` checkpoint, or a shipped prior's name (bsds64, small64, kernel-small32, kernel-small64)")
    p.add_argument("--prior-config", help="UNet architecture: a named config or a YAML of ADMConfig fields (default: from the checkpoint, else ffhq256)")
    add_int(p, "--n", minimum=1, maximum=1024, default=16, help="number of samples, in [1, 1024]")
    add_steps(p, "--steps", default=100, help="respaced DDPM steps, in [2, T]")
    add_int(p, "--T", minimum=2, maximum=100_000, help="training timesteps (default: the checkpoint's, else 1000)")
    p.add_argument("--schedule", choices=["linear", "cosine"], help="beta schedule (default: the checkpoint's, else linear)")
    add_seed(p, "--seed", default=0, help="random seed")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    p.add_argument("--out", required=True, type=output_file(".png"), help="PNG grid")
    p.set_defaults(func=cmd_sample)
