"""`avgen`: one command surface for every stage of every project (the console script; `python -m shared`).

    avgen --help                                    # every command, one line each
    avgen fit --config projects/specvqgan/configs/toy_codebook.yaml --trainer.max_steps=100
    avgen pipeline --project specvqgan              # all stages of a project's toy pipeline, in order
    avgen demo --runs runs --port 7860              # the web demo (Gradio): a tab per project
    avgen prepare --dataset vggsound --root ... --features mel   # feature caches, resumable, shardable
    avgen slurm --project tiva --exp default --nodes 2 --gpus 8  # write and submit an sbatch job
    avgen generate --run runs/specvqgan/toy_sampler/default --input clips/ --out generated/
    avgen evaluate --run runs/gravo/toy_low_gravo/default   # <run>/eval/test.json, .md and figures
    avgen compare --all                             # every trained system under runs/, by direction
    avgen --debug generate ...                      # a mistake's full traceback instead of one line

This module imports only what the command given needs, when it runs: `avgen --help` imports no torch,
`avgen prepare` no Lightning, open_clip or transformers. `fit`, `validate`, `test` and `predict` are the
LightningCLI of `shared.cli`.

A user's mistake (`shared.runs.UserError`, `shared.media.MediaError`, a missing file) ends in one line,
`avgen: error: <message>`, and exit status 2; `--debug` before the command (or `AVGEN_DEBUG=1`) shows the
traceback instead. Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Callable

LIGHTNING_COMMANDS = {
    "fit": "train the model of a config; the same command resumes its run folder",
    "validate": "evaluate a run's newest checkpoint on the validation split",
    "test": "evaluate a run's newest checkpoint on the test split",
    "predict": "write a run's outputs, one file per clip, to <run>/predictions/",
}


def _lightning(command: str, args: list[str]) -> None:
    from shared.cli import AvgenCLI

    AvgenCLI(args=[command, *args])


def _pipeline(args: list[str]) -> None:
    from shared.pipeline import main as pipeline_main

    pipeline_main(args)


def _prepare(args: list[str]) -> None:
    from shared.prepare import main as prepare_main

    prepare_main(args)


def _slurm(args: list[str]) -> None:
    from shared.slurm import main as slurm_main

    slurm_main(args)


def _demo(args: list[str]) -> None:
    from shared.demo import main as demo_main

    demo_main(args)


def _generate(args: list[str]) -> None:
    """`avgen generate --run R --input I --out O ...` (`shared.generation`); with `--project X`, the per-project
    command of before: the other arguments go to `projects.X.generate.main`."""
    from shared.discovery import project_module

    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--project")
    known, rest = parser.parse_known_args(args)
    if known.project is None:
        from shared.generation import main as generation_main

        generation_main(args)
        return
    project_module(known.project, "generate").main(rest)


def _evaluate(args: list[str]) -> None:
    from shared.evaluation.command import main as evaluate_main

    evaluate_main(args)


def _compare(args: list[str]) -> None:
    from shared.evaluation.compare import main as compare_main

    compare_main(args)


# name -> (one-line description, runner of the command's arguments)
COMMANDS: dict[str, tuple[str, Callable[[list[str]], None]]] = {
    **{name: (text, functools.partial(_lightning, name)) for name, text in LIGHTNING_COMMANDS.items()},
    "pipeline": ("every stage of a project's toy pipeline, in order (what `make train` runs)", _pipeline),
    "prepare": ("compute a dataset's feature caches once: resumable, parallel, shardable", _prepare),
    "generate": ("sound for videos or images, images for sounds, from a trained run", _generate),
    "evaluate": (
        "a run's paper metrics and its direction's common ones, with intervals, tables, figures",
        _evaluate,
    ),
    "compare": ("several runs of one direction under one protocol: one table, one figure", _compare),
    "slurm": ("write the sbatch job of one training run and submit it", _slurm),
    "demo": ("a web page (Gradio) to try every project's runs on your own clips, sounds and pictures", _demo),
}

USAGE = "usage: avgen [--debug] <command> [options]"


def help_text() -> str:
    width = max(map(len, COMMANDS))
    lines = [
        USAGE,
        "",
        "Audio-visual generation: five papers' systems on one PyTorch Lightning stack.",
        "",
        "commands:",
        *(f"  {name:<{width}}  {text}" for name, (text, _) in COMMANDS.items()),
        "",
        "`avgen <command> --help` lists the options of one command.",
        "",
        "examples:",
        "  avgen pipeline --project specvqgan                   # a project's toy pipeline (make train)",
        "  avgen fit --config projects/tiva/configs/toy_generator.yaml --trainer.max_steps=50",
        "  avgen prepare --dataset vas --root /data/vas --features mel --workers 8",
        "  avgen generate --run runs/tiva/toy_joint/default --input clips/ --out generated/",
        "",
        "options:",
        "  -h, --help  show this help and exit",
        "  --debug     show the traceback of an error instead of one line (also AVGEN_DEBUG=1)",
    ]
    return "\n".join(lines)


def _user_error_message(error: BaseException) -> str | None:
    """The one-line message of a mistake the user can fix; None for anything else (a bug)."""
    from shared.media import MediaError
    from shared.runs import UserError

    if isinstance(error, FileNotFoundError) and error.filename is not None:
        message = f"{error.filename}: {error.strerror or 'no such file or directory'}"
    elif isinstance(error, UserError | MediaError | FileNotFoundError):
        message = str(error)
    else:
        return None
    return " ".join(message.split())


def main(args: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if args is None else args)
    debug = os.environ.get("AVGEN_DEBUG", "") not in ("", "0")
    while args and args[0] == "--debug":
        debug = True
        args.pop(0)
    if not args or args[0] in ("-h", "--help"):
        print(help_text())
        return
    if args[0] not in COMMANDS:
        print(USAGE, file=sys.stderr)
        print(f"avgen: error: unknown command {args[0]!r}; commands: {', '.join(COMMANDS)}", file=sys.stderr)
        raise SystemExit(2)
    try:
        COMMANDS[args[0]][1](args[1:])
    except Exception as error:
        message = None if debug else _user_error_message(error)
        if message is None:
            raise
        print(f"avgen: error: {message}", file=sys.stderr)
        raise SystemExit(2) from None
