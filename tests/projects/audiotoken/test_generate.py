"""`avgen generate --project audiotoken` on tiny official-layout files: an image of the asked size from a sound or a
video's sound, one per sample, and one-line errors for bad input."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from projects.audiotoken.generate import main
from projects.audiotoken.models.embedder import Embedder
from projects.audiotoken.models.stable_diffusion import save_stable_diffusion, toy_stable_diffusion
from shared.encoders.beats import BEATs, BEATsConfig, save_official
from shared.runs import UserError
from tests.shared.tiny_clip import write_video_only_mp4

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    """(embedder .bin, BEATs .pt, SD folder): the three files of the official release, at toy sizes."""
    folder = tmp_path_factory.mktemp("official")
    cfg = BEATsConfig(
        input_patch_size=16, embed_dim=32, encoder_layers=12, encoder_embed_dim=32, encoder_ffn_embed_dim=64,
        encoder_attention_heads=2, deep_norm=True, conv_pos=16, conv_pos_groups=4,
        relative_position_embedding=True, num_buckets=32, max_distance=64, gru_rel_pos=True,
    )  # fmt: skip
    torch.manual_seed(0)
    save_official(BEATs(cfg), folder / "beats.pt")
    torch.save(Embedder(3 * 32, 64).state_dict(), folder / "embedder_learned_embeds.bin")
    save_stable_diffusion(toy_stable_diffusion(seed=1), folder / "sd")
    return [
        f"--embedder={folder / 'embedder_learned_embeds.bin'}",
        f"--beats={folder / 'beats.pt'}",
        f"--sd-root={folder / 'sd'}",
    ]


SMALL = ["--steps=2", "--height=32", "--width=48", "--seconds=2"]


def test_an_image_per_sample_from_a_sound(official, tmp_path):
    rate = 44_100  # not BEATs' 16 kHz: the command resamples
    t = np.arange(rate) / rate
    sf.write(tmp_path / "tone.wav", 0.5 * np.sin(2 * np.pi * 440 * t), rate)
    written = main(
        [
            "--audio",
            str(tmp_path / "tone.wav"),
            "--out",
            str(tmp_path / "out.png"),
            "--samples=2",
            *official,
            *SMALL,
        ]
    )
    assert [p.name for p in written] == ["out_0.png", "out_1.png"]
    images = [np.asarray(Image.open(p)) for p in written]
    assert all(image.shape == (32, 48, 3) for image in images)
    assert not np.array_equal(images[0], images[1])  # another noise per sample


def test_a_videos_sound(official, toy_root, tmp_path):
    video = next((toy_root / "vggsound" / "video").glob("*.mp4"))
    (path,) = main(["--video", str(video), "--out", str(tmp_path / "clip.png"), *official, *SMALL])
    assert Image.open(path).size == (48, 32)


def test_bad_input_is_a_user_error(official, tmp_path):
    with pytest.raises(UserError, match="no such file"):
        main(["--audio", str(tmp_path / "missing.wav"), "--out", str(tmp_path / "x.png"), *official])
    silent = tmp_path / "silent.mp4"
    write_video_only_mp4(silent)
    with pytest.raises(UserError, match=str(silent)):
        main(["--video", str(silent), "--out", str(tmp_path / "x.png"), *official])
    with pytest.raises(UserError, match="--run"):
        main(["--audio", str(tmp_path / "missing.wav"), "--out", str(tmp_path / "x.png")])
