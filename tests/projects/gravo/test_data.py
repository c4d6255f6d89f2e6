"""GRAVO's DataModules on a toy set: windows, their 30-fps frames, the 90/10 split, ImageHear still clips, caches."""

from __future__ import annotations

import json
import math
import pickle
import shutil

import numpy as np
import pytest
import torch

from projects.gravo.data import (
    GravoImageHearDataModule,
    GravoVGGSoundDataModule,
    cut_windows,
    image_turns,
    window_frame_count,
)
from shared.data import ImageHearIndex, VGGSoundIndex
from shared.encoders import Im2WavCLIPFiles
from shared.prepare import feature_cache
from shared.prepare import main as prepare_main
from tests.conftest import REPO, resolved_config
from tests.shared.tiny_clip import TINY, tiny_feature, write_video_without_frames

SR = 16_000


def im2wav_frames(offset: int, samples: int, n_frames: int) -> list[int]:
    """The frames Im2Wav's `get_clip_metadata` slices, clip_emb[start:end + 1], padded with the last frame."""
    start = int(offset / SR * 30.0)
    end = int(start + samples / SR * 30.0)
    return [min(i, n_frames - 1) for i in range(start, end + 1)]


def vggsound_module(toy_root, cache_dir, **kw) -> GravoVGGSoundDataModule:
    index = VGGSoundIndex(toy_root / "vggsound", split_dir=None, valid_fraction=0.1)
    args = dict(cache_dir=str(cache_dir), window_seconds=1.024, batch_size=4) | kw
    return GravoVGGSoundDataModule(index, tiny_feature(), **args)


@pytest.fixture(scope="module")
def prepared(toy_root, tmp_path_factory):
    """The toy VGGSound's caches, filled by `avgen prepare` as a user would (the DataModule must find them)."""
    cache_dir = tmp_path_factory.mktemp("gravo_cache")
    prepare_main(
        ["--dataset", "vggsound", "--root", str(toy_root / "vggsound"), "--split-dir", "none",
         "--features", "wave,clip_emb", "--sample-rate", "16000", "--duration", "full", "--no-loop",
         "--clip-pretrained", "none", "--clip-model-cfg", json.dumps(TINY), "--cache-dir", str(cache_dir),
         "--workers", "0", "--device", "cpu"]
    )  # fmt: skip
    return cache_dir


def test_window_frame_counts_match_im2wav_slicing():
    assert window_frame_count(65_536) == 123 == len(im2wav_frames(0, 65_536, 10_000))
    assert window_frame_count(16_384) == 31 == int(1.024 * 30) + 1
    for offset in (0, 1, 533, 12_345, 94_464):  # the frames of every window are Im2Wav's, padded at the end
        wave, feats = torch.zeros(1, offset + 65_536), torch.arange(290.0)[None, :, None].expand(1, 290, 3)
        _, window = cut_windows(wave, feats, torch.tensor([offset]), 65_536)
        assert window[0, :, 0].long().tolist() == im2wav_frames(offset, 65_536, 290)


def test_cut_windows_takes_each_item_s_own_offset_and_repeats_the_last_frame():
    wave = torch.arange(2 * 40_000, dtype=torch.float32).view(2, 40_000)
    feats = torch.arange(2 * 70, dtype=torch.float32).view(2, 70, 1).expand(2, 70, 4)
    offsets = torch.tensor([0, 40_000 - 16_384])
    w, f = cut_windows(wave, feats, offsets, 16_384)
    assert w.shape == (2, 16_384) and f.shape == (2, 31, 4)
    torch.testing.assert_close(w[1], wave[1, offsets[1] :])
    first = math.floor(int(offsets[1]) * 30 / SR)  # 44: its window reaches frame 74 of a 70-frame clip
    assert f[1, :, 0].tolist() == [70.0 + min(first + i, 69) for i in range(31)]
    assert f[0, :, 0].tolist() == [float(i) for i in range(31)]
    with pytest.raises(ValueError, match="runs past"):
        cut_windows(wave, feats, torch.tensor([0, 30_000]), 16_384)


def test_training_batches_are_random_windows_of_the_cached_clips(toy_root, prepared):
    dm = vggsound_module(toy_root, prepared)
    train = dm.split("train")  # finds what `avgen prepare` computed: every clip present
    assert len(train) + len(dm.split("valid")) == len(
        dm.dataset.records("train") + dm.dataset.records("valid")
    )
    whole = next(iter(dm.train_dataloader()))
    assert "offset" not in whole  # whole clips until the step
    torch.manual_seed(0)
    batch = dm.on_after_batch_transfer(dict(whole), 0)
    assert batch["wave"].shape == (4, 16_384) and batch["wave"].dtype == torch.float32
    assert batch["clip_feats"].shape == (4, 31, 512) and batch["clip_feats"].dtype == torch.float32
    for key in ("offset", "total_length", "label"):
        assert batch[key].shape == (4,) and batch[key].dtype == torch.int64
    assert len(batch["clip_id"]) == 4 and dm.n_frames == 31
    waves, clips = dm.cache("wave"), dm.cache("clip_emb")
    for i, clip_id in enumerate(batch["clip_id"]):
        wave, feats = waves.load(clip_id), clips.load(clip_id)
        offset = int(batch["offset"][i])
        assert int(batch["total_length"][i]) == len(wave) > 16_384  # the toy clips are 1.6-2.0 s
        assert 0 <= offset <= len(wave) - 16_384
        np.testing.assert_array_equal(batch["wave"][i].numpy(), wave[offset : offset + 16_384])
        expected = feats[im2wav_frames(offset, 16_384, len(feats))]
        np.testing.assert_array_equal(batch["clip_feats"][i].numpy(), expected)
        assert batch["label"][i] == dm.dataset.labels.index(
            next(r.label for r in train.records if r.clip_id == clip_id)
        )
    torch.manual_seed(0)
    again = dm.on_after_batch_transfer(dict(whole), 0)  # the offsets come from torch's global generator
    assert torch.equal(again["offset"], batch["offset"])
    torch.manual_seed(1)
    assert not torch.equal(dm.on_after_batch_transfer(dict(whole), 0)["offset"], batch["offset"])


def test_evaluation_windows_start_at_zero(toy_root, prepared):
    dm = vggsound_module(toy_root, prepared)
    for split, loader in (("valid", dm.val_dataloader()), ("test", dm.test_dataloader())):
        batch = dm.on_after_batch_transfer(next(iter(loader)), 0)
        assert batch["offset"].tolist() == [0] * 4
        assert batch["wave"].shape == (4, 16_384) and batch["clip_feats"].shape == (4, 31, 512)
        for i, clip_id in enumerate(batch["clip_id"]):
            np.testing.assert_array_equal(batch["wave"][i].numpy(), dm.cache("wave").load(clip_id)[:16_384])
            np.testing.assert_array_equal(
                batch["clip_feats"][i].numpy(), dm.cache("clip_emb").load(clip_id)[:31]
            )
        assert {r.clip_id for r in dm.split(split).records} >= set(batch["clip_id"])


def test_the_90_10_cut_of_the_csv_train_split_is_deterministic_and_disjoint(toy_root, prepared):
    splits = {s: {r.clip_id for r in vggsound_module(toy_root, prepared).split(s).records} for s in
              ("train", "valid", "test")}  # fmt: skip
    again = {s: {r.clip_id for r in vggsound_module(toy_root, prepared).split(s).records} for s in splits}
    assert splits == again
    assert not splits["train"] & splits["valid"] and not (splits["train"] | splits["valid"]) & splits["test"]
    csv_rows = [
        line.rsplit(",", 1)[-1] for line in (toy_root / "vggsound" / "vggsound.csv").read_text().split()
    ]
    n_csv_train = sum(split == "train" for split in csv_rows)
    assert len(splits["valid"]) == round(0.1 * n_csv_train)
    assert len(splits["train"]) + len(splits["valid"]) == n_csv_train
    assert len(splits["test"]) == sum(split == "test" for split in csv_rows)


def test_clips_shorter_than_the_window_are_zero_padded_and_their_frames_repeat_the_last(toy_root, prepared):
    dm = vggsound_module(toy_root, prepared, window_seconds=2.4)  # longer than every toy clip
    item = dm.split("test")[0]
    wave, feats = dm.cache("wave").load(item["clip_id"]), dm.cache("clip_emb").load(item["clip_id"])
    assert item["total_length"] == 38_400 and item["wave"].shape == (38_400,) and item["offset"] == 0
    np.testing.assert_array_equal(item["wave"][: len(wave)].numpy(), wave)
    assert not item["wave"][len(wave) :].any()
    assert item["clip_feats"].shape == (int(2.4 * 30) + 1, 512)
    np.testing.assert_array_equal(
        item["clip_feats"][len(feats) :].numpy(), np.repeat(feats[-1:], 73 - len(feats), 0)
    )
    whole = dm.split("train")[0]  # training: the whole (padded) clip, frames to cover the only window
    assert whole["total_length"] == 38_400 and whole["clip_feats"].shape[0] == 73


def test_a_changed_feature_parameter_means_a_new_cache_and_an_unchanged_one_reuses_it(toy_root, prepared):
    dm = vggsound_module(toy_root, prepared)
    files = sorted(dm.cache("clip_emb").dir.glob("*.npy"))
    stamps = [f.stat().st_mtime_ns for f in files]
    dm.prepare_data()  # everything is there: nothing is recomputed
    assert [f.stat().st_mtime_ns for f in files] == stamps
    other = GravoVGGSoundDataModule(
        dm.dataset, tiny_feature(seed=1), cache_dir=str(prepared), window_seconds=1.024
    )
    assert other.cache("clip_emb").dir != dm.cache("clip_emb").dir
    assert other.cache("wave").dir == dm.cache("wave").dir
    with pytest.raises(RuntimeError, match="no prepared clips in split 'train'"):
        other.split("train")


def test_a_video_without_frames_is_skipped_and_reported_by_name(toy_root, tmp_path):
    root = tmp_path / "vggsound"
    (root / "video").mkdir(parents=True)
    first = VGGSoundIndex(toy_root / "vggsound", split_dir=None).records("train")[0]
    shutil.copy(first.path, root / "video" / first.path.name)
    write_video_without_frames(root / "video" / "emptyvideo1_0_10000.mp4")
    rows = [
        f"{first.clip_id[:11]},{int(first.clip_id.split('_')[-2]) // 1000},dog,train",
        "emptyvideo1,0,dog,train",
    ]
    (root / "vggsound.csv").write_text("\n".join(rows) + "\n")
    dm = GravoVGGSoundDataModule(
        VGGSoundIndex(root, split_dir=None), tiny_feature(), cache_dir=str(tmp_path / "c")
    )
    dm.prepare_data()
    assert [r.clip_id for r in dm.split("train").records] == [first.clip_id]
    report = dm.report_path.read_text()
    assert "emptyvideo1_0_10000.mp4: has no video stream" in report


def test_imagehear_items_repeat_one_image_embedding_over_the_window(toy_root, tmp_path):
    index = ImageHearIndex(toy_root / "imagehear")
    dm = GravoImageHearDataModule(
        index,
        tiny_feature(),
        cache_dir=str(tmp_path),
        window_seconds=1.024,
        generations_per_class=5,
        batch_size=7,
    )
    dm.prepare_data()
    batch = next(iter(dm.test_dataloader()))
    assert "wave" not in batch
    assert batch["clip_feats"].shape == (7, 31, 512) and batch["clip_feats"].dtype == torch.float32
    assert torch.equal(batch["clip_feats"], batch["clip_feats"][:, :1].expand(-1, 31, -1))
    assert batch["offset"].tolist() == [0] * 7 and batch["total_length"].tolist() == [16_384] * 7
    items = dm.items()
    assert len(items) == 5 * len(index.labels)
    cache = feature_cache(tmp_path, index, "clip_emb", dm.clip)
    for k in range(len(items)):
        item = items[k]
        label = index.labels[item["label"]]
        assert item["class_name"] == label and item["clip_id"].split("_", 1)[1].startswith(label)
        image = [r for r in index.records() if r.label == label][int(item["clip_id"].rsplit("_", 1)[1])]
        np.testing.assert_array_equal(item["clip_feats"][0].numpy(), cache.load(image.clip_id)[0])
    n_first = sum(r.label == index.labels[0] for r in index.records())
    turns = image_turns(n_first, 5)
    assert [items[k]["clip_id"] for k in range(5)] == [
        f"{k}_{index.labels[0]}_{i}" for k, i in enumerate(turns)
    ]


def test_images_are_taken_in_turn_as_im2wav_s_sampler_does():
    assert image_turns(4, 6) == [0, 0, 1, 1, 2, 3]
    assert image_turns(3, 120) == [0] * 40 + [1] * 40 + [2] * 40
    assert image_turns(8, 120).count(0) == 15 and image_turns(2, 3) == [0, 0, 1]


def test_imagehear_reads_im2wav_s_clip_pickle_and_names_a_bad_image(toy_root, tmp_path):
    rng = np.random.default_rng(0)
    classes = {"Guitar": rng.standard_normal((8, 512)), "Dog": rng.standard_normal((3, 512))}
    with open(tmp_path / "CLIP.pickle", "wb") as f:
        pickle.dump({"image": {k: v.astype(np.float32) for k, v in classes.items()}}, f)
    dm = GravoImageHearDataModule(official_clip=str(tmp_path / "CLIP.pickle"), window_seconds=4.096,
                                  total_seconds=10.0)  # fmt: skip
    items = dm.items()
    assert len(items) == 240 and dm.n_frames == 123
    first, last = items[0], items[239]
    assert (first["class_name"], first["label"], first["clip_id"]) == ("Dog", 0, "0_Dog_0")
    assert (last["class_name"], last["label"], last["clip_id"]) == ("Guitar", 1, "239_Guitar_7")
    assert first["clip_feats"].shape == (123, 512) and first["total_length"] == 160_000
    np.testing.assert_allclose(last["clip_feats"][-1].numpy(), classes["Guitar"][7].astype(np.float32))
    # computed embeddings: an image that does not decode is reported, then named when the items are made
    root = tmp_path / "imagehear"
    shutil.copytree(toy_root / "imagehear", root)
    bad = sorted((root / ImageHearIndex(root).labels[0]).glob("*.jpg"))[0]
    bad.write_bytes(b"not an image" * 20)
    dm = GravoImageHearDataModule(ImageHearIndex(root), tiny_feature(), cache_dir=str(tmp_path / "cache"))
    dm.prepare_data()
    assert f"{bad}: cannot be decoded as an image" in dm.report_path.read_text()
    with pytest.raises(RuntimeError, match=f"{bad}: no CLIP embedding"):
        dm.items()


def test_im2wav_s_released_frame_pickles_serve_as_the_frame_feature(toy_root, tmp_path):
    index = VGGSoundIndex(toy_root / "vggsound", split_dir=None, valid_fraction=0.1)
    rng = np.random.default_rng(0)
    released = {}
    for record in index.records():
        released[record.clip_id] = rng.standard_normal((40, 512)).astype(np.float32)
        with open(tmp_path / f"{record.clip_id}.pickle", "wb") as f:
            pickle.dump({record.clip_id: released[record.clip_id]}, f)
    dm = GravoVGGSoundDataModule(index, Im2WavCLIPFiles(tmp_path), cache_dir=str(tmp_path / "cache"),
                                 window_seconds=1.024)  # fmt: skip
    dm.prepare_data()
    item = dm.split("test")[0]
    np.testing.assert_array_equal(item["clip_feats"].numpy(), released[item["clip_id"]][:31])


@pytest.mark.parametrize("name", ["toy", "vggsound", "toy_imagehear", "imagehear"])
def test_base_data_configs_resolve_to_the_paper_s_or_the_toy_s_settings(name):
    data = resolved_config(REPO / "projects" / "gravo" / "configs" / "base" / f"{name}.yaml")["data"]
    args, clip = data["init_args"], data["init_args"]["clip"]["init_args"]
    assert clip["model_name"] == "ViT-B-32" and clip["fps"] == 30.0
    if name.startswith("toy"):  # a small random-weight CLIP with the real embedding width
        assert clip["pretrained"] is None and clip["model_cfg"]["embed_dim"] == 512
    else:
        assert clip["pretrained"] == "openai" and clip["model_cfg"] is None
    assert args["window_seconds"] == (1.024 if name.startswith("toy") else 4.096)
    if name.endswith("imagehear"):
        assert data["class_path"] == "projects.gravo.data.GravoImageHearDataModule"
        assert args["generations_per_class"] == (8 if name.startswith("toy") else 120)
    else:
        assert data["class_path"] == "projects.gravo.data.GravoVGGSoundDataModule"
        index = args["dataset"]["init_args"]
        assert index["split_dir"] is None and index["valid_fraction"] == 0.1
