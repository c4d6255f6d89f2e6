"""`avgen generate --project gravo` from run folders (video -> muxed mp4 + wav + png, image -> wav + png) and the
toy evaluation's scores, on tiny models."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from PIL import Image

from projects.gravo import generate
from projects.gravo.evaluate import evaluate_clips, evaluate_images
from projects.gravo.models import WaveVQVAE
from projects.gravo.models.pipeline import GravoPipeline, SamplingSettings
from projects.gravo.models.priors import LowPrior, UpPrior
from shared.data.toy import _write_mp4, synthesize_clip
from shared.encoders import Wav2CLIP, WaveMelception
from shared.metrics import AudioGenerationMetrics
from shared.runs import UserError
from shared.video import video_info
from tests.shared.tiny_clip import TINY

VQVAE = {"emb_width": 8, "l_bins": 16, "width": 8, "depth": 1}
LOW = {"n_codes": 16, "n_ctx": 16, "width": 32, "depth": 3, "attn_width": 16, "mlp_width": 32, "block_ctx": 4,
       "init_scale": 1.0, "frame_attention": True}  # fmt: skip
UP = {"n_codes": 16, "n_ctx": 64, "width": 32, "depth": 3, "attn_width": 16, "mlp_width": 32, "block_ctx": 8,
      "init_scale": 1.0, "cond_width": 16, "cond_depth": 2}  # fmt: skip
CLIP = {"class_path": "shared.encoders.CLIPEmbeddingFeature",
        "init_args": {"model_name": "ViT-B-32", "pretrained": None, "model_cfg": TINY}}  # fmt: skip


def write_run(
    folder: Path, prior: torch.nn.Module, class_path: str, init_args: dict, vqvae_ckpt: Path
) -> Path:
    """A prior stage's run folder as `avgen fit` leaves it: config.yaml and checkpoints/last.ckpt."""
    (folder / "checkpoints").mkdir(parents=True)
    config = {
        "model": {"init_args": {"prior": {"class_path": class_path, "init_args": init_args},
                                "vqvae_ckpt": str(vqvae_ckpt)}},
        "data": {"init_args": {"clip": CLIP}},
    }  # fmt: skip
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    state = {f"prior.{k}": v for k, v in prior.state_dict().items()}
    torch.save({"state_dict": state}, folder / "checkpoints" / "last.ckpt")
    return folder


def write_vqvae_checkpoint(path: Path) -> Path:
    """A tiny VQ-VAE with spread-out codebooks, saved as the VQ-VAE stage saves it."""
    vqvae = WaveVQVAE(**VQVAE)
    for level in vqvae.bottleneck.level_blocks:
        level.codebook.normal_()
    torch.save(
        {"hyper_parameters": {"vqvae": {"class_path": "projects.gravo.models.WaveVQVAE", "init_args": VQVAE}},
         "state_dict": {f"vqvae.{k}": v for k, v in vqvae.state_dict().items()}},
        path,
    )  # fmt: skip
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    torch.manual_seed(0)
    vqvae_ckpt = write_vqvae_checkpoint(root / "vqvae.ckpt")
    low = write_run(root / "low", LowPrior(**LOW), "projects.gravo.models.priors.LowPrior", LOW, vqvae_ckpt)
    up = write_run(root / "up", UpPrior(**UP), "projects.gravo.models.priors.UpPrior", UP, vqvae_ckpt)
    return low, up


@pytest.mark.slow
def test_a_video_gets_sound_of_its_length_muxed_in(runs, tmp_path):
    _, audio, frames = synthesize_clip(1, 2, "test", duration=1.2)
    video = tmp_path / "clip.mp4"
    _write_mp4(video, frames, audio, 48000)
    low, up = runs
    out = tmp_path / "out" / "clip_sound.mp4"
    written = generate.main(["--video", str(video), "--out", str(out), "--run", str(low), "--up", str(up)])
    assert sorted(p.suffix for p in written) == [".mp4", ".png", ".wav"]
    wave, rate = sf.read(out.with_suffix(".wav"))
    assert rate == 16000 and len(wave) == round(video_info(video).duration * 16000)
    assert abs(video_info(out).duration - video_info(video).duration) < 0.1
    assert np.isfinite(wave).all() and np.abs(wave).max() > 0


def test_an_image_gets_seconds_of_sound_and_two_samples_differ(runs, tmp_path):
    image = tmp_path / "red.png"
    Image.fromarray(np.full((64, 64, 3), (230, 40, 40), np.uint8)).save(image)
    low, up = runs
    out = tmp_path / "red.wav"
    written = generate.main(["--image", str(image), "--out", str(out), "--run", str(low), "--up", str(up),
                             "--seconds", "0.1", "--samples", "2"])  # fmt: skip
    assert sorted(p.name for p in written) == ["red_0.png", "red_0.wav", "red_1.png", "red_1.wav"]
    first, second = (sf.read(tmp_path / f"red_{i}.wav")[0] for i in range(2))
    assert len(first) == 1600 and not np.allclose(first, second)


def test_bad_inputs_are_user_errors(runs, tmp_path):
    low, up = runs
    with pytest.raises(UserError, match="missing.png"):
        generate.main(["--image", str(tmp_path / "missing.png"), "--out", str(tmp_path / "x.wav"),
                       "--run", str(low), "--up", str(up)])  # fmt: skip
    with pytest.raises(UserError, match="no such run folder"):
        generate.main(["--image", str(tmp_path / "x.png"), "--out", str(tmp_path / "x.wav"),
                       "--run", str(tmp_path / "nowhere"), "--up", str(up)])  # fmt: skip


def test_evaluation_scores_every_clip_with_intervals_and_real_audio_scores_as_reference():
    torch.manual_seed(1)
    vqvae = WaveVQVAE(**VQVAE)
    for level in vqvae.bottleneck.level_blocks:
        level.codebook.normal_()
    # a window of 8192 samples (0.5 s): long enough for the classifier's mel
    low = LowPrior(**{**LOW, "n_ctx": 256, "block_ctx": 16})
    up = UpPrior(**{**UP, "n_ctx": 1024, "block_ctx": 64})
    pipeline = GravoPipeline(vqvae, low, up).eval()
    classifier = WaveMelception(n_classes=3, width_divisor=16).eval()
    wav2clip = Wav2CLIP(widths=(4, 8, 8, 8), blocks=(1, 1, 1, 1), embed_dim=512).eval()
    batches = [
        {"wave": torch.randn(4, 8192) * 0.1, "clip_feats": torch.randn(4, 18, 512),
         "clip_id": [f"c{b}{i}" for i in range(4)], "label": torch.tensor([0, 1, 2, 0])}
        for b in range(2)
    ]  # fmt: skip
    settings = SamplingSettings(samples=2)
    values = evaluate_clips(
        pipeline,
        batches,
        AudioGenerationMetrics(classifier, classifier, real_accuracy=True),
        wav2clip,
        settings,
    )
    for name in ("fad", "kl", "acc", "cs", "tcs", "cs_real", "acc_real"):
        assert np.isfinite(values[name]), name
        assert values[f"{name}_lo"] <= values[name] <= values[f"{name}_hi"], name
    images = [
        {"clip_feats": torch.randn(3, 18, 512), "clip_id": ["a", "b", "c"], "label": torch.tensor([0, 1, 2])}
    ]
    image_values = evaluate_images(pipeline, images, classifier, wav2clip, settings)
    assert set(image_values) == {"cs", "cs_lo", "cs_hi", "acc", "acc_lo", "acc_hi"}
    assert 0 <= image_values["acc"] <= 1
