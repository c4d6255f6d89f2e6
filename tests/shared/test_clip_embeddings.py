"""Per-frame CLIP image embeddings at 30 fps (Im2Wav / GRAVO's condition), of videos and still images."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from shared.data import ImageHearIndex, VGGSoundIndex
from shared.encoders import CLIPEmbeddingFeature, CLIPImageEmbedder, Im2WavCLIPFiles
from shared.media import MediaError
from shared.video import load_image, load_video, video_info
from tests.shared.tiny_clip import TINY, tiny_feature, write_video_without_frames


def test_embeddings_are_the_projected_image_embedding_with_unit_norm():
    embedder = CLIPImageEmbedder("ViT-B-32", pretrained=None, model_cfg=TINY, batch_size=2)
    frames = torch.randint(0, 256, (5, 3, 80, 96), dtype=torch.uint8)
    out = embedder(frames)
    assert out.shape == (5, 512) and out.dtype == torch.float32 and embedder.dim == 512
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(5))
    # open_clip's encode_image of the same preprocessed frames, normalised: what Im2Wav stores
    reference = embedder.visual(embedder.preprocess(frames))
    torch.testing.assert_close(out, reference / reference.norm(dim=-1, keepdim=True))


def test_a_25_fps_video_is_sampled_on_its_timeline_at_30_fps_and_padded_with_its_last_frame(toy_root):
    record = VGGSoundIndex(toy_root / "vggsound").records("train")[0]
    info = video_info(record.path)
    assert info.fps == 25  # the toy videos: 30-fps sampling repeats frames instead of running fast
    feature = tiny_feature()
    array = feature(record)
    n_source = load_video(record.path).shape[0]
    assert array.shape == (int(np.floor(n_source / 25 * 30 + 1e-6)), 512) and array.dtype == np.float32
    source = feature.model(load_video(record.path)).numpy()  # every decoded frame, at 25 fps
    on_screen = [int(np.floor(k / 30 * 25 + 1e-6)) for k in range(array.shape[0])]  # frame shown at k / 30 s
    np.testing.assert_allclose(array, source[on_screen], atol=1e-5)
    # a duration past the video's end pads with its last frame (GRAVO sec. 3.1)
    padded = tiny_feature(duration=n_source / 25 + 0.5)(record)
    assert padded.shape[0] == int(np.floor((n_source / 25 + 0.5) * 30 + 1e-6))
    np.testing.assert_allclose(padded[: array.shape[0]], array, atol=1e-6)
    np.testing.assert_allclose(padded[array.shape[0] :], np.repeat(array[-1:], 15, axis=0), atol=1e-6)


def test_a_still_image_is_one_row_and_bad_media_name_the_file(toy_root, tmp_path):
    record = ImageHearIndex(toy_root / "imagehear").records()[0]
    feature = tiny_feature()
    row = feature(record)
    assert row.shape == (1, 512)
    np.testing.assert_allclose(row, feature.model(load_image(record.path)).numpy(), atol=1e-6)
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg at all" * 10)
    with pytest.raises(MediaError, match="broken.jpg: cannot be decoded as an image"):
        feature.extract(tmp_path / "broken.jpg")
    write_video_without_frames(tmp_path / "empty.mp4")
    with pytest.raises(MediaError, match="empty.mp4: has no video stream"):
        feature.extract(tmp_path / "empty.mp4")


def test_every_parameter_that_changes_the_embeddings_changes_the_cache_identity():
    base = tiny_feature().params()
    for changed in (tiny_feature(fps=25.0), tiny_feature(seed=1), tiny_feature(duration=10.0)):
        assert changed.params() != base
    other_model = CLIPEmbeddingFeature("ViT-B-32", pretrained=None, model_cfg=TINY | {"embed_dim": 256})
    assert other_model.params() != base
    assert tiny_feature().params() == base


def test_im2wav_feature_pickles_are_read_by_stem_and_bad_ones_name_the_file(toy_root, tmp_path):
    record = VGGSoundIndex(toy_root / "vggsound").records("train")[0]
    embeddings = np.random.default_rng(0).standard_normal((300, 512)).astype(np.float32)
    with open(tmp_path / f"{record.clip_id}.pickle", "wb") as f:
        pickle.dump({record.clip_id: embeddings}, f)
    np.testing.assert_array_equal(Im2WavCLIPFiles(tmp_path)(record), embeddings)
    with open(tmp_path / f"{record.clip_id}.pickle", "wb") as f:
        pickle.dump({"another_clip": embeddings}, f)
    with pytest.raises(ValueError, match=f"{record.clip_id}.pickle: expected a dict"):
        Im2WavCLIPFiles(tmp_path)(record)
    with pytest.raises(FileNotFoundError, match="no such file"):
        Im2WavCLIPFiles(tmp_path / "elsewhere")(record)
