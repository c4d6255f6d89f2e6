"""`avgen evaluate` and `avgen compare` on tiny runs laid out as the toy pipelines leave them: the JSON, markdown and
figures with the paper's and the direction's common metrics (GRAVO for video -> audio, AudioToken for audio ->
image), compare's table rows, seeds and refusals."""

from __future__ import annotations

import json
import shutil
import statistics
from pathlib import Path

import lightning
import numpy as np
import pytest
import torch
import yaml
from lightning.pytorch.core.mixins.hparams_mixin import _given_hyperparameters_context
from PIL import Image

from projects.gravo.models.priors import LowPrior, UpPrior
from shared.classifier import SpectrogramClassifier
from shared.encoders import Wav2CLIP, WaveMelception
from shared.evaluation import Judges, evaluate
from shared.evaluation.compare import compare, runs_of_systems
from shared.runs import UserError
from tests.projects.gravo.test_generate_and_evaluate import CLIP, LOW, UP, write_run, write_vqvae_checkpoint
from tests.projects.wavbrivl.test_generate import runs as wavbrivl_tiny_runs  # noqa: F401 (a fixture)
from tests.shared.test_generation_door import audiotoken_official, audiotoken_run  # noqa: F401 (fixtures)
from tests.shared.tiny_hf_clip import save_tiny_clip

pytestmark = pytest.mark.usefixtures("one_thread")

WINDOW = 0.512  # seconds: 8192 samples, 256 Low codes (the tiny Low prior's context)


def save_classifier(path: Path, n_classes: int) -> Path:
    """A tiny `SpectrogramClassifier` of a `WaveMelception` saved as the CLI saves it (its config in the
    hyper-parameters), what GRAVO's toy_classifier stage leaves."""
    net_config = {"class_path": "shared.encoders.WaveMelception", "init_args": {"n_classes": n_classes}}
    hparams = {"net": net_config, "input_key": "wave"}
    with _given_hyperparameters_context(
        hparams=hparams, instantiator="lightning.pytorch.cli.instantiate_module"
    ):
        module = SpectrogramClassifier(WaveMelception(n_classes=n_classes), input_key="wave")
    for parameter in module.parameters():  # Inception's initialisation leaves features of about 1e-9
        if parameter.dim() > 1:
            torch.nn.init.kaiming_normal_(parameter)
    path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint = {"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}
    torch.save(checkpoint | {"pytorch-lightning_version": lightning.__version__}, path)
    return path


@pytest.fixture(scope="module")
def gravo_runs(toy_root, tmp_path_factory) -> Path:
    """runs/gravo/{toy_low_gravo, toy_low_im2wav}/default, toy_low_gravo/seed1, toy_up/default and
    toy_classifier/default of tiny random networks, on the session's toy set: the runs folder."""
    root = tmp_path_factory.mktemp("gravo") / "runs"
    gravo = root / "gravo"
    gravo.mkdir(parents=True)
    torch.manual_seed(0)
    vqvae_ckpt = write_vqvae_checkpoint(gravo / "vqvae.ckpt")
    wav2clip_ckpt = gravo / "wav2clip.pt"
    torch.save(Wav2CLIP(widths=(4, 8, 8, 8), blocks=(1, 1, 1, 1), embed_dim=512).state_dict(), wav2clip_ckpt)
    low = LOW | {"n_ctx": 256, "block_ctx": 16}
    up = UP | {"n_ctx": 1024, "block_ctx": 64}
    data = {
        "class_path": "projects.gravo.data.GravoVGGSoundDataModule",
        "init_args": {
            "dataset": {
                "class_path": "shared.data.VGGSoundIndex",
                "init_args": {"root": str(toy_root / "vggsound"), "split_dir": None, "valid_fraction": 0.1},
            },
            "clip": CLIP,
            "cache_dir": str(root.parent / "cache"),
            "window_seconds": WINDOW,
            "batch_size": 4,
        },
    }
    for experiment, version in (
        ("toy_low_gravo", "default"),
        ("toy_low_gravo", "seed1"),
        ("toy_low_im2wav", "default"),
    ):
        folder = gravo / experiment / version
        folder.parent.mkdir(parents=True, exist_ok=True)
        write_run(folder, LowPrior(**low), "projects.gravo.models.priors.LowPrior", low, vqvae_ckpt)
        config = yaml.safe_load((folder / "config.yaml").read_text())
        config["model"]["init_args"]["wav2clip_ckpt"] = str(wav2clip_ckpt)
        config["data"] = data
        (folder / "config.yaml").write_text(yaml.safe_dump(config))
    (gravo / "toy_up").mkdir()
    write_run(
        gravo / "toy_up" / "default", UpPrior(**up), "projects.gravo.models.priors.UpPrior", up, vqvae_ckpt
    )
    save_classifier(gravo / "toy_classifier" / "default" / "checkpoints" / "best.ckpt", n_classes=6)
    return root


@pytest.fixture(scope="module")
def gravo_evaluation(gravo_runs) -> dict:
    return evaluate(gravo_runs / "gravo" / "toy_low_gravo" / "default", samples=1, resamples=50)


def test_evaluate_writes_the_paper_and_common_audio_metrics_with_intervals(gravo_runs, gravo_evaluation):
    result = gravo_evaluation
    run = gravo_runs / "gravo" / "toy_low_gravo" / "default"
    folder = run / "eval"
    assert json.loads((folder / "test.json").read_text()) == result
    assert (
        result["project"] == "gravo" and result["direction"] == "video->audio" and result["split"] == "test"
    )
    assert (
        result["clips"] == 12 == len(result["clip_ids"]) and result["items"] == 12
    )  # 6 classes x 2 test clips
    assert result["checkpoint"].endswith("checkpoints/last.ckpt")
    paper, common = result["metrics"]["paper"], result["metrics"]["common"]
    assert {"fad", "kl", "acc", "cs", "tcs", "cs_real", "acc_real", "ih_cs", "ih_acc"} <= set(paper)
    assert set(common) == {"fad_toy", "kl_toy", "is_toy"}  # no real-data networks given
    for metric in [*paper.values(), *common.values()]:
        assert np.isfinite(metric["value"])
        if metric["low"] is not None:
            assert metric["low"] <= metric["value"] <= metric["high"]
    assert all(common[name]["low"] is not None for name in common)
    assert result["better"] == {"fad_toy": "lower", "kl_toy": "lower", "is_toy": "higher"}
    # GRAVO's toy FAD and KL are on the same toy classifier, with its cached 16-kHz windows as the real audio:
    # the common metrics, with the clips' audio read from their files, give the same numbers
    assert common["fad_toy"]["value"] > 0.01
    for ours, theirs in (("fad_toy", "fad"), ("kl_toy", "kl")):
        assert common[ours]["value"] == pytest.approx(paper[theirs]["value"], rel=1e-3), ours
    # the toy classifier found beside the run (no --classifier given) judged the common metrics
    assert result["judges"]["classifier"] == str(
        gravo_runs / "gravo" / "toy_classifier" / "default" / "checkpoints" / "best.ckpt"
    )
    markdown = (folder / "test.md").read_text()
    for name in ("fad_toy ↓", "is_toy ↑", "| tcs |", "test_metrics.png", "test_examples.png"):
        assert name in markdown, name
    for figure in ("test_metrics.png", "test_examples.png"):
        with Image.open(folder / figure) as image:
            assert image.size[0] > 200 and image.size[1] > 200
            assert np.asarray(image.convert("L")).std() > 0  # something is drawn


def test_compare_makes_a_row_per_system_with_its_seeds_and_reuses_evaluations(
    gravo_runs, gravo_evaluation, tmp_path
):
    gravo = gravo_runs / "gravo"
    default, seed1, im2wav = (gravo / "toy_low_gravo" / "default", gravo / "toy_low_gravo" / "seed1",
                              gravo / "toy_low_im2wav" / "default")  # fmt: skip
    saved = default / "eval" / "test.json"
    written = saved.stat().st_mtime_ns
    summary = compare([default, seed1, im2wav], resamples=50, out=tmp_path / "compare")
    assert saved.stat().st_mtime_ns == written  # evaluated under the same protocol already: reused
    assert summary["systems"] == {"GRAVO": [str(default), str(seed1)], "Im2Wav": [str(im2wav)]}
    assert summary["direction"] == "video->audio" and summary["clips"] == 12
    each = {
        run: json.loads((run / "eval" / "test.json").read_text())["metrics"]
        for run in (default, seed1, im2wav)
    }
    gravo_fad = summary["table"]["GRAVO"]["fad_toy"]
    values = [each[run]["common"]["fad_toy"]["value"] for run in (default, seed1)]
    assert gravo_fad["values"] == values and values[0] != values[1]
    assert gravo_fad["mean"] == pytest.approx(statistics.fmean(values))
    assert gravo_fad["sd"] == pytest.approx(statistics.stdev(values))
    assert summary["table"]["Im2Wav"]["fad_toy"] == each[im2wav]["common"]["fad_toy"]  # one run: its interval
    # runs of one project: its paper's metrics are columns too
    assert summary["table"]["Im2Wav"]["tcs (paper)"] == each[im2wav]["paper"]["tcs"]
    markdown = (tmp_path / "compare" / "compare.md").read_text()
    assert "| GRAVO | 2 |" in markdown and "| Im2Wav | 1 |" in markdown and "fad_toy ↓" in markdown
    assert json.loads((tmp_path / "compare" / "compare.json").read_text()) == summary
    with Image.open(tmp_path / "compare" / "compare.png") as image:
        assert image.size[0] > 200 and np.asarray(image.convert("L")).std() > 0


def test_compare_refuses_other_directions_and_other_clips(gravo_runs, gravo_evaluation, tmp_path):
    default = gravo_runs / "gravo" / "toy_low_gravo" / "default"
    image_run = tmp_path / "runs" / "audiotoken" / "toy_audiotoken" / "default"
    (image_run / "checkpoints").mkdir(parents=True)
    (image_run / "checkpoints" / "last.ckpt").write_bytes(b"")
    config = {"model": {"class_path": "projects.audiotoken.module_audiotoken.AudioTokenTraining"}}
    (image_run / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(UserError, match=r"different directions: .*video->audio.*audio->image"):
        compare([default, image_run])

    other = tmp_path / "runs" / "gravo" / "toy_low_gravo" / "fewer_clips"  # evaluated on one clip fewer
    shutil.copytree(default, other)
    saved = json.loads((other / "eval" / "test.json").read_text())
    (other / "eval" / "test.json").write_text(json.dumps(saved | {"clip_ids": saved["clip_ids"][1:]}))
    with pytest.raises(UserError, match=f"different clips: {other} has 11 clips"):
        compare([default, other], resamples=50, out=tmp_path / "compare")


@pytest.fixture(scope="module")
def audiotoken_runs(audiotoken_run, toy_root, tmp_path_factory) -> Path:  # noqa: F811 (the fixture imported above)
    """runs/audiotoken/toy_audiotoken/default (the generate door's tiny run, on the session's toy set) with the
    judges where AudioToken's toy pipeline leaves them: toy_clip/default/clip, toy_wav2clip/default."""
    root = tmp_path_factory.mktemp("audiotoken") / "runs"
    run = root / "audiotoken" / "toy_audiotoken" / "default"
    shutil.copytree(audiotoken_run, run)
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["data"] = {
        "class_path": "projects.audiotoken.data.AudioTokenVGGSoundDataModule",
        "init_args": {
            "dataset": {
                "class_path": "shared.data.VGGSoundIndex",
                "init_args": {"root": str(toy_root / "vggsound")},
            },
            "cache_dir": str(root.parent / "cache"),
            "eval_window_seconds": 2,
            "image_size": [32, 20],
        },
    }
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    save_tiny_clip(root / "audiotoken" / "toy_clip" / "default" / "clip", image_size=32, projection_dim=16)
    wav2clip = root / "audiotoken" / "toy_wav2clip" / "default" / "checkpoints" / "best.ckpt"
    wav2clip.parent.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(Wav2CLIP(widths=(4, 8, 8, 8), blocks=(1, 1, 1, 1), embed_dim=16).state_dict(), wav2clip)
    return root


def test_evaluate_writes_the_paper_and_common_image_metrics_with_intervals(audiotoken_runs, monkeypatch):
    from projects.audiotoken import pipeline

    monkeypatch.setattr(pipeline, "SETTINGS", pipeline.SamplingSettings(steps=2, height=32, width=32))
    run = audiotoken_runs / "audiotoken" / "toy_audiotoken" / "default"
    result = evaluate(run, clips_per_class=1, resamples=50, examples=3)
    assert json.loads((run / "eval" / "test.json").read_text()) == result
    assert (
        result["direction"] == "audio->image" and result["clips"] == 6 == result["items"]
    )  # 1 clip per class
    assert len({clip_id for clip_id in result["clip_ids"]}) == 6
    paper, common = result["metrics"]["paper"], result["metrics"]["common"]
    assert {"ais", "iis", "aic", "fid", "ais_reference", "aic_reference"} <= set(paper)
    assert set(common) == {"ais", "aic", "fid"}
    for name in ("ais", "aic"):  # win-rate and agreement: shares
        assert 0 <= common[name]["low"] <= common[name]["value"] <= common[name]["high"] <= 1
    assert common["fid"]["value"] > 0 and common["fid"]["low"] is not None
    assert result["judges"]["clip"] == str(audiotoken_runs / "audiotoken" / "toy_clip" / "default" / "clip")
    assert result["judges"]["wav2clip"].endswith("toy_wav2clip/default/checkpoints/best.ckpt")
    markdown = (run / "eval" / "test.md").read_text()
    assert "ais ↑" in markdown and "fid ↓" in markdown and "| iis |" in markdown
    with Image.open(run / "eval" / "test_examples.png") as image:
        assert np.asarray(image.convert("L")).std() > 0


def test_wavbrivl_is_judged_by_the_same_image_metrics(
    wavbrivl_tiny_runs,  # noqa: F811 (the fixture imported above)
    audiotoken_runs,
    toy_root,
    tmp_path,
):
    """WavBriVL's run (its tiny audio tower, image tower and VQGAN) under the same judges as AudioToken's."""
    arguments = dict(zip(wavbrivl_tiny_runs[::2], wavbrivl_tiny_runs[1::2], strict=True))
    run = tmp_path / "runs" / "wavbrivl" / "tiny_audio_tower" / "default"
    shutil.copytree(arguments["--run"], run)
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["data"] = {
        "class_path": "projects.wavbrivl.data.WavBriVLVGGSoundDataModule",
        "init_args": {
            "dataset": {"class_path": "shared.data.VGGSoundIndex",
                        "init_args": {"root": str(toy_root / "vggsound"), "split_dir": None}},
            "cache_dir": str(tmp_path / "cache"), "audio_seconds": 1.0, "image_size": 64, "frame_fps": 5.0,
        },
    }  # fmt: skip
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    judges = audiotoken_runs / "audiotoken"
    result = evaluate(
        run,
        judges=Judges(clip=str(judges / "toy_clip" / "default" / "clip"),
                      wav2clip=str(judges / "toy_wav2clip" / "default" / "checkpoints" / "best.ckpt")),
        clips_per_class=1, resamples=50, options={"vqgan": arguments["--vqgan"], "steps": 2, "cutouts": 2},
    )  # fmt: skip
    assert result["direction"] == "audio->image" and result["clips"] == 6 == result["items"]
    paper, common = result["metrics"]["paper"], result["metrics"]["common"]
    assert {
        "mrr_a2i",
        "mrr_i2a",
        "mrr_a2i_chance",
        "similarity_first",
        "similarity_best",
        "class_agreement",
    } <= set(paper)
    assert set(common) == {"ais", "aic", "fid"}
    assert (
        result["settings"]["generation"]["steps"] == 2 and result["settings"]["vqgan"] == arguments["--vqgan"]
    )


def test_the_commands_help_and_one_line_refusals(gravo_runs, tmp_path, capsys):
    from shared.commands import main

    run = gravo_runs / "gravo" / "toy_low_gravo" / "default"
    with pytest.raises(SystemExit) as done:
        main(["evaluate", "--run", str(run), "--help"])
    assert done.value.code == 0
    printed = capsys.readouterr().out
    for option in ("--split", "--clips-per-class", "--vggish", "--panns", "--up", "--acc-classifier"):
        assert option in printed, option  # the common options, the judges and GRAVO's own
    with pytest.raises(SystemExit) as done:
        main(["evaluate", "--run", str(tmp_path / "nowhere")])
    assert done.value.code == 2
    assert capsys.readouterr().err.strip() == f"avgen: error: {tmp_path / 'nowhere'}: no such run folder"
    found = runs_of_systems(gravo_runs)  # what `make compare` compares: the SYSTEMS' runs with a checkpoint
    gravo = gravo_runs / "gravo"
    expected = [
        gravo / "toy_low_im2wav" / "default",
        gravo / "toy_low_gravo" / "default",
        gravo / "toy_low_gravo" / "seed1",
    ]
    assert found == {"video->audio": expected}
    with pytest.raises(SystemExit) as done:
        main(["compare", "--all", "--runs-root", str(tmp_path)])
    assert done.value.code == 2
    assert "no trained system under" in capsys.readouterr().err
    # an audio -> image system without the judges AudioToken's toy pipeline trains: that direction is skipped
    image_run = tmp_path / "audiotoken" / "toy_audiotoken" / "default"
    (image_run / "checkpoints").mkdir(parents=True)
    (image_run / "checkpoints" / "last.ckpt").write_bytes(b"")
    with pytest.raises(SystemExit) as done:
        main(["compare", "--all", "--runs-root", str(tmp_path)])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert "skipped audio->image: AIS, AIC and FID need a CLIP folder and a Wav2CLIP" in err
    assert "avgen: error: nothing compared: audio->image" in err


def test_a_system_s_runs_share_a_colour_in_the_comparison_figure():
    from shared.evaluation.report import bar_colours

    assert bar_colours(["a", "b", "c"]) == ["C0", "C1", "C2"]
    runs = ["GRAVO (default)", "GRAVO (seed1)", "Im2Wav (default)", "Im2Wav (seed1)"]
    assert bar_colours(runs, ["GRAVO", "GRAVO", "Im2Wav", "Im2Wav"]) == ["C0", "C0", "C1", "C1"]
    assert bar_colours([str(i) for i in range(12)])[10:] == ["C0", "C1"]  # the cycle's ten colours
