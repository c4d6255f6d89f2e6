"""The embedded toy dataset: deterministic, in sync, audibly and visibly distinct, readable as real files."""

from __future__ import annotations

import csv
import hashlib
import itertools
import re
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf

from shared.audio import load_audio
from shared.data.indexes import ImageHearIndex, VASIndex, VEGASIndex, VGGSoundIndex
from shared.data.toy import FPS, TOY_CLASSES, event_frames, generate_toy_dataset, main, synthesize_clip
from shared.video import load_video

SMALL = {"n_train": 2, "n_valid": 1, "n_test": 1}  # 4 clips per class, 24 in all
PER_CLASS = sum(SMALL.values())
YTID = re.compile(r"^[A-Za-z0-9_-]{11}$")


def rise_time(wave: np.ndarray, sr: int, onset: float, search: float = 0.05) -> float:
    """Where, within `search` s of `onset`, the energy of a 4 ms window jumps most over the 4 ms before it."""
    win = round(0.004 * sr)
    starts = np.arange(
        max(win, round((onset - search) * sr)), round((onset + search) * sr), round(0.001 * sr)
    )
    starts = starts[starts + win <= len(wave)]
    energy = np.array(
        [np.mean(wave[s : s + win] ** 2) / (np.mean(wave[s - win : s] ** 2) + 1e-12) for s in starts]
    )
    return starts[int(np.argmax(energy))] / sr


def appearing_frames(frames: np.ndarray) -> list[int]:
    """Frames whose mean brightness jumps up from the previous one: where a shape appears."""
    brightness = frames.reshape(len(frames), -1).mean(axis=1)
    return [k + 1 for k in np.flatnonzero(np.diff(brightness) > 2.0)]


def centroid(audio: np.ndarray, sr: int) -> float:
    power = np.abs(np.fft.rfft(audio.mean(axis=0))) ** 2
    return float((power * np.fft.rfftfreq(audio.shape[1], 1 / sr)).sum() / power.sum())


def decode_mp4(path: Path) -> tuple[np.ndarray, np.ndarray, int]:
    with av.open(str(path)) as container:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    with av.open(str(path)) as container:
        sr = container.streams.audio[0].codec_context.sample_rate
        audio = np.concatenate([f.to_ndarray() for f in container.decode(audio=0)], axis=1)
    return frames, audio, sr


def read_csv(path: Path, reader=csv.reader) -> list:
    with open(path, newline="") as f:
        return list(reader(f))


def tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file()
    }


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    return generate_toy_dataset(tmp_path_factory.mktemp("toy") / "toy", seed=0, **SMALL)


def test_synthesis_is_deterministic_and_seeded():
    clip, audio, frames = synthesize_clip(5, 2, "train", seed=3)
    again, audio2, frames2 = synthesize_clip(5, 2, "train", seed=3)
    assert clip == again
    np.testing.assert_array_equal(audio, audio2)
    np.testing.assert_array_equal(frames, frames2)
    other, _, frames3 = synthesize_clip(5, 2, "train", seed=4)
    assert other.clip_id != clip.clip_id and other.onsets != clip.onsets
    assert not np.array_equal(frames, frames3)


@pytest.mark.parametrize("index", [0, 1, 3, 6, 13])
def test_clip_format(index):
    clip, audio, frames = synthesize_clip(index, index % 6, "valid")
    assert clip.duration == (1.6 if index % 7 == 6 else 2.0)
    assert clip.sample_rate == (44100 if index % 2 == 0 else 48000)
    channels = 2 if index % 3 == 0 else 1
    assert audio.dtype == np.float32 and audio.shape == (channels, round(clip.duration * clip.sample_rate))
    assert 0.68 < np.abs(audio).max() < 0.73
    assert frames.dtype == np.uint8 and frames.shape == (round(clip.duration * FPS), 96, 96, 3)
    onsets = np.array(clip.onsets)
    assert 2 <= len(onsets) <= 4 and onsets[0] >= 0.1 and onsets[-1] <= clip.duration - 0.25
    assert np.all(np.diff(onsets) >= 0.3 - 1e-6)
    ytid, start_ms, end_ms = clip.clip_id[:11], *map(int, clip.clip_id[12:].split("_"))
    assert YTID.match(ytid) and start_ms % 1000 == 0 and end_ms - start_ms == round(clip.duration * 1000)
    assert clip.vas_id == f"{TOY_CLASSES[index % 6].slug}/video_{index:05d}"


def test_some_ids_start_with_a_dash():
    assert any(synthesize_clip(i, 0, "train")[0].clip_id.startswith("-") for i in range(8))


@pytest.mark.parametrize("label_index", range(len(TOY_CLASSES)))
def test_shapes_appear_on_the_frame_of_each_onset(label_index):
    for index in (label_index, label_index + 7):
        clip, _, frames = synthesize_clip(index, label_index, "train")
        appear = appearing_frames(frames)
        assert appear == event_frames(clip.onsets)
        for k, onset in zip(appear, clip.onsets, strict=True):
            assert 0 <= k / FPS - onset < 1 / FPS
        # Between events only the background: the last frames (>= 0.25 s after the last onset, past the fade
        # of 0.3 s from its frame) equal the first (before any event).
        after = event_frames(clip.onsets)[-1] + 8
        np.testing.assert_array_equal(frames[after:], np.broadcast_to(frames[0], frames[after:].shape))


@pytest.mark.parametrize("label_index", range(len(TOY_CLASSES)))
def test_sounds_start_at_each_onset(label_index):
    for index in (label_index, label_index + 7):
        clip, audio, _ = synthesize_clip(index, label_index, "train")
        for onset in clip.onsets:
            assert abs(rise_time(audio.mean(axis=0), clip.sample_rate, onset) - onset) <= 0.010


def test_classes_differ_audibly():
    # Every clip's spectral centroid falls in its class's own band: drum < buzz < sine < chirp < bell < hiss.
    order = ["magenta_ring", "green_square", "red_circle", "yellow_star", "cyan_cross", "blue_triangle"]
    bands = []
    for slug in order:
        label_index = next(i for i, c in enumerate(TOY_CLASSES) if c.slug == slug)
        clips = [
            synthesize_clip(index, label_index, "train", seed=seed) for index in (0, 1, 3) for seed in (0, 1)
        ]
        bands.append([centroid(audio, clip.sample_rate) for clip, audio, _ in clips])
    for lower, higher in itertools.pairwise(bands):
        assert max(lower) < min(higher)
    assert min(bands[-1]) > 3000 and max(bands[0]) < 200


def test_classes_differ_visibly():
    colours = np.array([c.colour for c in TOY_CLASSES], dtype=float)
    for label_index in range(len(TOY_CLASSES)):
        clip, _, frames = synthesize_clip(label_index, label_index, "train")
        peak = frames[event_frames(clip.onsets)[0]].astype(float)
        shape = np.abs(peak - frames[0]).sum(axis=-1) > 60
        assert 0.05 < shape.mean() < 0.5
        seen = peak[shape].mean(axis=0)
        assert np.argmin(np.linalg.norm(colours - seen, axis=1)) == label_index


def test_layout(small):
    for name in [
        "vggsound/vggsound.csv",
        "vggsound/vggsound_train.txt",
        "vggsound/vggsound_valid.txt",
        "vggsound/vggsound_test.txt",
        "vas/vas_train.txt",
        "vas/vas_valid.txt",
        "vegas/train.txt",
        "vegas/valid.txt",
        "vegas/test.txt",
        "events.csv",
        "README.md",
        ".complete",
    ]:
        assert (small / name).is_file(), name
    events = read_csv(small / "events.csv", csv.DictReader)
    assert len(events) == PER_CLASS * len(TOY_CLASSES)
    assert [int(e["clip_index"]) for e in events] == list(range(len(events)))

    rows = read_csv(small / "vggsound" / "vggsound.csv")
    assert all(len(row) == 4 for row in rows) and len(rows) == len(events)
    assert {row[2] for row in rows} == {c.label for c in TOY_CLASSES}  # "cyan cross, bell" survives intact
    for row, event in zip(rows, events, strict=True):
        assert YTID.match(row[0]) and event["clip_id"].startswith(f"{row[0]}_{int(row[1]) * 1000}_")
        assert row[3] == ("test" if event["split"] == "test" else "train")

    def lines(name: str) -> list[str]:
        return (small / name).read_text().splitlines()

    by_split = {s: [e for e in events if e["split"] == s] for s in ("train", "valid", "test")}
    assert len(by_split["test"]) == len(TOY_CLASSES)
    for split, members in by_split.items():
        assert lines(f"vggsound/vggsound_{split}.txt") == [e["clip_id"] for e in members]
        assert len(lines(f"vegas/{split}.txt")) == len(members)
    assert len(lines("vas/vas_train.txt")) == len(by_split["train"])
    assert len(lines("vas/vas_valid.txt")) == len(by_split["valid"]) + len(by_split["test"])
    assert len({e["clip_id"] for e in events}) == len(events)

    for entry in lines("vas/vas_train.txt") + lines("vas/vas_valid.txt"):
        slug, stem = entry.split("/")
        vas, vegas = small / "vas" / "videos" / f"{entry}.mp4", small / "vegas" / f"{entry}.mp4"
        assert re.fullmatch(r"video_\d{5}", stem) and vas.is_file() and vegas.is_file()
        assert vas.read_bytes() == vegas.read_bytes()
        event = events[int(stem[6:])]
        assert TOY_CLASSES[[c.slug for c in TOY_CLASSES].index(slug)].label == event["label"]
        assert vas.read_bytes() == (small / "vggsound" / "video" / f"{event['clip_id']}.mp4").read_bytes()
    for c in TOY_CLASSES:
        # One test clip per class here, with 2-4 events: one image per event.
        names = sorted(p.name for p in (small / "imagehear" / c.slug).glob("*.jpg"))
        assert 2 <= len(names) <= 4 and names == [f"{n:02d}.jpg" for n in range(len(names))]


def test_media_files_decode(small):
    events = read_csv(small / "events.csv", csv.DictReader)
    for event in events:
        index, duration = int(event["clip_index"]), float(event["duration"])
        rate, channels = (44100 if index % 2 == 0 else 48000), (2 if index % 3 == 0 else 1)
        with av.open(str(small / "vggsound" / "video" / f"{event['clip_id']}.mp4")) as container:
            (video,), (audio,) = container.streams.video, container.streams.audio
            assert video.codec_context.name == "h264" and video.average_rate == FPS
            assert (video.width, video.height) == (96, 96)
            assert audio.codec_context.name == "aac" and audio.codec_context.sample_rate == rate
            assert audio.codec_context.channels == channels
            assert abs(container.duration / 1e6 - duration) <= 0.1
            assert sum(1 for _ in container.decode(video=0)) == round(duration * FPS)
            container.seek(0)
            # All audio was flushed out of the encoder: at most one AAC frame (1024 samples) of end padding.
            n_samples = sum(frame.samples for frame in container.decode(audio=0))
            assert 0 <= n_samples - round(duration * rate) < 1024
        wave, sr = sf.read(small / "vggsound" / "audio" / f"{event['clip_id']}.wav", always_2d=True)
        assert sr == rate and wave.shape == (round(duration * rate), channels)
        assert sf.info(small / "vggsound" / "audio" / f"{event['clip_id']}.wav").subtype == "PCM_16"
    for image in (small / "imagehear").rglob("*.jpg"):
        with av.open(str(image)) as container:
            assert next(container.decode(video=0)).to_ndarray(format="rgb24").shape == (96, 96, 3)


def test_repo_indexes_list_it(small):
    n = len(TOY_CLASSES)
    counts = {"train": 2 * n, "valid": n, "test": n}
    for index in (VGGSoundIndex(small / "vggsound"), VGGSoundIndex(small / "vggsound", media_dir="audio")):
        assert {s: len(index.records(s)) for s in counts} == counts and len(index.report) == 0
        assert index.labels == sorted(c.label for c in TOY_CLASSES)
    vegas = VEGASIndex(small / "vegas")
    assert {s: len(vegas.records(s)) for s in counts} == counts and len(vegas.report) == 0
    vas = VASIndex(small / "vas")
    assert {s: len(vas.records(s)) for s in counts} == {"train": 2 * n, "valid": 2 * n, "test": 0}
    assert len(vas.report) == 0 and vas.labels == vegas.labels == sorted(c.slug for c in TOY_CLASSES)
    assert len(ImageHearIndex(small / "imagehear").records("test")) >= 2 * n


def test_repo_readers_load_it(small):
    event = read_csv(small / "events.csv", csv.DictReader)[6]  # a 1.6 s stereo 44.1 kHz clip
    mp4 = small / "vggsound" / "video" / f"{event['clip_id']}.mp4"
    assert load_video(mp4, fps=FPS).shape == (40, 3, 96, 96)
    from_mp4 = load_audio(mp4, sr=22050, duration=2.0, loop=True)
    from_wav = load_audio(small / "vggsound" / "audio" / f"{event['clip_id']}.wav", sr=22050, duration=1.6)
    assert from_mp4.shape == (44100,) and from_wav.shape == (35280,)
    # peak 0.7 as written; lossy AAC may overshoot a sharp attack a little, but nothing clips
    assert 0.5 < from_mp4.abs().max() < 0.95 and 0.5 < from_wav.abs().max() < 0.8


def test_encoded_clips_stay_in_sync(small):
    # H.264 and AAC (encoder delay, priming) must not move the events: check the decoded mp4s themselves.
    events = read_csv(small / "events.csv", csv.DictReader)
    for event in events[:: len(TOY_CLASSES) - 1]:
        onsets = [float(o) for o in event["onsets"].split()]
        frames, audio, sr = decode_mp4(small / "vggsound" / "video" / f"{event['clip_id']}.mp4")
        assert appearing_frames(frames) == event_frames(onsets)
        for onset in onsets:
            assert abs(rise_time(audio.mean(axis=0), sr, onset) - onset) <= 0.010


def test_complete_dataset_is_left_alone(small, capsys):
    before = {p: p.stat().st_mtime_ns for p in small.rglob("*")}
    assert generate_toy_dataset(small, seed=0, **SMALL) == small
    assert {p: p.stat().st_mtime_ns for p in small.rglob("*")} == before
    assert capsys.readouterr().out == ""


def test_generation_is_reproducible_and_repairs_itself(small, tmp_path):
    again = generate_toy_dataset(tmp_path / "again", seed=0, **SMALL)
    assert tree_digest(again) == tree_digest(small)
    # A killed run: no .complete, a truncated file, and clips left over from a larger run.
    (again / ".complete").unlink()
    clip_id = (again / "vggsound" / "vggsound_test.txt").read_text().split()[0]
    (again / "vggsound" / "video" / f"{clip_id}.mp4").write_bytes(b"")
    (again / "vegas" / "red_circle" / "video_99999.mp4").write_bytes(b"stale")
    generate_toy_dataset(again, seed=0, **SMALL)
    assert tree_digest(again) == tree_digest(small)


def test_cli_and_overwrite(tmp_path, capsys):
    out = tmp_path / "cli"
    main(
        ["--out", str(out), "--seed", "1", "--train", "1", "--valid", "0", "--test", "0", "--extra-test", "0"]
    )
    assert "6 clips" in capsys.readouterr().out
    assert len((out / "vggsound" / "vggsound.csv").read_text().splitlines()) == 6
    assert not list((out / "imagehear").glob("*/*.jpg")) and (out / ".complete").is_file()
    main(["--out", str(out), "--seed", "2", "--train", "1", "--valid", "0", "--test", "1", "--extra-test", "1",
          "--overwrite"])  # fmt: skip
    assert len((out / "vggsound" / "vggsound.csv").read_text().splitlines()) == 18
    assert "seed=2" in (out / ".complete").read_text() and "extra_test=1" in (out / ".complete").read_text()


def test_foreign_folder_is_not_cleared(tmp_path):
    # Without the generator's marker a folder may hold someone's real data: regenerate beside it, delete nothing.
    mine = tmp_path / "data" / "vggsound" / "video" / "real_clip.mp4"
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b"real")
    generate_toy_dataset(tmp_path / "data", n_train=1, n_valid=0, n_test=0)
    assert mine.read_bytes() == b"real"


def test_extra_test_clips_leave_every_other_clip_unchanged(small, tmp_path):
    grown = generate_toy_dataset(tmp_path / "grown", seed=0, **SMALL, n_extra_test=2)
    before, after = tree_digest(small), tree_digest(grown)
    media = [name for name in before if name.endswith((".mp4", ".wav", ".jpg"))]
    assert media and all(after[name] == before[name] for name in media)  # every earlier clip, byte for byte
    events = read_csv(small / "events.csv", csv.DictReader)
    grown_events = read_csv(grown / "events.csv", csv.DictReader)
    assert grown_events[: len(events)] == events  # same indexes, ids, splits and onsets
    extra = grown_events[len(events) :]
    assert len(extra) == 2 * len(TOY_CLASSES) and {e["split"] for e in extra} == {"test"}
    assert [e["label"] for e in extra] == [c.label for c in TOY_CLASSES for _ in range(2)]
    for split in ("train", "valid", "test"):
        lines = (small / "vggsound" / f"vggsound_{split}.txt").read_text().splitlines()
        grown_lines = (grown / "vggsound" / f"vggsound_{split}.txt").read_text().splitlines()
        assert grown_lines[: len(lines)] == lines and len(grown_lines) == len(lines) + (
            len(extra) if split == "test" else 0
        )


def test_a_dataset_made_otherwise_is_regenerated(small, tmp_path, capsys):
    again = generate_toy_dataset(tmp_path / "again", seed=0, **SMALL)
    stamp = (again / ".complete").read_text()
    capsys.readouterr()
    # the stamp of an older generator version (the layout before the extra test clips had no hash)
    for stale in ("seed=0 train=2 valid=1 test=1\n", stamp.replace("generator=", "generator=0")):
        (again / ".complete").write_text(stale)
        generate_toy_dataset(again, seed=0, **SMALL)
        assert "toy dataset:" in capsys.readouterr().out  # regenerated, not reused
        assert (again / ".complete").read_text() == stamp and tree_digest(again) == tree_digest(small)
    generate_toy_dataset(again, seed=0, **SMALL, n_extra_test=1)  # other sizes: regenerated as asked
    assert len(read_csv(again / "events.csv", csv.DictReader)) == PER_CLASS * len(TOY_CLASSES) + len(
        TOY_CLASSES
    )
