"""`avgen generate --project wavbrivl` on tiny models saved as the stages save them: an image of the asked size
and the similarity-curve picture from a sound or a video's sound, and one-line errors for bad input."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from PIL import Image

from projects.wavbrivl.generate import main
from projects.wavbrivl.models.audio_tower import WavLMAudioTower
from projects.wavbrivl.models.image_tower import BriVLImageTower
from projects.wavbrivl.module_audio_tower import WavBriVLTraining
from projects.wavbrivl.module_image_tower import ImageTowerClassification
from projects.wavbrivl.module_vqgan import ImageVQGANTraining
from shared.runs import UserError
from tests.projects.wavbrivl.test_audio_tower import TINY as TINY_WAVLM
from tests.projects.wavbrivl.test_image_tower import TINY as TINY_IMAGE_TOWER
from tests.shared.tiny_clip import write_video_only_mp4

pytestmark = pytest.mark.usefixtures("one_thread")

EMBED = 48  # the tiny image tower's joint dimension


def save_checkpoint(module, path):
    """A checkpoint as Lightning writes it: state dict, hyper-parameters, the module's own extra keys."""
    checkpoint = {"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}
    module.on_save_checkpoint(checkpoint)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, path)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(audio-tower run folder, toy VQGAN run folder) with random weights, as the toy stages leave them."""
    folder = tmp_path_factory.mktemp("runs")
    torch.manual_seed(0)
    image_run = ImageTowerClassification(BriVLImageTower(**(TINY_IMAGE_TOWER | {"image_size": 64})))
    save_checkpoint(image_run, folder / "image" / "checkpoints" / "last.ckpt")
    image_tower_path = str(folder / "image")
    audio_run = WavBriVLTraining(
        WavLMAudioTower(TINY_WAVLM, embed_dim=EMBED, trainable="all"), image_tower_path, queue_size=8
    )
    save_checkpoint(audio_run, folder / "audio" / "checkpoints" / "best.ckpt")
    config = {"model": {"init_args": {"image_tower": image_tower_path, "image_tower_kind": "run"}}}
    (folder / "audio" / "config.yaml").write_text(yaml.safe_dump(config))
    vqgan = ImageVQGANTraining(
        channels=(16, 32), attention_levels=(), latent_channels=8, n_codes=32, code_dim=8, norm_groups=8
    )
    save_checkpoint(vqgan, folder / "vqgan" / "checkpoints" / "last.ckpt")
    (folder / "vqgan" / "config.yaml").write_text(yaml.safe_dump({"data": {"init_args": {"image_size": 24}}}))
    return ["--run", str(folder / "audio"), "--vqgan", str(folder / "vqgan")]


SMALL = ["--steps=3", "--cutouts=2"]


def tone(path, rate=44_100, seconds=1.0):
    t = np.arange(int(rate * seconds)) / rate  # not 16 kHz: the command resamples
    sf.write(path, 0.5 * np.sin(2 * np.pi * 440 * t), rate)
    return path


def test_an_image_and_its_similarity_curve_from_a_sound(runs, tmp_path):
    written = main(
        ["--audio", str(tone(tmp_path / "tone.wav")), "--out", str(tmp_path / "a.png"), *runs, *SMALL]
    )
    assert [p.name for p in written] == ["a.png", "a_similarity.png"]
    image = np.asarray(Image.open(written[0]))
    assert image.shape == (24, 24, 3)  # the VQGAN run's frame size (its config), a multiple of f = 2
    assert image.std() > 0
    curve = np.asarray(Image.open(written[1]).convert("RGB"))
    assert curve.shape[2] == 3 and (curve != 255).any()  # something is drawn on the white canvas
    again = main(["--audio", str(tmp_path / "tone.wav"), "--out", str(tmp_path / "b.png"), *runs, *SMALL])
    assert np.array_equal(image, np.asarray(Image.open(again[0])))  # seeded


def test_size_and_a_videos_sound(runs, toy_root, tmp_path):
    video = next((toy_root / "vggsound" / "video").glob("*.mp4"))
    image, _ = main(["--video", str(video), "--out", str(tmp_path / "v.png"), "--size=16", *runs, *SMALL])
    assert Image.open(image).size == (16, 16)


def test_bad_input_is_a_user_error(runs, tmp_path):
    with pytest.raises(UserError, match="missing.wav: no such file"):
        main(["--audio", str(tmp_path / "missing.wav"), "--out", str(tmp_path / "x.png"), *runs])
    silent = tmp_path / "silent.mp4"
    write_video_only_mp4(silent)
    with pytest.raises(UserError, match=f"{silent}: has no audio stream"):
        main(["--video", str(silent), "--out", str(tmp_path / "x.png"), *runs])
    sound = str(tone(tmp_path / "tone.wav"))
    with pytest.raises(UserError, match="nothing: no such"):
        main(["--audio", sound, "--out", str(tmp_path / "x.png"), "--run", str(tmp_path / "nothing")])
