"""The ``fdem`` sub-commands that are not LightningCLI: kernels, kernel-bench, export, demo."""

from __future__ import annotations

import argparse
from pathlib import Path

import fdem.configs
from fdem.errors import InputError

REPO_CONFIGS = Path(fdem.configs.__file__).parent  # installed with the package (package data)


def _key_value(text: str) -> tuple[str, object]:
    import yaml

    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    return key, yaml.safe_load(value)


def cmd_kernels(args: argparse.Namespace) -> None:
    """Write a seeded kernel bank (and optionally a preview grid)."""
    from fdem.kernels_gen import make_generator, save_bank, save_preview

    if args.count < 1:
        raise InputError(f"--count must be >= 1, got {args.count}")
    gen = make_generator(args.generator, args.size, **dict(args.param or []))
    kernels = gen.sample(args.count, seed=args.seed)
    save_bank(args.out, kernels, generator=gen, seed=args.seed)
    if args.preview:
        save_preview(kernels[:64], args.preview)
    print(f"wrote {args.count} {args.generator} kernels of {args.size}x{args.size} to {args.out}")
    if args.stats:
        print(stats_table(kernels))


def stats_table(kernels) -> str:
    """Markdown min / median / max of :func:`fdem.kernels_gen.kernel_stats` over a bank."""
    import pandas as pd

    from fdem.kernels_gen import kernel_stats

    stats = pd.DataFrame([kernel_stats(k) for k in kernels]).drop(columns=["com_row", "com_col"])
    lines = ["| statistic | min | median | max |", "|---|---|---|---|"]
    for name, col in stats.items():
        lines.append(f"| {name} | {col.min():.3g} | {col.median():.3g} | {col.max():.3g} |")
    return "\n".join(lines)


def cmd_kernel_bench(args: argparse.Namespace) -> None:
    """Figure 4: kernel estimation with ℓ1 / ℓ2 / PnP regularisation against σ."""
    from fdem.benchmarks.kernel_estimation import KernelBenchConfig, run_benchmark

    cfg = KernelBenchConfig.from_yaml(args.config)
    for name in ("out", "images", "device", "max_images"):
        if getattr(args, name) is not None:
            setattr(cfg, name, getattr(args, name))
    md = run_benchmark(cfg, config_path=Path(args.config) if args.tune else None, retune=args.tune)
    print(f"\nMean kernel MSE (test split), {md.parent}:\n")
    print(md.read_text())
    print(f"rows: {md.with_suffix('.csv')}\nplot: {md.with_suffix('.png')}")


def _sigma255(value: float, flag: str = "--sigma") -> float:
    if not value >= 0:  # also rejects NaN
        raise InputError(f"{flag} must be >= 0 (255 scale), got {value}")
    return value / 255


def cmd_blur(args: argparse.Namespace) -> None:
    """Make blurry, noisy observations: image i gets kernel i (cyclically) of a bank."""
    import numpy as np
    import torch

    from fdem.imageio import load_image, save_image
    from fdem.io_utils import atomic_path, ensure_writable_dir
    from fdem.physics import add_noise, blur
    from fdem.kernels_gen import load_bank

    sigma = _sigma255(args.sigma)
    kernels = load_bank(args.kernels)
    images = [(Path(p), load_image(p)) for p in args.images]  # everything is read before anything is written
    for path, img in images:
        if kernels.shape[-1] > min(img.shape[-2:]):
            raise InputError(f"kernels of {args.kernels} ({kernels.shape[-1]}x{kernels.shape[-1]}) are larger than image {path} {tuple(img.shape[-2:])}")
    out = ensure_writable_dir(args.out)
    g = torch.Generator().manual_seed(args.seed)
    for i, (path, img) in enumerate(images):
        k = kernels[i % len(kernels)][None]
        y = add_noise(blur(img[None], k), sigma, generator=g)[0]
        with atomic_path(out / f"{path.stem}_blurry.npy") as tmp:
            np.save(tmp, y.numpy())
        with atomic_path(out / f"{path.stem}_kernel.npy") as tmp:
            np.save(tmp, k[0, 0].numpy())
        save_image(out / f"{path.stem}_blurry.png", y)
    print(f"wrote {len(images)} observations to {out}")


def _load_observation(path: str):
    """A blurry image: ``.npy`` (float, unclipped, as ``fdem blur`` writes) or any image file."""
    import numpy as np
    import torch

    from fdem.imageio import load_image

    if path.endswith(".npy"):
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise InputError(f"cannot read {path}: {err}") from err
        if arr.ndim != 3 or not np.isfinite(arr).all():
            raise InputError(f"{path}: expected a finite (C, H, W) array, got shape {arr.shape}")
        return torch.from_numpy(arr.astype(np.float32))
    return load_image(path)


def cmd_estimate_kernel(args: argparse.Namespace) -> None:
    """The M-step alone: estimate the kernel from a sharp and a blurry image."""
    import numpy as np

    from fdem.imageio import load_image
    from fdem.io_utils import atomic_path
    from fdem.mstep import estimate_kernel
    from fdem.kernels_gen import save_preview

    sigma = _sigma255(args.sigma)
    sharp, blurry = load_image(args.sharp), _load_observation(args.blurry)
    if sharp.shape != blurry.shape:
        raise InputError(f"--sharp {args.sharp} {tuple(sharp.shape)} and --blurry {args.blurry} {tuple(blurry.shape)} differ in size")
    k = estimate_kernel(blurry[None], sharp[None], sigma, args.kernel_size, reg=args.reg, lam=args.lam, iters=args.iters)
    with atomic_path(args.out) as tmp:
        np.save(tmp, k[0, 0].numpy())
    save_preview(k, Path(args.out).with_suffix(".png"), ncol=1)
    print(f"wrote {args.out} and {Path(args.out).with_suffix('.png')}")


def cmd_export(args: argparse.Namespace) -> None:
    """Export the network weights of a ``fdem fit`` checkpoint as a plain state_dict file."""
    from fdem.export import export_checkpoint

    path = export_checkpoint(args.checkpoint, args.out)
    print(f"wrote {path}")


def cmd_sample(args: argparse.Namespace) -> None:
    """Draw unconditional samples from a score prior and write them as a PNG grid."""
    import torch

    from fdem.imageio import save_image
    from fdem.priors import load_prior, read_checkpoint, resolve_prior
    from fdem.sampling.unconditional import sample_grid, sample_unconditional

    if args.n < 1:
        raise InputError(f"--n must be >= 1, got {args.n}")
    path, config = resolve_prior(args.prior, args.prior_config)
    hparams = read_checkpoint(path)[1]  # a `fdem fit` checkpoint knows its schedule
    T = args.T or hparams.get("T", 1000)
    schedule = args.schedule or hparams.get("schedule", "linear")
    net = load_prior(path, config=config, device=torch.device(args.device))
    samples = sample_unconditional(net, args.n, steps=args.steps, T=T, schedule=schedule, seed=args.seed)
    save_image(args.out, sample_grid(samples))
    print(f"wrote {args.n} samples ({args.steps} steps) to {args.out}")


def cmd_bench(args: argparse.Namespace) -> dict:
    """Run a benchmark config: methods × images × kernels × σ → rows, tables, plots (resumable)."""
    from fdem.benchmarks.run import BenchConfig, run_benchmark
    from fdem.benchmarks.speed_grid import is_speed_config, run_speed_config

    if is_speed_config(args.config):  # a `speed:` grid (issue 7), not a restoration benchmark
        return run_speed_config(args.config, vars(args))
    cfg = BenchConfig.from_yaml(args.config)
    if args.out:
        cfg.out = args.out
    if args.max_images is not None:
        if args.max_images < 1:
            raise InputError(f"--max-images must be >= 1, got {args.max_images}")
        cfg.data["num_images"] = args.max_images
    if args.methods:
        cfg.methods = _select_methods(cfg.methods, args.methods, args.config)
    for key in ("accelerator", "devices", "strategy", "num_nodes"):
        value = getattr(args, key)
        if value is not None:
            cfg.trainer[key] = value
    written = run_benchmark(cfg, progress=not args.no_progress)
    if written:
        print()
        if "table1.md" in written:
            print(written["table1.md"].read_text())
        for name, path in written.items():
            print(f"{name}: {path}")
    return written


def _select_methods(entries: list, wanted_text: str, config: str) -> list:
    """The config's method entries whose name or label is in the comma-separated ``wanted_text``."""
    wanted = {w.strip() for w in wanted_text.split(",") if w.strip()}

    def names(entry) -> set[str]:
        return {entry} if isinstance(entry, str) else {entry.get("method"), entry.get("label")}

    chosen = [e for e in entries if names(e) & wanted]
    missing = sorted(wanted - set().union(*(names(e) for e in entries)))
    if missing or not chosen:
        raise InputError(f"--methods: {missing or sorted(wanted)} not in {config}")
    return chosen


def cmd_demo(args: argparse.Namespace) -> None:
    """The whole benchmark on the shipped models and bundled photos, on a CPU, in minutes."""
    args.config = str(REPO_CONFIGS / "bench" / "demo.yaml")
    cmd_bench(args)


DEBLUR_OPTIONS = ("prior", "prior_config", "prior_prefix", "kernel_size", "particles", "steps", "mode", "lam",
                  "em_iters", "kernel_denoiser", "iters", "weights", "kernel_prior")


def cmd_deblur(args: argparse.Namespace) -> None:
    """Deblur your images with any method (default: Fast EM ΠGDM on the shipped prior)."""
    from fdem.deblur import deblur_files

    options = {k: getattr(args, k) for k in DEBLUR_OPTIONS if getattr(args, k) is not None}
    if args.trace:
        options["trace_every"] = args.trace_every or 10
    elif args.trace_every is not None:
        raise InputError("--trace-every needs --trace")
    deblur_files(
        args.images, args.out, method=args.method, sigma=_sigma255(args.sigma), seed=args.seed, device=args.device,
        true_kernel=args.true_kernel, trace_format=args.trace_format, **options,
    )


def cmd_speed(args: argparse.Namespace) -> None:
    """Time the samplers on a random-weight UNet and a random blurry batch (median wall time)."""
    from fdem.benchmarks.speed import markdown_table, parse_list, run_speed, write_csv

    rows = run_speed(
        parse_list(args.methods, "--methods"), args.unet, args.size, parse_list(args.batch, "--batch", int),
        particles=args.particles, steps=args.steps, device=args.device, repeats=args.repeats,
        warmup=args.warmup, seed=args.seed, threads=args.threads,
    )
    print(markdown_table(rows))
    print(f"rows: {write_csv(rows, args.out)}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fdem",
        description="Fast Diffusion EM. Training: fdem fit|validate|test|predict --config X.yaml (LightningCLI).",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("kernels", help="write a seeded kernel bank (.npz)")
    p.add_argument("--generator", default="camera-shake")
    p.add_argument("--size", type=int, default=33)
    p.add_argument("--count", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--param", type=_key_value, action="append", metavar="KEY=VALUE", help="generator parameter")
    p.add_argument("--out", required=True)
    p.add_argument("--preview", help="PNG grid of (up to 64 of) the kernels")
    p.add_argument("--stats", action="store_true", help="print min/median/max shape statistics of the bank")
    p.set_defaults(func=cmd_kernels)

    p = sub.add_parser("kernel-bench", help=cmd_kernel_bench.__doc__.splitlines()[0])
    p.add_argument("--config", default=str(REPO_CONFIGS / "bench" / "kernel_estimation.yaml"))
    p.add_argument("--tune", action="store_true", help="re-tune λ on the validation split and write it into the config")
    p.add_argument("--out", help="output folder (overrides the config)")
    p.add_argument("--images", help="folder of sharp images (overrides the config)")
    p.add_argument("--device", help="cpu, cuda, cuda:1, ... (overrides the config)")
    p.add_argument("--max-images", type=int, help="use only the first N images")
    p.set_defaults(func=cmd_kernel_bench)

    for name, func in (("bench", cmd_bench), ("demo", cmd_demo)):
        p = sub.add_parser(name, help=func.__doc__.splitlines()[0])
        if name == "bench":
            p.add_argument("--config", required=True, help="benchmark YAML (configs/bench/*.yaml)")
        p.add_argument("--out", help="output folder (overrides the config's out)")
        p.add_argument("--max-images", type=int, help="use only the first N images (overrides data.num_images)")
        p.add_argument("--methods", help="comma-separated subset of the config's methods (names or labels)")
        p.add_argument("--accelerator", help="cpu, gpu, auto (overrides trainer.accelerator)")
        p.add_argument("--devices", type=int, help="processes / GPUs per node (overrides trainer.devices)")
        p.add_argument("--strategy", help="auto, ddp, ddp_spawn (overrides trainer.strategy)")
        p.add_argument("--num-nodes", dest="num_nodes", type=int, help="nodes (overrides trainer.num_nodes)")
        p.add_argument("--no-progress", action="store_true", help="no progress bar")
        p.set_defaults(func=func)

    p = sub.add_parser("blur", help="blur (and add noise to) images with kernels from a bank")
    p.add_argument("images", nargs="+")
    p.add_argument("--kernels", required=True, help=".npz bank, PNG folder or MATLAB .mat")
    p.add_argument("--sigma", type=float, default=0.0, help="noise level, 255 scale")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_blur)

    p = sub.add_parser("estimate-kernel", help="the M-step alone: kernel from a sharp and a blurry image")
    p.add_argument("--sharp", required=True)
    p.add_argument("--blurry", required=True, help="image file or .npy written by `fdem blur`")
    p.add_argument("--sigma", type=float, required=True, help="noise level, 255 scale")
    p.add_argument("--kernel-size", type=int, default=33)
    p.add_argument("--reg", default="pnp", choices=["pnp", "l1", "l2"])
    p.add_argument("--lam", type=float, help="regularisation weight (default: the authors' PnP λ)")
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--out", required=True, help="kernel .npy (a viewable .png is written beside it)")
    p.set_defaults(func=cmd_estimate_kernel)

    p = sub.add_parser("deblur", help="deblur your images with any method (default: Fast EM PiGDM, shipped prior)")
    p.add_argument("images", nargs="+", help="blurry images (PNG/JPEG/TIFF..., RGB, RGBA or gray, 8 or 16 bit)")
    p.add_argument("--sigma", type=float, required=True, help="noise level of the images, 255 scale")
    p.add_argument("--method", default="fastem-pigdm", help="fastem-pigdm (default), fastem-dps, diffem-pigdm, diffem-dps, "
                   "pigdm, dps, blind-dps, l0-anger, selfdeblur, mprnet, alternation")
    p.add_argument("--prior", help="score UNet: guided-diffusion .pt (e.g. ffhq_10m.pt), a `fdem fit` checkpoint "
                   "or a shipped prior's name (default: small64, the shipped natural-image prior)")
    p.add_argument("--prior-config", help="UNet architecture: ffhq256 (default for a user file), small64, kernel64 or a YAML of ADMConfig fields")
    p.add_argument("--prior-prefix", help="prefix of the UNet keys in the checkpoint (default: detected)")
    p.add_argument("--kernel-prior", help="blind-dps: kernel score UNet, a file or a shipped name (default: kernel-small64)")
    p.add_argument("--weights", help="mprnet: network weights (default: the shipped mprnet-small)")
    p.add_argument("--kernel-size", type=int, help="size of the estimated kernel (blind methods; default 33)")
    p.add_argument("--particles", type=int, help="posterior samples per image; the output is their mean (default 1)")
    p.add_argument("--steps", type=int, help="diffusion steps (default: 100 for PiGDM methods, 1000 for DPS ones)")
    p.add_argument("--iters", type=int, help="selfdeblur: optimisation iterations (default 5000)")
    p.add_argument("--seed", type=int, default=0, help="image j uses seed + j")
    p.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: the accelerator if there is one)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--true-kernel", help="kernel .npy or bank: required by dps/pigdm; blind methods only report the kernel MSE")
    p.add_argument("--mode", help="official (the authors' code, default) or paper (the paper's equations)")
    p.add_argument("--lam", type=float, help="M-step PnP weight (default: tuned for the shipped kernel denoiser)")
    p.add_argument("--em-iters", type=int, help="outer iterations of Diffusion EM (default 10)")
    p.add_argument("--kernel-denoiser", help="kernel denoiser state_dict (default: the shipped one)")
    p.add_argument("--trace", action="store_true", help="also save the progress (x0 estimate and kernel)")
    p.add_argument("--trace-every", type=int, help="steps between trace frames (default 10; needs --trace)")
    p.add_argument("--trace-format", default="gif", help="gif (animation) or png (grid of frames)")
    p.set_defaults(func=cmd_deblur)

    from fdem.metrics.cli import add_parser as add_metrics_parser

    add_metrics_parser(sub)
    from fdem.bench_data_cli import add_parser as add_bench_data_parser

    add_bench_data_parser(sub)

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

    p = sub.add_parser("speed", help="time the samplers (random-weight UNet, random blurry batch); CSV + Markdown table")
    p.add_argument("--unet", default="small64", help="small64 (default), ffhq256, kernel64 or a YAML of ADMConfig fields")
    p.add_argument("--size", type=int, default=64, help="image side (a multiple of the UNet's 2^(levels-1))")
    p.add_argument("--methods", default="fastem-pigdm,pigdm", help="comma-separated method names")
    p.add_argument("--batch", default="1,4", help="comma-separated batch sizes")
    p.add_argument("--particles", type=int, default=1)
    p.add_argument("--steps", type=int, help="respaced steps (default: 100 for PiGDM methods, 1000 for DPS ones)")
    p.add_argument("--repeats", type=int, default=3, help="timed calls per row (the median is reported)")
    p.add_argument("--warmup", type=int, default=1, help="untimed calls before timing")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    p.add_argument("--out", default="speed.csv", help="CSV of the rows")
    p.set_defaults(func=cmd_speed)
    return parser


def run_command(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    args.func(args)
