"""``fdem bench``: read a benchmark config, run it with Lightning ``predict``, write rows and tables.

A config (``configs/bench/*.yaml``) has::

    title: a name for plots
    out: outputs/folder          # rows, tables, plots, manifest
    data: {...}                  # fdem.datamodules.blur_benchmark.BlurBenchmarkDataModule arguments
    methods: [fastem-pigdm, {method: l0-anger, options: {...}, label: ...}, ...]
    metrics: [psnr, ssim, psnr_aligned, lpips, niqe, brisque, fid]   # default: all (fdem.metrics.registry)
    save_images: false
    figure_rows: 4               # samples shown in comparison.png (fdem.benchmarks.figures); 0: none
    threads: 1                   # torch threads per process (fdem.benchmarks.threads), rows record it
    trainer: {accelerator: auto, devices: 1, strategy: auto, num_nodes: 1}
    compare: {input: blurry, oracle: pigdm}   # optional, method labels: compare.csv/.md (fdem.benchmarks.tables)

Every process appends its rows to ``out/rows/rank<r>.csv``; rank 0 then merges them into
``out/rows.csv`` and writes the tables (:mod:`fdem.benchmarks.tables`), ``comparison.png``
(:mod:`fdem.benchmarks.figures`, from the few samples' restorations the processes stored) and
``manifest.json``. Rerunning the same command skips finished rows; changing ``data`` for an
existing ``out`` is refused (the sample indices would mean different things), and so are a label's
new options when its rows are on disk, unless they resolve to the run its rows record (a default pinned).
"""

from __future__ import annotations

import json
import platform
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fdem.benchmarks.threads import DEFAULT_THREADS, check_threads, current_threads
from fdem.configio import load_yaml
from fdem.errors import InputError
from fdem.io_utils import atomic_write_text, ensure_writable_dir, write_skipped
from fdem.metrics.registry import check_selection, selectable_names

TRAINER_KEYS = ("accelerator", "devices", "strategy", "num_nodes", "precision")
COMPARE_ROLES = ("input", "oracle")  # compare: {input: label, oracle: label}, oracle optional


@dataclass
class BenchConfig:
    out: str
    data: dict
    methods: list
    title: str = "fdem bench"
    metrics: list = field(default_factory=lambda: list(selectable_names()))
    save_images: bool = False
    figure_rows: int = 4
    threads: int = DEFAULT_THREADS
    trainer: dict = field(default_factory=dict)
    compare: dict = field(default_factory=dict)

    @classmethod
    def from_yaml(cls, path: str | Path) -> "BenchConfig":
        raw = load_yaml(path, "benchmark config")
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(raw) - known)
        missing = sorted({"out", "data", "methods"} - set(raw))
        if unknown or missing:
            raise InputError(f"{path}: unknown keys {unknown}, missing keys {missing} (valid: {', '.join(sorted(known))})")
        cfg = cls(**raw)
        bad = sorted(set(cfg.trainer) - set(TRAINER_KEYS))
        if bad:
            raise InputError(f"{path}: unknown trainer keys {bad}; valid: {', '.join(TRAINER_KEYS)}")
        try:
            check_selection(cfg.metrics)
        except InputError as err:
            raise InputError(f"{path}: metrics: {err}") from err
        try:
            check_threads(cfg.threads)
        except InputError as err:
            raise InputError(f"{path}: {err}") from err
        if isinstance(cfg.figure_rows, bool) or not isinstance(cfg.figure_rows, int) or cfg.figure_rows < 0:
            raise InputError(f"{path}: figure_rows: expected an integer >= 0, got {cfg.figure_rows!r}")
        try:
            cfg.compare = check_compare(cfg.compare, cfg.methods)
        except InputError as err:
            raise InputError(f"{path}: {err}") from err
        return cfg


def check_compare(compare, methods: list) -> dict:
    """``compare`` checked against the config's methods: a mapping with ``input`` (required) and
    ``oracle``, each the label of one of ``methods``; ``{}`` when absent. Checked before anything
    runs, so a misspelt label does not surface only once the tables are written."""
    if not compare:
        return {}
    if not isinstance(compare, dict) or "input" not in compare or set(compare) - set(COMPARE_ROLES):
        raise InputError(f"compare: expected a mapping with input (required) and oracle, each a method label; got {compare!r}")
    from fdem.benchmarks.module import entry_labels

    labels = entry_labels(methods)
    for role, label in compare.items():
        if label not in labels:
            raise InputError(f"compare: {role}: {label!r} is not a method label; valid: {', '.join(map(repr, labels))}")
    return compare


def _check_resumable(out: Path, data: dict, specs: list, done: set) -> None:
    """Refuse to mix two configurations in one folder: other data settings, another sampler seeding
    (:data:`~fdem.benchmarks.module.SEEDING`), or a label with rows on disk that were made by another
    method or options (a rerun would skip them). Then record this run's settings in ``bench_data.json``."""
    from fdem.benchmarks.module import SEEDING
    from fdem.benchmarks.rows import recorded_params

    record = out / "bench_data.json"
    methods = {s.label: {"method": s.method, "options": s.options, **({} if s.sigma == "given" else {"sigma": s.sigma})}
               for s in specs}
    current = json.loads(json.dumps({"data": data, "seeding": SEEDING, "methods": methods}))
    previous = json.loads(record.read_text()) if record.is_file() else current
    if previous.get("seeding") != SEEDING:
        raise InputError(f"{out} was written by an older fdem bench whose samplers were seeded otherwise "
                         f"({record}): its rows are not comparable; use another --out")
    if previous.get("data") != current["data"]:
        raise InputError(f"{out} holds results for other data settings ({record}); use another --out")
    made_before = previous.get("methods", {})
    changed = [label for label in {label for label, _ in done} & set(made_before) & set(methods)
               if made_before[label] != current["methods"][label]]
    params = recorded_params(out) if changed else {}  # the rows are read once, and only if some label changed
    for label in changed:
        made, asked = made_before[label], current["methods"][label]
        if not _same_run(made, asked, params.get(label, set())):
            raise InputError(f"{out}: the rows of {label!r} were made with {made['method']} {made['options']}, "
                             f"the config asks for {asked['method']} {asked['options']}"
                             f"{' sigma ' + asked['sigma'] if 'sigma' in asked else ''}; use another --out or another label")
    atomic_write_text(record, json.dumps({**current, "methods": {**made_before, **current["methods"]}}, indent=2, sort_keys=True))


def _same_run(made: dict, asked: dict, params: set[str]) -> bool:
    """Whether options spelled otherwise than those a label's rows were made with resolve to the very run the
    rows record (a preset's default pinned in the config, say): same method and σ rule, and the restorer the
    asked options build writes the one ``params`` record every row of the label holds."""
    from fdem.restorers import build_restorer

    if made.get("method") != asked["method"] or made.get("sigma") != asked.get("sigma") or len(params) != 1:
        return False
    resolved = build_restorer(asked["method"], "cpu", **asked["options"]).params()
    return json.dumps(resolved, sort_keys=True) == next(iter(params))


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for name in ("fdem", "torch", "torchvision", "lightning", "numpy", "scipy", "lpips", "pytorch-fid", "pyiqa"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def _git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def _device_name(trainer) -> str:
    """The device's model name (fdem.benchmarks.speed.device_name), plus the CPU thread count."""
    import torch

    from fdem.benchmarks.speed import device_name

    root = trainer.strategy.root_device
    name = device_name(root)
    return f"{name}, {torch.get_num_threads()} threads" if root.type == "cpu" else name


def write_manifest(out: Path, cfg: BenchConfig, trainer, summary: str, resolved: dict | None = None) -> Path:
    """``manifest.json``: the config, each method label's resolved options (a diffusion method's preset
    and every field it fixes), the samples, versions, commit and device."""
    manifest = {
        "config": asdict(cfg), "resolved_options": resolved or {}, "samples": summary, "versions": _versions(), "git_commit": _git_commit(),
        "device": _device_name(trainer), "threads": current_threads(), "world_size": trainer.world_size, "num_nodes": trainer.num_nodes,
    }
    atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=2, default=str))
    return out / "manifest.json"


def sample_keys(dataset) -> list[tuple[int, float]]:
    """``(index, σ·255)`` of every sample in dataset order (the grid index rows are keyed by),
    without building the samples of a blur benchmark."""
    if hasattr(dataset, "locate"):
        located = (dataset.locate(i) for i in range(len(dataset)))
        return [(index, float(dataset.sigmas255[s])) for s, _, _, index in located]
    return [(int(s["index"]), float(s["sigma255"])) for s in (dataset[i] for i in range(len(dataset)))]


def sample_indices(dataset) -> list[int]:
    """The ``index`` of every sample (the grid index rows are keyed by), without building the samples."""
    return [index for index, _ in sample_keys(dataset)]


def resume_line(done: set, specs: list, indices: list[int], out: Path) -> str | None:
    """``"resuming: …"`` with the number of this run's rows already on disk (skipped), or None."""
    planned = {(s.label, i) for s in specs for i in indices}
    found = len(planned & done)
    if not found:
        return None
    return f"resuming: {found} of {len(planned)} rows already in {out} are skipped, {len(planned) - found} to run\n"


def run_benchmark(cfg: BenchConfig, progress: bool = True) -> dict[str, Path]:
    """Run (or resume) ``cfg``; returns the written tables and plots by name (on rank 0)."""
    import lightning as L
    from lightning.pytorch.utilities import rank_zero_only

    from fdem.benchmarks.figures import comparison_figure, pick_samples
    from fdem.benchmarks.module import BenchmarkModule, parse_methods
    from fdem.benchmarks.rows import done_keys, merge_rows
    from fdem.benchmarks.tables import write_tables
    from fdem.benchmarks.writer import RowWriter
    from fdem.datamodules.blur_benchmark import BlurBenchmarkDataModule

    specs = parse_methods(cfg.methods)
    out = ensure_writable_dir(cfg.out)
    try:
        data = BlurBenchmarkDataModule(**cfg.data)
    except TypeError as err:
        raise InputError(f"bad data settings: {err}") from err
    data.setup("predict")
    done = done_keys(out)
    _check_resumable(out, cfg.data, specs, done)
    if data.skipped:
        write_skipped(out, data.skipped)
        print(f"skipped {len(data.skipped)} unreadable image(s): see {out / 'skipped.csv'}")
    shown = tuple(pick_samples(sample_keys(data.dataset), cfg.figure_rows))
    module = BenchmarkModule(cfg.methods, str(out), tuple(cfg.metrics), cfg.save_images, done=done,
                             threads=cfg.threads, figure_samples=shown)
    trainer = L.Trainer(
        logger=False, enable_checkpointing=False, enable_model_summary=False, enable_progress_bar=progress,
        inference_mode=False,  # guided samplers need autograd (a VJP through the UNet) inside predict
        callbacks=[RowWriter(out)], **{"accelerator": "auto", "devices": 1, **cfg.trainer},
    )
    if rank_zero_only.rank == 0:  # the launcher's rank: children re-run this before the strategy sets ranks
        print(f"{cfg.title}: {data.samples_summary()} × {len(specs)} methods → {out}")
        print(resume_line(done, specs, sample_indices(data.dataset), out) or "", end="")
    trainer.predict(module, datamodule=data, return_predictions=False)
    trainer.strategy.barrier()
    if trainer.global_rank != 0:
        return {}
    merge_rows(out, [s.label for s in specs])
    written = write_tables(out, cfg.title, cfg.compare)
    figure = comparison_figure(out, [s.label for s in specs], shown, title=cfg.title)
    if figure is not None:
        written["comparison.png"] = figure
    resolved = {label: restorer.params() for label, restorer in module.restorers.items()}
    written["manifest.json"] = write_manifest(out, cfg, trainer, data.samples_summary(), resolved)
    return written
