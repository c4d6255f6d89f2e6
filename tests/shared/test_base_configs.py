"""`extends:` in a config (`shared.cli`): a stage states what makes it, its bases the rest."""

from pathlib import Path
from textwrap import dedent

import pytest
import yaml

from shared.cli import AvgenCLI, expand_extends
from shared.commands import main
from shared.runs import UserError
from tests.conftest import resolved_config
from tests.shared.probes import probe, recorded_runs

CHECKPOINT = "lightning.pytorch.callbacks.ModelCheckpoint"
EARLY_STOPPING = "lightning.pytorch.callbacks.EarlyStopping"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dedent(text))
    return path


@pytest.fixture
def stage(tmp_path) -> Path:
    """projects/demo/configs/stage.yaml -> base/classifier.yaml -> base/common.yaml, laid out as a project's."""
    configs = tmp_path / "projects" / "demo" / "configs"
    write(
        configs / "base" / "common.yaml",
        f"""
        seed_everything: 7
        trainer:
          accelerator: cpu
          max_epochs: 3
          log_every_n_steps: 3
          callbacks:
            - class_path: {CHECKPOINT}
              init_args: {{monitor: val/loss, mode: min, filename: best}}
        data:
          class_path: projects.specvqgan.data.SpectrogramDataModule
          init_args:
            dataset: {{class_path: shared.data.VGGSoundIndex, init_args: {{root: data/toy/vggsound}}}}
            cache_dir: data/cache
            duration: 2.0
            trim_frames: 172
            crop_frames: 160
            batch_size: 16
        """,
    )
    write(
        configs / "base" / "classifier.yaml",
        """
        extends: common.yaml
        trainer:
          max_epochs: 5
        model:
          class_path: shared.classifier.SpectrogramClassifier
          init_args:
            net:
              class_path: projects.specvqgan.models.VGGishish
              init_args: {n_classes: 6, widths: [8, 16, 32, 32, 32], fc_dim: 64, pool_size: [5, 10]}
            lr: 0.01
        """,
    )
    return write(
        configs / "stage.yaml",
        f"""
        extends: base/classifier.yaml
        trainer:
          max_epochs: 9
          callbacks+:
            - class_path: {EARLY_STOPPING}
              init_args: {{monitor: val/loss, check_on_train_epoch_end: false}}
        model:
          init_args:
            lr: 0.5
        data:
          init_args:
            batch_size: 4
        """,
    )


def test_a_stage_gets_its_bases_values_and_its_own(stage):
    resolved = resolved_config(stage)
    assert resolved["seed_everything"] == 7  # two levels up
    assert resolved["trainer"]["accelerator"] == "cpu" and resolved["trainer"]["log_every_n_steps"] == 3
    assert resolved["trainer"]["max_epochs"] == 9  # the stage's, over both bases'
    assert resolved["model"]["init_args"]["net"]["init_args"]["fc_dim"] == 64  # one level up
    assert resolved["model"]["init_args"]["lr"] == 0.5
    assert resolved["data"]["init_args"]["batch_size"] == 4
    assert resolved["data"]["init_args"]["crop_frames"] == 160
    # `callbacks+:` appends to the base's list
    assert [c["class_path"] for c in resolved["trainer"]["callbacks"]] == [CHECKPOINT, EARLY_STOPPING]
    assert "extends" not in resolved


def test_a_list_in_a_stage_replaces_its_base_s_list(stage):
    stage.write_text(stage.read_text().replace("callbacks+:", "callbacks:"))
    resolved = resolved_config(stage)
    assert [c["class_path"] for c in resolved["trainer"]["callbacks"]] == [EARLY_STOPPING]


def test_every_config_option_is_expanded_bases_first_each_once(tmp_path):
    common = write(tmp_path / "base" / "common.yaml", "seed_everything: 1\n")
    left = write(tmp_path / "base" / "left.yaml", "extends: common.yaml\n")
    right = write(tmp_path / "base" / "right.yaml", "extends: [common.yaml]\n")
    stage = write(tmp_path / "stage.yaml", "extends: [base/left.yaml, base/right.yaml]\n")
    plain = write(tmp_path / "plain.yaml", "seed_everything: 2\n")
    args, bases = expand_extends(["fit", f"--config={stage}", "-c", str(plain), "--trainer.max_steps=1"])
    chain = [str(p) for p in (common, left, right, stage)]
    assert args == [
        "fit",
        *(x for c in chain for x in ("--config", c)),
        "--config",
        str(plain),
        "--trainer.max_steps=1",
    ]
    assert bases == {common.resolve(), left.resolve(), right.resolve()}


def test_a_missing_base_names_the_stage_and_the_missing_file(tmp_path):
    stage = write(tmp_path / "stage.yaml", "extends: base/nope.yaml\nseed_everything: 1\n")
    with pytest.raises(UserError) as error:
        AvgenCLI(args=["fit", "--config", str(stage), "--print_config"])
    assert str(stage) in str(error.value) and str(tmp_path / "base" / "nope.yaml") in str(error.value)


def test_avgen_reports_a_missing_base_in_one_line(tmp_path, capsys):
    stage = write(tmp_path / "stage.yaml", "extends: nope.yaml\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(stage)])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("avgen: error: ") and "\n" not in error and "nope.yaml" in error


def test_a_cycle_is_an_error(tmp_path):
    write(tmp_path / "a.yaml", "extends: b.yaml\n")
    write(tmp_path / "b.yaml", "extends: a.yaml\n")
    with pytest.raises(UserError, match="again"):
        expand_extends(["--config", str(tmp_path / "a.yaml")])


def test_extends_must_name_paths(tmp_path):
    stage = write(tmp_path / "stage.yaml", "extends: {trainer: 1}\n")
    with pytest.raises(UserError, match=str(stage)):
        expand_extends(["--config", str(stage)])


def test_the_run_is_named_after_the_stage_not_its_bases(stage, tmp_path):
    cli = AvgenCLI(args=["--config", str(stage), f"--run.root={tmp_path / 'runs'}"], run=False)
    assert cli.run_dir == tmp_path / "runs" / "demo" / "stage" / "default"


@pytest.mark.slow
def test_the_saved_config_continues_the_same_run(stage, toy_root, tmp_path):
    steps_file = tmp_path / "steps.txt"
    args = [
        f"--data.init_args.dataset.init_args.root={toy_root / 'vggsound'}",
        f"--data.init_args.cache_dir={tmp_path / 'cache'}",
        f"--run.root={tmp_path / 'runs'}",
        "--trainer.enable_progress_bar=false",
        probe("StepRecorder", path=str(steps_file)),
    ]
    first = AvgenCLI(args=["fit", "--config", str(stage), *args, "--trainer.max_steps=2"])
    run = tmp_path / "runs" / "demo" / "stage" / "default"
    assert first.run_dir == run
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert "extends" not in saved  # complete by itself: nothing to look up beside it
    assert saved["model"]["init_args"]["lr"] == 0.5 and saved["seed_everything"] == 7
    again = AvgenCLI(args=["fit", "--config", str(run / "config.yaml"), "--trainer.max_steps=3"])
    assert again.run_dir == run and again.trainer.global_step == 3
    assert recorded_runs(steps_file) == [[1, 2], [3]]  # the second run went on from the first
