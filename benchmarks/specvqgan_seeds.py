"""Do SpecVQGAN's visual features beat the "No Feats" sampler at toy scale, beyond the spread between trainings?

SpecVQGAN (arXiv:2110.08791) Table 2 orders the samplers conditioned on video features above the one without
("No Feats"). Run after the toy pipeline (`make train PROJECT=specvqgan`), whose VGGish-ish, codebook, frame
encoder, vocoder and Melception it reuses (and whose two sampler runs are seed 0); for each further seed it trains
both samplers again, in runs/specvqgan/toy_sampler{,_nofeats}/seed<N>, and scores them exactly as the pipeline's
summary does (`avgen test` with the toy Melception's FID, MKL and IS on the test split):

    python -m benchmarks.specvqgan_seeds --seeds 1 2 [--out runs/specvqgan/benchmark_seeds.json]
    python -m benchmarks.specvqgan_seeds --seeds 9 --trainer.max_steps=2   # other arguments go to both samplers

A finished seed is not trained again (its runs resume as finished), so the script can be re-run after a kill.
Prints each sampler's mean and standard deviation over the seeds (seed 0 included) and in how many seeds the
sampler with features beat No Feats; writes it all to `--out` (JSON).
"""

from __future__ import annotations

import json
import statistics

from benchmarks.seeds import QUIET, parse_seed_args, seeded_args, write_results
from projects.specvqgan.pipeline import STAGES, test_sampler
from shared.pipeline import StageResult, run_stage

SAMPLERS = {"sampler": "video features", "sampler_nofeats": "No Feats"}
HIGHER_IS_BETTER = {"fid": False, "mkl": False, "is": True}


def scores(metrics: dict[str, float]) -> dict[str, float]:
    """FID, MKL and IS of a sampler's samples, with their intervals, from its `avgen test` metrics."""
    return {
        f"{name}{end}": metrics[f"test/{name}{end}_samples"]
        for name in HIGHER_IS_BETTER
        for end in ("", "_lo", "_hi")
    }


def summarize(table: dict[int, dict[str, dict[str, float]]]) -> dict[str, dict[str, dict]]:
    summary: dict[str, dict[str, dict]] = {}
    for row in SAMPLERS.values():
        summary[row] = {}
        for name, higher in HIGHER_IS_BETTER.items():
            values = [table[seed][row][name] for seed in table]
            summary[row][name] = {
                "mean": statistics.mean(values),
                "sd": statistics.stdev(values) if len(values) > 1 else float("nan"),
            }
            if row == SAMPLERS["sampler"]:
                pairs = [(t[row][name], t[SAMPLERS["sampler_nofeats"]][name]) for t in table.values()]
                wins = sum((ours > theirs) if higher else (ours < theirs) for ours, theirs in pairs)
                summary[row][name]["beats_no_feats"] = f"{wins}/{len(table)}"
    print(f"\nmean +- sd over training seeds {sorted(table)}; 'w/n': seeds in which features beat No Feats")
    print(f"{'':<16}" + "".join(f"{name.upper():<24}" for name in HIGHER_IS_BETTER))
    for row, metrics in summary.items():
        cells = [f"{m['mean']:.3g} +- {m['sd']:.2g} {m.get('beats_no_feats', '')}" for m in metrics.values()]
        print(f"{row:<16}" + "".join(f"{cell:<24}" for cell in cells))
    return summary


def main() -> None:
    args, extra = parse_seed_args(__doc__.split("\n\n")[0], "runs/specvqgan/benchmark_seeds.json")
    stages = {stage.name: stage for stage in STAGES}
    results: dict[str, StageResult] = {}
    for name in ("vggishish", "codebook", "frames", "melception"):  # the pipeline's: each resumes as finished
        results[name] = run_stage("specvqgan", stages[name], results, QUIET)
    melception = results["melception"].checkpoint
    table: dict[int, dict[str, dict[str, float]]] = {}
    for seed in [0, *args.seeds]:
        seeded = seeded_args(seed, extra)
        table[seed] = {}
        for stage, row in SAMPLERS.items():
            results[stage] = run_stage("specvqgan", stages[stage], results, seeded)
            table[seed][row] = scores(test_sampler(results[stage], melception))
        print(f"seed {seed}: " + json.dumps(table[seed]), flush=True)
    summary = summarize(table)
    write_results(args.out, table, summary)


if __name__ == "__main__":
    main()
