"""What the training-seed benchmarks (`python -m benchmarks.<project>_seeds`) share: their command line, the
arguments of a seeded stage run, and the JSON they write.

Seed 0 is the toy pipeline's own run (it resumes as finished); seed N trains again in `--run.version=seed<N>`
with the other command-line arguments (e.g. `--trainer.max_steps=2`) passed on to those runs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

QUIET = ["--trainer.enable_progress_bar=false"]


def parse_seed_args(
    description: str, default_out: str, default_seeds: tuple[int, ...] = (1, 2)
) -> tuple[argparse.Namespace, list[str]]:
    """(`--seeds`, `--out`), and the other arguments, for the seeded runs."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(default_seeds))
    parser.add_argument("--out", default=default_out)
    return parser.parse_known_args()


def seeded_args(seed: int, extra: list[str]) -> list[str]:
    """The stage arguments of training seed `seed`: the pipeline's run for 0, a run of its own otherwise."""
    if seed == 0:
        return QUIET
    return [*QUIET, f"--seed_everything={seed}", f"--run.version=seed{seed}", *extra]


def write_results(out: str | Path, table: dict, summary: dict) -> None:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"per_seed": table, "summary": summary}, indent=1) + "\n")
    print(f"written to {out}")
