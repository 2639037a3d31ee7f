"""The one table of restoration methods (docs/design.md §3): every name ``fdem`` accepts, what kind
of method it is, and where its code lives.

The restorer registry (:mod:`fdem.restorers`), the benchmark harness and its tables, the speed
grid, the FLOP counter and the CLI's ``--method`` choices all read this table, so a method is
added or changed here only. The diffusion methods are the product guidance rule × EM kind:
``dps``/``pigdm`` (non-blind), ``fastem-*`` (Fast EM) and ``diffem-*`` (Diffusion EM). This module
imports no method (the registry, :mod:`fdem.restorers`, imports a restorer class when asked for
it, and reads its option schema), so every module may import it.
"""

from __future__ import annotations

from dataclasses import dataclass

from fdem.errors import InputError

GUIDANCE_STEPS = {"dps": 1000, "pigdm": 100}  # the authors' respaced step counts of each guidance rule
EM_KINDS = (None, "fastem", "diffem")
DIFFUSION_RESTORER = "fdem.sampling.diffusion_restorer:DiffusionRestorer"


@dataclass(frozen=True)
class Method:
    """One method: ``restorer`` is ``"module:Class"`` (built as ``Class(name, device, **options)``).

    ``guidance`` (``dps``/``pigdm``) and ``em`` (``fastem``/``diffem``) describe the posterior
    samplers; ``default_steps`` is set for every method sampling with a score prior;
    ``kernel_chain``: the kernel is sampled by a second diffusion chain (every step guided);
    ``speed_grid``: timed by a speed grid that names no methods.
    """

    name: str
    restorer: str
    blind: bool
    guidance: str | None = None
    em: str | None = None
    default_steps: int | None = None
    kernel_chain: bool = False
    speed_grid: bool = False

    @property
    def score_prior(self) -> bool:
        """Whether the method samples with a diffusion prior (the speed grid can time it)."""
        return self.default_steps is not None

    def rounds(self, em_iters: int = 10) -> int:
        """Sampling runs per restoration: Diffusion EM's ``em_iters`` outer rounds, else one."""
        return em_iters if self.em == "diffem" else 1

    def net_calls(self, steps: int | None = None, em_iters: int = 10) -> int:
        """Sampling steps per image (all rounds; a kernel chain steps with the image)."""
        if not self.score_prior:
            raise InputError(f"method {self.name} does not sample with a diffusion prior")
        return (steps or self.default_steps) * self.rounds(em_iters)


def _diffusion_methods() -> list[Method]:
    """Guidance rule × EM kind; Diffusion EM with DPS (10 rounds of 1000 steps) is left out of a default speed grid."""
    return [
        Method(f"{em}-{guidance}" if em else guidance, DIFFUSION_RESTORER, blind=em is not None, guidance=guidance,
               em=em, default_steps=steps, speed_grid=(em, guidance) != ("diffem", "dps"))
        for em in EM_KINDS for guidance, steps in GUIDANCE_STEPS.items()
    ]


METHODS: tuple[Method, ...] = (
    *_diffusion_methods(),
    Method("blind-dps", "fdem.sampling.blind_dps:BlindDPSRestorer", blind=True, default_steps=1000,
           kernel_chain=True, speed_grid=True),
    Method("l0-anger", "fdem.baselines.l0_anger:L0AngerRestorer", blind=True),
    Method("selfdeblur", "fdem.baselines.selfdeblur:SelfDeblurRestorer", blind=True),
    Method("mprnet", "fdem.baselines.mprnet_restorer:MPRNetRestorer", blind=True),
    Method("alternation", "fdem.baselines.alternation:AlternationRestorer", blind=True),
    Method("blurry", "fdem.baselines.blurry:BlurryInput", blind=True),
)
TABLE = {m.name: m for m in METHODS}


def method_names() -> list[str]:
    """Every method name, in the table's order."""
    return list(TABLE)


def lookup(name: str) -> Method:
    """The table entry of ``name``; an unknown name is an :class:`InputError` listing the valid ones."""
    if name not in TABLE:
        raise InputError(f"unknown method {name!r}: choose one of {', '.join(TABLE)}")
    return TABLE[name]


def is_em(name: str) -> bool:
    """Whether ``name`` is a Fast EM or Diffusion EM method (False for a name not in the table)."""
    return name in TABLE and TABLE[name].em is not None
