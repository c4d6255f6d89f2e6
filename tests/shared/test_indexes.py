import collections
import csv
import random
from collections import Counter
from pathlib import Path

import pytest

from shared.data import ImageHearIndex, SkipReport, VASIndex, VEGASIndex, VGGSoundIndex
from shared.runs import UserError


def test_vas_index_on_the_real_demo_layout(demo_root):
    index = VASIndex(demo_root / "vas", split_dir="..")
    records = index.records()
    videos = sorted((demo_root / "vas" / "videos").glob("*/*.mp4"))
    assert len(records) == len(videos)
    # labels come from the official split lists: all 8 VAS classes, sorted, even without local sneeze clips
    assert index.labels == ["baby", "cough", "dog", "drum", "fireworks", "gun", "hammer", "sneeze"]
    dog = next(r for r in records if r.clip_id == "dog/video_02677")
    assert dog.label_id == 2 and dog.path.name == "video_02677.mp4"
    n_listed = sum(len((demo_root / f).read_text().splitlines()) for f in ("vas_train.txt", "vas_valid.txt"))
    assert len(index.report) == n_listed - len(videos)  # every listed but missing clip is reported
    assert {r.split for r in records} <= {"train", "valid"}
    assert index.records("test") == []


def test_vas_official_split_rule_without_lists(tmp_path):
    for cls, n in [("dog", 130), ("gun", 70)]:
        for i in range(n):
            path = tmp_path / "videos" / cls / f"video_{i:05d}.mp4"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"x")
    index = VASIndex(tmp_path, split_dir=None)
    valid = index.records("valid")
    assert sum(r.label == "dog" for r in valid) == 128 and sum(r.label == "gun" for r in valid) == 64
    assert {r.clip_id for r in index.records("train")} == {"dog/video_00000", "dog/video_00001"} | {
        f"gun/video_{i:05d}" for i in range(6)
    }


def write_vggsound(root: Path, rows: list[tuple[str, int, str, str]], present: list[int]) -> None:
    (root / "video").mkdir(parents=True)
    with open(root / "vggsound.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)
    for i in present:
        ytid, start = rows[i][0], rows[i][1]
        (root / "video" / f"{ytid}_{start * 1000}_{start * 1000 + 10000}.mp4").write_bytes(b"x")


def test_vggsound_index_reads_the_official_csv_and_split_lists(tmp_path):
    rows = [
        ("--0PQM4-hqg", 30, "dog barking", "train"),
        ("a_b-c_d_e_f", 0, "male speech, man speaking", "train"),
        ("zzzzzzzzzzz", 5, "dog barking", "test"),
        ("missing0001", 1, "cat purring", "train"),
    ]
    write_vggsound(tmp_path, rows, present=[0, 1, 2])
    index = VGGSoundIndex(tmp_path, split_dir=None)
    assert index.labels == ["cat purring", "dog barking", "male speech, man speaking"]
    by_id = {r.clip_id: r for r in index.records()}
    assert set(by_id) == {"--0PQM4-hqg_30000_40000", "a_b-c_d_e_f_0_10000", "zzzzzzzzzzz_5000_15000"}
    assert by_id["a_b-c_d_e_f_0_10000"].label == "male speech, man speaking"
    assert by_id["a_b-c_d_e_f_0_10000"].label_id == 2
    assert by_id["zzzzzzzzzzz_5000_15000"].split == "test"
    assert [row[0] for row in index.report.rows] == ["missing0001_1000"]
    # SpecVQGAN's lists carve valid out of train
    (tmp_path / "vggsound_train.txt").write_text("--0PQM4-hqg_30000_40000\n")
    (tmp_path / "vggsound_valid.txt").write_text("a_b-c_d_e_f_0_10000\n")
    (tmp_path / "vggsound_test.txt").write_text("zzzzzzzzzzz_5000_15000\n")
    listed = VGGSoundIndex(tmp_path)
    assert [r.clip_id for r in listed.records("valid")] == ["a_b-c_d_e_f_0_10000"]
    assert [r.clip_id for r in listed.records("train")] == ["--0PQM4-hqg_30000_40000"]


def official_valid_videos(rows: list[tuple[str, int, str, str]]) -> set[str]:
    """SpecVQGAN's `make_split_files` (`specvqgan/modules/losses/vggishish/dataset.py`) as written there, with
    the one change that makes it reproducible: its set of train videos is sorted before each shuffle."""
    random.seed(1337)
    train_vids = {row[0] for row in rows if row[3] == "train"}
    test_vids = {row[0] for row in rows if row[3] == "test"}
    unique_classes = sorted(list(set(row[2] for row in rows)))
    label2target = {label: target for target, label in enumerate(unique_classes)}
    video2target = {row[0]: label2target[row[2]] for row in rows}
    test_target2count = collections.Counter([video2target[vid] for vid in test_vids])
    valid_vids = set()
    for target, _label in enumerate(label2target.keys()):
        class_train_vids = [vid for vid in sorted(train_vids) if video2target[vid] == target]
        random.shuffle(class_train_vids)
        valid_vids.update(class_train_vids[: test_target2count[target]])
    return valid_vids


def test_vggsound_without_split_lists_regenerates_specvqgan_s_validation_split(tmp_path):
    counts = {"cat purring": (6, 2), "dog barking": (4, 1), "owl hooting": (3, 0)}  # train, test videos
    rows = [
        (f"{label[:3]}{split[:2]}{i:06d}", 10, label, split)
        for label, (n_train, n_test) in counts.items()
        for split, n in (("train", n_train), ("test", n_test))
        for i in range(n)
    ]
    rows.append(("cattr000000", 30, "cat purring", "train"))  # a second clip of a train video
    write_vggsound(tmp_path, rows, present=list(range(len(rows))))
    index = VGGSoundIndex(tmp_path)  # split_dir ".": no lists there
    by_split = {split: index.records(split) for split in ("train", "valid", "test")}
    valid = {r.clip_id.rsplit("_", 2)[0] for r in by_split["valid"]}
    assert valid == official_valid_videos(rows)
    # as many valid videos per class as the class has test videos, drawn from its train videos
    assert Counter(r.label for r in by_split["valid"] if not r.clip_id.endswith("30000_40000")) == {
        "cat purring": 2, "dog barking": 1
    }  # fmt: skip
    assert {r.clip_id for r in by_split["test"]} == {
        f"{row[0]}_10000_20000" for row in rows if row[3] == "test"
    }
    assert len(by_split["train"]) + len(by_split["valid"]) == 6 + 4 + 3 + 1
    # both clips of a video land in the same split; the CSV's row order does not matter
    cat0 = {r.split for r in index.records() if r.clip_id.startswith("cattr000000")}
    assert len(cat0) == 1
    shuffled = tmp_path / "shuffled"
    write_vggsound(shuffled, rows[::-1], present=list(range(len(rows))))
    again = {r.clip_id: r.split for r in VGGSoundIndex(shuffled).records()}
    assert again == {r.clip_id: r.split for r in index.records()}
    # the CSV's own split, without a validation split, when asked for
    assert VGGSoundIndex(tmp_path, split_dir=None).records("valid") == []


def test_vggsound_valid_fraction_cuts_whole_train_videos_deterministically(tmp_path):
    # 40 train videos (the first 5 with a second clip), 6 test videos; only some clips are on disk
    rows = [(f"train{i:06d}", 0, f"class {i % 3}", "train") for i in range(40)]
    rows += [(f"train{i:06d}", 20, f"class {i % 3}", "train") for i in range(5)]
    rows += [(f"test{i:07d}", 0, "class 0", "test") for i in range(6)]
    write_vggsound(tmp_path, rows, present=[*range(0, len(rows), 2), 1, 3])
    split_of = VGGSoundIndex(tmp_path, split_dir=None, valid_fraction=0.1).records()
    again = VGGSoundIndex(tmp_path, split_dir=None, valid_fraction=0.1).records()
    assert [(r.clip_id, r.split) for r in split_of] == [(r.clip_id, r.split) for r in again]
    video_splits = collections.defaultdict(set)
    for r in split_of:
        video_splits[r.clip_id[:11]].add(r.split)
    assert all(len(splits) == 1 for splits in video_splits.values())  # a video's clips stay together
    assert {v for v, s in video_splits.items() if s == {"test"}} == {
        v for v in video_splits if v.startswith("test")
    }
    # the cut is drawn over the CSV's 40 train videos, whatever is on disk: 4 valid among all of them
    full = tmp_path / "full"
    write_vggsound(full, rows, present=list(range(len(rows))))
    full_valid = {
        r.clip_id[:11] for r in VGGSoundIndex(full, split_dir=None, valid_fraction=0.1).records("valid")
    }
    assert len(full_valid) == 4
    assert {v for v, s in video_splits.items() if s == {"valid"}} == full_valid & set(video_splits)
    other_seed = VGGSoundIndex(full, split_dir=None, valid_fraction=0.1, valid_seed=1).records("valid")
    assert {r.clip_id[:11] for r in other_seed} != full_valid
    with pytest.raises(ValueError, match="split_dir=None"):
        VGGSoundIndex(tmp_path, valid_fraction=0.1)


def test_vggsound_with_only_some_split_lists_names_the_missing_ones(tmp_path):
    write_vggsound(tmp_path, [("abcdefghijk", 1, "x", "train")], present=[0])
    (tmp_path / "vggsound_train.txt").write_text("abcdefghijk_1000_11000\n")
    (tmp_path / "vggsound_test.txt").write_text("")
    with pytest.raises(UserError, match=r"but not vggsound_valid.txt; give all three"):
        VGGSoundIndex(tmp_path).records()


def test_vggsound_index_reports_a_malformed_csv_with_its_line(tmp_path):
    write_vggsound(tmp_path, [("abc", 1, "x", "train")], present=[0])
    with open(tmp_path / "vggsound.csv", "a") as f:
        f.write("only,three,fields\n")
    with pytest.raises(ValueError, match=r"vggsound.csv:2: expected"):
        VGGSoundIndex(tmp_path).records()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        VGGSoundIndex(tmp_path / "nowhere").records()


def test_class_folder_datasets(tmp_path):
    for cls in ("bird", "car"):
        for i in range(10):
            (tmp_path / "vegas" / cls / "video").mkdir(parents=True, exist_ok=True)
            (tmp_path / "vegas" / cls / "video" / f"{i:03d}.mp4").write_bytes(b"x")
        (tmp_path / "imagehear" / cls).mkdir(parents=True)
        (tmp_path / "imagehear" / cls / "1.jpg").write_bytes(b"x")
        (tmp_path / "imagehear" / cls / "notes.txt").write_text("not an image")
    images = ImageHearIndex(tmp_path / "imagehear").records()
    assert [(r.clip_id, r.label_id, r.split) for r in images] == [("bird/1", 0, "test"), ("car/1", 1, "test")]
    vegas = VEGASIndex(tmp_path / "vegas")
    assert [r.clip_id for r in vegas.records("test")] == ["bird/009", "car/009"]
    assert [r.clip_id for r in vegas.records("valid")] == ["bird/008", "car/008"]
    assert len(vegas.records("train")) == 16


def test_imagehear_in_im2wav_s_flat_layout_takes_classes_from_the_names(tmp_path):
    for name in ("dog1.jpg", "dog10.jpg", "dog2.jpg", "guitar1.jpg", "readme.txt"):
        (tmp_path / name).write_bytes(b"x")
    index = ImageHearIndex(tmp_path)
    assert index.labels == ["Dog", "Guitar"]  # as Im2Wav's Data/meta.py names them
    assert [(r.clip_id, r.label, r.label_id) for r in index.records()] == [
        ("Dog/dog1", "Dog", 0), ("Dog/dog2", "Dog", 0), ("Dog/dog10", "Dog", 0), ("Guitar/guitar1", "Guitar", 1),
    ]  # fmt: skip
    assert [r.clip_id for r in ImageHearIndex(tmp_path, exclude=["Dog/dog10"]).records()] == [
        "Dog/dog1", "Dog/dog2", "Guitar/guitar1",
    ]  # fmt: skip
    with pytest.raises(ValueError, match="cannot exclude"):
        ImageHearIndex(tmp_path, exclude=["Dog/dog3"]).records()
    (tmp_path / "42.jpg").write_bytes(b"x")
    with pytest.raises(ValueError, match="42.jpg"):
        ImageHearIndex(tmp_path).records()


def test_all_four_readers_load_the_toy_set(toy_root):
    vggsound = VGGSoundIndex(toy_root / "vggsound")
    assert len(vggsound.labels) == 6 and len(vggsound.report) == 0
    assert {s: len(vggsound.records(s)) for s in ("train", "valid", "test")} == {
        "train": 36,
        "valid": 12,
        "test": 12,
    }
    audio = VGGSoundIndex(toy_root / "vggsound", media_dir="audio")
    assert {r.clip_id for r in audio.records()} == {r.clip_id for r in vggsound.records()}
    assert all(r.path.suffix == ".wav" for r in audio.records())
    vas = VASIndex(toy_root / "vas")
    assert len(vas.records("train")) == 36 and len(vas.records("valid")) == 24 and len(vas.report) == 0
    assert vas.labels == sorted(vas.labels) and len(vas.labels) == 6
    vegas = VEGASIndex(toy_root / "vegas")
    assert len(vegas.records()) == 60 and len(vegas.report) == 0
    assert 1 <= len(ImageHearIndex(toy_root / "imagehear").records()) <= 24


def test_skip_report_written_and_summarised(tmp_path):
    report = SkipReport("toy")
    report.add("a/1", tmp_path / "1.mp4", "has no audio stream")
    path = report.write(tmp_path / "report.tsv")
    with open(path) as f:
        rows = list(csv.reader(f, delimiter="\t"))
    assert rows == [["clip_id", "path", "reason"], ["a/1", str(tmp_path / "1.mp4"), "has no audio stream"]]
    assert report.summary(10, path) == f"toy: skipped 1 of 10 clips (reasons in {path})"
