"""Synchronising tests with training processes on what the run does, never on wall-clock time.

In the training process (callbacks a test adds with `probe(...)`, i.e. `--trainer.callbacks+=...`; the child
imports them because its PYTHONPATH is the repo):

* `PauseAtStep`: at the end of optimiser step `step`, write a marker file and wait (bounded) for the signal
  the test sends once it sees the marker (SIGTERM, or the SLURM pre-emption signal). The signal therefore
  lands mid-training at a known step however fast or slow the machine is; a test that kills the process
  instead kills it there. It pauses once: in a resumed run, whose marker is already there, it does nothing.
  Single-process runs only (the other ranks of a DDP run would never see the signal).
* `PauseAtExit`: the same once the process is about to exit, after `fit` has returned.
* `StepRecorder`: appends each trained step to a file, one block per training run, so that a test can tell
  a resumed run (its first step is the checkpoint's + 1) from one that restarted from scratch.

In the test: `child(...)` starts an `avgen` command whose whole process group is killed when the test ends,
whatever happens, and `run(...)` runs one to its end; `wait_for(marker, ...)` waits for a marker;
`recorded_runs(path)` reads a recorder file.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from lightning.pytorch import Callback, LightningModule, Trainer

from shared.callbacks import PreemptionRequeue
from tests.conftest import REPO

WAIT_S = 120.0  # how long a paused run waits for the test's signal before it fails


def probe(name: str, **init_args) -> str:
    """The command-line argument that adds the callback `name` of this module to a run."""
    return "--trainer.callbacks+=" + json.dumps({"class_path": f"{__name__}.{name}", "init_args": init_args})


def _preemption(trainer: Trainer) -> PreemptionRequeue | None:
    return next((cb for cb in trainer.callbacks if isinstance(cb, PreemptionRequeue)), None)


def _pause(marker: Path, signalled: Callable[[], bool]) -> None:
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(str(os.getpid()))
    deadline = time.monotonic() + WAIT_S
    while not signalled():  # the signal handlers run in this thread, between these short sleeps
        if time.monotonic() > deadline:
            raise RuntimeError(f"{marker}: no signal from the test within {WAIT_S:.0f} s")
        time.sleep(0.01)


class PauseAtStep(Callback):
    def __init__(self, step: int, marker: str):
        self.step, self.marker = step, Path(marker)

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args) -> None:
        if trainer.global_step != self.step or self.marker.exists():
            return
        preemption = _preemption(trainer)
        _pause(self.marker, lambda: trainer.received_sigterm or bool(preemption and preemption.requested))


class PauseAtExit(Callback):
    """Waits for the pre-emption signal when the process exits (an `atexit` hook, registered at setup)."""

    def __init__(self, marker: str):
        self.marker = Path(marker)

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        preemption = _preemption(trainer)
        if preemption is None:
            raise RuntimeError(
                "PauseAtExit waits for the pre-emption signal: the run has no PreemptionRequeue"
            )

        def pause() -> None:
            preemption.requested = False  # wait for a signal sent after the marker, not an earlier one
            try:
                _pause(self.marker, lambda: preemption.requested)
            except RuntimeError as error:
                print(error, flush=True)
                os._exit(3)  # an exception in an atexit hook would not change the exit status

        atexit.register(pause)


class StepRecorder(Callback):
    def __init__(self, path: str):
        self.path = Path(path)

    def _append(self, trainer: Trainer, line: str) -> None:
        if trainer.is_global_zero:
            with open(self.path, "a") as f:
                f.write(line + "\n")

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._append(trainer, "start")

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args) -> None:
        self._append(trainer, str(trainer.global_step))


def recorded_runs(path: Path) -> list[list[int]]:
    """The steps each training run trained, in order: [[1, ..., k], [k + 1, ..., n]] for a run resumed at k."""
    runs: list[list[int]] = []
    for line in path.read_text().split():
        if line == "start":
            runs.append([])
        else:
            runs[-1].append(int(line))
    return runs


def avgen_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **extra}


@contextlib.contextmanager
def child(args: list[str], log: Path, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen]:
    """`avgen <args>` in the repo, its stdout and stderr to `log` (a pipe could fill up and block it); its
    whole process group (DDP ranks and pool workers included) is killed when the block ends, however it ends."""
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "shared", *args], cwd=REPO, env=env or avgen_env(), stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            yield proc
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def run(
    args: list[str], log: Path, env: dict[str, str] | None = None, timeout: float = 900.0
) -> tuple[int, str]:
    """`avgen <args>` to its end (killed after `timeout` s): its exit status and its output."""
    with child(args, log, env) as proc:
        proc.wait(timeout)
    return proc.returncode, log.read_text()


def wait_for(marker: Path, proc: subprocess.Popen, log: Path, timeout: float = 600.0) -> None:
    """Wait until the run writes `marker`; fail with the run's log if it exits or takes `timeout` s first."""
    deadline = time.monotonic() + timeout
    while not marker.exists():
        if proc.poll() is not None:
            raise AssertionError(
                f"the run exited ({proc.returncode}) before {marker.name}:\n{log.read_text()[-4000:]}"
            )
        if time.monotonic() > deadline:
            raise AssertionError(f"no {marker.name} after {timeout:.0f} s:\n{log.read_text()[-4000:]}")
        time.sleep(0.05)
