"""`avgen demo`'s functions without a server: the runs a tab offers, its toy examples, the project options, and what
pressing generate shows, a result or one line for a bad upload (on AudioToken's tiny run of the generate door's
tests). The page in a real browser: tests/shared/test_demo_browser.py."""

from __future__ import annotations

import os
from pathlib import Path

import gradio as gr
import pytest
import yaml
from omegaconf import OmegaConf
from PIL import Image

from shared import demo
from shared.cli import config_chain
from shared.discovery import project_module
from shared.generation import open_run
from shared.runs import UserError
from tests.shared.test_generation_door import (  # noqa: F401 (fixtures)
    AUDIOTOKEN_SMALL,
    audiotoken_official,
    audiotoken_run,
    tone,
)
from tests.shared.tiny_clip import write_video_only_mp4

pytestmark = pytest.mark.usefixtures("one_thread")


def fake_run(
    runs: Path, project: str, name: str, checkpoint: str | None, mtime: float, model: dict | None = None
) -> Path:
    run = runs / project / name
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump({"model": model or {}}))
    if checkpoint is not None:
        (run / "checkpoints" / checkpoint).write_bytes(b"")
        os.utime(run / "checkpoints" / checkpoint, (mtime, mtime))
    return run


def test_a_tab_offers_its_projects_runs_with_a_checkpoint_newest_first(tmp_path):
    runs = tmp_path / "runs"
    old = fake_run(runs, "audiotoken", "toy_audiotoken/v1", "last.ckpt", 1_000)
    new = fake_run(runs, "audiotoken", "toy_audiotoken/v2", "best.ckpt", 2_000)
    fake_run(runs, "audiotoken", "toy_clip/default", None, 0)  # still training: no checkpoint yet
    (runs / "audiotoken" / "toy_vae" / "default").mkdir(parents=True)  # no config.yaml: not a run
    fake_run(runs, "wavbrivl", "toy_audio_tower/default", "last.ckpt", 3_000)  # another project's
    assert demo.find_runs(runs, "audiotoken") == [new, old]
    assert [demo.run_label(runs, run) for run in (new, old)] == ["toy_audiotoken/v2", "toy_audiotoken/v1"]
    assert demo.find_runs(runs, "tiva") == []  # no folder of the project at all
    assert demo.find_runs(tmp_path / "nowhere", "audiotoken") == []


def test_a_project_can_say_which_of_its_runs_its_generator_opens(tmp_path, monkeypatch):
    from projects.audiotoken import generate

    runs = tmp_path / "runs"
    generator_run = fake_run(runs, "audiotoken", "toy_audiotoken/default", "last.ckpt", 1_000)
    fake_run(runs, "audiotoken", "toy_clip/default", "best.ckpt", 2_000)  # a stage no generator opens
    monkeypatch.setattr(generate, "opens_run", lambda run: run.parent.name == "toy_audiotoken", raising=False)
    assert demo.find_runs(runs, "audiotoken") == [generator_run]


# the toy stages (`make train`) whose runs generate: the projects' READMEs
GENERATING_STAGES = {
    "specvqgan": {"toy_sampler", "toy_sampler_nofeats"},
    "tiva": {"toy_generator", "toy_joint", "toy_no_layout"},
    "gravo": {"toy_low_gravo", "toy_low_im2wav", "toy_low_lf", "toy_low_lw", "toy_low_mha"},
    "audiotoken": {"toy_audiotoken"},
    "wavbrivl": {"toy_audio_tower", "toy_audio_tower_infonce"},
}


def model_of(config: Path) -> dict:
    """The `model:` section of a config file with the configs it extends, as its run's config.yaml holds it."""
    merged = OmegaConf.merge(*(OmegaConf.load(path) for path in config_chain(str(config))))
    return OmegaConf.to_container(merged.model, resolve=True)


@pytest.mark.parametrize("project", sorted(GENERATING_STAGES))
def test_a_tab_offers_only_the_runs_of_the_stages_that_generate(project, tmp_path):
    """A run of every toy stage of the project, its model as the stage's config makes it (checkpoints empty):
    the project's `opens_run` says which generate, the tab offers only those, and the door refuses the others."""
    runs = tmp_path / "runs"
    configs = sorted((Path(__file__).parents[2] / "projects" / project / "configs").glob("toy_*.yaml"))
    stages = {
        config.stem: fake_run(
            runs, project, f"{config.stem}/default", "last.ckpt", 1_000 + i, model_of(config)
        )
        for i, config in enumerate(configs)
    }
    assert len(stages) > len(GENERATING_STAGES[project])  # some stages of every project make no output
    opens_run = project_module(project, "generate").opens_run
    assert {stage for stage, run in stages.items() if opens_run(run)} == GENERATING_STAGES[project]
    assert set(demo.find_runs(runs, project)) == {stages[stage] for stage in GENERATING_STAGES[project]}
    for stage in stages.keys() - GENERATING_STAGES[project]:
        with pytest.raises(UserError, match=f"{stages[stage]}: "):
            open_run(stages[stage])


def test_toy_examples_are_test_clips_of_distinct_classes_in_each_kind_taken(toy_root, tmp_path):
    import csv

    with (toy_root / "events.csv").open(newline="") as rows:
        clips = {row["clip_id"]: row for row in csv.DictReader(rows)}
    examples = demo.toy_examples(toy_root, ("audio", "video"))
    paths = [path for path, _ in examples]
    assert [path.suffix for path in paths] == [".wav"] * 3 + [".mp4"] * 3
    assert all(path.is_file() for path in paths)
    assert [path.stem for path in paths[:3]] == [path.stem for path in paths[3:]]  # a clip and its sound
    assert all(clips[path.stem]["split"] == "test" for path in paths)
    assert len({clips[path.stem]["label"] for path in paths}) == 3
    assert [caption for _, caption in examples] == [
        f"{clips[path.stem]['label']} ({'sound' if path.suffix == '.wav' else 'video'})" for path in paths
    ]
    images = demo.toy_examples(toy_root, ("image",))
    assert len(images) == 3 and len({path.parent.name for path, _ in images}) == 3
    assert all(Image.open(path).format == "JPEG" for path, _ in images)
    assert all(caption == f"{path.parent.name.replace('_', ' ')} (picture)" for path, caption in images)
    assert demo.toy_examples(tmp_path / "no_toy_set", ("video",)) == []


def test_a_tab_knows_its_direction_and_inputs_from_the_projects_generator():
    audiotoken = demo.project_facts("audiotoken")
    assert (audiotoken.direction, audiotoken.inputs) == ("audio->image", ("audio", "video"))
    assert not audiotoken.makes_audio and audiotoken.takes == "an audio or a video"


def test_project_options_are_parsed_as_the_generate_door_parses_them():
    options = demo.project_options("audiotoken", "--steps 3 --suffix ', 4k'")
    assert options["steps"] == 3 and options["suffix"] == ", 4k" and options["guidance"] == 7.5  # a default
    with pytest.raises(UserError, match="audiotoken does not take --nope 1"):
        demo.project_options("audiotoken", "--steps 3 --nope 1")
    with pytest.raises(UserError, match="--steps: invalid int value: 'x'"):
        demo.project_options("audiotoken", "--steps x")


@pytest.fixture(scope="module")
def generators():
    small = demo.project_options("audiotoken", " ".join(f"--{k}={v}" for k, v in AUDIOTOKEN_SMALL.items()))
    return demo.Generators({"audiotoken": small})


def test_pressing_generate_shows_the_image_and_how_it_was_made(
    generators,
    audiotoken_run,  # noqa: F811 (the fixture imported above)
    tmp_path,
):
    project = demo.project_facts("audiotoken")
    (tmp_path / "upload").mkdir()
    upload = tone(tmp_path / "upload" / "tone.wav", 440)
    image, note, about = demo.respond(
        generators, project, str(audiotoken_run), str(upload), 5, tmp_path, "cpu"
    )
    assert Image.open(image).size == (AUDIOTOKEN_SMALL["width"], AUDIOTOKEN_SMALL["height"])
    assert Path(image).parent.parent == tmp_path  # in the demo's output folder, one folder per press
    assert (
        about["seed"] == 5
        and about["run"] == str(audiotoken_run.resolve())
        and about["input"].endswith("tone.wav")
    )
    assert note.startswith("Made in ") and "on cpu" in note
    # a second press reuses the generator: the same run opened once
    assert generators.get("audiotoken", audiotoken_run, "cpu") is generators.get(
        "audiotoken", audiotoken_run, "cpu"
    )


def test_a_bad_upload_or_no_run_is_one_line_naming_the_file_not_a_traceback(
    generators,
    audiotoken_run,  # noqa: F811 (the fixture imported above)
    tmp_path,
):
    project = demo.project_facts("audiotoken")
    upload_dir = tmp_path / "gradio-upload-3f2a"  # where Gradio keeps an upload: not the user's business
    upload_dir.mkdir()
    silent = upload_dir / "silent.mp4"
    write_video_only_mp4(silent)
    corrupt = upload_dir / "holiday.mp4"
    corrupt.write_bytes(b"this is no video" * 64)
    picture = upload_dir / "picture.png"
    Image.new("RGB", (8, 8)).save(picture)
    notes = upload_dir / "notes.txt"
    notes.write_text("hello")
    cases = {
        str(silent): "silent.mp4: has no audio stream",
        str(corrupt): "holiday.mp4: cannot be opened as a media file",
        str(picture): "picture.png: an image file; audiotoken takes an audio or a video",
        str(notes): "notes.txt: no file of a known kind; audiotoken takes an audio or a video",
        None: "upload a file (or pick an example) first",
    }
    for upload, message in cases.items():
        with pytest.raises(gr.Error) as error:
            demo.respond(generators, project, str(audiotoken_run), upload, 0, tmp_path, "cpu")
        assert str(error.value.message).startswith(message)
        assert str(upload_dir) not in error.value.message and "\n" not in error.value.message
        assert error.value.print_exception is False
    with pytest.raises(gr.Error, match=r"no trained audiotoken run.*make train PROJECT=audiotoken"):
        demo.respond(generators, project, None, str(silent), 0, tmp_path, "cpu")


def test_any_other_failure_is_one_line_too_with_its_traceback_in_the_servers_log(
    generators,
    audiotoken_run,  # noqa: F811 (the fixture imported above)
    tmp_path,
    capsys,
):
    project = demo.project_facts("audiotoken")
    broken = tmp_path / "runs" / "audiotoken" / "toy_audiotoken" / "broken"
    (broken / "checkpoints").mkdir(parents=True)
    (broken / "config.yaml").write_text((audiotoken_run / "config.yaml").read_text())
    (broken / "checkpoints" / "last.ckpt").write_bytes(b"not a checkpoint")  # torch.load fails: no UserError
    (tmp_path / "upload").mkdir()
    upload = tone(tmp_path / "upload" / "tone.wav", 440)
    with pytest.raises(gr.Error) as error:
        demo.respond(generators, project, str(broken), str(upload), 0, tmp_path, "cpu")
    assert error.value.message.startswith(f"audiotoken failed on {broken}: ")
    assert error.value.message.endswith("(traceback in the server's log)") and "\n" not in error.value.message
    assert "Traceback (most recent call last)" in capsys.readouterr().err
