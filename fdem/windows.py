"""Where overlapping tiles start along one axis: shared by the tiled network (:mod:`fdem.sampling.tiled`)
and the memory plan (:mod:`fdem.memory`), which must count the same windows."""


def window_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Starts of windows of ``tile`` covering ``range(size)`` with stride ``tile − overlap``, the last flush."""
    starts = list(range(0, size - tile, tile - overlap)) + [size - tile]
    return sorted(set(starts))
