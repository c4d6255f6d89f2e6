"""What SpecVQGAN's sampler shows in TensorBoard at validation (`SpecVQGANTransformer.examples`)."""

import pytest
import torch

from projects.specvqgan.models.sampler import CodeSampling
from projects.specvqgan.module_sampler import SpecVQGANTransformer

from .test_sampler import TINY_GPT, write_codebook_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: see tests/conftest.py


@pytest.mark.parametrize("condition", ["feats", "none"])
def test_the_sampler_shows_one_sample_of_each_clip_beside_its_real_mel(tmp_path, condition):
    module = SpecVQGANTransformer(
        codebook_ckpt=str(write_codebook_checkpoint(tmp_path / "codebook.ckpt")), condition=condition,
        feat_dim=12, n_feats=4, grid=(5, 10), **TINY_GPT, sampling=CodeSampling(top_k=8, samples_per_clip=3),
    ).eval()  # fmt: skip
    torch.manual_seed(0)
    batch = {"mel": torch.rand(2, 1, 80, 160), "frame_feats": torch.randn(2, 4, 12), "clip_id": ["a", "b"]}
    with torch.no_grad():
        examples = module.examples(batch)
        first_samples = torch.cat([mels for _, mels in module.sample_mels(batch)])[::3]
    assert set(examples) == {"real", "generated"}
    assert examples["real"].shape == examples["generated"].shape == (2, 80, 160)
    torch.testing.assert_close(examples["real"], batch["mel"][:, 0])
    assert examples["generated"].min() >= 0 and examples["generated"].max() <= 1
    # sample 0 of each clip's stream: the same at every validation, and what evaluation draws first
    torch.testing.assert_close(examples["generated"], first_samples[:, 0].clamp(0, 1))
