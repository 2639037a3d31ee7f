"""Speed switches for the score network (precision, channels-last, ``torch.compile``) as a wrapper.

The sampler loop (:mod:`fdem.sampling.loop`) is not touched: :func:`accelerate` returns a module
with the UNet's ``forward(x, t)`` whose output is always float32, so the guidance, the FFTs and
the M-step stay fp32 whatever the network runs in. The loop's VJP goes through the wrapper.

* ``precision``: ``fp32`` — on CUDA, TF32 off for matmuls and convolutions (PyTorch's default
  lets cuDNN use TF32), in the forward *and* in the VJP; ``tf32`` (CUDA only) — TF32 on for both;
  ``bf16`` — autocast to bfloat16 inside the UNet call only (the VJP replays the same casts);
  ``auto`` — the device default.
* ``channels_last``: parameters and input in NHWC, the layout GPU convolution kernels prefer;
  the output is handed back in the standard layout.
* ``compile``: ``torch.compile(dynamic=False)``: one graph per batch shape and grad mode (a
  ΠGDM run compiles twice: its last step has no guidance). AOTAutograd compiles the backward too,
  so the VJP replays compiled code. ``compile_mode`` is passed to inductor; the default mode
  fuses the element-wise/GroupNorm work and keeps cuDNN for convolutions. ``max-autotune`` costs
  many minutes of compilation on the 94M-parameter ADM UNet; ``reduce-overhead`` (CUDA graphs)
  reuses its output buffers from call to call and is untested with a VJP taken outside the
  compiled region — both can be asked for, neither is a default.

TF32 flags are process-wide: the wrapper sets them for the network call and restores them after;
for the backward, two identity autograd nodes around the network set them when the VJP enters
the network and restore them when it leaves it, so the FFTs and the M-step never see them.
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, replace
from typing import Callable, Iterator

import torch
from torch import Tensor, nn

from fdem.errors import InputError

PRECISIONS = ("auto", "fp32", "tf32", "bf16")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


@dataclass(frozen=True)
class SpeedOptions:
    """How the score network runs; ``"auto"``/``None`` fields take the device default.

    ``backend`` is the ``torch.compile`` backend: ``inductor`` generates code (C++ on a CPU,
    Triton on a GPU); ``aot_eager`` traces forward and backward without generating code (tests).
    """

    precision: str = "auto"
    channels_last: bool | None = None
    compile: bool | None = None
    compile_mode: str = "default"
    backend: str = "inductor"

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise InputError(f"unknown precision {self.precision!r}: choose one of {', '.join(PRECISIONS)}")
        if self.compile_mode not in COMPILE_MODES:
            raise InputError(f"unknown compile mode {self.compile_mode!r}: choose one of {', '.join(COMPILE_MODES)}")
        backends = torch._dynamo.list_backends(exclude_tags=())
        if self.backend not in backends:
            raise InputError(f"unknown torch.compile backend {self.backend!r}: choose one of {', '.join(backends)}")

    @classmethod
    def defaults(cls, device: torch.device | str) -> "SpeedOptions":
        """The device default: the fastest switches that keep results equal (README, Speed).

        CUDA: TF32, channels-last, compiled (when inductor can run). Not bf16: on the shipped small
        prior (``python -m studies.equality.equality_floor``, CPU) bf16 autocast moves Fast EM's mean PSNR
        by 0.12 dB and mean kernel MSE by 2.7e-6 where fp32 rounding changes move them by < 0.005 dB
        and < 2e-7, i.e. past the 0.1 dB / 1e-6 bound; TF32 keeps 3 more mantissa bits. Ask for it.
        Elsewhere fp32 eager in the standard layout: on a 2-core Xeon with AMX (small64, 64²) bf16
        is 1.2–1.6× faster but as above; channels-last changes little (±5 %); compiling gains
        4–18 % per call but costs about two minutes per batch shape, more than a ``fdem deblur`` of
        a few images takes."""
        device = torch.device(device)
        if device.type == "cuda":
            return cls("tf32", True, compile_problem(device, "inductor") is None)
        return cls("fp32", False, False)

    def resolve(self, device: torch.device | str) -> "SpeedOptions":
        """These options with ``auto``/``None`` replaced by the device default, checked for ``device``."""
        device = torch.device(device)
        default = self.defaults(device)
        resolved = replace(
            self,
            precision=default.precision if self.precision == "auto" else self.precision,
            channels_last=default.channels_last if self.channels_last is None else bool(self.channels_last),
            compile=default.compile if self.compile is None else bool(self.compile),
        )
        resolved.check(device)
        return resolved

    def check(self, device: torch.device) -> None:
        """Raise an InputError (one line) for a switch ``device`` cannot honour."""
        if self.precision == "tf32" and device.type != "cuda":
            raise InputError(f"precision tf32 needs a CUDA device, got {device.type}: use fp32 or bf16")
        if self.precision == "bf16" and not bf16_supported(device):
            raise InputError(f"precision bf16 is not supported on {device}: use fp32")
        problem = compile_problem(device, self.backend) if self.compile else None
        if problem:
            raise InputError(f"compile=True is not available on {device}: {problem}")

    def row(self) -> dict:
        """The switches as benchmark-row fields (call on resolved options)."""
        return {"precision": self.precision, "channels_last": self.channels_last, "compiled": self.compile}


def bf16_supported(device: torch.device) -> bool:
    """Whether bf16 autocast runs on ``device`` (CUDA: compute capability 8.0+)."""
    if not torch.amp.is_autocast_available(device.type):
        return False
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    return True


def compile_problem(device: torch.device, backend: str = "inductor") -> str | None:
    """Why ``torch.compile`` cannot run on ``device`` with ``backend``, or None if it can."""
    from torch._dynamo.eval_frame import is_dynamo_supported

    if not is_dynamo_supported():
        return "torch.compile does not support this Python"
    if backend != "inductor":
        return None
    if device.type == "cpu":
        try:
            from torch._inductor.cpp_builder import get_cpp_compiler

            get_cpp_compiler()
        except Exception:
            return "inductor needs a C++ compiler (g++ or clang++) on the PATH"
        return None
    if device.type == "cuda":
        from torch.utils._triton import has_triton

        return None if has_triton() else "inductor needs the triton package for CUDA"
    return f"inductor is only used here on cpu and cuda devices, not {device.type}"


def _read_tf32() -> tuple[bool, bool]:
    return torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32


def _write_tf32(flags: tuple[bool, bool]) -> None:
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = flags


@contextmanager
def tf32_scope(enabled: bool) -> Iterator[None]:
    """TF32 matmuls and convolutions on (or off) inside the block, the previous flags restored after."""
    saved = _read_tf32()
    _write_tf32((enabled, enabled))
    try:
        yield
    finally:
        _write_tf32(saved)


class _SetOnBackward(torch.autograd.Function):
    """Identity; its backward (the first node of the network's VJP) sets the TF32 flags."""

    @staticmethod
    def forward(ctx, x: Tensor, enabled: bool, saved: list) -> Tensor:
        ctx.enabled, ctx.saved = enabled, saved
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor):
        ctx.saved.append(_read_tf32())
        _write_tf32((ctx.enabled, ctx.enabled))
        return grad, None, None


class _RestoreOnBackward(torch.autograd.Function):
    """Identity; its backward (the last node of the network's VJP) restores the TF32 flags."""

    @staticmethod
    def forward(ctx, x: Tensor, saved: list) -> Tensor:
        ctx.saved = saved
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor):
        if ctx.saved:
            _write_tf32(ctx.saved.pop())
        return grad, None


def call_with_tf32(fn: Callable[[Tensor], Tensor], x: Tensor, enabled: bool) -> Tensor:
    """``fn(x)`` with the TF32 flags at ``enabled`` in its forward and in its backward (VJP) only."""
    saved: list = []
    x = _RestoreOnBackward.apply(x, saved)
    with tf32_scope(enabled):
        out = fn(x)
    return _SetOnBackward.apply(out, enabled, saved)


class FastNet(nn.Module):
    """The score network run with resolved :class:`SpeedOptions`; ``forward(x, t)`` → fp32 output.

    Exposes the wrapped network's ``cfg`` (image multiple, channels, learned variance).
    """

    def __init__(self, net: nn.Module, options: SpeedOptions, device: torch.device):
        super().__init__()
        self.net, self.options, self.device_type = net, options, device.type
        memory_format = torch.channels_last if options.channels_last else torch.contiguous_format
        net.to(memory_format=memory_format)
        call = net
        if options.compile:
            mode = None if options.backend != "inductor" or options.compile_mode == "default" else options.compile_mode
            call = torch.compile(net, dynamic=False, backend=options.backend, mode=mode)
        # A plain attribute: the compiled module must not be registered twice as a submodule.
        self.__dict__["_call"] = call
        self._tf32 = {"fp32": False, "tf32": True}.get(options.precision) if device.type == "cuda" else None

    @property
    def cfg(self):
        return getattr(self.net, "cfg", None)

    def _autocast(self):
        if self.options.precision == "bf16":
            return torch.autocast(self.device_type, dtype=torch.bfloat16)
        return nullcontext()

    def _run(self, x: Tensor, t: Tensor) -> Tensor:
        if self.options.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with self._autocast():
            out = self._call(x, t)
        return out.float().contiguous()

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        if self._tf32 is None:
            return self._run(x, t)
        return call_with_tf32(lambda v: self._run(v, t), x, self._tf32)


def accelerate(net: nn.Module, options: SpeedOptions | None = None, device: torch.device | str | None = None) -> FastNet:
    """``net`` wrapped to run with ``options`` (default: the device's) on ``device`` (default: its own).

    ``net`` is converted in place to the chosen memory format (the wrapper shares its parameters).
    """
    if device is None:
        device = next(net.parameters()).device
    device = torch.device(device)
    resolved = (options or SpeedOptions()).resolve(device)
    return FastNet(net, resolved, device)


def speed_fields(net: nn.Module) -> dict:
    """The resolved switches of an accelerated network as row fields (fp32 eager for a plain one)."""
    if isinstance(net, FastNet):
        return net.options.row()
    return SpeedOptions("fp32", False, False).row()


__all__ = [
    "COMPILE_MODES", "PRECISIONS", "FastNet", "SpeedOptions", "accelerate", "bf16_supported",
    "call_with_tf32", "compile_problem", "speed_fields", "tf32_scope",
]
