"""Run folders as the commands that read them see them, and the error a user's mistake raises.

A run folder is `runs/<project>/<experiment>/<version>/` (`shared.cli`): `config.yaml`, `checkpoints/` and
whatever the run wrote. Generation, evaluation and benchmarks all need "the run's checkpoint" and "the run's
config"; they get them here, so the rule (best.ckpt when the run tracked one, else last.ckpt) and the message
when a run has none are written once.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf


class UserError(Exception):
    """A mistake the user can fix (a missing file, a run that was never trained, a wrong option).

    The message is the whole story: what is wrong, with the path, and the fix where it is known. `avgen`
    prints it as one line (`avgen: error: <message>`, exit status 2), the traceback only with `--debug`.
    """


def project_of(run_dir: str | Path) -> str | None:
    """The project of a run folder laid out as `.../<project>/<experiment>/<version>`, if it names one."""
    parts = Path(run_dir).resolve().parts
    return parts[-3] if len(parts) >= 3 else None


def _train_hint(run_dir: Path) -> str:
    project = project_of(run_dir)
    return f": train it with `make train PROJECT={project}`" if project else ""


def run_checkpoint(run_dir: str | Path) -> Path:
    """`<run>/checkpoints/best.ckpt` when the run tracked a best checkpoint, else `last.ckpt`."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: no such run folder{_train_hint(run_dir)}")
    for name in ("best.ckpt", "last.ckpt"):
        path = run_dir / "checkpoints" / name
        if path.is_file():
            return path
    raise UserError(
        f"no checkpoint in {run_dir} (no checkpoints/best.ckpt or last.ckpt){_train_hint(run_dir)}"
    )


def run_config(run_dir: str | Path) -> dict:
    """The run's resolved `config.yaml` as plain containers."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise UserError(f"{path}: missing; a run folder holds the config.yaml its training wrote")
    return OmegaConf.to_container(OmegaConf.load(path), resolve=True)


def build_module(spec: dict):
    """A network from its `class_path` / `init_args` in a run's config, built by jsonargparse as the CLI builds
    it (generation rebuilds a run's networks without Lightning)."""
    from jsonargparse import ArgumentParser
    from torch import nn

    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--part", type=nn.Module)
    return parser.instantiate_classes(parser.parse_object({"part": spec})).part


def sibling_run(run: str | Path, experiment: str, option: str) -> Path:
    """The run of another stage of the run's pipeline, `runs/<project>/<experiment>/<version>`: the run's own
    version (a seed's runs), else `default` (the pipeline's, which a seed's later stages reuse)."""
    run = Path(run)
    for version in dict.fromkeys((run.name, "default")):
        candidate = run.parent.parent / experiment / version
        if candidate.is_dir():
            run_checkpoint(candidate)  # a stage that never finished a checkpoint says so here
            return candidate
    raise UserError(
        f"no {experiment} run beside {run} ({run.parent.parent / experiment}/{run.name} or /default): "
        f"give {option}"
    )
