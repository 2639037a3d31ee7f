"""One guided call of the shipped prior (forward and input gradient) on a whole canvas against 128² tiles
(kept, or checkpointed), with the rule ``Tiling.wrap`` applies (docs/design.md §16); markdown rows.

    python -m studies.borders.tile_timing [--sizes 1x192x192 2x192x192 1x256x256 1x288x288 1x288x368 2x288x368]
"""

from __future__ import annotations

import argparse
import time

import torch

from studies.common import run_script

SIZES = ("1x192x192", "2x192x192", "1x256x256", "1x288x288", "1x288x368", "2x288x368")


def fastest(net, batch: int, height: int, width: int, calls: int = 2) -> float:
    """Seconds of the fastest of ``calls`` guided calls after a warm-up."""
    x, t = torch.randn(batch, 3, height, width), torch.full((batch,), 500)
    times = []
    for _ in range(calls + 1):
        x_in = x.clone().requires_grad_(True)
        began = time.perf_counter()
        torch.autograd.grad(net(x_in, t).sum(), x_in)
        times.append(time.perf_counter() - began)
    return min(times[1:])


def main(argv: list[str] | None = None) -> None:
    from fdem.restorers import build_restorer
    from fdem.sampling.tiled import TiledNet, attention_dominates

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", nargs="+", default=list(SIZES), help="BATCHxHEIGHTxWIDTH canvases")
    p.add_argument("--tile", type=int, default=128)
    args = p.parse_args(argv)
    net = build_restorer("fastem-pigdm", "cpu", preset="photo").net
    print("| canvas | chains | attention dominates | whole (s) | tiles kept (s) | tiles checkpointed (s) |")
    print("|---|---|---|---|---|---|")
    for size in args.sizes:
        batch, height, width = (int(v) for v in size.split("x"))
        cells = [fastest(m, batch, height, width) for m in
                 (net, TiledNet(net, args.tile, args.tile // 4, 2, checkpointed=False),
                  TiledNet(net, args.tile, args.tile // 4, 2, checkpointed=True))]
        print(f"| {height}x{width} | {batch} | {attention_dominates(net, height, width)} | "
              + " | ".join(f"{c:.2f}" for c in cells) + " |", flush=True)


if __name__ == "__main__":
    run_script(main)
