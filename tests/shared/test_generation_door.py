"""`avgen generate --run`: the project read from a run, a folder's inputs, batches, sidecars, one-line errors; on the
tiny models the projects' own generate tests build (imported, not rebuilt)."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import lightning
import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from PIL import Image

from shared import commands
from shared.audio import load_audio
from shared.data.toy import _write_mp4, synthesize_clip
from shared.generation import avgen_commit, collect_inputs, open_run, project_of_run
from shared.runs import UserError
from shared.video import video_info
from tests.projects.audiotoken.test_generate import official as audiotoken_official  # noqa: F401 (a fixture)
from tests.projects.gravo.test_generate_and_evaluate import runs as gravo_runs  # noqa: F401 (a fixture)
from tests.projects.specvqgan.test_sampler import TINY_GPT, write_codebook_checkpoint
from tests.projects.wavbrivl.test_generate import runs as wavbrivl_runs  # noqa: F401 (a fixture)
from tests.shared.tiny_clip import write_video_only_mp4

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


def placed(root: Path, project: str, runs: dict[str, Path]) -> dict[str, Path]:
    """Run folders linked in as `make train` leaves them: `root/runs/<project>/<experiment>/default`."""
    links = {}
    for experiment, target in runs.items():
        links[experiment] = root / "runs" / project / experiment / "default"
        links[experiment].parent.mkdir(parents=True)
        links[experiment].symlink_to(target)
    return links


def sidecar(item) -> dict:
    return json.loads(item.sidecar.read_text())


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
        generator.generate([sounds / "a_low.wav", silent], tmp_path / "out")
    assert not (tmp_path / "out").exists()  # found before anything was generated
    with pytest.raises(UserError, match=rf"{sounds / 'picture.png'}: an image file; audiotoken takes audio"):
        generator.generate([sounds / "picture.png"], tmp_path / "out")
    with pytest.raises(UserError, match=f"{sounds / 'missing.wav'}: no such file"):
        generator.generate([sounds / "missing.wav"], tmp_path / "out")
    with pytest.raises(UserError, match=f"--out {sounds}: the folder of the input"):
        generator.generate([sounds / "a_low.wav"], sounds)
    with pytest.raises(UserError, match="--samples 0: must be at least 1"):
        generator.generate([sounds / "a_low.wav"], tmp_path / "out", samples=0)


def test_a_run_of_a_stage_that_does_not_generate_is_a_user_error(tmp_path):
    run = write_config(tmp_path / "runs" / "audiotoken" / "toy_clip" / "default",
                       {"model": {"class_path": "projects.audiotoken.module_clip.ToyCLIPTraining"}})  # fmt: skip
    (run / "checkpoints").mkdir()
    torch.save({"state_dict": {}}, run / "checkpoints" / "last.ckpt")
    with pytest.raises(
        UserError, match=f"{run}: a run of .*ToyCLIPTraining; generating needs an AudioToken stage"
    ):
        open_run(run)


def test_the_help_of_a_run_lists_its_projects_options(audiotoken_run, capsys):
    with pytest.raises(SystemExit) as exit_info:
        commands.main(["generate", "--run", str(audiotoken_run), "--help"])
    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    assert help_text.startswith("usage: avgen generate")
    assert "audiotoken options" in help_text and "--guidance" in help_text and "--batch-size" in help_text


# --- video -> audio: SpecVQGAN, one video at a time -------------------------------------------------------------

SECONDS_PER_COLUMN = 16 * 256 / 22_050  # a latent column: 16 mel frames of hop 256 at 22.05 kHz


@pytest.fixture(scope="module")
def specvqgan_run(tmp_path_factory) -> Path:
    """A sampler stage's run folder with a tiny random GPT over a tiny codebook's 5 x 10 grid, conditioned on 40
    random-weight ResNet-18 frame features, as the toy sampler is."""
    from projects.specvqgan.models.sampler import CodeSampling
    from projects.specvqgan.module_sampler import SpecVQGANTransformer

    root = tmp_path_factory.mktemp("specvqgan")
    module = SpecVQGANTransformer(
        codebook_ckpt=str(write_codebook_checkpoint(root / "codebook.ckpt")), feat_dim=512, n_feats=40,
        grid=(5, 10), **TINY_GPT, sampling=CodeSampling(top_k=8),
    )  # fmt: skip
    run = root / "runs" / "specvqgan" / "toy_sampler" / "default"
    (run / "checkpoints").mkdir(parents=True)
    torch.save(
        {"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams),
         "pytorch-lightning_version": lightning.__version__},
        run / "checkpoints" / "last.ckpt",
    )  # fmt: skip
    visual = {"class_path": "shared.encoders.ResNetFeature",
              "init_args": {"arch": "resnet18", "weights": None, "image_size": 64, "duration": 2.0}}  # fmt: skip
    data = {"visual": visual, "n_feats": 40, "feat_len": 43, "feat_crop": 40, "duration": 2.0}
    return write_config(run, {"data": {"init_args": data}})  # no class paths: its place names the project


def test_videos_get_their_sound_muxed_in_with_a_wav_and_a_spectrogram(specvqgan_run, tmp_path):
    videos = [
        toy_video(tmp_path / "in" / "long.mp4", 1.2),
        toy_video(tmp_path / "in" / "short.mp4", 0.8, label=4),
    ]
    generator = open_run(specvqgan_run, "cpu", batch_size=2, temperature=0.9)
    assert (generator.project, generator.direction, generator.inputs) == (
        "specvqgan",
        "video->audio",
        ("video",),
    )
    items = generator.generate(videos, tmp_path / "out", samples=1, seed=5)
    assert [item.input for item in items] == videos
    for item in items:
        assert set(item.files) == {"audio", "spectrogram", "video"}
        assert [p.name for p in item.files.values()] == [
            f"{item.input.stem}{ext}" for ext in (".wav", ".png", ".mp4")
        ]
        wave, rate = sf.read(item.files["audio"])
        columns = int(video_info(item.input).duration // SECONDS_PER_COLUMN)  # whole columns within the video
        assert rate == 22_050 and len(wave) == columns * 16 * 256
        muxed = load_audio(item.files["video"], rate)  # the new sound is the video's audio track
        assert abs(len(muxed) - len(wave)) <= 2048 and np.abs(muxed.numpy()).max() > 0
        assert Image.open(item.files["spectrogram"]).size[1] > 0
        content = sidecar(item)
        assert (content["project"], content["direction"], content["seed"]) == ("specvqgan", "video->audio", 5)
        assert content["settings"]["top_k"] == 8 and content["settings"]["temperature"] == 0.9  # run's, given
        assert content["files"] == {"audio": f"{item.input.stem}.wav", "spectrogram": f"{item.input.stem}.png",
                                    "video": f"{item.input.stem}.mp4"}  # fmt: skip
    again = open_run(specvqgan_run, "cpu", temperature=0.9).generate(videos[1:], tmp_path / "again", seed=5)
    assert np.array_equal(sf.read(again[0].files["audio"])[0], sf.read(items[1].files["audio"])[0])  # seeded


def test_specvqgan_vocodes_with_the_vocoder_run_beside_unless_told_griffin_lim(specvqgan_run, tmp_path):
    from projects.specvqgan.models import MelGANGenerator
    from projects.specvqgan.vocoder import GENERATOR_CONFIG_KEY

    video = toy_video(tmp_path / "in" / "clip.mp4", 0.8)
    assert open_run(specvqgan_run, "cpu").settings()["vocoder_kind"] == "griffin-lim"  # no vocoder run beside
    generator_config = {"ngf": 2, "n_residual_layers": 1}
    vocoder = specvqgan_run.parent.parent / "toy_vocoder" / "default" / "checkpoints" / "best.ckpt"
    vocoder.parent.mkdir(parents=True)
    state = {f"generator.{k}": v for k, v in MelGANGenerator(**generator_config).state_dict().items()}
    torch.save({"state_dict": state, GENERATOR_CONFIG_KEY: generator_config}, vocoder)
    try:
        item = open_run(specvqgan_run, "cpu").generate([video], tmp_path / "melgan")[0]
        assert sidecar(item)["settings"]["vocoder_kind"] == "melgan"
        assert sidecar(item)["settings"]["vocoder"] == str(vocoder)
        forced = open_run(specvqgan_run, "cpu", vocoder="griffin-lim").settings()
        assert (forced["vocoder_kind"], forced["vocoder"]) == ("griffin-lim", None)
    finally:  # the module's run folder is shared with the other tests
        shutil.rmtree(vocoder.parent.parent.parent)


# --- video / image -> audio: GRAVO, its Up run found beside its Low run ----------------------------------------


@pytest.fixture(scope="module")
def gravo_placed(gravo_runs, tmp_path_factory) -> dict[str, Path]:  # noqa: F811 (the fixture imported above)
    """The tiny Low and Up runs where `make train PROJECT=gravo` puts them, beside a VQ-VAE stage's run."""
    low, up = gravo_runs
    root = tmp_path_factory.mktemp("gravo")
    vqvae = write_config(
        root / "vqvae_run", {"model": {"class_path": "projects.gravo.module_vqvae.WaveVQVAETraining"}}
    )
    (vqvae / "checkpoints").mkdir()
    torch.save({"state_dict": {}}, vqvae / "checkpoints" / "last.ckpt")
    return placed(root, "gravo", {"toy_low_gravo": low, "toy_up": up, "toy_vqvae": vqvae})


def test_gravo_takes_images_and_videos_and_its_sidecars_name_files_absolutely(
    gravo_placed, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # the Up run given relative to here: the sidecar names it absolutely
    up = os.path.relpath(gravo_placed["toy_up"])
    folder = tmp_path / "in"
    folder.mkdir()
    Image.new("RGB", (64, 64), (230, 40, 40)).save(folder / "red.png")
    Image.new("RGB", (64, 64), (40, 40, 230)).save(folder / "blue.jpg")
    toy_video(folder / "clip.mp4", 0.9)
    tone(folder / "tone.wav", 440)
    out = tmp_path / "out"
    commands.main(
        ["generate", "--run", str(gravo_placed["toy_low_gravo"]), "--input", str(folder), "--out", str(out),
         "--seconds", "0.1", "--total-seconds", "2", "--batch-size", "3", "--device", "cpu", "--up", up]
    )  # fmt: skip
    assert not Path(up).is_absolute()
    sidecars = {p.stem: json.loads(p.read_text()) for p in out.glob("*.json")}
    assert set(sidecars) == {"blue", "clip", "red"}  # the wav is not GRAVO's input
    for name in ("blue", "red"):
        assert sidecars[name]["direction"] == "image->audio"
        assert sidecars[name]["files"] == {"audio": f"{name}.wav", "spectrogram": f"{name}.png"}
        assert len(sf.read(out / f"{name}.wav")[0]) == 1600  # --seconds 0.1 at 16 kHz
    assert sidecars["clip"]["direction"] == "video->audio"
    assert sidecars["clip"]["files"] == {"audio": "clip.wav", "spectrogram": "clip.png", "video": "clip.mp4"}
    assert len(sf.read(out / "clip.wav")[0]) == round(video_info(folder / "clip.mp4").duration * 16_000)
    assert sidecars["red"]["settings"]["up"] == str(gravo_placed["toy_up"])
    assert sidecars["red"]["settings"]["total_seconds"] == 2.0
    assert not np.allclose(sf.read(out / "red.wav")[0], sf.read(out / "blue.wav")[0])


def test_gravo_images_in_a_batch_sound_as_one_at_a_time(gravo_placed, tmp_path):
    images = []
    for name, colour in (("red", (230, 40, 40)), ("green", (40, 230, 40)), ("blue", (40, 40, 230))):
        Image.new("RGB", (64, 64), colour).save(tmp_path / f"{name}.png")
        images.append(tmp_path / f"{name}.png")
    waves = {}
    for batch_size in (1, 3):
        generator = open_run(gravo_placed["toy_low_gravo"], "cpu", batch_size=batch_size, seconds=0.1)
        items = generator.generate(images, tmp_path / str(batch_size), samples=2, seed=1)
        waves[batch_size] = [sf.read(item.files["audio"])[0] for item in items]
    scale = max(np.abs(w).max() for w in waves[1])
    for one, batched in zip(waves[1], waves[3], strict=True):
        assert (
            np.abs(one - batched).max() <= 1e-4 * scale
        )  # the same codes; the decoder's sums in another order
    assert not np.allclose(waves[1][0], waves[1][1])  # the samples of an image differ


def test_gravo_runs_the_door_cannot_use_are_one_line_errors(gravo_placed, gravo_runs, tmp_path):  # noqa: F811
    with pytest.raises(UserError, match=f"{gravo_placed['toy_up']}: an Up stage's run; give the Low stage's"):
        open_run(gravo_placed["toy_up"])
    with pytest.raises(UserError, match=f"{gravo_placed['toy_vqvae']}: a run of projects.gravo.module_vqvae.WaveVQVAE"
                       "Training; generating needs a Low prior stage's run"):  # fmt: skip
        open_run(gravo_placed["toy_vqvae"])
    alone = placed(tmp_path, "gravo", {"toy_low_gravo": gravo_runs[0]})["toy_low_gravo"]
    with pytest.raises(UserError, match=f"{alone}: which Up run\\? .* found none; give --up"):
        open_run(alone)
    assert open_run(alone, up=str(gravo_runs[1])).settings()["up"] == str(gravo_runs[1])


# --- audio -> image: WavBriVL, its VQGAN found beside its audio-tower run ---------------------------------------


def test_wavbrivl_images_and_similarity_curves_from_sounds(wavbrivl_runs, tmp_path):  # noqa: F811
    runs = dict(zip(wavbrivl_runs[::2], wavbrivl_runs[1::2], strict=True))
    links = placed(
        tmp_path, "wavbrivl", {"toy_audio_tower": Path(runs["--run"]), "toy_vqgan": Path(runs["--vqgan"])}
    )
    tone(tmp_path / "beep.wav", 660)
    generator = open_run(links["toy_audio_tower"], "cpu", steps=3, cutouts=2)
    items = generator.generate([tmp_path / "beep.wav"], tmp_path / "out", samples=2, seed=0)
    assert [(item.files["image"].name, item.files["similarity"].name) for item in items] == [
        ("beep_0.png", "beep_0_similarity.png"), ("beep_1.png", "beep_1_similarity.png")]  # fmt: skip
    images = [np.asarray(Image.open(item.files["image"])) for item in items]
    assert images[0].shape == (24, 24, 3)  # the frame size of the VQGAN run beside (its config.yaml)
    assert not np.array_equal(images[0], images[1])
    content = sidecar(items[0])
    assert (content["project"], content["direction"]) == ("wavbrivl", "audio->image")
    assert content["settings"]["vqgan"] == str(links["toy_vqgan"]) and content["settings"]["steps"] == 3


# --- through the console script ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_users_mistakes_are_one_line_from_the_command(audiotoken_run, sounds, tmp_path):
    from tests.shared.test_cli_manners import avgen, error_lines

    (tmp_path / "plain").mkdir()
    cases = [
        (["--run", str(tmp_path / "plain"), "--input", str(sounds), "--out", str(tmp_path / "o")],
         f"avgen: error: {tmp_path / 'plain'}: not a run folder"),
        (["--run", str(audiotoken_run), "--input", str(sounds / "picture.png"), "--out", str(tmp_path / "o")],
         f"avgen: error: {sounds / 'picture.png'}: an image file; this run takes audio"),
        (["--run", str(audiotoken_run), "--input", str(tmp_path / "nothing"), "--out", str(tmp_path / "o")],
         f"avgen: error: {tmp_path / 'nothing'}: no such file or folder"),
    ]  # fmt: skip
    for args, start in cases:
        done = avgen("generate", *args, timeout=300)
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        [line] = error_lines(done.stderr)
        assert line.startswith(start), line
