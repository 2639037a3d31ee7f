"""Atomic file writing: a result file is either complete or absent, never half-written."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager, suppress
from pathlib import Path

from fdem.errors import InputError


def ensure_writable_dir(folder: str | Path) -> Path:
    """Create ``folder`` if needed and check that files can be written there."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise InputError(f"output folder {folder} is not writable: {err.strerror or err}") from err
    return folder


@contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary sibling of ``path`` (same suffix, so writers infer the format); on success
    it replaces ``path``, on any error it is deleted. Parent folders are created; an OS error
    becomes an :class:`InputError` naming ``path``."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    except OSError as err:
        raise InputError(f"cannot write {path}: {err.strerror or err}") from err
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes the file private; give it an ordinary file's mode
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except OSError as err:
        raise InputError(f"cannot write {path}: {err.strerror or err}") from err
    finally:
        with suppress(FileNotFoundError):
            os.remove(tmp)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def check_creatable_dir(folder: str | Path) -> Path:
    """Check, creating nothing, that ``folder`` is a writable folder or could be made as one."""
    folder = Path(folder)
    existing = folder
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(f"output folder {folder}: {existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"output folder {folder} is not writable: permission denied on {existing}")
    return folder


class OutputFolder:
    """An output folder made at the first write, so a run refused before it leaves nothing behind.

    ``folder()`` creates it (checked writable); ``discard(paths)`` removes the files of an
    unfinished item and then the folders this object made, if they are empty.
    Files of finished items are kept.
    """

    def __init__(self, path: str | Path):
        self.path = check_creatable_dir(path)
        self.missing = [d for d in (self.path, *self.path.parents) if not d.exists()]  # deepest first

    def folder(self) -> Path:
        """The folder, created now if needed."""
        return ensure_writable_dir(self.path)

    def discard(self, paths=()) -> None:
        """Remove ``paths`` (an unfinished item's files), then the folders it made that are empty."""
        for p in paths:
            with suppress(FileNotFoundError):
                os.remove(p)
        for d in self.missing:
            if not d.is_dir() or any(d.iterdir()):
                break
            d.rmdir()


def write_skipped(folder: str | Path, skipped: list[tuple[str, str]]) -> Path:
    """Write ``folder/skipped.csv`` (columns ``path, reason``): the inputs a run could not read."""
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["path", "reason"])
    writer.writerows(skipped)
    atomic_write_text(Path(folder) / "skipped.csv", buffer.getvalue())
    return Path(folder) / "skipped.csv"
