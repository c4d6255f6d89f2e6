"""`avgen slurm`: write the sbatch script of one training run from `slurm/train.sbatch` and submit it.

    avgen slurm --project tiva --exp default --nodes 2 --gpus 8 --partition gpu --time 48:00:00
    make slurm PROJECT=tiva EXP=default NODES=2 GPUS=8          # the same through make

The job is named `avgen-<project>-<exp>-<version>` and writes everything (SLURM log, TensorBoard events,
config, checkpoints) to `runs/<project>/<exp>/<version>/`, the folder that `avgen fit` uses for that
version. Requeued after a pre-emption, or submitted again after a crash, the job resumes there.
`--dry-run` prints the script instead of submitting it.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = REPO / "slurm" / "train.sbatch"


def render(
    project: str,
    exp: str,
    nodes: int = 1,
    gpus: int = 1,
    version: str = "default",
    partition: str = "gpu",
    account: str = "default",
    time: str = "24:00:00",
    cpus: int = 8,
    args: str = "",
    runs_root: str = "runs",
) -> str:
    config = REPO / "projects" / project / "configs" / f"{exp}.yaml"
    if not config.is_file():
        raise FileNotFoundError(f"{config}: no such config (PROJECT={project}, EXP={exp})")
    run_dir = REPO / runs_root / project / exp / version
    fields = {
        "JOB_NAME": f"avgen-{project}-{exp}-{version}",
        "PARTITION": partition,
        "ACCOUNT": account,
        "TIME": time,
        "NODES": str(nodes),
        "GPUS": str(gpus),
        "CPUS": str(cpus),
        "RUN_DIR": str(run_dir),
        "REPO": str(REPO),
        "CONFIG": str(config.relative_to(REPO)),
        "VERSION": version,
        "ARGS": args,
    }
    script = TEMPLATE.read_text()
    for key, value in fields.items():
        script = script.replace(f"@{key}@", value)
    return script


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="avgen slurm", description=__doc__.split("\n\n")[0])
    parser.add_argument("--project", required=True)
    parser.add_argument("--exp", required=True, help="config name in projects/<project>/configs/")
    parser.add_argument("--nodes", type=int, default=1)
    parser.add_argument("--gpus", type=int, default=1, help="GPUs (= tasks) per node")
    parser.add_argument("--version", default="default", help="run folder version; the same value resumes")
    parser.add_argument("--partition", default="gpu")
    parser.add_argument("--account", default="default")
    parser.add_argument("--time", default="24:00:00")
    parser.add_argument("--cpus", type=int, default=8, help="CPUs per task")
    parser.add_argument("--args", default="", help="extra `avgen fit` arguments, one quoted string")
    parser.add_argument("--dry-run", action="store_true")
    opts = parser.parse_args(argv)
    script = render(
        opts.project, opts.exp, opts.nodes, opts.gpus, opts.version, opts.partition, opts.account, opts.time,
        opts.cpus, opts.args,
    )  # fmt: skip
    if opts.dry_run:
        print(script)
        return
    run_dir = REPO / "runs" / opts.project / opts.exp / opts.version
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "job.sbatch"
    path.write_text(script)
    print(f"avgen slurm: {path}")
    subprocess.run(["sbatch", str(path)], check=True)
    print(f"avgen slurm: submitted; follow with `tail -f {shlex.quote(str(run_dir))}/slurm-*.out`")
