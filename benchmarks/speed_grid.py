"""``fdem bench --config configs/bench/speed.yaml``: the speed grid of issue 7.

A speed config has one top-level key, ``speed:``, holding the grid (see ``configs/bench/speed.yaml``):
methods × images per call × precision × compiled × channels-last (× CPU threads), each row timed by
:func:`fdem.benchmarks.speed.measure`. The first configuration is always fp32 eager in the standard
layout: it is the speed baseline and the reference of the equality columns (same data and seeds).
A ``cpu:`` mapping replaces keys when the run's device is a CPU (the small UNet at 64²).

Writes ``speed.csv`` (rewritten after every row, so a crash keeps what was measured), ``speed.md``
(table + speed-ups over the fp32 eager batch-1 row), ``speed.png`` (s/image against images per
call, log-log, one panel per method, one line per precision × compiled × layout × threads) and
``speed.json`` (config, device, versions, git commit). Compiled rows always get a warm-up call;
torch.compile's caches are reset between configurations and batch sizes.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from fdem.configio import load_yaml
from fdem.devices import resolve_device
from fdem.errors import InputError
from fdem.io_utils import atomic_write_text, ensure_writable_dir
from fdem.method_table import METHODS, lookup
from fdem.sampling.network_speed import SpeedOptions, accelerate

ALL_METHODS = [m.name for m in METHODS if m.speed_grid]  # a grid's default methods (the method table's)
BASELINE = SpeedOptions("fp32", False, False)


@dataclass
class SpeedGrid:
    """The grid of a speed config (``None`` in ``channels_last``/``threads``: the device default)."""

    out: str = "outputs/speed"
    title: str = "fdem speed"
    unet: str = "ffhq256"
    image_size: int = 256
    prior: str | None = None
    kernel_unet: str = "kernel64"
    methods: list = field(default_factory=lambda: list(ALL_METHODS))
    batches: list = field(default_factory=lambda: [1, 4, 16, 32])
    precisions: list = field(default_factory=lambda: ["fp32", "tf32", "bf16"])
    compile: list = field(default_factory=lambda: [False, True])
    channels_last: list = field(default_factory=lambda: [None])
    compile_mode: str = "default"
    threads: list = field(default_factory=lambda: [None])
    steps: int | None = None
    em_iters: int = 10
    particles: int = 1
    repeats: int = 3
    warmup: int = 1
    seed: int = 0
    images: str = "bundled"
    device: str = "auto"
    step_variants: list = field(default_factory=list)  # extra rows: {method, preset, field overrides}

    @classmethod
    def from_mapping(cls, raw: dict, source: str) -> "SpeedGrid":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise InputError(f"{source}: unknown speed keys {unknown}; valid: {', '.join(sorted(known))}")
        grid = cls(**raw)
        for name in ("methods", "batches", "precisions", "compile", "channels_last", "threads"):
            if not isinstance(getattr(grid, name), list) or not getattr(grid, name):
                raise InputError(f"{source}: speed.{name} must be a non-empty list")
        grid.step_variants = [check_variant(v, source) for v in grid.step_variants or []]
        return grid

    def rows_of(self, baseline: bool = True) -> list[tuple[str, dict]]:
        """``(method, step options)`` of every row at one configuration and batch: the grid's
        methods at ``steps`` (ancestral), then, at the ``baseline`` configuration only (a step
        costs the same under every rule, so the ratio does not depend on it), the step variants."""
        return [(m, {}) for m in self.methods] + ([(v["method"], v) for v in self.step_variants] if baseline else [])

    def options(self, device: torch.device) -> list[tuple[int | None, SpeedOptions]]:
        """``(threads, resolved options)`` per configuration, the fp32 eager baseline first; checked for ``device``."""
        found = [(self.threads[0], BASELINE)]
        for threads, precision, compiled, layout in itertools.product(self.threads, self.precisions, self.compile, self.channels_last):
            options = SpeedOptions(precision, layout, compiled, self.compile_mode).resolve(device)
            if (threads, options) not in found:
                found.append((threads, options))
        return found


def check_variant(raw, source: str) -> dict:
    """A ``step_variants`` entry: ``method`` (a guided diffusion method), ``preset`` (default ``paper``)
    and field overrides of it (``steps``, ``step_rule``, ``kernel_init``, …: :data:`fdem.presets.OVERRIDES`),
    checked by resolving them once; returns the method, ``run`` (the preset and overrides as given, what
    the restorer is built from) and the resolved options (for labels)."""
    from fdem.presets import DEFAULT_PRESET, resolve

    if not isinstance(raw, dict) or "method" not in raw:
        raise InputError(f"{source}: a step variant is a mapping with a method, a preset and field overrides; got {raw!r}")
    overrides = {k: v for k, v in raw.items() if k not in ("method", "preset")}
    try:
        spec = resolve(raw["method"], raw.get("preset", DEFAULT_PRESET), **overrides)
    except InputError as error:
        raise InputError(f"{source}: {error}") from None
    return {"method": spec.method, "run": {"preset": spec.preset, **overrides}, **spec.options()}


def is_speed_config(path: str | Path) -> bool:
    """Whether the YAML at ``path`` is a speed config (a top-level ``speed:`` mapping)."""
    return "speed" in load_yaml(path, "benchmark config")


def load_grid(path: str | Path, device: torch.device | None = None) -> tuple[SpeedGrid, torch.device]:
    """The grid of ``path`` for ``device`` (default: the config's, ``auto`` = the accelerator if any),
    with the ``cpu:`` overrides applied on a CPU."""
    raw = load_yaml(path, "benchmark config")
    if set(raw) != {"speed"} or not isinstance(raw["speed"], dict):
        raise InputError(f"{path}: a speed config is one mapping under the key 'speed'")
    body = dict(raw["speed"])
    cpu = body.pop("cpu", None) or {}
    if not isinstance(cpu, dict):
        raise InputError(f"{path}: speed.cpu must be a mapping of overrides")
    name = device or body.get("device", "auto")
    device = resolve_device(name)
    if device.type == "cpu":
        body.update(cpu)
    return SpeedGrid.from_mapping(body, str(path)), device


def apply_overrides(grid: SpeedGrid, overrides: dict) -> SpeedGrid:
    """``fdem bench`` flags on a speed grid: ``out`` and ``methods``; the grid runs on one device."""
    if overrides.get("out"):
        grid.out = overrides["out"]
    if overrides.get("methods"):
        wanted = [m.strip() for m in overrides["methods"].split(",") if m.strip()]
        missing = sorted(set(wanted) - set(grid.methods))
        if missing or not wanted:
            raise InputError(f"--methods: {missing or wanted} not in the speed grid ({', '.join(grid.methods)})")
        grid.methods = [m for m in grid.methods if m in wanted]
        grid.step_variants = [v for v in grid.step_variants if v["method"] in wanted]
    if (overrides.get("devices") or 1) > 1 or (overrides.get("num_nodes") or 1) > 1:
        raise InputError("the speed benchmark times one device: drop --devices/--num-nodes (see docs/multi_gpu.md)")
    if overrides.get("max_images") is not None:
        raise InputError("--max-images does not apply to a speed config: set speed.batches")
    return grid


def _device_from_accelerator(accelerator: str | None) -> str | None:
    if accelerator in (None, "auto"):
        return None
    if accelerator == "gpu":  # Lightning's generic name: this machine's accelerator type
        current = torch.accelerator.current_accelerator() if torch.accelerator.is_available() else None
        return current.type if current is not None else accelerator
    return accelerator


def run_grid(grid: SpeedGrid, device: torch.device, progress: bool = True) -> list[dict]:
    """Time every row of ``grid`` on ``device``; writes ``speed.csv`` after each row."""
    from tqdm import tqdm

    from fdem.benchmarks.speed import (
        _unet_name,
        build_prior,
        check_options,
        check_size,
        measure,
        write_csv,
    )

    check_options(grid.methods, grid.batches, particles=grid.particles, steps=grid.steps, repeats=grid.repeats,
                  warmup=grid.warmup)
    configs = grid.options(device)
    out = ensure_writable_dir(grid.out)
    prior = build_prior(grid.unet, device, grid.prior, grid.seed)
    net = prior.net
    check_size(net, grid.image_size)
    kernel_chain = any(lookup(m).kernel_chain for m in grid.methods)
    kernel_net = build_prior(grid.kernel_unet, device, seed=grid.seed).net if kernel_chain else None
    references: dict = {}
    rows: list[dict] = []
    previous_threads = torch.get_num_threads()
    total = (len(configs) * len(grid.methods) + len(grid.step_variants)) * len(grid.batches)
    bar = tqdm(total=total, desc="speed", unit="row", disable=not progress)
    try:
        with torch._dynamo.config.patch(recompile_limit=64):
            for threads, options in configs:
                torch.set_num_threads(threads or previous_threads)
                fast = accelerate(net, options, device)
                fast_kernel = accelerate(kernel_net, options, device) if kernel_net is not None else None
                for batch in grid.batches:
                    torch._dynamo.reset()
                    for index, (method, variant) in enumerate(grid.rows_of((threads, options) == configs[0])):
                        key = (method, batch) if not variant else (method, batch, index)
                        row, output = _measure_row(measure, grid, method, fast, fast_kernel, batch, device,
                                                   references.get(key), _unet_name(grid.unet),
                                                   prior.schedule, variant)
                        if (threads, options) == configs[0] and output is not None:
                            references[key] = tuple(t.detach().cpu() if t is not None else None for t in output)
                        rows.append(row)
                        write_csv(rows, out / "speed.csv")
                        bar.update()
    finally:
        bar.close()
        torch.set_num_threads(previous_threads)
    return rows


def _measure_row(measure, grid: SpeedGrid, method: str, net, kernel_net, batch: int, device: torch.device,
                 reference, unet_name: str, schedule, variant: dict | None = None) -> tuple[dict, tuple | None]:
    """One measured row (a step ``variant``'s steps and rule if given), or a row with the error when
    the device runs out of memory."""
    variant = variant or {}
    run = {k: v for k, v in variant.get("run", {}).items() if k != "steps"}
    steps = variant["steps"] if variant else grid.steps
    try:
        row, output = measure(
            method, net, grid.image_size, batch, particles=grid.particles, steps=steps, em_iters=grid.em_iters, run=run,
            device=device, repeats=grid.repeats, warmup=max(grid.warmup, int(net.options.compile)), seed=grid.seed,
            unet_name=unet_name, kernel_net=kernel_net, images=grid.images, reference=reference, schedule=schedule,
        )
        return {**row, "variant": variant_label(variant) if variant else None}, output
    except torch.OutOfMemoryError:
        if device.type != "cpu":
            torch.accelerator.empty_cache()
        return {"method": method, "batch": batch, **net.options.row(), "error": "out of memory"}, None


def variant_label(variant: dict) -> str:
    """``"100 ddpm"``, ``"20 ddim η=0"`` or ``"25 ddim η=1 from 0.5, alternation start, γ=2"``: a step
    variant's steps, rule, and the kernel's start and relaxation where not the paper's."""
    rule = variant["step_rule"] + (f" η={variant['eta']:g}" if variant["step_rule"] != "ddpm" else "")
    start = variant.get("start", 1.0)
    from fdem.benchmarks.speed import kernel_label

    return (f"{variant['steps'] or 'default'} {rule}" + (f" from {start:g}" if start < 1 else "")
            + kernel_label(variant.get("kernel_init"), variant.get("kernel_relax")))


def variant_ratios(rows: list[dict]) -> list[str]:
    """Markdown lines: per method, configuration and batch, each step variant's s/image and the
    first variant's s/image over it (the speed-up of a few-step rule over the first, e.g. 100-step
    ancestral, row), all timed in the same run."""
    groups: dict = {}
    for r in rows:
        if r.get("variant") and not r.get("error"):
            key = (r["method"], r["precision"], r["compiled"], r["channels_last"], r["threads"], r["batch"])
            groups.setdefault(key, []).append(r)
    lines = ["", "| method | configuration | batch | steps, rule | s/image | speed-up over the first |", "|---|---|---|---|---|---|"]
    for (method, precision, compiled, layout, threads, batch), mine in groups.items():
        config = f"{precision}, {'compiled' if compiled else 'eager'}, {'NHWC' if layout else 'NCHW'}, {threads} thread(s)"
        for r in mine:
            lines.append(f"| {method} | {config} | {batch} | {r['variant']} | {r['sec_per_image']:.4g} "
                         f"| {mine[0]['sec_per_image'] / r['sec_per_image']:.2f}× |")
    return lines if groups else []


def summary(rows: list[dict]) -> str:
    """Per method: the fp32 eager batch-1 row (first thread count) and the best row's speed-up over
    it (grid rows; step variants have their own table of ratios, :func:`variant_ratios`)."""
    from fdem.benchmarks.speed import markdown_table

    ratios = variant_ratios(rows)
    timed = [r for r in rows if not r.get("error")]
    grid_rows = [r for r in timed if not r.get("variant")]
    lines = [markdown_table(timed), "", "| method | fp32 eager batch 1 (s/image) | fastest row | s/image | speed-up | equal |",
             "|---|---|---|---|---|---|"]
    for method in dict.fromkeys(r["method"] for r in grid_rows):
        mine = [r for r in grid_rows if r["method"] == method]
        base = next((r for r in mine if r["batch"] == 1 and (r["precision"], r["compiled"], r["channels_last"]) ==
                     ("fp32", False, False)), None)
        best = min(mine, key=lambda r: r["sec_per_image"])
        if base is None:
            continue
        label = (f"batch {best['batch']}, {best['precision']}, {'compiled' if best['compiled'] else 'eager'}, "
                 f"{'channels-last' if best['channels_last'] else 'NCHW'}, {best['threads']} thread(s)")
        lines.append(f"| {method} | {base['sec_per_image']:.4g} | {label} | {best['sec_per_image']:.4g} "
                     f"| {base['sec_per_image'] / best['sec_per_image']:.2f}× | {best.get('equal')} |")
    lines += ratios
    failed = [r for r in rows if r.get("error")]
    if failed:
        lines += ["", *(f"- {r['method']} batch {r['batch']} {r['precision']}: {r['error']}" for r in failed)]
    return "\n".join(lines)


def plot(rows: list[dict], path: Path, title: str) -> Path:
    """``speed.png``: s/image at the method's default step count (extrapolated when the grid times
    fewer steps) against images per call (log-log), one panel per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    timed = [r for r in rows if not r.get("error")]
    methods = list(dict.fromkeys(r["method"] for r in timed))
    cols = min(3, len(methods))
    fig, axes = plt.subplots(math.ceil(len(methods) / cols), cols, figsize=(5 * cols, 4 * math.ceil(len(methods) / cols)),
                             squeeze=False)
    for ax, method in zip(axes.flat, methods):
        lines: dict = {}
        for r in timed:
            if r["method"] == method:
                key = (r["precision"], r["compiled"], r["channels_last"], r["threads"], r.get("variant"))
                seconds = r["sec_per_image"] if r.get("variant") else r["sec_per_image_default_steps"]  # a variant as timed
                lines.setdefault(key, []).append((r["batch"], seconds))
        for (precision, compiled, layout, threads, variant), points in lines.items():
            points.sort()
            label = f"{precision} {'compiled' if compiled else 'eager'}{' CL' if layout else ''} {threads}t"
            label += f" [{variant}]" if variant else ""
            ax.plot(*zip(*points), marker="o", label=label)
        ax.set(xscale="log", yscale="log", xlabel="images per call", ylabel="s / image (default steps)", title=method)
        batches = sorted({r["batch"] for r in timed})
        ax.set_xticks(batches, [str(b) for b in batches])
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(methods):]:
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run_speed_config(path: str | Path, overrides: dict | None = None) -> dict[str, Path]:
    """Run the speed config at ``path`` with ``fdem bench`` flags ``overrides``; returns the files written."""
    from fdem.benchmarks.run import _git_commit, _versions
    from fdem.benchmarks.speed import device_name

    overrides = overrides or {}
    grid, device = load_grid(path, _device_from_accelerator(overrides.get("accelerator")))
    grid = apply_overrides(grid, overrides)
    print(f"{grid.title}: {grid.unet} at {grid.image_size}² on {device_name(device)} → {grid.out}")
    rows = run_grid(grid, device, progress=not overrides.get("no_progress"))
    out = Path(grid.out)
    text = summary(rows)
    written = {"speed.csv": out / "speed.csv", "speed.md": out / "speed.md", "speed.png": plot(rows, out / "speed.png", grid.title)}
    atomic_write_text(written["speed.md"], text + "\n")
    manifest = {"config": dataclasses.asdict(grid), "source": str(path), "device": str(device),
                "device_name": device_name(device), "versions": _versions(), "git_commit": _git_commit(),
                "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None}
    written["speed.json"] = out / "speed.json"
    atomic_write_text(written["speed.json"], json.dumps(manifest, indent=2, default=str))
    print(text)
    for name, file in written.items():
        print(f"{name}: {file}")
    return written
