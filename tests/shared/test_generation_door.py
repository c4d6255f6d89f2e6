"""`avgen generate --run`: the project read from a run, a folder's inputs, batches, sidecars, one-line errors; on the
tiny models the projects' own generate tests build (imported, not rebuilt)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from PIL import Image

from shared import commands
from shared.data.toy import _write_mp4, synthesize_clip
from shared.generation import avgen_commit, collect_inputs, open_run, project_of_run
from shared.runs import UserError
from tests.projects.audiotoken.test_generate import official as audiotoken_official  # noqa: F401 (a fixture)
from tests.shared.test_audio import write_video_only_mp4

pytestmark = pytest.mark.usefixtures("one_thread")


def tone(path: Path, hz: float, seconds: float = 1.0, rate: int = 22_050) -> Path:
    t = np.arange(int(rate * seconds)) / rate
    sf.write(path, 0.5 * np.sin(2 * np.pi * hz * t), rate)
    return path


def toy_video(path: Path, seconds: float = 1.2, label: int = 2) -> Path:
    """An mp4 with H.264 frames and AAC sound, as the toy set's clips."""
    _, audio, frames = synthesize_clip(1, label, "test", duration=seconds)
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_mp4(path, frames, audio, 48_000)
    return path


def write_config(run: Path, config: dict) -> Path:
    run.mkdir(parents=True, exist_ok=True)
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    return run


# --- which project made a run ---------------------------------------------------------------------------------


def test_the_project_is_read_from_the_configs_class_paths_else_from_the_runs_place(tmp_path):
    anywhere = write_config(
        tmp_path / "anywhere",
        {"model": {"class_path": "projects.gravo.module_prior.PriorTraining", "init_args": {"prior": {
            "class_path": "projects.gravo.models.priors.LowPrior"}}}, "data": {"class_path": "shared.x"}},
    )  # fmt: skip
    assert project_of_run(anywhere) == "gravo"
    placed = tmp_path / "runs" / "tiva" / "toy_joint" / "default"
    (placed / "checkpoints").mkdir(parents=True)  # no config.yaml: its place says
    assert project_of_run(placed) == "tiva"
    # a config that names another project than the place: the config is what made the run
    write_config(
        tmp_path / "runs" / "tiva" / "moved" / "v1", {"model": {"class_path": "projects.wavbrivl.m.M"}}
    )
    assert project_of_run(tmp_path / "runs" / "tiva" / "moved" / "v1") == "wavbrivl"


def test_folders_that_are_no_run_of_a_known_project_are_user_errors(tmp_path):
    with pytest.raises(UserError, match=f"{tmp_path / 'missing'}: no such run folder"):
        project_of_run(tmp_path / "missing")
    (tmp_path / "plain").mkdir()
    with pytest.raises(UserError, match=f"{tmp_path / 'plain'}: not a run folder"):
        project_of_run(tmp_path / "plain")
    unknown = write_config(
        tmp_path / "runs" / "nope" / "exp" / "v", {"model": {"class_path": "projects.nope.M"}}
    )
    with pytest.raises(UserError, match=f"{unknown}: cannot tell which project.*projects: audiotoken, gravo"):
        project_of_run(unknown)


# --- inputs ---------------------------------------------------------------------------------------------------


def test_a_folders_inputs_are_its_files_of_the_kinds_taken_in_sorted_order(tmp_path):
    for name in ["b.mp4", "a.wav", "c.txt", "d.png", ".hidden.wav", "E.FLAC"]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub.wav").mkdir()  # a folder is no input
    inputs, skipped = collect_inputs(tmp_path, ("audio", "video"))
    assert [p.name for p in inputs] == ["E.FLAC", "a.wav", "b.mp4"]
    assert [p.name for p in skipped] == ["c.txt", "d.png"]
    assert collect_inputs(tmp_path / "d.png", ("image",)) == ([tmp_path / "d.png"], [])
    with pytest.raises(
        UserError, match=rf"{tmp_path / 'c.txt'}: not a file of a known kind; this run takes video"
    ):
        collect_inputs(tmp_path / "c.txt", ("video",))
    with pytest.raises(UserError, match=rf"{tmp_path / 'a.wav'}: an audio file; this run takes image \(.png"):
        collect_inputs(tmp_path / "a.wav", ("image",))
    (tmp_path / "d.png").unlink()
    with pytest.raises(UserError, match=rf"{tmp_path}: no input in this folder; this run takes image"):
        collect_inputs(tmp_path, ("image",))
    with pytest.raises(UserError, match="nowhere: no such file or folder"):
        collect_inputs(tmp_path / "nowhere", ("audio",))


# --- audio -> image: AudioToken, whose model batches sounds -----------------------------------------------------

AUDIOTOKEN_SMALL = {"steps": 2, "height": 32, "width": 48, "seconds": 1.0}


@pytest.fixture(scope="module")
def audiotoken_run(audiotoken_official, tmp_path_factory) -> Path:  # noqa: F811 (the fixture imported above)
    """An AudioToken stage's run folder (config.yaml + checkpoints/last.ckpt) on the tiny official-layout files."""
    files = dict(arg.removeprefix("--").split("=", 1) for arg in audiotoken_official)
    run = write_config(
        tmp_path_factory.mktemp("runs") / "toy_audiotoken" / "default",
        {"model": {"class_path": "projects.audiotoken.module_audiotoken.AudioTokenTraining",
                   "init_args": {"beats_ckpt": files["beats"], "sd_root": files["sd-root"]}}},
    )  # fmt: skip
    state = torch.load(files["embedder"], weights_only=True)
    (run / "checkpoints").mkdir()
    torch.save(
        {"state_dict": {f"embedder.{k}": v for k, v in state.items()}}, run / "checkpoints" / "last.ckpt"
    )
    return run


@pytest.fixture(scope="module")
def sounds(tmp_path_factory) -> Path:
    """A folder of two sounds, a video with sound, and two files the audio -> image projects do not take."""
    folder = tmp_path_factory.mktemp("sounds")
    tone(folder / "b_high.wav", 880)
    tone(folder / "a_low.wav", 220, seconds=0.6)
    toy_video(folder / "c_clip.mp4")
    (folder / "notes.txt").write_text("not an input")
    Image.new("RGB", (8, 8)).save(folder / "picture.png")
    return folder


def test_a_folder_through_the_door_one_sidecar_per_output(audiotoken_run, sounds, tmp_path, capsys):
    out = tmp_path / "out"
    options = [f"--{name}={value}" for name, value in AUDIOTOKEN_SMALL.items()]
    commands.main(
        ["generate", "--run", str(audiotoken_run), "--input", str(sounds), "--out", str(out), "--samples", "2",
         "--seed", "7", "--batch-size", "2", "--device", "cpu", *options]
    )  # fmt: skip
    captured = capsys.readouterr()
    assert (
        f"skipped {sounds / 'notes.txt'}" in captured.err
        and f"skipped {sounds / 'picture.png'}" in captured.err
    )
    sidecars = sorted(out.glob("*.json"))
    assert [p.name for p in sidecars] == [
        f"{stem}_{i}.json" for stem in ("a_low", "b_high", "c_clip") for i in (0, 1)
    ]
    assert captured.out.split() == [str(p) for p in sidecars]
    commit = avgen_commit()
    for sidecar in sidecars:
        content = json.loads(sidecar.read_text())
        stem, sample = sidecar.stem.rsplit("_", 1)
        assert content["run"] == str(audiotoken_run.resolve())
        assert content["checkpoint"] == str((audiotoken_run / "checkpoints" / "last.ckpt").resolve())
        assert (content["project"], content["direction"]) == ("audiotoken", "audio->image")
        assert (content["seed"], content["sample"], content["samples"]) == (7, int(sample), 2)
        assert (
            Path(content["input"]).name.startswith(stem) and Path(content["input"]).parent == sounds.resolve()
        )
        assert content["settings"]["steps"] == 2 and content["settings"]["seconds"] == 1.0
        assert content["files"] == {"image": f"{sidecar.stem}.png"}
        assert Image.open(out / content["files"]["image"]).size == (48, 32)
        assert content["avgen_commit"] == commit
    assert commit is None or re.fullmatch(r"[0-9a-f]{40}(-dirty)?", commit)


def test_a_batch_makes_the_images_of_one_input_at_a_time(audiotoken_run, sounds, tmp_path):
    inputs = [sounds / "a_low.wav", sounds / "b_high.wav", sounds / "c_clip.mp4"]
    images = {}
    for batch_size in (1, 3):
        generator = open_run(audiotoken_run, "cpu", batch_size=batch_size, **AUDIOTOKEN_SMALL)
        items = generator.generate(inputs, tmp_path / str(batch_size), samples=2, seed=3)
        assert [(item.input, item.sample) for item in items] == [(p, s) for p in inputs for s in (0, 1)]
        images[batch_size] = [np.asarray(Image.open(item.files["image"]), np.int16) for item in items]
    for one, batched in zip(images[1], images[3], strict=True):
        assert np.abs(one - batched).max() <= 1  # the same noise; batched float sums may round a level apart
    assert np.abs(images[1][0] - images[1][1]).max() > 8  # two samples of one input differ (other noise)
    assert np.abs(images[1][0] - images[1][2]).max() > 8  # two inputs differ


def test_bad_inputs_to_an_audio_to_image_run_are_one_line_errors(audiotoken_run, sounds, tmp_path):
    generator = open_run(audiotoken_run, "cpu", **AUDIOTOKEN_SMALL)
    silent = tmp_path / "silent.mp4"
    write_video_only_mp4(silent)
    with pytest.raises(UserError, match=f"{silent}: has no audio stream"):
        generator.generate([silent], tmp_path / "out")
    with pytest.raises(UserError, match=rf"{sounds / 'picture.png'}: an image file; audiotoken takes audio"):
        generator.generate([sounds / "picture.png"], tmp_path / "out")
    with pytest.raises(UserError, match=f"{sounds / 'missing.wav'}: no such file"):
        generator.generate([sounds / "missing.wav"], tmp_path / "out")
    with pytest.raises(UserError, match=f"--out {sounds}: the folder of the input"):
        generator.generate([sounds / "a_low.wav"], sounds)
    with pytest.raises(UserError, match="--samples 0: must be at least 1"):
        generator.generate([sounds / "a_low.wav"], tmp_path / "out", samples=0)


def test_the_help_of_a_run_lists_its_projects_options(audiotoken_run, capsys):
    with pytest.raises(SystemExit) as exit_info:
        commands.main(["generate", "--run", str(audiotoken_run), "--help"])
    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    assert help_text.startswith("usage: avgen generate")
    assert "audiotoken options" in help_text and "--guidance" in help_text and "--batch-size" in help_text
