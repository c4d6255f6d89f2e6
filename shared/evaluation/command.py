"""`avgen evaluate --run <run> [--split test]`: a run's paper metrics and its direction's common metrics.

    avgen evaluate --run runs/gravo/toy_low_gravo/default
    avgen evaluate --run runs/audiotoken/toy_audiotoken/default --clips-per-class 10 --device cuda
    avgen evaluate --run runs/tiva/toy_joint/default --vggish vggish-10086976.pth --panns Cnn14_16k_mAP=0.438.pth
    avgen evaluate --run runs/gravo/toy_low_gravo/default --help     # the project's own options too

The project is read from the run (`shared.generation.project_of_run`); `projects/<p>/evaluate.py`'s
`evaluate_run(run, split, device, seed, clips_per_class, samples, judges, **options)` generates for the split's
clips with the run's models and computes its paper's metrics (`RunOutputs`); the common metrics of its direction
(`DIRECTION`) are computed here on those generations (`shared.evaluation.common`) by the judges of
`shared.evaluation.judges`, which a project may use for its paper's metrics too.
Written to `<run>/eval/` (or `--out`): `<split>.json` (metrics with their 95 % bootstrap intervals over clips,
the run, checkpoint, split, clips, seed, judges, settings, avgen's commit), `<split>.md` (the tables) and two
figures, `<split>_metrics.png` (a bar per metric with its interval) and `<split>_examples.png` (generated
beside real spectrograms or images of the first clips).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from shared.evaluation.judges import Judges

COMMON = ("run", "split", "device", "seed", "clips_per_class", "samples", "out", "resamples", "examples")
JUDGE_OPTIONS = {
    "classifier": "the toy audio classifier checkpoint (default: a toy Melception under the runs folder)",
    "vggish": "VGGish weights (torchvggish's vggish-10086976.pth): FAD on VGGish",
    "passt": "PaSST-S weights (passt-s-f128-p16-s10-ap.476-swa.pt): KL on PaSST",
    "panns": "PANNs weights (Cnn14_16k_mAP=0.438.pth): IS on PANNs",
    "clip": "a CLIPModel folder for AIS / AIC / FID (default: AudioToken's toy CLIP)",
    "wav2clip": "a Wav2CLIP checkpoint for AIS (default: AudioToken's toy Wav2CLIP)",
    "inception": "torch-fidelity's Inception weights for FID (default: FID on the CLIP's image embeddings)",
    "class_template": "AIC's zero-shot prompt of a class name (default 'a photo of a {}')",
}


def add_common_options(parser: argparse.ArgumentParser) -> None:
    """The evaluation protocol and the judges: what `avgen evaluate` and `avgen compare` share."""
    parser.add_argument("--split", default="test", help="the split evaluated (default test)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda if present)")
    parser.add_argument("--seed", type=int, default=0, help="the generations' seed (default 0)")
    parser.add_argument(
        "--clips-per-class",
        dest="clips_per_class",
        type=int,
        help="only the first N clips of each class of the split (default: all)",
    )
    parser.add_argument("--samples", type=int, help="generations per clip (default: the run's own setting)")
    parser.add_argument(
        "--resamples", type=int, default=1000, help="bootstrap resamples of the intervals (0: none)"
    )
    judges = parser.add_argument_group("judges (local files; nothing is downloaded)")
    for name, text in JUDGE_OPTIONS.items():
        judges.add_argument(f"--{name.replace('_', '-')}", dest=name, help=text)


def judges_of(args: argparse.Namespace) -> Judges:
    given = {name: getattr(args, name) for name in JUDGE_OPTIONS if getattr(args, name) is not None}
    return Judges(**given)


def run_label(run: str | Path) -> str:
    """`<project>/<experiment>/<version>` of a run folder (its last three parts)."""
    return "/".join(Path(run).resolve().parts[-3:])


def runs_root(run: Path) -> Path:
    """The runs folder of `runs/<project>/<experiment>/<version>`, where the toy judges are looked for."""
    parents = run.resolve().parents
    return parents[2] if len(parents) > 2 else run.parent


def evaluate(
    run: str | Path,
    split: str = "test",
    device: str = "cpu",
    judges: Judges = Judges(),  # noqa: B008 (frozen)
    seed: int = 0,
    clips_per_class: int | None = None,
    samples: int | None = None,
    resamples: int = 1000,
    out: str | Path | None = None,
    examples: int = 4,
    options: dict | None = None,
) -> dict:
    """Evaluate one run (module docstring); returns what `<split>.json` holds."""
    from shared.discovery import project_module
    from shared.evaluation.common import audio_metrics, better, image_metrics, middle_frames, real_audio
    from shared.evaluation.report import example_pictures, nest
    from shared.generation import avgen_commit, check_device, project_of_run
    from shared.metrics import Bootstrap

    run = Path(run)
    project = project_of_run(run)
    check_device(device)
    module = project_module(project, "evaluate")
    judges = judges.resolved(module.DIRECTION, runs_root(run))
    outputs = module.evaluate_run(
        run, split=split, device=device, seed=seed, clips_per_class=clips_per_class, samples=samples,
        judges=judges, **(options or {}),
    )  # fmt: skip
    bootstrap = Bootstrap(resamples, seed=seed) if resamples else None
    if outputs.direction.endswith("->audio"):
        reals = real_audio(outputs)
        common = audio_metrics(outputs, judges, device, bootstrap)
    else:
        reals = middle_frames(outputs)
        common = image_metrics(outputs, judges, device, bootstrap, real_frames=reals)
    result = {
        "run": str(run),
        "project": project,
        "direction": outputs.direction,
        "checkpoint": str(outputs.checkpoint),
        "split": split,
        "seed": seed,
        "clips_per_class": clips_per_class,
        "samples": samples,
        "resamples": resamples,
        "clips": len(outputs.clips),
        "items": len(outputs.items),
        "clip_ids": outputs.clip_ids,
        "judges": judges.of(outputs.direction),
        "settings": outputs.settings,
        "metrics": {"paper": nest(outputs.metrics), "common": nest(common)},
        "better": {name: better(name) for name in nest(common)},
        "avgen_commit": avgen_commit(),
    }
    pictures = example_pictures(
        outputs.items, outputs.item_ids, dict(zip(outputs.clip_ids, reals, strict=True)),
        outputs.sample_rate, examples,
    )  # fmt: skip
    write_evaluation(result, Path(out) if out is not None else run / "eval", pictures)
    return result


def write_evaluation(result: dict, folder: Path, pictures: list) -> dict[str, Path]:
    """`<split>.json`, `<split>.md`, `<split>_metrics.png`, `<split>_examples.png` in `folder`."""
    from shared.evaluation.report import cell, heading, markdown_table, plot_examples, plot_metric_bars
    from shared.files import atomic_path

    folder.mkdir(parents=True, exist_ok=True)
    split, metrics = result["split"], result["metrics"]
    paper = {f"{name} (paper)": metric for name, metric in metrics["paper"].items()}
    title = f"{run_label(result['run'])} ({split})"
    paths = {
        "metrics": plot_metric_bars(
            {run_label(result["run"]): {**paper, **metrics["common"]}},
            folder / f"{split}_metrics.png",
            title,
            result["better"],
        ),
        "examples": plot_examples(
            pictures, folder / f"{split}_examples.png", f"{title}: real | generated",
            spectrogram=result["direction"].endswith("->audio"),
        ),
    }  # fmt: skip
    lines = [
        f"# Evaluation of {result['run']} ({split})",
        "",
        f"{result['project']}, {result['direction']}; checkpoint `{result['checkpoint']}`; {result['clips']} clips, "
        f"{result['items']} generations, seed {result['seed']}; "
        + (
            f"95 % bootstrap intervals over clips ({result['resamples']} resamples)."
            if result["resamples"]
            else "no intervals."
        ),
        "",
        "## Paper metrics",
        "",
        markdown_table(["metric", "value"], [[name, cell(m)] for name, m in metrics["paper"].items()]),
        "",
        f"## Common metrics ({result['direction']})",
        "",
        markdown_table(
            ["metric", "value"],
            [[heading(name, result["better"].get(name)), cell(m)] for name, m in metrics["common"].items()],
        ),
        "",
        "Judges: " + ", ".join(f"{k} `{v}`" for k, v in result["judges"].items() if v is not None) + ".",
        "",
        f"![metrics]({paths['metrics'].name})",
        "",
        f"![examples]({paths['examples'].name})",
        "",
    ]
    paths["markdown"] = folder / f"{split}.md"
    paths["json"] = folder / f"{split}.json"
    with atomic_path(paths["markdown"]) as tmp:
        Path(tmp).write_text("\n".join(lines))
    with atomic_path(paths["json"]) as tmp:
        Path(tmp).write_text(json.dumps(result, indent=1) + "\n")
    return paths


def parser_for(project: str | None = None, module=None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="avgen evaluate",
        description="A run's paper metrics and its direction's common metrics on a split, with bootstrap "
        "intervals over clips: <run>/eval/<split>.json, .md and figures.",
        epilog="`avgen evaluate --run <run> --help` also lists the options of the run's project.",
    )
    parser.add_argument("--run", required=True, help="a run folder, runs/<project>/<experiment>/<version>")
    parser.add_argument("--out", help="the folder to write to (default: <run>/eval)")
    parser.add_argument("--examples", type=int, default=4, help="clips in the examples figure (default 4)")
    add_common_options(parser)
    if module is not None and hasattr(module, "add_options"):
        module.add_options(parser.add_argument_group(f"{project} options"))
    return parser


def main(argv: list[str]) -> dict:
    from shared.generation import default_device, run_and_module

    _, project, module = run_and_module(argv, "evaluate")
    args = parser_for(project, module).parse_args(argv)
    options = {k: v for k, v in vars(args).items() if k not in COMMON and k not in JUDGE_OPTIONS}
    result = evaluate(
        args.run, args.split, args.device or default_device(), judges_of(args), args.seed,
        args.clips_per_class, args.samples, args.resamples, args.out, args.examples, options,
    )  # fmt: skip
    folder = Path(args.out) if args.out else Path(args.run) / "eval"
    print(f"wrote {folder / (args.split + '.json')}, .md and figures")
    from shared.evaluation.report import cell

    for kind in ("paper", "common"):
        for name, metric in result["metrics"][kind].items():
            print(f"  {kind:<6} {name:<20} {cell(metric)}")
    return result
