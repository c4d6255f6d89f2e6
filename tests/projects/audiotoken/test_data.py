"""AudioToken's DataModule on a toy set: windows of tiled 16-kHz audio, the window's frame, best frames, filters."""

from __future__ import annotations

import csv
import functools
import json
import os
import pickle
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio

from projects.audiotoken.data import (
    AudioTokenVASDataModule,
    AudioTokenVGGSoundDataModule,
    read_frame,
    select_best_frames,
    window_frames,
    youtube_id,
)
from shared.data import VASIndex, VGGSoundIndex
from shared.encoders.official import UnsafePickleError
from shared.runs import UserError
from shared.video import load_video

SR = 16_000


def module(root, cache_dir, **kw) -> AudioTokenVGGSoundDataModule:
    args = dict(cache_dir=str(cache_dir), image_size=(64, 40), batch_size=4) | kw
    return AudioTokenVGGSoundDataModule(VGGSoundIndex(root / "vggsound"), **args)


def epoch_batches(loader) -> list[dict]:
    return list(loader)


@functools.cache
def n_frames(path) -> int:
    return load_video(path).shape[0]


@pytest.fixture(scope="module")
def cache_dir(toy_root, tmp_path_factory):
    cache = tmp_path_factory.mktemp("audiotoken_cache")
    module(toy_root, cache).prepare_data()
    return cache


@pytest.fixture(scope="module")
def own_toy(toy_root, tmp_path_factory):
    """A copy of the toy VGGSound that tests may break."""
    root = tmp_path_factory.mktemp("audiotoken_toy")
    shutil.copytree(toy_root / "vggsound", root / "vggsound")
    return root


def test_batch_keys_shapes_and_ranges(toy_root, cache_dir):
    dm = module(toy_root, cache_dir)
    train = next(iter(dm.train_dataloader()))
    test = next(iter(dm.test_dataloader()))
    for batch, seconds in ((train, 5), (test, 10)):
        assert batch["wave"].shape == (4, seconds * SR) and batch["wave"].dtype == torch.float32
        assert batch["image"].shape == (4, 3, 40, 64) and batch["image"].dtype == torch.float32
        assert batch["image"].min() >= -1 and batch["image"].max() <= 1
        assert batch["image"].max() - batch["image"].min() > 0.5  # a real picture, not a constant
        assert batch["wave"].abs().max() <= 1 and batch["wave"].abs().max() > 0.01
        for key in ("label", "window_start", "frame_index"):
            assert batch[key].shape == (4,) and batch[key].dtype == torch.int64
        labels = dm.dataset.labels
        assert batch["label_text"] == [labels[i] for i in batch["label"]]
        assert batch["caption"] == [f"a photo of a {text}" for text in batch["label_text"]]
        assert len(batch["clip_id"]) == 4 and all(isinstance(c, str) for c in batch["clip_id"])
    assert len(dm.split("train")) == len(dm.dataset.records("train"))


def test_wave_is_the_16k_resampled_clip_tiled_to_10_s_then_windowed(toy_root, cache_dir):
    dm = module(toy_root, cache_dir)
    data = dm.split("train")
    short = next(i for i, r in enumerate(data.records) if n_frames(r.path) == 40)  # a 1.6-s clip
    record = data.records[short]
    item = data[(0, short)]
    source, rate = sf.read(record.path.parent.parent / "audio" / f"{record.clip_id}.wav", dtype="float32")
    assert rate != SR
    mono = torch.from_numpy(source.mean(axis=1) if source.ndim == 2 else source)
    at_16k = torchaudio.functional.resample(mono, rate, SR)
    assert at_16k.numel() == round(1.6 * SR)
    tiled = at_16k.repeat(7)[: 10 * SR]  # 1.6 s x 7 = 11.2 s >= 10 s
    start = item["window_start"] * SR
    torch.testing.assert_close(item["wave"], tiled[start : start + 5 * SR], atol=1e-5, rtol=0)
    whole = dm.split("test")
    test_short = next(i for i, r in enumerate(whole.records) if n_frames(r.path) == 40)
    wave = whole[test_short]["wave"]
    period = round(1.6 * SR)
    assert wave.numel() == 10 * SR
    torch.testing.assert_close(wave[period : 2 * period], wave[:period])  # the clip loops ...
    torch.testing.assert_close(wave[6 * period :], wave[: 10 * SR - 6 * period])  # ... to the cut at 10 s


def test_window_starts_and_frames_follow_the_official_rule(toy_root, cache_dir):
    dm = module(toy_root, cache_dir)
    loader = dm.train_dataloader()
    starts, seen = set(), 0
    for epoch in range(3):
        loader.sampler.set_epoch(epoch)
        for batch in loader:
            for clip_id, start, frame in zip(
                batch["clip_id"], batch["window_start"], batch["frame_index"], strict=True
            ):
                total = n_frames(dm.dataset.root / "video" / f"{clip_id}.mp4")
                low, high = (total // 10) * int(start), (total // 10) * (int(start) + 5)
                assert low <= frame <= min(high, total - 1)
                starts.add(int(start))
                seen += 1
    assert starts <= set(range(5)) and len(starts) > 2, starts
    assert seen > 50
    for batch in dm.test_dataloader():
        assert (batch["window_start"] == 0).all()
        for clip_id, frame in zip(batch["clip_id"], batch["frame_index"], strict=True):
            total = n_frames(dm.dataset.root / "video" / f"{clip_id}.mp4")
            assert frame == (total - 1) // 2  # the middle of [0, min(T, T - 1)]


def test_window_frames_clamps_the_official_range():
    assert window_frames(250, 4, 5) == (100, 225)
    assert window_frames(250, 0, 10) == (0, 249)  # officially 250: one past the last frame
    assert window_frames(40, 2, 5) == (8, 28)


def test_read_frame_seeks_to_the_frame_load_video_decodes(toy_root):
    path = sorted((toy_root / "vggsound" / "video").glob("*.mp4"))[0]
    frames = load_video(path).permute(0, 2, 3, 1).numpy()
    for index in (0, 1, 13, 24, frames.shape[0] - 1):
        np.testing.assert_array_equal(read_frame(path, index), frames[index])
    np.testing.assert_array_equal(read_frame(path, frames.shape[0] + 5), frames[-1])


def test_best_frames_json_restricts_the_choice(toy_root, cache_dir, tmp_path):
    records = VGGSoundIndex(toy_root / "vggsound").records()
    listed = [7, 33]
    # half the clips keyed by clip id (what the official code looks up), half by YouTube id
    content = {
        (r.clip_id if i % 2 else youtube_id(r.clip_id)): [listed, [0.9, 0.8]] for i, r in enumerate(records)
    }
    path = tmp_path / "best_frames.json"
    path.write_text(json.dumps(content))
    dm = module(toy_root, cache_dir, best_frames=str(path))
    restricted = 0
    for batch in dm.train_dataloader():
        for clip_id, start, frame in zip(
            batch["clip_id"], batch["window_start"], batch["frame_index"], strict=True
        ):
            total = n_frames(dm.dataset.root / "video" / f"{clip_id}.mp4")
            low, high = window_frames(total, int(start), 5)
            inside = [f for f in listed if low <= f <= high]
            assert frame in inside if inside else low <= frame <= high
            restricted += bool(inside)
    assert restricted > 10
    batch = next(iter(dm.test_dataloader()))
    assert (batch["frame_index"] == listed[0]).all()  # evaluation: the first listed candidate in the window


def test_filter_lists_remove_listed_videos_from_training_only(own_toy, tmp_path, caplog):
    index = VGGSoundIndex(own_toy / "vggsound")
    train, test = index.records("train"), index.records("test")
    unmatch, low_quality = tmp_path / "unmatch.pkl", tmp_path / "low.pkl"
    unmatch.write_bytes(
        pickle.dumps([youtube_id(r.clip_id) for r in train[:2]] + [youtube_id(test[0].clip_id)])
    )
    low_quality.write_bytes(pickle.dumps({youtube_id(train[5].clip_id), "notAVideo00"}))
    dm = module(own_toy, tmp_path / "cache", unmatch_videos=str(unmatch), low_quality_videos=str(low_quality))
    dm.prepare_data()
    with caplog.at_level("INFO", logger="projects.audiotoken.data"):
        kept = {r.clip_id for r in dm.split("train").records}
    assert dm.filtered == {
        "unmatch_videos": [train[0].clip_id, train[1].clip_id],
        "low_quality_videos": [train[5].clip_id],
    }
    assert kept == {r.clip_id for r in train} - {train[0].clip_id, train[1].clip_id, train[5].clip_id}
    assert "unmatch_videos" in caplog.text and "removed 2 training clips" in caplog.text
    assert test[0].clip_id in {r.clip_id for r in dm.split("test").records}


def test_filter_list_pickles_are_read_safely(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("true",))

    evil, numbers = tmp_path / "evil.pkl", tmp_path / "numbers.pkl"
    evil.write_bytes(pickle.dumps([Evil()]))
    numbers.write_bytes(pickle.dumps([1, 2]))
    for path, error in ((evil, UnsafePickleError), (numbers, UserError)):
        dm = module(tmp_path, tmp_path, unmatch_videos=str(path))
        with pytest.raises(error, match=path.name):
            dm.filter_training([])


def test_broken_video_and_missing_audio_are_skipped_and_reported(own_toy, tmp_path):
    index = VGGSoundIndex(own_toy / "vggsound")
    broken, silent = index.records("train")[3], index.records("train")[4]
    saved = broken.path.read_bytes()
    broken.path.write_bytes(b"not a video at all" * 100)
    wav = own_toy / "vggsound" / "audio" / f"{silent.clip_id}.wav"
    moved = wav.rename(tmp_path / wav.name)
    try:
        dm = module(own_toy, tmp_path / "cache")
        dm.prepare_data()
        kept = {r.clip_id for r in dm.split("train").records}
        with open(dm.report_path, newline="") as f:
            rows = {row["clip_id"]: row["reason"] for row in csv.DictReader(f, delimiter="\t")}
    finally:
        broken.path.write_bytes(saved)
        moved.rename(wav)
    assert broken.clip_id not in kept and silent.clip_id not in kept
    assert len(kept) == len(index.records("train")) - 2
    assert "cannot be opened" in rows[broken.clip_id]
    assert "no audio file" in rows[silent.clip_id]


def test_a_training_epoch_is_reproducible_from_the_seed_and_resumes(toy_root, cache_dir):
    def draws(batches):
        return [(b["clip_id"], b["window_start"].tolist(), b["frame_index"].tolist()) for b in batches]

    first = epoch_batches(module(toy_root, cache_dir, seed=3).train_dataloader())
    again = epoch_batches(module(toy_root, cache_dir, seed=3).train_dataloader())
    assert draws(first) == draws(again)
    for a, b in zip(first, again, strict=True):
        torch.testing.assert_close(a["wave"], b["wave"], rtol=0, atol=0)
        torch.testing.assert_close(a["image"], b["image"], rtol=0, atol=0)
    other = epoch_batches(module(toy_root, cache_dir, seed=4).train_dataloader())
    assert draws(other) != draws(first)
    loader = module(toy_root, cache_dir, seed=3).train_dataloader()
    loader.sampler.set_epoch(1)
    assert draws(epoch_batches(loader)) != draws(first)

    # a loader restored from a mid-epoch state gives the rest of the epoch, draws included
    loader = module(toy_root, cache_dir, seed=3).train_dataloader()
    iterator = iter(loader)
    next(iterator), next(iterator)
    state = loader.state_dict()
    resumed = module(toy_root, cache_dir, seed=3).train_dataloader()
    resumed.load_state_dict(state)
    assert draws(list(resumed)) == draws(first)[2:]


def tiny_clip_folder(folder, seed: int = 0):
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(seed)
    config = CLIPConfig(
        text_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2),
        vision_config=dict(
            image_size=32, patch_size=16, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
            num_attention_heads=2,
        ),
        projection_dim=16,
    )  # fmt: skip
    CLIPModel(config).save_pretrained(folder)
    return folder


def test_select_best_frames_writes_the_official_layout(toy_root, tmp_path):
    index = VGGSoundIndex(toy_root / "vggsound")
    records = index.records("train")[:3]
    out = tmp_path / "best.json"
    written = select_best_frames(records, tiny_clip_folder(tmp_path / "clip"), out, candidates=4, every=2)
    assert json.loads(out.read_text()) == written
    assert set(written) == {r.clip_id for r in records}
    for record in records:
        frames, scores = written[record.clip_id]
        assert len(frames) == len(scores) == 4
        assert all(f % 2 == 0 and 0 <= f < n_frames(record.path) for f in frames)
        assert scores == sorted(scores, reverse=True) and all(-1 <= s <= 1 for s in scores)
        assert len(set(scores)) > 1  # frames differ, so do their scores


def test_datamodule_builds_best_frames_from_a_clip_folder(own_toy, tmp_path):
    clip = tiny_clip_folder(tmp_path / "clip")
    dm = module(own_toy, tmp_path / "cache", best_frames_clip=str(clip), best_frames_candidates=3)
    dm.prepare_data()
    path = dm.best_frames_path()
    assert path.is_file() and path.is_relative_to(tmp_path / "cache")
    content = json.loads(path.read_text())
    assert set(content) == {r.clip_id for r in dm.split("train").records}
    assert all(len(frames) == 3 for frames, _ in content.values())
    assert dm.split("train").best_frames == {k: v[0] for k, v in content.items()}
    tiny_clip_folder(clip, seed=1)  # a retrained model: a new file
    assert module(own_toy, tmp_path / "cache", best_frames_clip=str(clip)).best_frames_path() != path


def test_vas_datamodule_reads_audio_from_the_videos(toy_root, tmp_path):
    dm = AudioTokenVASDataModule(
        VASIndex(toy_root / "vas"), cache_dir=str(tmp_path), image_size=(64, 40), batch_size=2
    )
    dm.prepare_data()
    batch = next(iter(dm.train_dataloader()))
    assert batch["wave"].shape == (2, 5 * SR) and batch["image"].shape == (2, 3, 40, 64)
    assert all("/" in clip_id for clip_id in batch["clip_id"])
    assert next(iter(dm.test_dataloader()))["wave"].shape == (2, 10 * SR)
