"""Which of WavBriVL's orderings hold at toy scale, beyond the spread between trainings?

Run after the toy pipeline (`make train PROJECT=wavbrivl`), whose frozen image tower it reuses and whose audio
towers are seed 0; for each further seed it trains both audio towers again (BriVL's MoCo and Wav2CLIP's
InfoNCE), in runs/wavbrivl/toy_audio_tower{,_infonce}/seed<N>, draws the random-init tower from that seed, and
scores the rows exactly as the pipeline's summary does (`projects.wavbrivl.pipeline.evaluate_rows`: probes and
retrieval MRR on the toy test split; the mel statistics do not depend on the seed):

    python -m benchmarks.wavbrivl_seeds --seeds 1 2 [--out runs/wavbrivl/benchmark_seeds.json]

A finished seed is not trained again (its run resumes as finished), so the script can be re-run after a kill.
Prints each row's mean and standard deviation over the seeds (seed 0 included) for every metric, and in how many
seeds each ordering held (MoCo above the random-init tower, InfoNCE above it, MoCo above InfoNCE, each trained
tower's probe above the mel statistics'); writes it all to `--out` (JSON).
"""

from __future__ import annotations

import json
import statistics

from benchmarks.seeds import QUIET, parse_seed_args, seeded_args, write_results
from projects.wavbrivl.evaluate import MRR_COLUMNS, EvaluationResult
from projects.wavbrivl.pipeline import STAGES, evaluate_rows
from shared.pipeline import StageResult, run_stage

MOCO, INFONCE, RANDOM, MEL = (
    "WavBriVL (MoCo)",
    "WavBriVL (InfoNCE)",
    "random-init audio tower",
    "mel statistics",
)
ORDERINGS = [(MOCO, RANDOM), (INFONCE, RANDOM), (MOCO, INFONCE), (MOCO, MEL), (INFONCE, MEL)]


def flatten(rows: dict[str, EvaluationResult]) -> dict[str, dict[str, float]]:
    """{row: {metric: value}}: the probes' accuracies and the MRRs (every metric higher is better)."""
    table = {}
    for name, result in rows.items():
        values = {f"{kind} acc": probe.value for kind, probe in result.probes.items()}
        values.update(
            {label: result.retrieval[key] for key, label in MRR_COLUMNS.items() if key in result.retrieval}
        )
        table[name] = values
    return table


def summarize(table: dict[int, dict[str, dict[str, float]]]) -> dict:
    seeds = sorted(table)
    rows = table[seeds[0]]
    summary: dict = {"rows": {}, "orderings": {}}
    for row, metrics in rows.items():
        summary["rows"][row] = {}
        for metric in metrics:
            values = [table[s][row][metric] for s in seeds]
            sd = statistics.stdev(values) if len(values) > 1 else 0.0
            summary["rows"][row][metric] = {"mean": statistics.mean(values), "sd": sd}
    for better, worse in ORDERINGS:
        shared = [m for m in rows[better] if m in rows[worse]]
        summary["orderings"][f"{better} > {worse}"] = {
            m: f"{sum(table[s][better][m] > table[s][worse][m] for s in seeds)}/{len(seeds)}" for m in shared
        }
    metrics = list(dict.fromkeys(m for values in rows.values() for m in values))
    print(f"\nmean +- sd over training seeds {seeds}")
    print(f"{'':<26}" + "".join(f"{m:<20}" for m in metrics))
    for row, values in summary["rows"].items():
        cells = [f"{values[m]['mean']:.3f} +- {values[m]['sd']:.3f}" if m in values else "-" for m in metrics]
        print(f"{row:<26}" + "".join(f"{cell:<20}" for cell in cells))
    print("\nseeds in which the ordering held:")
    for ordering, held in summary["orderings"].items():
        print(f"  {ordering:<50}" + "  ".join(f"{m} {h}" for m, h in held.items()))
    return summary


def main() -> None:
    args, extra = parse_seed_args(__doc__.split("\n\n")[0], "runs/wavbrivl/benchmark_seeds.json")
    stages = {stage.name: stage for stage in STAGES}
    results: dict[str, StageResult] = {"image_tower": run_stage("wavbrivl", stages["image_tower"], {}, QUIET)}
    table: dict[int, dict[str, dict[str, float]]] = {}
    for seed in [0, *args.seeds]:
        seeded = seeded_args(seed, extra)
        for name in ("audio_tower", "audio_tower_infonce"):
            results[name] = run_stage("wavbrivl", stages[name], results, seeded)
        table[seed] = flatten(evaluate_rows(results, random_seed=seed))
        print(f"seed {seed}: " + json.dumps(table[seed]), flush=True)
    summary = summarize(table)
    write_results(args.out, table, summary)


if __name__ == "__main__":
    main()
