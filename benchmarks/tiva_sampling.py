"""Sampler settings on the same trained toy TiVA model against 200 DDPM steps (paper sec. 4.1.1: second-order
DPM-Solver, 25 steps, classifier-free guidance 5.0).

Run after the toy pipeline (`make train PROJECT=tiva`), which leaves the joint stage and the toy Melception
in runs/tiva/:

    python benchmarks/tiva_sampling.py [--settings ddpm-200 dpm-25 ...] [--seeds 1234 999]
        [--run runs/tiva/toy_joint/default] [--melception runs/tiva/toy_melception/default]

`--settings all` runs every named setting of `SETTINGS` (the diagnosis in projects/tiva/README.md); the
default is DDPM-200, TiVA's DPM-Solver (the SDE form), its ODE form and the ODE on the time-uniform grid.
Each setting generates every test clip `--samples` times (the pipeline summary's `EVAL_SAMPLES` unless told; `--test-batches N`
scores the first N batches of 8 clips only: 3 are the first 4 test clips of each class), once per noise seed
(`eval_seed`; the same seeds for every setting), through the summary's own evaluation
(`projects.tiva.pipeline.evaluate_run`), so the metrics are the summary's. The time per clip covers S, T,
the sampler and the VAE decoder (the vocoder excluded, as the paper measures it). Prints a table (the mean
over seeds against DDPM-200, and each seed's metrics with their 95 % bootstrap intervals over clips) and
writes every seed's metrics to `--out` (JSON) after each setting.
"""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path

from projects.tiva.pipeline import COLUMNS, EVAL_SAMPLES, evaluate_run
from shared.diffusion import DPMSolverOptions
from shared.metrics import format_interval
from shared.runs import run_checkpoint


@dataclass(frozen=True)
class Setting:
    sampler: str  # `SamplingSettings.sampler`: "dpm_solver" or "ddpm"
    steps: int
    options: dict = field(default_factory=dict)  # `shared.diffusion.DPMSolverOptions` fields, others default
    guidance_scale: float = 5.0

    def overrides(self, seed: int) -> list[str]:
        """`avgen test` arguments; every DPM-Solver option is given, so the run's saved config cannot differ."""
        sampling = "--model.init_args.sampling"
        return [
            f"{sampling}.sampler={self.sampler}",
            f"{sampling}.steps={self.steps}",
            f"{sampling}.guidance_scale={self.guidance_scale}",
            *(f"{sampling}.dpm_solver.{k}={v}" for k, v in asdict(DPMSolverOptions(**self.options)).items()),
            f"--model.init_args.eval_seed={seed}",
        ]


SETTINGS = {
    "ddpm-200": Setting("ddpm", 200),
    "ddpm-1000": Setting("ddpm", 1000),
    # DPMSolverOptions' default: 2M (the probability-flow ODE), logSNR-uniform steps 999 ... 0, the last step to x̂_0
    "dpm-25": Setting("dpm_solver", 25),
    "dpm-50": Setting("dpm_solver", 50),
    "dpm-100": Setting("dpm_solver", 100),
    # time-uniform grid 999, 959, ..., 40, last step to x̂_0 (the sampler's default until this benchmark)
    "dpm-25-linspace": Setting("dpm_solver", 25, {"spacing": "linspace"}),
    "dpm-100-linspace": Setting("dpm_solver", 100, {"spacing": "linspace"}),
    # the same grid ending at σ_min (t = 0) without a final x̂_0 step, as LuChengTHU/dpm-solver does
    "dpm-25-linspace-sigma_min": Setting(
        "dpm_solver", 25, {"spacing": "linspace", "final_sigmas_type": "sigma_min"}
    ),
    "dpm-25-sigma_min": Setting("dpm_solver", 25, {"final_sigmas_type": "sigma_min"}),
    "dpm-25-karras": Setting("dpm_solver", 25, {"spacing": "karras"}),
    "dpm-25-3m": Setting("dpm_solver", 25, {"solver_order": 3}),
    # TiVA's default (`projects.tiva.models.pipeline.TIVA_DPM_SOLVER`): the same steps in the SDE form
    "dpm-25-sde": Setting("dpm_solver", 25, {"algorithm_type": "sde-dpmsolver++"}),
    # guidance: does the gap to DDPM grow with the scale?
    "ddpm-200-g1": Setting("ddpm", 200, guidance_scale=1.0),
    "dpm-25-g1": Setting("dpm_solver", 25, guidance_scale=1.0),
    "dpm-25-linspace-g1": Setting("dpm_solver", 25, {"spacing": "linspace"}, guidance_scale=1.0),
}
DEFAULT_SETTINGS = ["ddpm-200", "dpm-25-sde", "dpm-25", "dpm-25-linspace"]
LABELS = {name: heading for block in COLUMNS for heading, name in block if name != "layout_l2"}
METRICS = tuple(LABELS)


def summary(per_seed: dict[str, dict[str, float]]) -> dict[str, float]:
    """The mean over seeds of each metric, and its spread (max - min) as `<metric>_spread`."""
    out = {}
    for metric in METRICS:
        values = [m[metric] for m in per_seed.values() if metric in m]
        if values:
            out[metric] = statistics.fmean(values)
            out[f"{metric}_spread"] = max(values) - min(values)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--settings", nargs="+", default=DEFAULT_SETTINGS, help="names of SETTINGS, or 'all'")
    parser.add_argument("--seeds", nargs="+", type=int, default=[1234, 999], help="eval_seed of each run")
    parser.add_argument("--samples", type=int, default=EVAL_SAMPLES, help="generations of each test clip")
    parser.add_argument(
        "--test-batches", type=int, default=None, help="only the first N test batches (default: all)"
    )
    parser.add_argument("--run", default="runs/tiva/toy_joint/default")
    parser.add_argument("--melception", default="runs/tiva/toy_melception/default")
    parser.add_argument("--out", default="runs/tiva/benchmark_sampling.json")
    args = parser.parse_args()
    names = list(SETTINGS) if args.settings == ["all"] else args.settings
    if unknown := [n for n in names if n not in SETTINGS]:
        parser.error(f"unknown settings {unknown}; choose from {list(SETTINGS)} or 'all'")
    run = Path(args.run)
    checkpoint, melception = run_checkpoint(run), run_checkpoint(args.melception)
    limit = [] if args.test_batches is None else [f"--trainer.limit_test_batches={args.test_batches}"]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    results = {}
    for name in names:
        setting = SETTINGS[name]
        per_seed = {
            str(seed): evaluate_run(
                run, checkpoint, melception, setting.overrides(seed) + limit, args.samples
            )
            for seed in args.seeds
        }
        results[name] = {"setting": asdict(setting), "seeds": per_seed, "mean": summary(per_seed)}
        out.write_text(
            json.dumps({"checkpoint": str(checkpoint), "args": vars(args), "results": results}, indent=2)
        )

    print(
        f"{args.samples} samples per clip; each seed's value [95 % bootstrap interval over clips]; "
        "s/clip = generation time per clip, vocoder excluded"
    )
    print(f"{'setting':<27}{'seed':>6}  " + " ".join(f"{LABELS[c]:<22}" for c in METRICS))
    for name, result in results.items():
        for seed, m in result["seeds"].items():
            cells = [
                format_interval(*(m.get(f"{c}{end}", float("nan")) for end in ("", "_lo", "_hi")))
                for c in METRICS
            ]
            print(f"{name:<27}{seed:>6}  " + " ".join(f"{cell:<22}" for cell in cells))
    if "ddpm-200" in results:
        ddpm = results["ddpm-200"]["mean"]
        print("mean over seeds, against DDPM-200:")
        for name, result in results.items():
            mean = result["mean"]
            print(
                f"{name:<27} FAD {mean['fid']:.2f} ({mean['fid'] / ddpm['fid']:.2f}x DDPM-200's), "
                f"{ddpm['seconds_per_clip'] / mean['seconds_per_clip']:.1f}x its speed"
            )


if __name__ == "__main__":
    main()
