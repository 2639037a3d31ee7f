"""``fdem deblur`` with its defaults on every photograph of a folder, one at a time, timed; a markdown
table of what each verdict says (studies/real_photos/NOTES.md describes the outcomes).

    python -m studies.real_photos.run_photos --images ../shared/data/real_blur --out /tmp/real \
        [--max-side 384] [--only car5] [-- extra fdem deblur flags]

Each photo's outputs go to ``OUT/<stem>/``; ``OUT/table.md`` collects: size restored at, σ estimated,
residual, the kernel's share in 3×3 px and on its border, the largest cell gain, the warnings and the
wall time of the command (model loading, plan and verdict included). Photos already done (a verdict
on disk) are skipped, so the script resumes; ``--rejudge`` writes the verdicts again from the outputs on
disk (after a change to the verdict, without running the photos again).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from studies.common import run_script


def deblur(photo: Path, out: Path, max_side: int | None, extra: list[str]) -> float:
    """Run ``fdem deblur`` on one photo; its wall seconds (the log beside its outputs)."""
    command = [sys.executable, "-m", "fdem.cli", "deblur", str(photo), "--out", str(out), *extra]
    if max_side:
        command += ["--max-side", str(max_side)]
    began = time.perf_counter()
    with open(out.parent / f"{out.name}.log", "w") as log:
        subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=False)
    return time.perf_counter() - began


def rejudge(photo: Path, out: Path, max_side: int | None, restorer) -> None:
    """The verdict of ``fdem deblur`` again, from the restored image and kernel already in ``out``."""
    from types import SimpleNamespace

    import numpy as np
    import torch

    from fdem.cli.deblur_inputs import load_observation
    from fdem.cli.deblur_outputs import save_verdict
    from fdem.imageio import read_picture
    from fdem.noise_level import estimate_noise

    obs = load_observation(photo, max_side)
    image = read_picture(out / f"{photo.stem}_restored.png").colour[None]
    kernel = torch.from_numpy(np.load(out / f"{photo.stem}_kernel.npy"))[None, None]
    sigma = float(estimate_noise(obs.image[None].clamp(0, 1))[0])
    save_verdict(obs, SimpleNamespace(image=image, kernel=kernel), sigma, "estimated", restorer, out, [])


def row(stem: str, out: Path, seconds: float | None) -> str:
    """One table row from ``<stem>_verdict.json`` (or a failure note)."""
    path = out / f"{stem}_verdict.json"
    if not path.is_file():
        return f"| {stem} | failed: see {out}.log | | | | | | |"
    v = json.loads(path.read_text())
    gains = [g for g in v["cell_gain"] if g is not None]
    gain = f"{max(gains):.2f}" if gains else "–"
    warnings = "; ".join(w.split(":")[0] for w in v["warnings"]) or "none"
    took = "–" if seconds is None else f"{seconds:.0f}"
    return (f"| {stem} | {v['sigma255']:.2f} | {v['residual']:.2f} | {100 * v['dirac_mass']:.0f} % | "
            f"{100 * v['border_mass']:.1f} % | {gain} | {warnings} | {took} |")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--max-side", type=int)
    p.add_argument("--only", nargs="*", help="stems to run (default: every image of the folder)")
    p.add_argument("--rejudge", action="store_true", help="write the verdicts again from the outputs on disk")
    p.add_argument("extra", nargs="*", help="flags passed to fdem deblur (after --)")
    args = p.parse_args(argv)
    from fdem.imageio import list_images

    root = Path(args.out)
    root.mkdir(parents=True, exist_ok=True)
    times_file = root / "seconds.json"
    times = json.loads(times_file.read_text()) if times_file.is_file() else {}
    restorer, judged = None, set()
    for photo in list_images(Path(args.images)):
        if args.only and photo.stem not in args.only:
            continue
        out = root / photo.stem
        if args.rejudge and (out / f"{photo.stem}_kernel.npy").is_file():
            from fdem.restorers import build_restorer

            restorer = restorer or build_restorer("fastem-pigdm", "cpu", preset="photo")
            rejudge(photo, out, args.max_side, restorer)
            judged.add(photo.stem)
            continue
        if not (out / f"{photo.stem}_verdict.json").is_file():
            times[photo.stem] = deblur(photo, out, args.max_side, args.extra)
            times_file.write_text(json.dumps(times, indent=1))
            print(f"{photo.stem}: {times[photo.stem]:.0f} s", flush=True)
    lines = ["| photo | σ (255) | residual / σ | kernel in 3×3 | on border | largest cell gain (σ²) | warnings | seconds |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [row(stem, root / stem, times.get(stem)) for stem in sorted(set(times) | judged)]
    (root / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    run_script(main)
