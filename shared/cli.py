"""`avgen fit | validate | test | predict`: the LightningCLI behind every stage of every project.

`shared.commands` is the `avgen` entry point: it lists every command and hands these four to `AvgenCLI`.

    avgen fit --config projects/specvqgan/configs/toy_codebook.yaml --trainer.max_steps=100
    avgen fit --config ... --print_config          # the resolved config, nothing runs
    avgen validate --config ...                     # evaluates the run's newest checkpoint

A LightningCLI in subclass mode (configs name every class by its full `class_path`), with three house
rules added:

* Run folder: `runs/<project>/<experiment>/<version>/` holds the resolved `config.yaml`, the TensorBoard
  events and `checkpoints/`. Project and experiment come from the config's path
  (`projects/<project>/configs/<experiment>.yaml`) unless `--run.project/--run.experiment` say otherwise;
  the version is `--run.version` (default `default`). The saved config records all three, so
  `avgen fit --config runs/<...>/config.yaml` continues that same run.
* Start or resume: `--ckpt_path=auto` (the default) resumes from the newest checkpoint in the run folder
  (`checkpoints/last.ckpt` or a SLURM pre-emption `hpc_ckpt_*.ckpt`) and starts fresh when there is none,
  so the same command serves a first start, a restart after a kill and a requeued job; `validate`, `test`
  and `predict` use that checkpoint too.
* `last.ckpt` always: written atomically every `--checkpoint.every_n_steps` steps, after each validation,
  at the end of training and when the run is interrupted (Ctrl-C, SIGTERM). Under SLURM, the pre-emption
  signal makes a checkpoint at the next step boundary and requeues the job (`shared.callbacks.slurm`);
  checkpoints carry the random generator states, and training data loaders resume mid-epoch exactly.
* `predict` writes each clip's outputs to `<run>/predictions/<key>/<clip_id>.npy` from every process.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import yaml
from jsonargparse import Namespace
from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback
from lightning.pytorch.plugins.environments import SLURMEnvironment

from shared.callbacks import ClipPredictionWriter, LastCheckpoint, PreemptionRequeue, RNGStateCheckpoint
from shared.commands import main  # noqa: F401  (the entry point's former home, which older scripts call)
from shared.runs import UserError

AUTO = "auto"
EXTENDS = "extends"


def _extended_bases(config: Path) -> list[str]:
    """The paths a config file's `extends:` names, as written (relative to the file)."""
    try:
        content = yaml.safe_load(config.read_text())
    except yaml.YAMLError:
        return []  # not ours to report: jsonargparse names the file and the line
    bases = content.get(EXTENDS) if isinstance(content, dict) else None
    if bases is None:
        return []
    if isinstance(bases, str):
        return [bases]
    if isinstance(bases, list) and all(isinstance(b, str) for b in bases):
        return bases
    raise UserError(f"{config}: `{EXTENDS}:` must be a path or a list of paths, relative to this file")


def config_chain(config: str, _including: tuple[Path, ...] = ()) -> list[str]:
    """`config` preceded by the configs it extends, recursively: bases first, each file once."""
    path = Path(config)
    if not path.is_file():
        return [config]  # a YAML string or a missing file, which jsonargparse reports
    including = (*_including, path.resolve())
    chain: list[str] = []
    for base in _extended_bases(path):
        base_path = Path(os.path.normpath(path.parent / base))
        if not base_path.is_file():
            raise UserError(
                f"{path}: extends {base}, but {base_path} does not exist "
                "(a path in `extends:` is relative to the file that names it)"
            )
        if base_path.resolve() in including:
            raise UserError(f"{path}: extends {base}, which extends {path} again")
        known = {Path(c).resolve() for c in chain}
        chain += [c for c in config_chain(str(base_path), including) if Path(c).resolve() not in known]
    return [*chain, config]


def expand_extends(args: list[str]) -> tuple[list[str], set[Path]]:
    """`args` with every `--config <file>` turned into `--config <base> ... --config <file>` for the bases the
    file extends, and the set of those bases (resolved): they never name the run."""
    expanded: list[str] = []
    bases: set[Path] = set()
    i = 0
    while i < len(args):
        option, _, value = args[i].partition("=")
        if option in ("-c", "--config") and (value or i + 1 < len(args)):
            if not value:
                i += 1
                value = args[i]
            chain = config_chain(value)
            bases.update(Path(base).resolve() for base in chain[:-1])
            expanded += [item for config in chain for item in ("--config", config)]
        else:
            expanded.append(args[i])
        i += 1
    return expanded, bases


def _resolved(config) -> Path:
    """The absolute path of a parsed `--config` value (a jsonargparse Path, or a plain path)."""
    return Path(str(getattr(config, "absolute", config))).resolve()


def run_identity_from_config_path(config_paths: list) -> tuple[str | None, str | None]:
    """(project, experiment) from a config at `projects/<project>/configs/<experiment>.yaml`."""
    for raw in config_paths or []:
        path = _resolved(raw)
        parts = path.parts
        if "configs" in parts:
            i = len(parts) - 1 - parts[::-1].index("configs")
            if i >= 2 and parts[i - 2] == "projects":
                return parts[i - 1], path.stem
    return None, None


def newest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest of `<run>/hpc_ckpt_*.ckpt` (SLURM pre-emption) and `<run>/checkpoints/last.ckpt`."""
    run_dir = Path(run_dir)
    candidates = [*run_dir.glob("hpc_ckpt_*.ckpt"), run_dir / "checkpoints" / "last.ckpt"]
    existing = [p for p in candidates if p.is_file()]
    return max(existing, key=lambda p: p.stat().st_mtime) if existing else None


class RunConfigSaver(SaveConfigCallback):
    """`config.yaml` is the training run's: `validate`, `test` and `predict` write `config_<stage>.yaml` beside
    it, so evaluating a run with other settings never changes what `avgen fit --config <run>/config.yaml`
    continues."""

    def setup(self, trainer, pl_module, stage) -> None:
        stage = getattr(stage, "value", stage)  # Lightning passes a TrainerFn ("fit", "validate", ...)
        if stage != "fit":
            self.config_filename = f"config_{stage}.yaml"
        super().setup(trainer, pl_module, stage)


class AvgenCLI(LightningCLI):
    def __init__(self, args: list[str] | None = None, run: bool = True):
        super().__init__(
            LightningModule,
            LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            save_config_callback=RunConfigSaver,
            save_config_kwargs={"overwrite": True},
            parser_kwargs={"parser_mode": "omegaconf"},
            auto_configure_optimizers=False,
            trainer_defaults={"callbacks": [RNGStateCheckpoint()]},
            args=args,
            run=run,
        )

    def parse_arguments(self, parser, args) -> None:
        """Parse `args` (the command line when None) without Lightning's warning about `args` given beside
        `sys.argv`: `avgen` always passes the arguments it was given, less its own global options. Each
        config's `extends:` is expanded first into `--config` arguments before it."""
        args, self.base_configs = expand_extends(sys.argv[1:] if args is None else args)
        self.config = parser.parse_args(args)

    def add_arguments_to_parser(self, parser) -> None:
        # read by `expand_extends` before parsing; accepted here so a config may hold it, never dumped
        parser.add_argument(f"--{EXTENDS}", type=str | list[str] | None, default=None, help=argparse.SUPPRESS)
        parser.add_argument("--run.project", type=str | None, default=None, help="runs/<project>/...")
        parser.add_argument(
            "--run.experiment", type=str | None, default=None, help="runs/.../<experiment>/..."
        )
        parser.add_argument("--run.version", type=str, default="default", help="runs/.../<version>")
        parser.add_argument("--run.root", type=str, default="runs", help="folder that holds all runs")
        parser.add_lightning_class_args(LastCheckpoint, "checkpoint")
        parser.add_lightning_class_args(PreemptionRequeue, "preemption")
        parser.add_lightning_class_args(ClipPredictionWriter, "predictions")

    def instantiate_trainer(self, **kwargs):
        # Under SLURM, pre-emption is PreemptionRequeue's job: Lightning's handler would save mid-step.
        if SLURMEnvironment.detect() and not self._subconfig.trainer.get("plugins"):
            kwargs["plugins"] = [SLURMEnvironment(auto_requeue=False)]
        return super().instantiate_trainer(**kwargs)

    @property
    def _subconfig(self) -> Namespace:
        return self.config[self.subcommand] if self.subcommand else self.config

    def before_instantiate_classes(self) -> None:
        cfg = self._subconfig
        stages = [c for c in cfg.get("config") or [] if _resolved(c) not in self.base_configs]
        project, experiment = run_identity_from_config_path(stages)
        cfg.run.project = cfg.run.project or project
        cfg.run.experiment = cfg.run.experiment or experiment
        if not cfg.run.project or not cfg.run.experiment:
            raise UserError(
                "cannot name the run folder: pass a config under projects/<project>/configs/ "
                "or give --run.project and --run.experiment"
            )
        run_dir = Path(cfg.run.root) / cfg.run.project / cfg.run.experiment / cfg.run.version
        cfg.trainer.default_root_dir = str(run_dir)
        if cfg.trainer.logger in (None, True):
            cfg.trainer.logger = Namespace(
                class_path="lightning.pytorch.loggers.TensorBoardLogger",
                init_args=Namespace(
                    save_dir=cfg.run.root,
                    name=f"{cfg.run.project}/{cfg.run.experiment}",
                    version=cfg.run.version,
                    default_hp_metric=False,
                ),
            )
        if self.subcommand and cfg.get("ckpt_path") is None:
            cfg.ckpt_path = AUTO
        self.run_dir = run_dir

    def _resolve_auto_checkpoint(self) -> None:
        kwargs = self.config_init[self.subcommand]
        if kwargs.get("ckpt_path") == AUTO:
            found = newest_checkpoint(self.run_dir)
            kwargs["ckpt_path"] = str(found) if found else None
            if found:
                print(f"avgen: resuming {self.run_dir} from {found}", file=sys.stderr)

    def before_fit(self) -> None:
        self._resolve_auto_checkpoint()

    def before_validate(self) -> None:
        self._resolve_auto_checkpoint()

    def _parse_ckpt_path(self) -> None:
        """Keep the config and the command line authoritative when a checkpoint is given.

        Lightning would parse the checkpoint's hyper-parameters over the parsed config, so that
        `avgen test --ckpt_path=... --model.init_args.sampling.top_k=64` silently evaluates with the top-k the model
        was trained with. The run folder's `config.yaml` already holds those values for whoever wants them.
        """

    def before_test(self) -> None:
        self._resolve_auto_checkpoint()

    def before_predict(self) -> None:
        self._resolve_auto_checkpoint()
