"""Run-folder lookups: which checkpoint a run hands out, and the message when it has none."""

import pytest

from shared.runs import UserError, project_of, run_checkpoint, run_config


def test_best_checkpoint_wins_over_last_and_last_serves_alone(tmp_path):
    ckpts = tmp_path / "tiva" / "toy_joint" / "default" / "checkpoints"
    ckpts.mkdir(parents=True)
    (ckpts / "last.ckpt").write_bytes(b"")
    assert run_checkpoint(ckpts.parent) == ckpts / "last.ckpt"
    (ckpts / "best.ckpt").write_bytes(b"")
    assert run_checkpoint(ckpts.parent) == ckpts / "best.ckpt"


def test_a_run_without_checkpoint_says_how_to_make_one(tmp_path):
    run = tmp_path / "tiva" / "toy_joint" / "default"
    run.mkdir(parents=True)
    with pytest.raises(UserError, match=r"no checkpoint in .*default.*make train PROJECT=tiva"):
        run_checkpoint(run)
    with pytest.raises(UserError, match="no such run folder"):
        run_checkpoint(tmp_path / "nowhere")
    with pytest.raises(UserError, match="config.yaml: missing"):
        run_config(run)
    assert project_of(run) == "tiva"


def test_run_config_resolves_interpolations(tmp_path):
    (tmp_path / "config.yaml").write_text("a: 2\nb: ${a}\n")
    assert run_config(tmp_path) == {"a": 2, "b": 2}
