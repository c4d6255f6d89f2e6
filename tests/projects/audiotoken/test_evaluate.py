"""AudioToken's evaluation (arXiv:2305.13050, sec. 2.2) on tiny random models: every row and metric is there,
in range, repeatable from the seed, and the rows share each clip's noise."""

from __future__ import annotations

import pytest
import torch

from projects.audiotoken.evaluate import (
    REFERENCE,
    ROWS,
    Judges,
    evaluate,
    random_tokens,
)
from projects.audiotoken.models.embedder import Embedder
from projects.audiotoken.models.pipeline import AudioTokenPipeline, SamplingSettings
from projects.audiotoken.models.stable_diffusion import toy_stable_diffusion
from shared.encoders import Wav2CLIP
from shared.encoders.clip_image_text import CLIPImageText
from tests.projects.audiotoken.test_pipeline import FEATURES, FrameFeatures
from tests.shared.tiny_hf_clip import tiny_clip_model

pytestmark = pytest.mark.usefixtures("one_thread")

LABELS = ["red circle sine", "green square buzz", "blue triangle hiss"]


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    pipeline = AudioTokenPipeline(FrameFeatures(), Embedder(FEATURES, 64), toy_stable_diffusion(seed=1))
    wav2clip = Wav2CLIP(widths=(4, 8, 8, 8), blocks=(1, 1, 1, 1), embed_dim=16).freeze()
    clip = CLIPImageText(tiny_clip_model(image_size=32, projection_dim=16), crop=False)
    judges = Judges(clip, wav2clip, fid=clip, class_template="a photo of a {}")
    generator = torch.Generator().manual_seed(3)
    loader = [
        {
            "wave": torch.randn(3, 16_000, generator=generator) * 0.1,
            "image": torch.rand(3, 3, 20, 32, generator=generator) * 2 - 1,
            "label": torch.tensor([0, 1, 2]),
            "label_text": LABELS,
            "clip_id": [f"clip{b}{i}" for i in range(3)],
        }
        for b in range(2)
    ]
    return pipeline, loader, judges


def run(setup, seed=0):
    pipeline, loader, judges = setup
    return evaluate(
        pipeline, loader, judges, LABELS, SamplingSettings(steps=2, height=32, width=32), seed, batch_size=4
    )


def test_rows_metrics_and_ranges(setup):
    results = run(setup)
    assert set(results) == {*ROWS, REFERENCE}
    for row in ROWS:
        for name in ("ais", "iis", "aic"):
            low, value, high = (results[row][f"{name}{end}"] for end in ("_lo", "", "_hi"))
            assert 0 <= low <= value <= high <= 1
        assert results[row]["fid"] >= 0
    assert {"ais", "aic"} <= set(results[REFERENCE]) and "iis" not in results[REFERENCE]
    assert run(setup) == results  # the seed fixes noise, pools and random tokens


def test_random_tokens_have_the_audio_tokens_statistics():
    tokens = torch.randn(4000, 8) * torch.arange(1, 9) + torch.arange(8)
    drawn = random_tokens(tokens, seed=0)
    assert torch.allclose(drawn.mean(0), tokens.mean(0), atol=0.1 * tokens.std(0).max())
    assert torch.allclose(drawn.std(0), tokens.std(0), rtol=0.1)
    assert not torch.equal(drawn, random_tokens(tokens, seed=1))
