"""`avgen pipeline --project <name>`: every stage of a project's toy pipeline, in order.

Each project lists its stages in `projects/<name>/pipeline.py` (`STAGES`) and says how to summarise the
result (`summarize(results)`). A stage is an ordinary `avgen fit` run of one config, so it has its own run
folder and resumes like any run: re-running the pipeline after a kill continues the unfinished stage and
passes quickly over finished ones. Later stages get earlier stages' checkpoints through CLI arguments.

    avgen pipeline --project specvqgan                      # what `make train PROJECT=specvqgan` runs
    avgen pipeline --project specvqgan --trainer.max_steps=20   # extra arguments go to every stage

Every stage runs with the same number of intra-op CPU threads, `--threads` (2 unless told), whatever the
machine: how float sums are split between threads changes their last bits, and training amplifies those
into other models, so a pipeline repeats its numbers only on the same thread count (and CPU instruction
set: `machine_info`). Each stage's run folder gets `machine.json`, and the summary says what machine made it.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from shared.discovery import project_module, projects_with

if TYPE_CHECKING:  # imported where a stage runs, so that a wrong project name is answered at once
    from lightning.pytorch import LightningDataModule, LightningModule


@dataclass
class StageResult:
    run_dir: Path
    checkpoint: Path  # the stage's best checkpoint if it tracks one, else its last
    metrics: dict[str, float]  # validation metrics of that checkpoint (empty for a stage not validated)
    model: LightningModule  # with that checkpoint's weights
    datamodule: LightningDataModule


@dataclass
class Stage:
    name: str
    config: str  # file name in projects/<project>/configs/
    # extra CLI arguments computed from the results of the stages before this one
    args: Callable[[dict[str, StageResult]], list[str]] = field(default=lambda results: [])
    # False where the project's summary evaluates the stage itself: its checkpoint is only loaded
    validate: bool = True


def run_stage(
    project: str, stage: Stage, results: dict[str, StageResult], extra_args: list[str]
) -> StageResult:
    import torch
    from lightning.pytorch.callbacks import ModelCheckpoint

    from shared.cli import AvgenCLI

    config = Path(importlib.import_module(f"projects.{project}").__file__).parent / "configs" / stage.config
    cli = AvgenCLI(args=["fit", "--config", str(config), *stage.args(results), *extra_args])
    trainer = cli.trainer
    best = next(
        (
            Path(cb.best_model_path)
            for cb in trainer.callbacks
            if isinstance(cb, ModelCheckpoint) and cb.best_model_path
        ),
        None,
    )
    checkpoint = best or cli.run_dir / "checkpoints" / "last.ckpt"
    if stage.validate:
        validated = trainer.validate(
            cli.model, datamodule=cli.datamodule, ckpt_path=str(checkpoint), verbose=False
        )
        metrics = {k: float(v) for k, v in (validated[0] if validated else {}).items()}
    else:
        state = torch.load(checkpoint, map_location=cli.model.device, weights_only=False)["state_dict"]
        cli.model.load_state_dict(state)
        metrics = {}
    (cli.run_dir / "machine.json").write_text(json.dumps(machine_info(), indent=1) + "\n")
    return StageResult(cli.run_dir, checkpoint, metrics, cli.model, cli.datamodule)


# environment variables that change what the machine computes with (threads, instruction sets, MKL's paths)
OVERRIDES = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "ATEN_CPU_CAPABILITY",
    "MKL_CBWR",
    "ONEDNN_MAX_CPU_ISA",
)


def machine_info() -> dict[str, object]:
    """What decides a CPU run's float arithmetic: the CPU, the vector instruction set ATen dispatches to,
    the intra-op thread count, the library versions, and the environment variables that override them."""
    import torch

    cpu = platform.processor()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [line for line in cpuinfo.read_text().splitlines() if line.startswith("model name")]
        cpu = names[0].split(":", 1)[1].strip() if names else cpu
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "environment": {name: os.environ[name] for name in OVERRIDES if name in os.environ},
    }


def describe_machine(info: dict[str, object]) -> str:
    text = (
        f"machine: {info['cpu']} ({info['cpus']} CPUs), ATen {info['cpu_capability']}, "
        f"{info['threads']} intra-op threads, torch {info['torch']}"
    )
    return text + "".join(f", {k}={v}" for k, v in info["environment"].items())


def main(argv: list[str]) -> dict[str, StageResult]:
    parser = argparse.ArgumentParser(prog="avgen pipeline", description=__doc__.split("\n\n")[0])
    parser.add_argument("--project", required=True, help=f"one of: {', '.join(projects_with('pipeline'))}")
    parser.add_argument("--threads", type=int, default=2, help="intra-op CPU threads of every stage")
    args, extra = parser.parse_known_args(argv)
    pipeline = project_module(args.project, "pipeline")
    import torch

    torch.set_num_threads(args.threads)
    results: dict[str, StageResult] = {}
    for stage in pipeline.STAGES:
        print(f"\n=== {args.project}: stage {stage.name} ({stage.config}) ===", flush=True)
        results[stage.name] = run_stage(args.project, stage, results, extra)
    print(f"\n=== {args.project}: done ===")
    for name, result in results.items():
        print(f"  {name:<12} {result.run_dir}   checkpoint: {result.checkpoint}")
    print(describe_machine(machine_info()))
    print(pipeline.summarize(results), flush=True)
    return results
