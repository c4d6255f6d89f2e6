"""25 DPM-Solver steps against 200 DDPM steps on the same trained toy TiVA model (paper sec. 4.1.1).

Run after the toy pipeline (`make train PROJECT=tiva`), which leaves the joint stage and the toy Melception
in runs/tiva/:

    python benchmarks/tiva_sampling.py [--run runs/tiva/toy_joint/default] [--melception runs/tiva/toy_melception/default]

Each sampler generates every test clip as many times as the pipeline's summary does (`EVAL_SAMPLES`), with
the same seeds (classifier-free guidance 5.0), and is scored by the same metrics; the time per clip covers S,
T, the sampler and the VAE decoder (the vocoder excluded, as the paper measures it). Prints a table and
writes it to `--out` (JSON).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from projects.tiva.pipeline import COLUMNS, evaluate_run

SETTINGS = {"DPM-Solver, 25 steps": ["dpm_solver", 25], "DDPM, 200 steps": ["ddpm", 200]}


def best_or_last(run: Path) -> Path:
    for name in ("best.ckpt", "last.ckpt"):
        if (run / "checkpoints" / name).is_file():
            return run / "checkpoints" / name
    raise FileNotFoundError(f"{run}/checkpoints: no best.ckpt or last.ckpt (run the toy pipeline first)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", default="runs/tiva/toy_joint/default")
    parser.add_argument("--melception", default="runs/tiva/toy_melception/default")
    parser.add_argument("--out", default="runs/tiva/benchmark_sampling.json")
    args = parser.parse_args()
    run = Path(args.run)
    checkpoint, melception = best_or_last(run), best_or_last(Path(args.melception))
    results = {}
    for label, (sampler, steps) in SETTINGS.items():
        overrides = [f"--model.init_args.sampler={sampler}", f"--model.init_args.steps={steps}"]
        results[label] = evaluate_run(run, checkpoint, melception, overrides)
    print(f"{'sampler':<24}" + "".join(f"{c:>18}" for c in COLUMNS))
    for label, metrics in results.items():
        print(f"{label:<24}" + "".join(f"{metrics.get(c, float('nan')):18.4f}" for c in COLUMNS))
    dpm, ddpm = (results[k]["seconds_per_clip"] for k in SETTINGS)
    print(f"speed: DDPM 200 steps takes {ddpm / dpm:.1f}x the time of DPM-Solver 25 steps per clip")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"results": results, "speed_ratio": ddpm / dpm}, indent=2))


if __name__ == "__main__":
    main()
