"""The torch thread count of a benchmark process: part of the run's configuration.

Float sums split over a different number of threads round differently, and chaotic samplers
(blind Fast EM at 100 steps) amplify that rounding, so a row depends on the thread count. Lightning's DDP launcher sets ``cores / processes`` threads when
``OMP_NUM_THREADS`` is unset, so 1 and N processes would compute with different counts. The
config's ``threads`` (default 1, the same for any number of processes) is set in every process
before any method is built (intra-op; see :func:`set_threads`), and recorded in ``manifest.json`` and in every row.
"""

from __future__ import annotations

import torch

from fdem.errors import InputError

DEFAULT_THREADS = 1


def check_threads(threads) -> int:
    """``threads`` if it is an integer ≥ 1, else an :class:`InputError`."""
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise InputError(f"threads: expected an integer >= 1 (torch threads per process), got {threads!r}")
    return threads


def set_threads(threads: int) -> None:
    """Set the intra-op thread count. The inter-op pool is left alone: eager ops run no inter-op
    tasks, so it cannot change a number (it is recorded by :func:`current_threads`)."""
    torch.set_num_threads(check_threads(threads))


def current_threads() -> dict[str, int]:
    """The process's intra-op and inter-op thread counts."""
    return {"intra_op": torch.get_num_threads(), "inter_op": torch.get_num_interop_threads()}
