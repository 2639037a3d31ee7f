"""``fdem export`` and ``fdem sample``: a trained network's weights, and what its prior draws."""

from __future__ import annotations

import argparse

from fdem.errors import InputError


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

    if args.n < 1:
        raise InputError(f"--n must be >= 1, got {args.n}")
    device = resolve_device(args.device)
    # the prior's own schedule (T = 1000 linear for a file without one); --T/--schedule override it
    prior = load_prior(args.prior, args.prior_config, device=device).overriding(T=args.T, kind=args.schedule)
    samples = sample_unconditional(prior.net, args.n, steps=args.steps, schedule=prior.schedule, seed=args.seed)
    save_image(args.out, sample_grid(samples))
    print(f"wrote {args.n} samples ({args.steps} steps) to {args.out}")


def add_parsers(sub) -> None:
    """Add ``export`` and ``sample`` to an ``add_subparsers()`` object."""
    p = sub.add_parser("export", help="write a checkpoint's network weights as a state_dict .pt")
    p.add_argument("checkpoint")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("sample", help="unconditional samples of a score prior as a PNG grid")
    p.add_argument("--prior", required=True, help="guided-diffusion .pt state_dict, a `fdem fit` checkpoint, or a shipped prior's name (small64, kernel-small64)")
    p.add_argument("--prior-config", help="UNet architecture: a named config or a YAML of ADMConfig fields (default: from the checkpoint, else ffhq256)")
    p.add_argument("--n", type=int, default=16, help="number of samples")
    p.add_argument("--steps", type=int, default=100, help="respaced DDPM steps")
    p.add_argument("--T", type=int, help="training timesteps (default: the checkpoint's, else 1000)")
    p.add_argument("--schedule", help="linear or cosine (default: the checkpoint's, else linear)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    p.add_argument("--out", required=True, help="PNG grid")
    p.set_defaults(func=cmd_sample)
