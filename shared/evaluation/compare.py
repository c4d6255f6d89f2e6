"""`avgen compare`: several runs of one direction under one protocol, in one table and one figure.

    avgen compare --runs runs/specvqgan/toy_sampler/default runs/tiva/toy_joint/default runs/gravo/toy_low_gravo/default
    avgen compare --runs runs/gravo/toy_low_gravo/default runs/gravo/toy_low_gravo/seed1 runs/gravo/toy_low_im2wav/default
    avgen compare --all                      # what `make compare` runs: every system's runs under runs/, by direction

Every run is evaluated on the same split with the same seed, clips, generations per clip and judges
(`avgen evaluate`'s options; the clips are all the split's, or for audio -> image the first 5 of each class
unless `--clips-per-class` says otherwise; a run's `<run>/eval/<split>.json` is reused when it was made under exactly that
protocol, else the run is evaluated and the file written). Runs of different directions, or whose evaluated
clips differ (another dataset, another split), are refused. A system is a project's experiment,
`runs/<project>/<experiment>/`; its versions are its seeds (`default`, `seed1`, ...): a system with several
runs shows the mean and standard deviation over them and each run's value, as the projects' READMEs report their
training seeds. The table has the direction's common metrics and, when all runs are of one project, its paper's
metrics too. Written to `--out` (default `<runs>/compare/<direction>_<split>`): `compare.md`, `compare.json` and
`compare.png` (a panel per metric, a bar per run with its interval).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

from shared.evaluation.command import add_common_options, judges_of, runs_root
from shared.evaluation.judges import Judges
from shared.runs import UserError

# compare generates one item per clip unless told otherwise: every system is sampled alike
DEFAULT_SAMPLES = 1
# the clips per class of the test split a direction is compared on unless told otherwise (else all): an
# audio -> image system makes an image in seconds (AudioToken's diffusion) to tens of seconds (WavBriVL's
# optimisation) on a CPU, so all 300 toy test clips would keep `make compare` busy for hours
DEFAULT_CLIPS_PER_CLASS = {"audio->image": 5}
PROTOCOL = ("split", "seed", "clips_per_class", "samples", "resamples", "judges")


def project_direction(project: str) -> str:
    from shared.discovery import project_module

    return project_module(project, "evaluate").DIRECTION


def system_of(run: Path, project: str) -> str:
    """The run's system: its experiment's name in the project's `SYSTEMS`, else `<project>/<experiment>`."""
    from shared.discovery import project_module

    systems = getattr(project_module(project, "evaluate"), "SYSTEMS", {})
    experiment = run.resolve().parent.name
    return systems.get(experiment, f"{project}/{experiment}")


def evaluation_of(run: Path, protocol: dict, judges: Judges, device: str) -> dict:
    """The run's evaluation under `protocol`: its `eval/<split>.json` when that was made so, else a new one."""
    from shared.evaluation.command import evaluate

    saved = run / "eval" / f"{protocol['split']}.json"
    if saved.is_file():
        result = json.loads(saved.read_text())
        if all(result.get(key) == protocol[key] for key in PROTOCOL):
            return result
    arguments = {key: protocol[key] for key in PROTOCOL if key != "judges"}
    return evaluate(run, device=device, judges=judges, **arguments)


def check_same_clips(results: dict[Path, dict]) -> None:
    """A UserError naming the runs whose evaluated clips differ from the first run's."""
    (first, reference), *others = results.items()
    clips = set(reference["clip_ids"])
    for run, result in others:
        theirs = set(result["clip_ids"])
        if theirs != clips:
            raise UserError(
                f"cannot compare runs evaluated on different clips: {run} has {len(theirs)} clips on split "
                f"{result['split']!r}, {first} {len(clips)} ({len(theirs ^ clips)} differ); the runs must share "
                "their dataset and test split"
            )


def compare(
    runs: Sequence[str | Path],
    split: str = "test",
    device: str = "cpu",
    judges: Judges = Judges(),  # noqa: B008 (frozen)
    seed: int = 0,
    clips_per_class: int | None = None,
    samples: int | None = DEFAULT_SAMPLES,
    resamples: int = 1000,
    out: str | Path | None = None,
) -> dict:
    """The comparison of `runs` (module docstring); returns what `compare.json` holds."""
    from shared.generation import project_of_run

    runs = [Path(run) for run in runs]
    if not runs:
        raise UserError("nothing to compare: give --runs, or train some runs first")
    projects = {run: project_of_run(run) for run in runs}
    directions = {run: project_direction(project) for run, project in projects.items()}
    if len(set(directions.values())) > 1:
        listing = ", ".join(f"{run} ({direction})" for run, direction in directions.items())
        raise UserError(f"cannot compare runs of different directions: {listing}")
    direction = directions[runs[0]]
    if clips_per_class is None:
        clips_per_class = DEFAULT_CLIPS_PER_CLASS.get(direction)
    judges = judges.resolved(direction, runs_root(runs[0]))
    protocol = {
        "split": split, "seed": seed, "clips_per_class": clips_per_class, "samples": samples,
        "resamples": resamples, "judges": judges.of(direction),
    }  # fmt: skip
    results = {run: evaluation_of(run, protocol, judges, device) for run in runs}
    check_same_clips(results)
    systems: dict[str, list[Path]] = {}
    for run in runs:
        systems.setdefault(system_of(run, projects[run]), []).append(run)
    columns = shared_columns(list(results.values()), paper=len(set(projects.values())) == 1)
    rows = {
        system: {column: [metric_of(results[run], column) for run in members] for column in columns}
        for system, members in systems.items()
    }
    summary = {
        "direction": direction,
        "protocol": protocol,
        "clips": results[runs[0]]["clips"],
        "systems": {system: [str(run) for run in members] for system, members in systems.items()},
        "runs": {
            str(run): {"system": system_of(run, projects[run]), "metrics": results[run]["metrics"]}
            for run in runs
        },
        "better": results[runs[0]]["better"],
        "table": {
            system: {name: _summary(values) for name, values in metrics.items()}
            for system, metrics in rows.items()
        },
    }
    folder = Path(out) if out is not None else runs_root(runs[0]) / "compare" / f"{_slug(direction)}_{split}"
    write_comparison(summary, rows, folder)
    return summary


PAPER = " (paper)"


def shared_columns(results: list[dict], paper: bool) -> list[str]:
    """The metrics every run has: the common ones, then (with `paper`: all runs of one project, where a paper
    metric's name means one thing) the paper's, as `<name> (paper)`."""
    kinds = (("common", ""), ("paper", PAPER)) if paper else (("common", ""),)
    return [
        name + suffix
        for kind, suffix in kinds
        for name in results[0]["metrics"][kind]
        if all(name in result["metrics"][kind] for result in results)
    ]


def metric_of(result: dict, column: str) -> dict:
    kind = "paper" if column.endswith(PAPER) else "common"
    return result["metrics"][kind][column.removesuffix(PAPER)]


def _summary(values: list[dict]) -> dict:
    """One run: its value and interval; several: mean, sd and every run's value."""
    numbers = [v["value"] for v in values if v["value"] is not None]
    if len(values) == 1:
        return dict(values[0])
    return {
        "mean": statistics.fmean(numbers) if numbers else None,
        "sd": statistics.stdev(numbers) if len(numbers) > 1 else None,
        "values": [v["value"] for v in values],
    }


def _slug(direction: str) -> str:
    return direction.replace("->", "-to-")


def table_cell(summary: dict) -> str:
    from shared.evaluation.report import cell

    if "values" not in summary:
        return cell(summary)
    if summary["mean"] is None:
        return "-"
    values = " / ".join("-" if v is None else f"{v:.3g}" for v in summary["values"])
    sd = "" if summary["sd"] is None else f" ± {summary['sd']:.2g}"
    return f"{summary['mean']:.3g}{sd} ({values})"


def write_comparison(summary: dict, rows: dict[str, dict[str, list[dict]]], folder: Path) -> dict[str, Path]:
    """`compare.md`, `compare.json` and `compare.png` in `folder`; `rows`: {system: {column: each run's metric}}."""
    from shared.evaluation.report import heading, markdown_table, plot_metric_bars
    from shared.files import atomic_path

    folder.mkdir(parents=True, exist_ok=True)
    protocol, better = summary["protocol"], summary["better"]
    names = list(next(iter(summary["table"].values())))
    header = ["system", "runs", *(heading(name, better.get(name)) for name in names)]
    lines = [
        f"# {summary['direction']}: {len(summary['runs'])} runs on split {protocol['split']!r} ({summary['clips']} clips)",
        "",
        f"Seed {protocol['seed']}, {protocol['samples'] or 'each run’s own number of'} generation(s) per clip, "
        f"95 % bootstrap intervals over clips ({protocol['resamples']} resamples); a system of several runs "
        "(training seeds): mean ± sd over its runs (each run's value).",
        "",
        markdown_table(
            header,
            [
                [system, str(len(summary["systems"][system])), *(table_cell(metrics[n]) for n in names)]
                for system, metrics in summary["table"].items()
            ],
        ),
        "",
        "Runs: "
        + "; ".join(
            f"{system}: " + ", ".join(f"`{run}`" for run in members)
            for system, members in summary["systems"].items()
        )
        + ".",
        "",
        "Judges: " + ", ".join(f"{k} `{v}`" for k, v in protocol["judges"].items() if v is not None) + ".",
        "",
        "![comparison](compare.png)",
        "",
    ]
    bars = {  # a bar per run: "<system> (<version>)"
        f"{system} ({Path(run).name})": {name: values[i] for name, values in rows[system].items()}
        for system, members in summary["systems"].items()
        for i, run in enumerate(members)
    }
    paths = {
        "figure": plot_metric_bars(
            bars,
            folder / "compare.png",
            f"{summary['direction']} ({protocol['split']})",
            better,
            groups=[system for system, members in summary["systems"].items() for _ in members],
        ),
        "markdown": folder / "compare.md",
        "json": folder / "compare.json",
    }
    with atomic_path(paths["markdown"]) as tmp:
        Path(tmp).write_text("\n".join(lines))
    with atomic_path(paths["json"]) as tmp:
        Path(tmp).write_text(json.dumps(summary, indent=1) + "\n")
    return paths


def runs_of_systems(root: Path) -> dict[str, list[Path]]:
    """Every run of every project's `SYSTEMS` under the runs folder `root` that has a checkpoint, by direction."""
    from shared.discovery import project_module, projects_with

    found: dict[str, list[Path]] = {}
    for project in projects_with("evaluate"):
        module = project_module(project, "evaluate")
        for experiment in getattr(module, "SYSTEMS", {}):
            for run in sorted((root / project / experiment).glob("*/checkpoints")):
                if any(run.glob("*.ckpt")):
                    found.setdefault(module.DIRECTION, []).append(run.parent)
    return found


def main(argv: list[str]) -> list[dict]:
    from shared.generation import default_device

    parser = argparse.ArgumentParser(prog="avgen compare", description=__doc__.split("\n\n")[0])
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--runs", nargs="+", help="run folders of one direction (a system's seeds side by side)"
    )
    which.add_argument(
        "--all", action="store_true", help="every system's runs under --runs-root, by direction"
    )
    parser.add_argument(
        "--runs-root", dest="runs_root", default="runs", help="where --all looks (default runs)"
    )
    parser.add_argument("--out", help="the folder to write to (default: <runs>/compare/<direction>_<split>)")
    add_common_options(parser)
    parser.set_defaults(samples=DEFAULT_SAMPLES)
    args = parser.parse_args(argv)
    groups = runs_of_systems(Path(args.runs_root)) if args.all else {"": args.runs}
    if args.all and not groups:
        raise UserError(f"no trained system under {args.runs_root}: `make train PROJECT=<p>` first")
    summaries, refused = [], []
    for direction, runs in groups.items():
        out = args.out
        if args.out is not None and args.all:  # one folder per direction inside --out
            out = Path(args.out) / _slug(direction)
        try:
            summary = compare(
                runs, args.split, args.device or default_device(), judges_of(args), args.seed,
                args.clips_per_class, args.samples, args.resamples, out,
            )  # fmt: skip
        except UserError as error:
            if not args.all:
                raise
            # with --all, a direction that cannot be compared (its judges not trained) leaves the others
            refused.append(f"{direction}: {error}")
            print(f"avgen compare: skipped {refused[-1]}", file=sys.stderr)
            continue
        print(f"{summary['direction']}: {len(runs)} runs")
        for system, metrics in summary["table"].items():
            print(f"  {system}: " + ", ".join(f"{n} {table_cell(m)}" for n, m in metrics.items()))
        summaries.append(summary)
    if not summaries:
        raise UserError("nothing compared: " + "; ".join(refused))
    return summaries
