"""Run a benchmark from Python: a config built in code, the harness's rows, tables and pictures.

    python examples/bench_programmatic.py [--out outputs/example_bench]

The same harness as ``fdem bench --config X.yaml`` (resumable rows, Table 1 markdown, Pareto plot,
comparison picture), on the built-in photographs at 64² with two classical blind methods and Fast EM
under the ``few-step`` preset at a few steps: a minute on a CPU.
"""

import argparse

import pandas as pd

from fdem.benchmarks.run import BenchConfig, run_benchmark


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="outputs/example_bench", help="output folder (rerun: resumes)")
    parser.add_argument("--steps", type=int, default=4, help="Fast EM's network calls")
    args = parser.parse_args()

    config = BenchConfig(
        out=args.out,
        title="example: classical blind methods and Fast EM",
        data={"images": "bundled", "num_images": 2, "size": 64, "kernels": "camera-shake", "kernel_size": 9,
              "sigmas": [5], "seed": 0},
        methods=[
            {"method": "blurry", "label": "blurry input", "options": {"kernel_size": 9}},
            {"method": "alternation", "options": {"kernel_size": 9}},
            {"method": "fastem-pigdm", "options": {"preset": "few-step", "steps": args.steps, "kernel_size": 9}},
        ],
        metrics=["psnr", "ssim"],
        trainer={"accelerator": "cpu", "devices": 1},
    )
    written = run_benchmark(config, progress=False)
    rows = pd.read_csv(f"{args.out}/rows.csv")
    print(rows.groupby("method")[["psnr", "kernel_mse", "seconds"]].mean().round(4).to_string())
    print("written:", ", ".join(sorted(written)))


if __name__ == "__main__":
    main()
