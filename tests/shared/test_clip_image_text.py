"""`shared.encoders.CLIPImageText` over a tiny random transformers `CLIPModel` folder: CLIP's preprocessing (as
OpenAI's PIL transform), normalised embeddings equal to the model's own, the tokenizer fallback, zero-shot."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms
from transformers.utils.constants import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

from shared.encoders import CLIPImageText, load_clip_image_text
from shared.runs import UserError
from tests.shared.tiny_hf_clip import save_tiny_clip, tiny_clip_model


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> CLIPImageText:
    return load_clip_image_text(save_tiny_clip(tmp_path_factory.mktemp("clip") / "clip"))


def byte_images(n: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """Smooth random images whose values are whole 8-bit levels, in [-1, 1] (PIL sees them exactly)."""
    coarse = torch.rand(n, 3, 6, 8, generator=torch.Generator().manual_seed(seed))
    smooth = F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)
    return (smooth * 255).round() / 255 * 2 - 1


def openai_transform(image: torch.Tensor, size: int) -> torch.Tensor:
    """OpenAI CLIP's `_transform` (`openai/CLIP`, `clip/clip.py`) on a [3, H, W] image in [-1, 1] through PIL."""
    pil = Image.fromarray(((image + 1) / 2 * 255).round().byte().permute(1, 2, 0).numpy())
    return transforms.Compose(
        [
            transforms.Resize(size, interpolation=transforms.InterpolationMode.BICUBIC),
            transforms.CenterCrop(size),
            transforms.ToTensor(),
            transforms.Normalize(OPENAI_CLIP_MEAN, OPENAI_CLIP_STD),
        ]
    )(pil)


@pytest.mark.parametrize("height, width", [(40, 64), (64, 64), (96, 71), (20, 24)])
def test_preprocessing_is_openai_clip_s_transform(clip, height, width):
    images = byte_images(2, height, width)
    ours = clip.preprocess(images)
    reference = torch.stack([openai_transform(image, clip.image_size) for image in images])
    assert ours.shape == reference.shape == (2, 3, clip.image_size, clip.image_size)
    # PIL resizes in 8 bits and with its own bicubic taps: in [0, 1] units they agree within 2.5 grey levels
    std = torch.tensor(OPENAI_CLIP_STD).view(1, 3, 1, 1)
    assert ((ours - reference) * std).abs().max() < 2.5 / 255
    assert ((ours - reference) * std).abs().mean() < 0.5 / 255


def test_embeddings_are_the_model_s_normalised_and_independent_of_the_batch(clip):
    images = byte_images(3, 40, 64, seed=1)
    embeddings = clip.encode_images(images)
    with torch.no_grad():
        own = clip.model.get_image_features(pixel_values=clip.preprocess(images)).pooler_output
    torch.testing.assert_close(embeddings, F.normalize(own, dim=-1))
    torch.testing.assert_close(embeddings.norm(dim=-1), torch.ones(3))
    torch.testing.assert_close(embeddings[1:2], clip.encode_images(images[1:2]), atol=1e-6, rtol=0)
    texts = ["a photo of a dog", "cat", "a much longer caption " * 30]  # the last one truncated to 77 tokens
    together = clip.encode_texts(texts)
    alone = torch.cat([clip.encode_texts([text]) for text in texts])
    assert together.shape == (3, clip.embed_dim)
    torch.testing.assert_close(together, alone, atol=1e-6, rtol=0)  # padding changes nothing
    assert not torch.allclose(together[0], together[1])


def test_a_folder_without_tokenizer_gets_sd_s_clip_tokenizer(clip, tmp_path):
    bare = load_clip_image_text(save_tiny_clip(tmp_path / "bare", with_tokenizer=False))
    assert not (tmp_path / "bare" / "tokenizer.json").exists()
    texts = ["a photo of a dog", "engine idling"]
    assert bare.tokenizer(texts).input_ids == clip.tokenizer(texts).input_ids
    torch.testing.assert_close(bare.encode_texts(texts), clip.encode_texts(texts))


def test_zero_shot_picks_the_class_whose_prompt_is_nearest(clip):
    images = byte_images(4, 32, 32, seed=2)
    names = ["dog", "cat", "violin", "car engine"]
    picked = clip.zero_shot(images, names, template="a photo of a {}")
    cosines = clip.encode_images(images) @ clip.encode_texts([f"a photo of a {n}" for n in names]).T
    assert torch.equal(picked, cosines.argmax(dim=1))


def test_it_stays_frozen_and_bad_folders_are_user_errors(tmp_path):
    wrapper = CLIPImageText(tiny_clip_model())
    torch.nn.Sequential(wrapper).train()
    assert not wrapper.training and not wrapper.model.training
    assert not any(p.requires_grad for p in wrapper.parameters())
    with pytest.raises(UserError, match="no config.json"):
        load_clip_image_text(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(UserError, match=str(tmp_path)):
        load_clip_image_text(tmp_path)
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        wrapper.encode_images(torch.zeros(3, 8, 8))
