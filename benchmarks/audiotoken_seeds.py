"""Which of AudioToken's Table 1 orderings hold at toy scale, beyond the spread between trainings?

Run after the toy pipeline (`make train PROJECT=audiotoken`), whose frozen parts (toy CLIP, Wav2CLIP, Stable
Diffusion, BEATs) it reuses and whose Embedder run is seed 0; for each further seed it trains the Embedder again,
in runs/audiotoken/toy_audiotoken/seed<N>, and scores it exactly as the pipeline's summary does (the same test
clips, noise and pools; the baselines' rows do not depend on the Embedder except through the random token's
statistics):

    python -m benchmarks.audiotoken_seeds --seeds 1 2 [--out runs/audiotoken/benchmark_seeds.json]

A finished seed is not trained again (its run resumes as finished), so the script can be re-run after a kill.
Prints each row's mean and standard deviation over the seeds (seed 0 included) for every metric, and in how many
seeds AudioToken beat each baseline; writes it all to `--out` (JSON).
"""

from __future__ import annotations

import json
import statistics

from benchmarks.seeds import QUIET, parse_seed_args, seeded_args, write_results
from projects.audiotoken.evaluate import AUDIOTOKEN, ROWS
from projects.audiotoken.pipeline import COLUMNS, STAGES, evaluate_stage
from shared.pipeline import StageResult, run_stage

HIGHER_IS_BETTER = {"aic": True, "ais": True, "iis": True, "fid": False}


def better(value: float, baseline: float, metric: str) -> bool:
    return value > baseline if HIGHER_IS_BETTER[metric] else value < baseline


def summarize(table: dict[int, dict[str, dict[str, float]]]) -> dict[str, dict[str, dict]]:
    summary: dict[str, dict[str, dict]] = {}
    for row in ROWS:
        summary[row] = {}
        for _, name, scale in COLUMNS:
            values = [scale * table[seed][row][name] for seed in table]
            entry = {
                "mean": statistics.mean(values),
                "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
            }
            if row != AUDIOTOKEN:
                wins = sum(better(table[s][AUDIOTOKEN][name], table[s][row][name], name) for s in table)
                entry["audiotoken_better"] = f"{wins}/{len(table)}"
            summary[row][name] = entry
    print(f"\nmean +- sd over training seeds {sorted(table)}; 'w/n': seeds in which AudioToken beats the row")
    print(f"{'':<18}" + "".join(f"{heading:<24}" for heading, _, _ in COLUMNS))
    for row, metrics in summary.items():
        cells = [
            f"{m['mean']:.3g} +- {m['sd']:.2g} {m.get('audiotoken_better', '')}" for m in metrics.values()
        ]
        print(f"{row:<18}" + "".join(f"{cell:<24}" for cell in cells))
    return summary


def main() -> None:
    args, extra = parse_seed_args(__doc__.split("\n\n")[0], "runs/audiotoken/benchmark_seeds.json")
    results: dict[str, StageResult] = {}
    for stage in STAGES[:-1]:  # the pipeline's finished runs: each resumes as finished
        results[stage.name] = run_stage("audiotoken", stage, results, QUIET)
    embedder = STAGES[-1]
    table: dict[int, dict[str, dict[str, float]]] = {}
    for seed in [0, *args.seeds]:
        seeded = seeded_args(seed, extra)
        results[embedder.name] = run_stage("audiotoken", embedder, results, seeded)
        table[seed] = evaluate_stage(results)
        print(f"seed {seed}: " + json.dumps(table[seed]), flush=True)
    summary = summarize(table)
    write_results(args.out, table, summary)


if __name__ == "__main__":
    main()
