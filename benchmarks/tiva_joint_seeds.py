"""Does the joint stage (TiVA eq. 10) beat "w/o Joint" on FAD beyond the spread between trainings?

Table 5's comparison at toy scale, repeated over training seeds. Run after the toy pipeline
(`make train PROJECT=tiva`), whose VAE, Melception and T it reuses (and whose S + G and joint runs are seed 0);
for each further seed it trains the S + G stage (eq. 9) and the joint stage from it (eq. 10) again, in
runs/tiva/toy_{generator,joint}/seed<N>, and scores both on the test split exactly as the pipeline's summary
does ("TiVA" and "w/o Joint"):

    python -m benchmarks.tiva_joint_seeds --seeds 1 2 3 [--out runs/tiva/benchmark_joint_seeds.json]
    python -m benchmarks.tiva_joint_seeds --seeds 9 --trainer.max_steps=2   # other arguments go to both stages

A finished seed is not trained again (its runs resume as finished), so the script can be re-run after a kill. Prints one row per seed and the mean and standard
deviation of each row and of the FAD difference, and writes them to `--out` (JSON).
"""

from __future__ import annotations

import statistics

from benchmarks.seeds import QUIET, parse_seed_args, seeded_args, write_results
from projects.tiva.pipeline import COLUMNS, ROWS, STAGES, evaluate_run
from shared.metrics import format_interval
from shared.pipeline import run_stage

COMPARED = ("TiVA", "w/o Joint")


def main() -> None:
    args, extra = parse_seed_args(
        __doc__.split("\n\n")[0], "runs/tiva/benchmark_joint_seeds.json", default_seeds=(1, 2, 3)
    )
    stages = {stage.name: stage for stage in STAGES}
    # the pipeline's finished runs: each resumes as finished and is only validated
    shared_parts = {name: run_stage("tiva", stages[name], {}, QUIET) for name in ("vae", "melception")}
    shared_parts["layout"] = run_stage("tiva", stages["layout"], shared_parts, QUIET)
    melception = shared_parts["melception"].checkpoint
    rows = {label: (stage, overrides) for label, stage, overrides in ROWS if label in COMPARED}

    table: dict[int, dict[str, dict[str, float]]] = {}
    for seed in [0, *args.seeds]:
        seeded = seeded_args(seed, extra)
        results = dict(shared_parts)
        for name in ("generator", "joint"):
            results[name] = run_stage("tiva", stages[name], results, seeded)
        table[seed] = {
            label: evaluate_run(results[stage].run_dir, results[stage].checkpoint, melception, overrides)
            for label, (stage, overrides) in rows.items()
        }
        print(f"seed {seed}: " + ", ".join(f"{label} FAD {m['fid']:.2f}" for label, m in table[seed].items()))

    print("\neach value [95 % bootstrap interval over the test clips]")
    for block in COLUMNS:
        print(f"{'seed':<6}{'row':<12}" + " ".join(f"{heading:<22}" for heading, _ in block))
        for seed, scores in table.items():
            for label, metrics in scores.items():
                cells = [
                    format_interval(
                        *(metrics.get(f"{name}{end}", float("nan")) for end in ("", "_lo", "_hi"))
                    )
                    for _, name in block
                ]
                print(f"{seed:<6}{label:<12}" + " ".join(f"{cell:<22}" for cell in cells))
    summary = {}
    for label in COMPARED:
        fads = [scores[label]["fid"] for scores in table.values()]
        summary[label] = {"fad_mean": statistics.mean(fads), "fad_sd": _sd(fads)}
    gaps = [scores["TiVA"]["fid"] - scores["w/o Joint"]["fid"] for scores in table.values()]
    summary["TiVA minus w/o Joint"] = {"fad_mean": statistics.mean(gaps), "fad_sd": _sd(gaps)}
    print()
    for label, values in summary.items():
        print(
            f"FAD {label:<22} mean {values['fad_mean']:7.2f}   sd {values['fad_sd']:6.2f}   ({len(gaps)} seeds)"
        )
    write_results(args.out, table, summary)


def _sd(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else float("nan")


if __name__ == "__main__":
    main()
