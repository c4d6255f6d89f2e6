"""Which of GRAVO's Table 1-2 orderings hold at toy scale, beyond the spread between trainings?

Run after the toy pipeline (`make train PROJECT=gravo`), whose VQ-VAE, classifier, Wav2CLIP and Up prior it
reuses (and whose Low runs are seed 0); for each further seed it trains the five Low variants again, in
runs/gravo/toy_low_*/seed<N>, and scores them exactly as the pipeline's summary does:

    python -m benchmarks.gravo_seeds --seeds 1 2 [--out runs/gravo/benchmark_seeds.json]
    python -m benchmarks.gravo_seeds --seeds 9 --trainer.max_steps=2   # other arguments go to every Low stage

A finished seed is not trained again (its runs resume as finished), so the script can be re-run after a kill.
Prints each row's mean and standard deviation over the seeds (seed 0 included) for every metric, and for each
variant and metric in how many seeds it beat Im2Wav; writes it all to `--out` (JSON).
"""

from __future__ import annotations

import json
import statistics

from benchmarks.seeds import QUIET, parse_seed_args, seeded_args, write_results
from projects.gravo.pipeline import COLUMNS, LOW_VARIANTS, PERCENT, SETTINGS, STAGES, evaluate_variant
from shared.pipeline import StageResult, run_stage

# metric -> True when higher is better (GRAVO sec. 3.3)
HIGHER_IS_BETTER = {
    "fad": False,
    "kl": False,
    "cs": True,
    "acc": True,
    "tcs": True,
    "ih_cs": True,
    "ih_acc": True,
}


def beats(value: float, baseline: float, metric: str) -> bool:
    """Is `value` strictly better than `baseline` on `metric`?"""
    return value > baseline if HIGHER_IS_BETTER[metric] else value < baseline


def summarize(table: dict[int, dict[str, dict[str, float]]]) -> dict[str, dict[str, dict]]:
    """Per row and metric: mean and sd over the seeds (ACC in %) and in how many seeds the row beat Im2Wav;
    printed."""
    metrics = [name for block in COLUMNS for _, name in block]
    summary: dict[str, dict[str, dict]] = {}
    for label, _, _ in LOW_VARIANTS:
        summary[label] = {}
        for name in metrics:
            values = [PERCENT.get(name, 1) * table[seed][label][name] for seed in table]
            wins = sum(beats(table[seed][label][name], table[seed]["Im2Wav"][name], name) for seed in table)
            summary[label][name] = {
                "mean": statistics.mean(values),
                "sd": statistics.stdev(values) if len(values) > 1 else float("nan"),
                "beats_im2wav": f"{wins}/{len(table)}",
            }
    print(f"\nmean +- sd over training seeds {sorted(table)}; 'w/n': seeds in which the row beats Im2Wav")
    print(f"{'':<26}" + "".join(f"{name:<22}" for name in metrics))
    for label, row in summary.items():
        cells = [f"{r['mean']:.3g} +- {r['sd']:.2g} {r['beats_im2wav']}" for r in row.values()]
        print(f"{label:<26}" + "".join(f"{cell:<22}" for cell in cells))
    return summary


def main() -> None:
    args, extra = parse_seed_args(__doc__.split("\n\n")[0], "runs/gravo/benchmark_seeds.json")
    stages = {stage.name: stage for stage in STAGES}
    # the pipeline's finished runs: each resumes as finished and is only validated
    frozen: dict[str, StageResult] = {}
    for name in ("vqvae", "classifier", "wav2clip"):
        frozen[name] = run_stage("gravo", stages[name], frozen, QUIET)
    frozen["up"] = run_stage("gravo", stages["up"], frozen, QUIET)

    table: dict[int, dict[str, dict[str, float]]] = {}
    for seed in [0, *args.seeds]:
        seeded = seeded_args(seed, extra)
        results = dict(frozen)
        table[seed] = {}
        for label, stage, _ in LOW_VARIANTS:
            results[stage] = run_stage("gravo", stages[stage], results, seeded)
            table[seed][label] = evaluate_variant(results, stage, SETTINGS)
        print(f"seed {seed}: " + json.dumps(table[seed]), flush=True)

    summary = summarize(table)
    write_results(args.out, table, summary)


if __name__ == "__main__":
    main()
