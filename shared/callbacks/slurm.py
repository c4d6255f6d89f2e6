"""SLURM pre-emption: checkpoint at a step boundary, requeue the job, stop.

With `#SBATCH --signal=SIGUSR1@90`, SLURM sends SIGUSR1 to every task 90 s before it stops the job. The
handler only raises a flag; at the end of the current training step the processes agree (one boolean
all-reduce) that one of them was signalled, save `<run>/hpc_ckpt_<n>.ckpt` together, rank 0 runs
`scontrol requeue <job>` (array-aware), and training stops. The requeued job runs the same command,
and `--ckpt_path=auto` resumes from that checkpoint in the same run folder at the same step.

A signal that arrives during the last batch of an epoch is honoured one step later, at the end of the
next epoch's first batch: Lightning resumes a checkpoint taken at the end of an epoch's last batch by
skipping that epoch's validation and end-of-epoch hooks and by applying the finished epoch's data-loader
position to the next epoch, so the resumed run would differ from an uninterrupted one. (With one batch
per epoch there is no such step, and the save happens at the second signalled step anyway.)

A signal that arrives during the last step or once training is over (during the final validation, while
the last checkpoint is written, or while the process exits) saves nothing and requeues nothing: the run is
complete. The handler stays installed until the process ends, since SIGUSR1's default action would kill a
finished job before it exits cleanly; it logs one line and the process ends with status 0 as it would have.

Lightning's own SLURM handler saves from inside the signal handler, that is in the middle of whatever
step is running, and does not stop; the CLI turns it off (`SLURMEnvironment(auto_requeue=False)`) and uses
this callback instead, which does nothing outside SLURM.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
from pathlib import Path

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.plugins.environments import SLURMEnvironment

from shared.callbacks.checkpoint import save_checkpoint_atomically

log = logging.getLogger(__name__)


class PreemptedError(SystemExit):
    """Raised after the pre-emption checkpoint is written, to end the process cleanly."""


def slurm_job_id() -> str:
    array_job = os.environ.get("SLURM_ARRAY_JOB_ID")
    if array_job is not None:
        return f"{array_job}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    return os.environ["SLURM_JOB_ID"]


def next_hpc_checkpoint(run_dir: str | Path) -> Path:
    numbers = [int(p.stem.split("_")[-1]) for p in Path(run_dir).glob("hpc_ckpt_*.ckpt")]
    return Path(run_dir) / f"hpc_ckpt_{max(numbers, default=0) + 1}.ckpt"


class PreemptionRequeue(Callback):
    def __init__(self, signal_name: str = "SIGUSR1"):
        self.signum = getattr(signal, signal_name)
        self.requested = False
        self._training = False  # under SLURM, from the fit's setup to its last step or pre-emption
        self._deferred = False

    def _handler(self, signum, frame) -> None:
        self.requested = True
        if not self._training:
            log.warning(
                "pre-emption: %s after training ended: nothing to save, job not requeued",
                signal.Signals(signum).name,
            )

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage == "fit" and SLURMEnvironment.detect():
            signal.signal(self.signum, self._handler)  # kept until the process ends: see the module doc
            self._training = True

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self._training and self.requested:
            log.warning("pre-emption: signal during or after the last step: training finished, not requeued")
        self._training = False

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args) -> None:
        if not self._training or not trainer.strategy.reduce_boolean_decision(self.requested, all=False):
            return
        if 0 <= trainer.max_steps <= trainer.global_step:
            return  # the last step: training ends now anyway, and there is nothing left to resume
        if trainer.fit_loop.epoch_loop.batch_progress.is_last_batch and not self._deferred:
            self._deferred = True
            return
        self._training = False
        path = save_checkpoint_atomically(trainer, next_hpc_checkpoint(trainer.default_root_dir))
        log.warning("pre-emption: saved %s at step %d", path, trainer.global_step)
        if trainer.is_global_zero:
            job = slurm_job_id()
            result = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
            if result.returncode == 0:
                log.warning("pre-emption: requeued SLURM job %s", job)
            else:
                log.error("pre-emption: `scontrol requeue %s` failed: %s", job, result.stderr.strip())
        raise PreemptedError(0)
