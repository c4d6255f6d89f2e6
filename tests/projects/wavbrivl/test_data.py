"""WavBriVL's DataModules: 16-kHz audio with valid lengths, one frame per clip (random and reproducible in
training, the middle one in evaluation), the training subset, the VEGAS class selection, bad clips."""

from __future__ import annotations

import csv
import shutil

import numpy as np
import pytest
import torch

from projects.wavbrivl.data import (
    S2I_VEGAS_CLASSES,
    WavBriVLVEGASDataModule,
    WavBriVLVGGSoundDataModule,
    match_classes,
    subset_records,
)
from shared.audio import load_audio
from shared.data import VEGASIndex, VGGSoundIndex, toy
from shared.runs import UserError

FPS, SIZE = 5.0, 32


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("wavbrivl_data_cache")


def vggsound(toy_root, cache_dir, **kwargs) -> WavBriVLVGGSoundDataModule:
    index = VGGSoundIndex(toy_root / "vggsound", split_dir=None, valid_fraction=0.1)
    kwargs = {"audio_seconds": 2.0, "image_size": SIZE, "frame_fps": FPS, "batch_size": 4} | kwargs
    data = WavBriVLVGGSoundDataModule(index, cache_dir=str(cache_dir), **kwargs)
    data.prepare_data()
    return data


def test_batch_keys_shapes_and_16_khz_audio(toy_root, cache_dir):
    data = vggsound(toy_root, cache_dir)
    batch = next(iter(data.val_dataloader()))
    assert batch["wave"].shape == (4, 32_000) and batch["wave"].dtype == torch.float32
    assert batch["image"].shape == (4, 3, SIZE, SIZE) and batch["image"].dtype == torch.float32
    assert batch["image"].min() >= 0.0 and batch["image"].max() <= 1.0 and batch["image"].max() > 0.1
    assert batch["lengths"].dtype == batch["label"].dtype == batch["frame_index"].dtype == torch.int64
    assert batch["index"].tolist() == [
        0,
        1,
        2,
        3,
    ]  # each item's position in the split (the retrieval examples')
    assert len(batch["label_text"]) == len(batch["clip_id"]) == 4
    records = {r.clip_id: r for r in data.split("valid").records}
    for i, clip_id in enumerate(batch["clip_id"]):
        record = records[clip_id]
        assert batch["label_text"][i] == record.label and int(batch["label"][i]) == record.label_id
        reference = load_audio(record.path, 16_000)  # decoded and resampled independently
        length = int(batch["lengths"][i])
        assert length == min(reference.numel(), 32_000)
        assert torch.allclose(batch["wave"][i, :length], reference[:length], atol=1e-5)
        assert not batch["wave"][i, length:].any()


def test_short_clips_are_padded_and_lengths_say_so(toy_root, cache_dir):
    data = vggsound(toy_root, cache_dir, audio_seconds=3.0)  # longer than every toy clip (1.6 or 2 s)
    dataset = data.split("valid")
    for i, record in enumerate(dataset.records):
        item = dataset[i]
        samples = load_audio(record.path, 16_000).numel()
        assert item["wave"].shape == (48_000,) and item["lengths"] == samples < 48_000
        assert not item["wave"][samples:].any() and item["wave"][:samples].abs().max() > 0.1
    cut = vggsound(toy_root, cache_dir, audio_seconds=0.5)
    assert {int(item["lengths"]) for item in cut.split("valid")} == {8_000}


def test_evaluation_takes_the_middle_frame(toy_root, cache_dir):
    data = vggsound(toy_root, cache_dir)
    dataset = data.split("valid")
    for i in range(len(dataset)):
        item = dataset[i]
        frames = np.load(dataset.frame_cache.path(item["clip_id"]))
        assert frames.shape[1:] == (3, SIZE, SIZE) and frames.shape[0] in (8, 10)  # 1.6 or 2 s at 5 fps
        assert item["frame_index"] == frames.shape[0] // 2
        assert torch.equal(item["image"], torch.from_numpy(frames[frames.shape[0] // 2]).float() / 255)


def frame_draws(loader, batches=None) -> list[list[int]]:
    out = []
    for n, batch in enumerate(loader):
        if batches is not None and n == batches:
            break
        out.append(batch["frame_index"].tolist())
    return out


def test_training_frames_are_random_in_range_and_reproducible(toy_root, cache_dir):
    data = vggsound(toy_root, cache_dir)
    dataset = data.split("train")
    counts = {
        r.clip_id: np.load(dataset.frame_cache.path(r.clip_id), mmap_mode="r").shape[0]
        for r in dataset.records
    }
    draws = []
    for batch in data.train_dataloader():
        for clip_id, frame in zip(batch["clip_id"], batch["frame_index"].tolist(), strict=True):
            assert 0 <= frame < counts[clip_id]
            draws.append(frame)
    assert len(set(draws)) > 3  # not one fixed frame
    again = vggsound(toy_root, cache_dir)
    assert frame_draws(again.train_dataloader()) == frame_draws(data.train_dataloader())
    loader = again.train_dataloader()
    loader.sampler.set_epoch(1)
    assert frame_draws(loader) != frame_draws(data.train_dataloader())  # a new epoch draws anew
    other_seed = vggsound(toy_root, cache_dir, seed=1)
    assert sorted(r.clip_id for r in other_seed.split("train").records) == sorted(counts)


def test_training_frames_resume_mid_epoch(toy_root, cache_dir):
    data = vggsound(toy_root, cache_dir)
    loader = data.train_dataloader()
    loader.sampler.set_epoch(2)
    iterator = iter(loader)
    next(iterator), next(iterator)
    state = loader.state_dict()
    rest = [batch["frame_index"].tolist() + batch["clip_id"] for batch in iterator]
    resumed = vggsound(toy_root, cache_dir).train_dataloader()
    resumed.load_state_dict(state)
    assert [batch["frame_index"].tolist() + batch["clip_id"] for batch in resumed] == rest


def test_train_subset_is_seeded_and_leaves_evaluation_alone(toy_root, cache_dir):
    full = vggsound(toy_root, cache_dir)
    subset = vggsound(toy_root, cache_dir, train_subset=10, subset_seed=3)
    chosen = [r.clip_id for r in subset.split("train").records]
    assert len(chosen) == 10 and set(chosen) <= {r.clip_id for r in full.split("train").records}
    assert chosen == [
        r.clip_id
        for r in vggsound(toy_root, cache_dir, train_subset=10, subset_seed=3).split("train").records
    ]
    assert chosen != [
        r.clip_id
        for r in vggsound(toy_root, cache_dir, train_subset=10, subset_seed=4).split("train").records
    ]
    assert len(subset.split("valid")) == len(full.split("valid"))
    records = full.split("train").records
    assert subset_records(records[::-1], 5, 0) == subset_records(records, 5, 0)  # independent of the order
    assert subset_records(records, None, 0) == sorted(records, key=lambda r: r.clip_id)


def test_vegas_class_selection(toy_root, cache_dir):
    classes = ["red circle", "green square", "blue triangle", "yellow star", "magenta ring"]
    data = WavBriVLVEGASDataModule(
        VEGASIndex(toy_root / "vegas"), classes=classes, cache_dir=str(cache_dir), audio_seconds=2.0,
        image_size=SIZE, frame_fps=FPS, batch_size=4,
    )  # fmt: skip
    data.prepare_data()
    assert data.labels == sorted(
        ["red_circle", "green_square", "blue_triangle", "yellow_star", "magenta_ring"]
    )
    for split in ("train", "valid", "test"):
        records = data.split(split).records
        assert records and {r.label for r in records} <= set(data.labels)
        assert all(data.labels[r.label_id] == r.label for r in records)
    batch = next(iter(data.train_dataloader()))
    assert batch["label"].max() < 5 and batch["wave"].shape == (4, 32_000)


def test_s2i_classes_select_vegas_folders():
    vegas = ["Baby_cry_infant_cry", "Chainsaw", "Dog", "Drum", "Fireworks", "Helicopter", "Printer",
             "Rail_transport", "Snoring", "Water_flowing"]  # fmt: skip
    chosen = match_classes(S2I_VEGAS_CLASSES, vegas, "vegas")
    assert chosen == ["Baby_cry_infant_cry", "Dog", "Rail_transport", "Fireworks", "Water_flowing"]
    with pytest.raises(UserError, match="selects no class"):
        match_classes(["Cat"], vegas, "vegas")
    with pytest.raises(UserError, match="several classes"):
        match_classes(["dog"], ["dog_bark", "dog_growl"], "vegas")


def test_bad_clips_are_skipped_and_reported(toy_root, tmp_path):
    root = tmp_path / "vegas"
    shutil.copytree(toy_root / "vegas", root)
    (root / "red_circle" / "video_99999.mp4").write_bytes(b"not a video")
    with open(root / "train.txt", "a") as f:
        f.write("red_circle/video_99999\n")
    data = WavBriVLVEGASDataModule(
        VEGASIndex(root), cache_dir=str(tmp_path / "cache"), audio_seconds=2.0, image_size=SIZE,
        frame_fps=FPS, batch_size=4,
    )  # fmt: skip
    data.prepare_data()
    with open(data.report_path, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    assert {row["clip_id"] for row in rows} == {"red_circle/video_99999"}  # a row per failing feature
    assert all("video_99999" in row["path"] and row["reason"] for row in rows)
    train = {r.clip_id for r in data.split("train").records}
    assert "red_circle/video_99999" not in train and len(train) == 36


def shape_visible(onsets: list[float], frame: int, fps: float) -> bool:
    """Whether the toy clip's shape is on screen in the frame shown at frame / fps s (`shared.data.toy`: it
    appears on the first 25-fps video frame at or after each onset and fades out over FADE_SECONDS)."""
    video_frame = int(np.floor(round(frame / fps * toy.FPS, 6)))
    return any(0 <= video_frame - first < toy.FADE_SECONDS * toy.FPS for first in toy.event_frames(onsets))


def test_salient_frames_show_the_toy_clips_shape(toy_root, cache_dir):
    with open(toy_root / "events.csv", newline="") as f:
        onsets = {row["clip_id"]: [float(o) for o in row["onsets"].split()] for row in csv.DictReader(f)}
    data = vggsound(toy_root, cache_dir, frames="salient")
    evaluation = data.split("valid")
    visible = [shape_visible(onsets[item["clip_id"]], item["frame_index"], FPS) for item in evaluation]
    assert all(visible)
    # the middle frame, the default, often shows only the background
    middle = [shape_visible(onsets[r.clip_id], 5, FPS) for r in evaluation.records]
    assert not all(middle)
    draws = [
        shape_visible(onsets[clip_id], frame, FPS)
        for batch in data.train_dataloader()
        for clip_id, frame in zip(batch["clip_id"], batch["frame_index"].tolist(), strict=True)
    ]
    assert all(draws) and len(draws) > len(data.split("train")) // 2  # every full batch of an epoch
    with pytest.raises(ValueError, match="frames='best'"):
        vggsound(toy_root, cache_dir, frames="best")
