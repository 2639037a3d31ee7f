"""``fdem bench``, ``fdem demo``, ``fdem kernel-bench``, ``fdem speed``: the benchmark front ends."""

from __future__ import annotations

import argparse
from pathlib import Path

from fdem.cli.args import REPO_CONFIGS, add_int, add_seed, add_steps, summary
from fdem.errors import InputError


def cmd_bench(args: argparse.Namespace) -> dict:
    """Run a benchmark config: methods × images × kernels × σ → rows, tables, plots (resumable)."""
    from fdem.benchmarks.run import BenchConfig, run_benchmark
    from fdem.benchmarks.speed_grid import is_speed_config, run_speed_config

    args.config = str(shipped_bench_config(args.config))
    if is_speed_config(args.config):  # a `speed:` grid (issue 7), not a restoration benchmark
        return run_speed_config(args.config, vars(args))
    cfg = BenchConfig.from_yaml(args.config)
    if args.out:
        cfg.out = args.out
    if args.max_images is not None:
        cfg.data["num_images"] = args.max_images
    if args.methods:
        cfg.methods = select_methods(cfg.methods, args.methods, args.config)
    for key in ("accelerator", "devices", "strategy", "num_nodes"):
        value = getattr(args, key)
        if value is not None:
            cfg.trainer[key] = value
    written = run_benchmark(cfg, progress=not args.no_progress)
    if written:
        print()
        for table in ("table1.md", "compare.md"):
            if table in written:
                print(written[table].read_text())
        for name, path in written.items():
            print(f"{name}: {path}")
    return written


def select_methods(entries: list, wanted_text: str, config: str) -> list:
    """The config's method entries whose name or label is in the comma-separated ``wanted_text``."""
    wanted = {w.strip() for w in wanted_text.split(",") if w.strip()}

    def names(entry) -> set[str]:
        return {entry} if isinstance(entry, str) else {entry.get("method"), entry.get("label")}

    chosen = [e for e in entries if names(e) & wanted]
    missing = sorted(wanted - set().union(*(names(e) for e in entries)))
    if missing or not chosen:
        raise InputError(f"--methods: {missing or sorted(wanted)} not in {config}")
    return chosen


def shipped_bench_config(config: str) -> Path:
    """``config`` as a path, or, when no such file exists and it is a bare name, the shipped
    ``configs/bench/<name>.yaml`` (so ``fdem bench --config demo`` works from any directory)."""
    path = Path(config)
    shipped = REPO_CONFIGS / "bench" / f"{path.stem}.yaml"
    if not path.is_file() and path.parent == Path(".") and path.suffix in ("", ".yaml") and shipped.is_file():
        return shipped
    return path


def cmd_demo(args: argparse.Namespace) -> None:
    """The whole benchmark on the shipped models and bundled photos, on a CPU, in minutes."""
    args.config = str(REPO_CONFIGS / "bench" / "demo.yaml")
    cmd_bench(args)


def cmd_kernel_bench(args: argparse.Namespace) -> None:
    """Figure 4: kernel estimation with ℓ1 / ℓ2 / PnP regularisation against σ."""
    from fdem.benchmarks.kernel_estimation import KernelBenchConfig, run_benchmark
    from fdem.devices import resolve_device

    cfg = KernelBenchConfig.from_yaml(args.config)
    overrides = {name: getattr(args, name) for name in ("out", "images", "device", "max_images")}
    if args.device is not None:
        overrides["device"] = str(resolve_device(args.device))
    for name, value in overrides.items():
        if value is not None:
            setattr(cfg, name, value)
    md = run_benchmark(cfg, config_path=Path(args.config) if args.tune else None, retune=args.tune)
    print(f"\nMean kernel MSE (test split), {md.parent}:\n")
    print(md.read_text())
    print(f"rows: {md.with_suffix('.csv')}\nplot: {md.with_suffix('.png')}")


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


def add_bench_parsers(sub) -> None:
    """``bench`` and ``demo`` (the same flags; demo has a fixed config)."""
    for name, func in (("bench", cmd_bench), ("demo", cmd_demo)):
        p = sub.add_parser(name, help=summary(func))
        if name == "bench":
            p.add_argument("--config", required=True, help="benchmark YAML, or the name of a shipped one (demo, table1, table2, speed, ...)")
        p.add_argument("--out", help="output folder (overrides the config's out)")
        add_int(p, "--max-images", help="use only the first N images, N >= 1 (overrides data.num_images)")
        p.add_argument("--methods", help="comma-separated subset of the config's methods (names or labels)")
        p.add_argument("--accelerator", help="cpu, gpu, auto (overrides trainer.accelerator)")
        add_int(p, "--devices", maximum=1024, help="processes / GPUs per node, in [1, 1024] (overrides trainer.devices)")
        p.add_argument("--strategy", help="auto, ddp, ddp_spawn (overrides trainer.strategy)")
        add_int(p, "--num-nodes", dest="num_nodes", maximum=1024, help="nodes, in [1, 1024] (overrides trainer.num_nodes)")
        p.add_argument("--no-progress", action="store_true", help="no progress bar")
        p.set_defaults(func=func)


def add_kernel_bench_parser(sub) -> None:
    p = sub.add_parser("kernel-bench", help=summary(cmd_kernel_bench))
    p.add_argument("--config", default=str(REPO_CONFIGS / "bench" / "kernel_estimation.yaml"), help="kernel-estimation benchmark YAML")
    p.add_argument("--tune", action="store_true", help="re-tune λ on the validation split and write it into the config")
    p.add_argument("--out", help="output folder (overrides the config)")
    p.add_argument("--images", help="folder of sharp images (overrides the config)")
    p.add_argument("--device", help="cpu, cuda, cuda:1, ... (overrides the config)")
    add_int(p, "--max-images", help="use only the first N images, N >= 1")
    p.set_defaults(func=cmd_kernel_bench)


def add_speed_parser(sub) -> None:
    p = sub.add_parser("speed", help="time the samplers (random-weight UNet, random blurry batch); CSV + Markdown table")
    p.add_argument("--unet", default="small64", help="small64 (default), ffhq256, kernel64 or a YAML of ADMConfig fields")
    add_int(p, "--size", maximum=4096, default=64, help="image side, in [1, 4096] (a multiple of the UNet's 2^(levels-1))")
    p.add_argument("--methods", default="fastem-pigdm,pigdm", help="comma-separated method names")
    p.add_argument("--batch", default="1,4", help="comma-separated batch sizes")
    add_int(p, "--particles", maximum=1024, default=1, help="posterior samples per image, in [1, 1024]")
    add_steps(p, "--steps", help="respaced steps, in [2, 1000] (default: 100 for PiGDM methods, 1000 for DPS ones)")
    add_int(p, "--repeats", maximum=1000, default=3, help="timed calls per row, in [1, 1000] (the median is reported)")
    add_int(p, "--warmup", minimum=0, maximum=1000, default=1, help="untimed calls before timing, in [0, 1000]")
    add_seed(p, "--seed", default=0, help="seed of the random weights and batch")
    add_int(p, "--threads", maximum=1024, help="torch CPU threads, in [1, 1024] (default: torch's)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    p.add_argument("--out", default="speed.csv", help="CSV of the rows")
    p.set_defaults(func=cmd_speed)


def add_parsers(sub) -> None:
    """Add ``bench``, ``demo``, ``kernel-bench`` and ``speed`` to an ``add_subparsers()`` object."""
    add_bench_parsers(sub)
    add_kernel_bench_parser(sub)
    add_speed_parser(sub)
