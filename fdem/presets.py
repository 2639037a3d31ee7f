"""Presets: one name, one exactly specified sampler, and every default of the diffusion methods in one place.

A diffusion run is three small frozen objects, each checked once, when built: :class:`SamplerSpec` (how the
chain steps), :class:`EMSpec` (how the kernel is estimated) and :class:`CanvasSpec` (what the sampler works on:
borders, tiles, masks). A :class:`Preset` names one choice of all three; :func:`resolve` applies it to a method
and overrides single fields by name (unique across the specs: ``steps=25``), giving a :class:`RunSpec`: what a
benchmark row, a manifest and ``fdem deblur``'s plan record. Every front end (library, ``fdem deblur``, ``fdem
demo``, bench configs, the speed grid) starts from a preset here; no default of these options lives anywhere else.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace

from fdem.diffusion import STEP_RULES
from fdem.errors import InputError
from fdem.kernel_field import parse_grid
from fdem.method_table import lookup
from fdem.mstep import MStepConfig, check_relax, check_weighting
from fdem.validate import MAX_STEPS, SIGMA255_MAX, check_float, check_int
LAMBDA_RULES = ("fixed", "noise")  # λ as resolved, or fdem's multiple of it that falls with σ (Fast EM only)
R2_RULES = ("official", "paper")  # ΠGDM's r²: the authors' code v/(1 + v), or the paper's 1 − ᾱ (guidance.r2_schedule)
COMBINES = ("best", "mean", "natural")  # several chains per image: the best data fit, their mean, or the most natural image
KERNEL_INITS = ("dirac", "alternation", "l0", "coarse", "streak")  # the paper's Dirac, the prior-free alternation's, ℓ0's,
# Fast EM's at half size, or the clipped light streaks' (the alternation's where an image has none)
BORDERS = ("circular", "reflect", "smooth", "impute")  # docs/design.md §9
FIELD_SOLVES = ("windowed", "joint")  # a kernel field's data step: each cell on its window, or all cells exactly
MAX_KERNEL_UNCERTAINTY = 1e4  # κ beyond this ignores the data wherever the image has energy


def _choice(value, name: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise InputError(f"unknown {name} {value!r}: choose one of {', '.join(choices)}")
    return value


@dataclass(frozen=True)
class SamplerSpec:
    """How the diffusion chain steps. ``steps``: network calls (None: the guidance's own count, ΠGDM 100
    and DPS 1000); ``step_rule``: ``ddpm`` (ancestral), ``ddim`` with ``eta`` ∈ [0, 1], or ``mean``
    (ΠGDM only); ``start`` ∈ (0, 1]: start from the observation noised to ``start·T`` and spend the
    steps on ``[0, start·T]``; ``r2_rule``: ΠGDM's r² (and the paper weighting's), ``official`` or ``paper``;
    ``sigma_floor`` (255 scale): the sampler takes the noise level as at least this (0: as given; with
    few steps ΠGDM inverts too hard at low σ, docs/design.md §15)."""

    steps: int | None = None
    step_rule: str = "ddpm"
    eta: float = 1.0
    start: float = 1.0
    r2_rule: str = "official"
    sigma_floor: float = 0.0

    def __post_init__(self) -> None:
        if self.steps is not None:
            check_int(self.steps, "steps", 2, MAX_STEPS)
        _choice(self.step_rule, "step_rule", STEP_RULES)
        object.__setattr__(self, "eta", check_float(self.eta, "eta", 0, 1))
        start = check_float(self.start, "start", 0, 1)
        if start == 0:
            raise InputError("start must be in (0, 1]: the fraction of the diffusion time where sampling starts, got 0")
        object.__setattr__(self, "start", start)
        _choice(self.r2_rule, "r2_rule", R2_RULES)
        object.__setattr__(self, "sigma_floor", check_float(self.sigma_floor, "sigma_floor", 0, SIGMA255_MAX))

    @property
    def first(self) -> int | None:
        """Steps actually run when the chain starts from the noised observation (None: from noise)."""
        return self.steps if self.start < 1 else None


@dataclass(frozen=True)
class EMSpec:
    """How a blind method estimates the kernel. ``mstep``: the HQS M-step (size, λ, β, iterations,
    re-centring, denoiser); ``lam_rule``: ``fixed`` (λ as resolved) or ``noise`` (Fast EM: the denoiser's own
    λ times 3 up to σ = 10/255 and 2 from 20/255, :func:`fdem.sampling.fast_em.fast_em_lambda_scale`;
    an explicit ``lam`` is used as given);
    ``weighting``: the M-step's α and Eq. 33 term, ``official`` or ``paper``; ``kernel_init``: the
    kernel's start; ``kernel_relax`` γ ∈ (0, 4): the over-relaxed update (1: the paper's);
    ``particles`` n per image; ``restarts``: chains per image; ``combine``: what is kept of them, ``best``
    (the chain of smallest data misfit), ``mean`` (the chains' mean image and kernel, a posterior mean) or
    ``natural`` (the chain whose image has the prior's smallest denoising loss);
    ``em_iters``: Diffusion EM's rounds L; ``kernel_uncertainty`` κ ≥ 0: ΠGDM's noise includes the
    kernel's error, scaled by κ (0: the kernel taken as exact, the paper's; DPS methods ignore it,
    :mod:`fdem.sampling.kernel_uncertainty`); ``passes``: Fast EM runs per image, each started from the
    last one's kernel (1: the paper's; each pass costs the steps again); ``refine``: after the blind run,
    one more non-blind run of the same sampler with its last kernel (a two-stage restoration);
    ``kernel_window``: on an image with a side over it, the blind run sees only the window of that
    side with the most detail, and one chain of the method's non-blind sampler restores the whole
    image with its kernel (None: the whole image is the blind run's, :mod:`fdem.sampling.kernel_window`);
    ``field_shrink`` ∈ [0, 1): each cell's new kernel moved that fraction of the way to the cells' mean;
    ``field_gate`` ≥ 0: before that, each cell keeps the share ``g/(g + field_gate)`` of its kernel's
    difference from the whole image's kernel, ``g`` how much better its own kernel explains its window's
    data (σ² per pixel; 0: off); ``field_solve``: the cells' data step, each on its window (``windowed``) or
    all at once (``joint``, :mod:`fdem.masked_mstep`) (:mod:`fdem.sampling.field_em`)."""

    mstep: MStepConfig = field(default_factory=MStepConfig)
    lam_rule: str = "fixed"
    weighting: str = "official"
    kernel_init: str = "dirac"
    kernel_relax: float = 1.0
    particles: int = 1
    restarts: int = 1
    combine: str = "best"
    em_iters: int = 10
    kernel_uncertainty: float = 0.0
    passes: int = 1
    refine: bool = False
    kernel_window: int | None = None
    field_shrink: float = 0.0
    field_gate: float = 0.0
    field_solve: str = "windowed"

    def __post_init__(self) -> None:
        object.__setattr__(self, "field_shrink", check_float(self.field_shrink, "field_shrink", 0, 1))
        object.__setattr__(self, "field_gate", check_float(self.field_gate, "field_gate", 0))
        if self.field_shrink == 1:
            raise InputError("field_shrink must be in [0, 1): at 1 every cell gets the mean kernel (use kernel_grid 1x1)")
        if self.kernel_window is not None:
            check_int(self.kernel_window, "kernel_window", 2 * self.mstep.kernel_size)
        _choice(self.lam_rule, "lam_rule", LAMBDA_RULES)
        _choice(self.field_solve, "field_solve", FIELD_SOLVES)
        _choice(self.combine, "combine", COMBINES)
        object.__setattr__(self, "kernel_uncertainty",
                           check_float(self.kernel_uncertainty, "kernel_uncertainty", 0, MAX_KERNEL_UNCERTAINTY))
        if not isinstance(self.refine, bool):
            raise InputError(f"refine must be true or false, got {self.refine!r}")
        check_weighting(self.weighting)
        _choice(self.kernel_init, "kernel_init", KERNEL_INITS)
        object.__setattr__(self, "kernel_relax", check_relax(self.kernel_relax, "kernel_relax"))
        for name in ("particles", "restarts", "em_iters", "passes"):
            check_int(getattr(self, name), name, 1)
        if self.lam_rule == "noise" and self.mstep.reg != "pnp":
            raise InputError(f"lam rule 'noise' scales the PnP weight: it needs the pnp regulariser, not {self.mstep.reg}")

    @property
    def chains(self) -> int:
        """Samples run side by side per image: particles times restarts (one batch)."""
        return self.particles * self.restarts


@dataclass(frozen=True)
class CanvasSpec:
    """What the sampler works on. ``border``: ``circular`` (observations made by circular blur: pad
    to the UNet's multiple only), ``reflect``/``smooth`` (pad by the kernel's radius, mirrored or
    smoothly periodised, taken as data) or ``impute`` (that margin as missing data, refilled every
    step); ``tiled``: the network on ``tile``-sized windows (None: its native size, at least 128)
    overlapping by ``overlap`` (None: a quarter), ``max_batch`` per call, for large images;
    ``saturation``: pixels at or above it in any channel, and a ``saturation_reach`` box around them
    (1: those pixels alone), are missing data (None: every pixel is data; :mod:`fdem.saturation`); ``linear_light``: the sampler
    works on the sRGB-decoded image and its result is encoded back (:mod:`fdem.linear_light`);
    ``kernel_grid`` ``(G, H)``: the blur is a field of ``G·H`` kernels blended by smooth windows
    (:mod:`fdem.kernel_field`; ``(1, 1)``: one kernel for the whole image, the paper's model)."""

    border: str = "circular"
    tiled: bool = False
    tile: int | None = None
    overlap: int | None = None
    max_batch: int = 2
    saturation: float | None = None
    saturation_reach: int = 1
    linear_light: bool = False
    kernel_grid: tuple[int, int] = (1, 1)

    def __post_init__(self) -> None:
        _choice(self.border, "border", BORDERS)
        object.__setattr__(self, "kernel_grid", parse_grid(self.kernel_grid))
        if not isinstance(self.linear_light, bool):
            raise InputError(f"linear_light must be true or false, got {self.linear_light!r}")
        if self.saturation is not None:
            object.__setattr__(self, "saturation", check_float(self.saturation, "saturation", 0, 1))
            if self.saturation == 0:
                raise InputError("saturation must be in (0, 1]: the level from which a pixel counts as clipped, got 0")
        check_int(self.saturation_reach, "saturation_reach", 1)
        if not isinstance(self.tiled, bool):
            raise InputError(f"tiled must be true or false, got {self.tiled!r}")
        if self.tile is not None:
            check_int(self.tile, "tile", 1)
        if self.overlap is not None:
            check_int(self.overlap, "overlap", 0)
        check_int(self.max_batch, "max_batch", 1)


@dataclass(frozen=True)
class Preset:
    """A named choice of every option: ``sampler`` for ΠGDM-guided methods, ``dps_sampler`` for
    DPS-guided ones (None: the same), ``em`` for the blind ones, ``canvas`` for all."""

    name: str
    summary: str
    sampler: SamplerSpec
    em: EMSpec
    canvas: CanvasSpec = CanvasSpec()
    dps_sampler: SamplerSpec | None = None

    def derive(self, name: str, summary: str, *, sampler=None, em=None, canvas=None, dps_sampler=None) -> "Preset":
        """A new preset: this one with some fields of its specs replaced (dicts of field → value)."""
        return Preset(
            name, summary,
            replace(self.sampler, **(sampler or {})),
            _replace_em(self.em, em or {}),
            replace(self.canvas, **(canvas or {})),
            self.dps_sampler if dps_sampler is None else dps_sampler,
        )


def _replace_em(em: EMSpec, changes: dict) -> EMSpec:
    """``em`` with EM and M-step fields replaced by name."""
    mstep_names = {f.name for f in fields(MStepConfig)}
    mstep = {k: v for k, v in changes.items() if k in mstep_names}
    rest = {k: v for k, v in changes.items() if k not in mstep_names}
    return replace(em, mstep=replace(em.mstep, **mstep), **rest) if mstep else replace(em, **rest)


PAPER = Preset(
    "paper",
    "the authors' Fast EM exactly: 100 ancestral ΠGDM steps (DPS 1000) from noise, Dirac start, the "
    "denoiser's own λ, cubic-spline re-centring to their target, official r² and α, circular model",
    SamplerSpec(),
    EMSpec(),
)
TUNED = PAPER.derive(
    "tuned", "paper with fdem's M-step tuning: λ × 3 (× 2 from σ = 20/255) and bilinear re-centring to (k//2, k//2)",
    em={"lam_rule": "noise", "recenter": "bilinear"},
)
FEW_STEP = TUNED.derive(
    "few-step", "tuned with 25 DDIM steps from the observation noised to T/2 (ΠGDM methods) and the kernel "
    "started from the prior-free alternation's; circular model",
    sampler={"steps": 25, "step_rule": "ddim", "start": 0.5}, em={"kernel_init": "alternation"},
    dps_sampler=SamplerSpec(),
)
PHOTO = FEW_STEP.derive(
    "photo", "few-step on photographs: the margin as missing data (imputed border), two chains whose kernels' spread "
    "widens ΠGDM's noise (κ = 4), the better fit kept; on images over 160 px the kernel from the 160² window of most "
    "detail, then one non-blind chain on the whole image, tiled where attention would dominate; σ at least 5/255",
    sampler={"sigma_floor": 5.0}, em={"restarts": 2, "kernel_uncertainty": 4.0, "kernel_window": 160},
    canvas={"border": "impute", "tiled": True},
)
FIELD = PHOTO.derive(
    "field", "photo with a 3x3 kernel field (blur that varies across the frame, docs/design.md §19): one chain on the "
    "whole image, each cell's kernel from its window's data pulled half-way to the cells' mean, kept apart from the "
    "whole image's kernel only as far as its data support it (field_gate 3), re-centred by one common shift",
    em={"restarts": 1, "kernel_uncertainty": 0.0, "kernel_window": None, "field_shrink": 0.5, "field_gate": 3.0},
    canvas={"kernel_grid": (3, 3)},
)
DEMO = FEW_STEP.derive("demo", "few-step, best of 3 chains by data fit (the demo's Fast EM ΠGDM row)", em={"restarts": 3})
RELAXED = FEW_STEP.derive("relaxed", "few-step with the over-relaxed M-step, γ = 2", em={"kernel_relax": 2.0})

PRESETS: dict[str, Preset] = {p.name: p for p in (PAPER, TUNED, FEW_STEP, PHOTO, FIELD, DEMO, RELAXED)}
DEFAULT_PRESET = "paper"  # the library's and the benchmark configs' default
DEFAULT_PHOTO_PRESET = "photo"  # fdem deblur's default
FIELD_PRESET = "field"  # fdem deblur's default with --kernel-grid

SAMPLER_FIELDS = tuple(f.name for f in fields(SamplerSpec))
EM_FIELDS = tuple(f.name for f in fields(EMSpec) if f.name != "mstep")
MSTEP_FIELDS = tuple(f.name for f in fields(MStepConfig) if f.name != "denoiser")
CANVAS_FIELDS = tuple(f.name for f in fields(CanvasSpec))
OVERRIDES = SAMPLER_FIELDS + EM_FIELDS + MSTEP_FIELDS + CANVAS_FIELDS  # every field a preset fixes
# options added after runs were recorded, and the value that leaves them out of a record (RunSpec.options)
OFF = {"field_gate": 0.0, "combine": "best", "missing": "impute", "field_solve": "windowed"}


def preset(name: str) -> Preset:
    """The preset ``name``; an unknown name is an :class:`InputError` listing the valid ones."""
    if name not in PRESETS:
        raise InputError(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}")
    return PRESETS[name]


@dataclass(frozen=True)
class RunSpec:
    """A diffusion method under a preset, with overrides applied: everything that decides its samples
    (besides the networks and the seed). ``sampler.steps`` is resolved (never None)."""

    method: str
    preset: str
    sampler: SamplerSpec
    em: EMSpec
    canvas: CanvasSpec

    def __post_init__(self) -> None:
        entry = lookup(self.method)
        if entry.guidance is None:
            raise InputError(f"method {self.method} is not a guided diffusion sampler: it takes no preset")
        if entry.guidance == "dps" and self.sampler.step_rule == "mean":
            raise InputError("step rule 'mean' needs ΠGDM guidance (a posterior mean of x0): use it with pigdm, "
                             "fastem-pigdm or diffem-pigdm, or choose ddpm or ddim for DPS methods")
        if self.sampler.steps is None:
            object.__setattr__(self, "sampler", replace(self.sampler, steps=entry.default_steps))
        if self.field:
            self._check_field(entry)

    @property
    def field(self) -> bool:
        """Whether the blur is a kernel field (more than one cell)."""
        return self.canvas.kernel_grid != (1, 1)

    def _check_field(self, entry) -> None:
        """What a kernel field cannot be combined with, refused once, here."""
        grid = "x".join(map(str, self.canvas.kernel_grid))
        if entry.em == "diffem":
            raise InputError(f"method {self.method} has no kernel-field form: use fastem-pigdm, fastem-dps, pigdm or dps "
                             f"with kernel_grid {grid}")
        if self.blind and self.em.kernel_window is not None:
            raise InputError(f"kernel_window finds one kernel on one window, not a {grid} field: set kernel_window to "
                             "none (the field preset does)")
        if self.blind and entry.guidance == "pigdm" and self.em.kernel_uncertainty > 0:
            raise InputError(f"kernel_uncertainty is measured for one kernel, not a {grid} field: set it to 0 "
                             "(the field preset does)")
        if self.blind and self.em.kernel_init == "coarse":
            raise InputError(f"kernel_init coarse is not defined for a {grid} field: use dirac, alternation or l0")

    @property
    def blind(self) -> bool:
        return lookup(self.method).blind

    @property
    def em_kind(self) -> str | None:
        """``"fastem"``, ``"diffem"`` or None (non-blind)."""
        return lookup(self.method).em

    @property
    def guidance(self) -> str:
        return lookup(self.method).guidance

    @property
    def refined(self) -> bool:
        """Whether a non-blind run with the blind run's last kernel follows it (``refine``)."""
        return self.blind and self.em.refine

    @property
    def kernel_uncertainty(self) -> float:
        """The κ the guidance uses: the preset's for blind ΠGDM methods, else 0 (a given kernel is exact)."""
        return self.em.kernel_uncertainty if self.blind and self.guidance == "pigdm" else 0.0

    def windowed(self, height: int, width: int) -> bool:
        """Whether the blind run sees only a window of a ``height × width`` image (``kernel_window``)."""
        return self.blind and self.em.kernel_window is not None and max(height, width) > self.em.kernel_window

    def whole_image_pass(self) -> "RunSpec":
        """What restores the whole image with a window's kernel: the method's non-blind sampler, one chain."""
        em = replace(self.em, restarts=1, refine=False, kernel_window=None)
        return replace(self, method=self.guidance, em=em)

    def network_calls(self, size: tuple[int, int] | None = None) -> int:
        """Sampling steps per image and chain (all of Diffusion EM's rounds, and the refining run); for an
        image of ``size`` the blind run is on a window, the whole-image pass's steps are added."""
        calls = lookup(self.method).net_calls(self.sampler.steps, self.em.em_iters)
        if self.em_kind == "fastem":
            calls *= self.em.passes
        if self.blind and self.em.kernel_init == "coarse":
            calls += self.sampler.steps  # the half-size pass, at a quarter of the pixels
        calls += self.sampler.steps if self.refined else 0
        return calls + (self.whole_image_pass().network_calls() if size and self.windowed(*size) else 0)

    def options(self, full: bool = False) -> dict:
        """Every resolved option by field name (the EM's only for blind methods, Diffusion EM's rounds only
        for it), with the preset's name first: what rows, manifests and ``--show`` record. The field options
        (``kernel_grid``, ``field_shrink``) appear only for a field, those of :data:`OFF` only when set,
        unless ``full`` (``fdem presets``' table): records of runs made before these options existed stay valid."""
        em = {k: v for k, v in asdict(self.em).items() if k != "mstep"}
        mstep = {k: v for k, v in asdict(self.em.mstep).items() if k != "denoiser"}
        if self.em_kind != "diffem":
            em.pop("em_iters")
        if self.em_kind != "fastem":
            em.pop("passes")
        if self.guidance != "pigdm":
            em.pop("kernel_uncertainty")
        canvas = asdict(self.canvas)
        canvas["kernel_grid"] = "x".join(map(str, self.canvas.kernel_grid))
        if not (self.field or full):  # a uniform run's record stays as it was before fields existed
            em.pop("field_shrink")
            canvas.pop("kernel_grid")
        if not self.blind:
            em, mstep = {k: em[k] for k in ("particles", "restarts", "combine") if k in em}, {}
        record = {"preset": self.preset, **asdict(self.sampler), **em, **mstep, **canvas}
        return record if full else {k: v for k, v in record.items() if k not in OFF or OFF[k] != v}


def resolve(method: str, preset_name: str = DEFAULT_PRESET, **overrides) -> RunSpec:
    """``method`` under the preset ``preset_name`` with ``overrides`` (field name → value; lists from YAML
    are fine) applied; every value is checked here, once. Unknown names are an :class:`InputError`."""
    unknown = sorted(set(overrides) - set(OVERRIDES))
    if unknown:
        raise InputError(f"unknown option(s) {unknown} for {method}; valid: {', '.join(OVERRIDES)}")
    base = preset(preset_name)
    entry = lookup(method)
    sampler = base.dps_sampler if entry.guidance == "dps" and base.dps_sampler is not None else base.sampler
    pick = lambda names: {k: v for k, v in overrides.items() if k in names}  # noqa: E731
    return RunSpec(
        method, preset_name,
        replace(sampler, **pick(SAMPLER_FIELDS)),
        _replace_em(base.em, pick(EM_FIELDS + MSTEP_FIELDS)),
        replace(base.canvas, **pick(CANVAS_FIELDS)),
    )
