import json
from pathlib import Path

import numpy as np
import pytest

from shared.data import ClipRecord, FeatureCache, MelFeature, SkipReport, VGGSoundIndex, prepare_features


def records_of(tmp_path: Path, n: int) -> list[ClipRecord]:
    return [ClipRecord(tmp_path / f"{i}.wav", "x", 0, "train", f"cls/clip{i}") for i in range(n)]


class Counting:
    """A feature that records which clips it computed, and can fail on some or stop the run."""

    def __init__(self, bad=(), interrupt_after=None):
        self.calls: list[str] = []
        self.bad, self.interrupt_after = set(bad), interrupt_after

    def __call__(self, record: ClipRecord) -> np.ndarray:
        if self.interrupt_after is not None and len(self.calls) == self.interrupt_after:
            raise KeyboardInterrupt
        self.calls.append(record.clip_id)
        if record.clip_id in self.bad:
            raise ValueError(f"{record.path}: cannot be decoded")
        return np.full(3, len(self.calls), np.float32)


def test_cache_folder_is_keyed_by_every_parameter(tmp_path):
    a = FeatureCache(tmp_path, "mel", {"sr": 22050, "hop": 256})
    b = FeatureCache(tmp_path, "mel", {"hop": 256, "sr": 22050})
    c = FeatureCache(tmp_path, "mel", {"sr": 16000, "hop": 256})
    assert a.dir == b.dir != c.dir
    assert json.loads((a.dir / "params.json").read_text()) == {"hop": 256, "sr": 22050}
    a.save("cls/clip", np.arange(4.0))
    assert np.array_equal(b.load("cls/clip"), np.arange(4.0)) and not c.has("cls/clip")
    assert sorted(p.name for p in a.dir.rglob("*") if p.is_file()) == ["clip.npy", "params.json"]


def test_bad_clips_are_skipped_and_reported_and_the_rest_goes_on(tmp_path):
    cache = FeatureCache(tmp_path / "cache", "f", {})
    records = records_of(tmp_path, 5)
    report = SkipReport("test")
    feature = Counting(bad={"cls/clip2"})
    kept = prepare_features(records, cache, feature, report)
    assert [r.clip_id for r in kept] == ["cls/clip0", "cls/clip1", "cls/clip3", "cls/clip4"]
    assert report.rows == [("cls/clip2", str(tmp_path / "2.wav"), f"{tmp_path / '2.wav'}: cannot be decoded")]
    assert not cache.has("cls/clip2") and cache.has("cls/clip4")


def test_an_interrupted_preparation_keeps_finished_clips_and_resumes(tmp_path):
    cache = FeatureCache(tmp_path / "cache", "f", {})
    records = records_of(tmp_path, 6)
    first = Counting(interrupt_after=4)
    with pytest.raises(KeyboardInterrupt):
        prepare_features(records, cache, first, SkipReport("t"))
    assert sum(cache.has(r.clip_id) for r in records) == 4
    assert not list(cache.dir.rglob("*.tmp*"))  # no half-written file under any name
    second = Counting()
    assert len(prepare_features(records, cache, second, SkipReport("t"))) == 6
    assert second.calls == ["cls/clip4", "cls/clip5"]  # only the rest


def test_mel_feature_of_real_toy_clips_with_workers_asked_for(toy_root, tmp_path):
    # four short clips: the pool never starts (tests/shared/test_cli_manners.py runs real workers)
    index = VGGSoundIndex(toy_root / "vggsound")
    records = index.records("valid")[:4]
    feature = MelFeature("specvqgan", duration=2.0, loop=True)
    cache = FeatureCache(tmp_path, "mel", feature.params())
    kept = prepare_features(records, cache, feature, SkipReport("toy"), workers=2)
    assert len(kept) == 4
    mel = cache.load(records[0].clip_id)
    assert mel.shape == (80, 1 + 44100 // 256) and mel.dtype == np.float32
    assert mel.min() >= 0 and mel.max() <= 1 and mel.std() > 0.05
