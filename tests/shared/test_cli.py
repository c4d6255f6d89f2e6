import os
import shutil
import signal
import time
from pathlib import Path

import pytest
import torch
import yaml

from shared.cli import AvgenCLI, newest_checkpoint, run_identity_from_config_path
from shared.runs import UserError
from tests.conftest import REPO
from tests.shared.probes import child, probe, recorded_runs, run, wait_for

CONFIG = REPO / "projects" / "specvqgan" / "configs" / "toy_vggishish.yaml"


def toy_args(toy_root: Path, tmp_path: Path) -> list[str]:
    return [
        "--config", str(CONFIG),
        f"--data.init_args.dataset.init_args.root={toy_root / 'vggsound'}",
        f"--data.init_args.cache_dir={tmp_path / 'cache'}",
        f"--run.root={tmp_path / 'runs'}",
        "--trainer.enable_progress_bar=false",
    ]  # fmt: skip


def test_run_identity_comes_from_the_config_path(tmp_path):
    assert run_identity_from_config_path([CONFIG]) == ("specvqgan", "toy_vggishish")
    assert run_identity_from_config_path([tmp_path / "x.yaml"]) == (None, None)


def test_print_config_shows_full_class_paths(toy_root, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        AvgenCLI(args=["fit", *toy_args(toy_root, tmp_path), "--model.init_args.lr=0.01", "--print_config"])
    assert exit_info.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["class_path"] == "shared.classifier.SpectrogramClassifier"
    assert printed["model"]["init_args"]["lr"] == 0.01
    assert printed["model"]["init_args"]["net"]["class_path"] == "projects.specvqgan.models.VGGishish"
    assert printed["data"]["init_args"]["dataset"]["class_path"] == "shared.data.VGGSoundIndex"
    assert printed["checkpoint"]["every_n_steps"] == 100


def test_a_config_outside_projects_needs_a_run_name(toy_root, tmp_path):
    outside = tmp_path / "mine.yaml"
    outside.write_text(CONFIG.read_text())
    shutil.copytree(CONFIG.parent / "base", tmp_path / "base")  # what it extends
    args = toy_args(toy_root, tmp_path)
    args[1] = str(outside)
    with pytest.raises(UserError, match="cannot name the run folder"):
        AvgenCLI(args=["fit", *args, "--trainer.max_steps=1"])


@pytest.mark.slow
def test_fit_writes_one_run_folder_and_resumes_in_it(toy_root, tmp_path):
    steps_file = tmp_path / "steps.txt"
    args = ["fit", *toy_args(toy_root, tmp_path), probe("StepRecorder", path=str(steps_file))]
    cli = AvgenCLI(args=[*args, "--trainer.max_steps=3", "--checkpoint.every_n_steps=2"])
    run = tmp_path / "runs" / "specvqgan" / "toy_vggishish" / "default"
    assert cli.run_dir == run
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["run"] == {
        "project": "specvqgan",
        "experiment": "toy_vggishish",
        "version": "default",
        "root": str(tmp_path / "runs"),
    }
    assert list(run.glob("events.out.tfevents.*"))
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["global_step"] == 3
    assert not list((run / "checkpoints").glob(".*tmp*"))
    # the same command with a higher step budget continues this run, in this folder
    cli = AvgenCLI(args=[*args, "--trainer.max_steps=5", "--checkpoint.every_n_steps=2"])
    assert cli.trainer.global_step == 5
    assert sorted(p.name for p in (tmp_path / "runs" / "specvqgan" / "toy_vggishish").iterdir()) == [
        "default"
    ]
    # and the saved config reproduces the run by itself
    again = AvgenCLI(args=["fit", "--config", str(run / "config.yaml"), "--trainer.max_steps=6"])
    assert again.run_dir == run and again.trainer.global_step == 6
    assert recorded_runs(steps_file) == [[1, 2, 3], [4, 5], [6]]  # each run went on from the one before


def test_newest_checkpoint_prefers_the_latest_write(tmp_path):
    assert newest_checkpoint(tmp_path) is None
    (tmp_path / "checkpoints").mkdir()
    last = tmp_path / "checkpoints" / "last.ckpt"
    last.write_bytes(b"1")
    hpc = tmp_path / "hpc_ckpt_1.ckpt"
    hpc.write_bytes(b"2")
    os.utime(last, (time.time() - 60, time.time() - 60))
    assert newest_checkpoint(tmp_path) == hpc
    os.utime(hpc, (time.time() - 120, time.time() - 120))
    assert newest_checkpoint(tmp_path) == last


def step_of(path: Path) -> int:
    return torch.load(path, weights_only=False, map_location="cpu")["global_step"]


@pytest.mark.slow
def test_a_killed_run_resumes_where_its_last_checkpoint_stopped(toy_root, tmp_path):
    total, killed_in = 40, 11
    steps_file, paused = tmp_path / "steps.txt", tmp_path / "paused"
    args = [
        "fit",
        *toy_args(toy_root, tmp_path),
        f"--trainer.max_steps={total}",
        "--checkpoint.every_n_steps=5",  # and after each validation: every 2 steps here (2 batches an epoch)
        probe("StepRecorder", path=str(steps_file)),
        probe("PauseAtStep", step=killed_in, marker=str(paused)),  # so that the kill lands mid-training
    ]
    last = tmp_path / "runs" / "specvqgan" / "toy_vggishish" / "default" / "checkpoints" / "last.ckpt"
    log = tmp_path / "killed.log"
    with child(args, log) as proc:
        wait_for(paused, proc, log)
        proc.send_signal(signal.SIGKILL)  # no chance to save anything more
        proc.wait()
    killed_at = step_of(last)
    assert killed_at == killed_in - 1  # the save after step 10's validation; step 11's was never saved
    status, output = run(args, tmp_path / "resumed.log")
    assert status == 0, output[-3000:]
    assert f"resuming {last.parents[1]}" in output
    assert step_of(last) == total
    killed_run, resumed_run = recorded_runs(steps_file)
    assert killed_run == list(range(1, killed_in + 1))
    assert resumed_run == list(range(killed_at + 1, total + 1)), "it did not resume from the checkpoint"


@pytest.mark.slow
def test_sigterm_saves_the_step_it_stopped_at(toy_root, tmp_path):
    stop_at = 3
    steps_file, paused = tmp_path / "steps.txt", tmp_path / "paused"
    args = [
        "fit",
        *toy_args(toy_root, tmp_path),
        "--checkpoint.every_n_steps=100000",  # no periodic save: only the interrupt can write one at step 3
        probe("StepRecorder", path=str(steps_file)),
        probe("PauseAtStep", step=stop_at, marker=str(paused)),  # until the SIGTERM: it lands mid-training
    ]
    last = tmp_path / "runs" / "specvqgan" / "toy_vggishish" / "default" / "checkpoints" / "last.ckpt"
    log = tmp_path / "stopped.log"
    with child([*args, "--trainer.max_steps=100000"], log) as proc:
        wait_for(paused, proc, log)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=300)
    assert step_of(last) == stop_at, log.read_text()[-3000:]
    status, output = run([*args, f"--trainer.max_steps={stop_at + 2}"], tmp_path / "resumed.log")
    assert status == 0, output[-3000:]
    assert step_of(last) == stop_at + 2
    assert recorded_runs(steps_file) == [[1, 2, 3], [4, 5]], "it did not resume from the saved step"


@pytest.mark.slow
def test_command_line_values_win_over_the_checkpoint_s_hyperparameters(toy_root, tmp_path):
    """Lightning would re-apply the checkpoint's hyper-parameters over `--model.*` when given `--ckpt_path`."""
    AvgenCLI(
        args=["fit", *toy_args(toy_root, tmp_path), "--trainer.max_steps=1", "--model.init_args.lr=0.001"]
    )
    ckpt = tmp_path / "runs" / "specvqgan" / "toy_vggishish" / "default" / "checkpoints" / "last.ckpt"
    cli = AvgenCLI(
        args=["validate", *toy_args(toy_root, tmp_path), f"--ckpt_path={ckpt}", "--model.init_args.lr=0.5"]
    )
    assert cli.model.hparams.lr == 0.5
    # evaluating with other settings leaves the training run's config.yaml alone
    run = ckpt.parents[1]
    assert yaml.safe_load((run / "config.yaml").read_text())["model"]["init_args"]["lr"] == 0.001
    assert yaml.safe_load((run / "config_validate.yaml").read_text())["model"]["init_args"]["lr"] == 0.5
