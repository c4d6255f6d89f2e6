"""shared.encoders.clip: per-frame CLIP token features (TiVA sec. 3.2.1, eqs. 2-3)."""

import numpy as np
import open_clip
import pytest
import torch

from shared.data import VGGSoundIndex
from shared.encoders import CLIPFeature, CLIPFrameFeatures, split_clip_feature

TINY = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 3, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1},
}


def tiny(**kw) -> CLIPFrameFeatures:
    return CLIPFrameFeatures("ViT-B-16", pretrained=None, layers=(0, 2), model_cfg=TINY, **kw)


def test_tokens_equal_the_block_outputs_seen_by_forward_hooks():
    model = tiny()
    frames = torch.randint(0, 256, (5, 3, 40, 48), dtype=torch.uint8)
    out = model(frames)
    assert out["cls"].shape == out["patch"].shape == (5, 2, 32)
    seen = {}
    blocks = model.visual.transformer.resblocks
    hooks = [blocks[i].register_forward_hook(lambda m, a, o, i=i: seen.__setitem__(i, o)) for i in (0, 2)]
    with torch.no_grad():
        model.visual(model.preprocess(frames))
    for hook in hooks:
        hook.remove()
    for j, i in enumerate((0, 2)):
        tokens = seen[i]  # [N, 1 + 16, D], batch-first blocks
        assert tokens.shape == (5, 17, 32)
        assert torch.allclose(out["cls"][:, j], tokens[:, 0], atol=1e-5)
        assert torch.allclose(out["patch"][:, j], tokens[:, 1:].mean(1), atol=1e-5)
    assert not torch.allclose(out["cls"][:, 0], out["cls"][:, 1])


def test_same_seed_same_weights_and_local_checkpoint_round_trip(tmp_path):
    frames = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    assert torch.equal(tiny(seed=1)(frames)["cls"], tiny(seed=1)(frames)["cls"])
    assert not torch.allclose(tiny(seed=1)(frames)["cls"], tiny(seed=2)(frames)["cls"])
    torch.manual_seed(7)
    full = open_clip.create_model("ViT-B-16", pretrained=None, **TINY)
    path = tmp_path / "tiny_clip.pt"
    torch.save(full.state_dict(), path)
    loaded = CLIPFrameFeatures("ViT-B-16", pretrained=str(path), layers=(0, 2), model_cfg=TINY)
    assert all(
        torch.equal(a, b)
        for a, b in zip(loaded.visual.state_dict().values(), full.visual.state_dict().values(), strict=True)
    )
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        CLIPFrameFeatures("ViT-B-16", pretrained=str(tmp_path / "missing.pt"), model_cfg=TINY)
    with pytest.raises(ValueError, match="outside the 3 blocks"):
        CLIPFrameFeatures("ViT-B-16", pretrained=None, layers=(4,), model_cfg=TINY)


def test_cache_feature_of_a_toy_video_has_one_row_per_frame_at_10_fps(toy_root):
    record = VGGSoundIndex(toy_root / "vggsound").records("train")[0]
    feature = CLIPFeature("ViT-B-16", None, (0, 1, 2), fps=10.0, duration=1.92, model_cfg=TINY)
    array = feature(record)
    assert array.shape == (19, 2, 3, 32) and array.dtype == np.float32  # floor(1.92 x 10)
    cls, patch = split_clip_feature(array)
    assert cls.shape == patch.shape == (19, 3, 32)
    # a longer duration loops the 2-s clip: 25 frames = the 20 decoded ones, then the first 5 again
    longer = CLIPFeature("ViT-B-16", None, (0, 1, 2), fps=10.0, duration=2.5, model_cfg=TINY)
    looped = longer(record)
    assert looped.shape[0] == 25 and np.allclose(looped[20:], looped[:5])
    assert feature.params() != longer.params()  # a different cache
