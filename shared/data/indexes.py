"""Dataset indexes: VGGSound, VAS, ImageHear and VEGAS laid out as their official releases are.

An index only lists clips (path, label, split, id); decoding and features happen elsewhere. Clips named
by a split list or CSV but missing on disk are skipped and written to the index's `report`, so a partial
download still trains and says how much is missing. Label ids are positions in the sorted label list,
as the official SpecVQGAN and VAS code number them.
"""

from __future__ import annotations

import csv
from functools import cached_property
from pathlib import Path

from shared.data.records import SPLITS, ClipRecord, SkipReport

VIDEO_SUFFIXES = {".mp4", ".mkv", ".webm", ".avi", ".mov"}
AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".mp3", ".m4a"}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}


def _read_list(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


class DatasetIndex:
    """Base: subclasses implement `_scan()` returning (every usable record, the dataset's sorted labels);
    listed clips that are missing go to `self.report`."""

    name = "dataset"

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.report = SkipReport(self.name)

    def _scan(self) -> tuple[list[ClipRecord], list[str]]:
        raise NotImplementedError

    @cached_property
    def _scanned(self) -> tuple[list[ClipRecord], list[str]]:
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.root}: {self.name} root folder does not exist")
        return self._scan()

    @property
    def all_records(self) -> list[ClipRecord]:
        return self._scanned[0]

    @property
    def labels(self) -> list[str]:
        """All class names, sorted; a label's id is its position here (even if no clip of it is on disk)."""
        return self._scanned[1]

    def records(self, split: str | None = None) -> list[ClipRecord]:
        if split is not None and split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
        return [r for r in self.all_records if split is None or r.split == split]

    def identity(self) -> dict[str, str]:
        """What determines this index's clips: its class and every path it reads, resolved."""
        paths = {k: str(Path(v).resolve()) for k, v in vars(self).items() if isinstance(v, Path)}
        return {"index": type(self).__name__, **paths}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={str(v)!r}" for k, v in vars(self).items() if k not in ("report", "_scanned"))
        return f"{type(self).__name__}({args})"


class VGGSoundIndex(DatasetIndex):
    """VGGSound (Chen et al., 2020).

    `csv_file`: the official CSV, rows `ytid,start_seconds,label,split` without a header (split is train
    or test). Clips are files `<ytid>_<start_ms>_<end_ms>.<ext>` in `media_dir` (video or audio).
    `split_dir`: folder with SpecVQGAN's lists `vggsound_{train,valid,test}.txt` (one clip name a line),
    which carve a validation split out of the official train split; without them the CSV split is used.
    """

    name = "vggsound"

    def __init__(
        self,
        root: str | Path,
        csv_file: str = "vggsound.csv",
        media_dir: str = "video",
        split_dir: str | None = ".",
    ):
        super().__init__(root)
        self.csv_file = self.root / csv_file
        self.media_dir = self.root / media_dir
        self.split_dir = self.root / split_dir if split_dir is not None else None

    def _media_files(self) -> dict[tuple[str, int], Path]:
        if not self.media_dir.is_dir():
            raise FileNotFoundError(f"{self.media_dir}: VGGSound media folder does not exist")
        files = {}
        for path in self.media_dir.iterdir():
            if path.suffix.lower() not in VIDEO_SUFFIXES | AUDIO_SUFFIXES:
                continue
            parts = path.stem.rsplit("_", 2)
            if len(parts) == 3 and parts[1].isdigit():
                files[(parts[0], int(parts[1]))] = path
        return files

    def _split_lists(self) -> dict[str, str]:
        if self.split_dir is None:
            return {}
        split_of = {}
        for split in SPLITS:
            path = self.split_dir / f"vggsound_{split}.txt"
            if path.is_file():
                split_of.update(dict.fromkeys(_read_list(path), split))
        return split_of

    def _scan(self) -> tuple[list[ClipRecord], list[str]]:
        if not self.csv_file.is_file():
            raise FileNotFoundError(f"{self.csv_file}: VGGSound CSV not found")
        with open(self.csv_file, newline="") as f:
            rows = [row for row in csv.reader(f) if row]
        for line, row in enumerate(rows, 1):
            if len(row) != 4 or not row[1].strip().isdigit():
                raise ValueError(f"{self.csv_file}:{line}: expected `ytid,start_seconds,label,split`, got {row}")
        labels = sorted({row[2] for row in rows})
        label_id = {label: i for i, label in enumerate(labels)}
        files = self._media_files()
        split_of = self._split_lists()
        records = []
        for ytid, start, label, csv_split in rows:
            key = (ytid, int(start) * 1000)
            path = files.get(key)
            clip_id = path.stem if path else f"{ytid}_{key[1]}"
            if path is None:
                self.report.add(clip_id, self.media_dir, "no media file for this CSV row")
                continue
            split = split_of.get(clip_id, csv_split) if split_of else csv_split
            if split_of and clip_id not in split_of:
                continue  # SpecVQGAN's lists leave some official clips out on purpose
            records.append(ClipRecord(path, label, label_id[label], split, clip_id))
        return records, labels


class VASIndex(DatasetIndex):
    """VAS (Zhou et al., 2018) as SpecVQGAN uses it: `<root>/videos/<class>/video_XXXXX.mp4` (or
    `<root>/<class>/...`), split lists `vas_train.txt` / `vas_valid.txt` of `<class>/video_XXXXX` lines.

    VAS has no test split (evaluation uses valid). Without split lists, the official rule applies: the
    last 128 sorted clips of dog, fireworks, baby and drum and the last 64 of the other classes are valid.
    """

    name = "vas"
    LARGE_CLASSES = ("dog", "fireworks", "baby", "drum")

    def __init__(self, root: str | Path, split_dir: str | None = "."):
        super().__init__(root)
        self.split_dir = self.root / split_dir if split_dir is not None else None

    @property
    def video_root(self) -> Path:
        return self.root / "videos" if (self.root / "videos").is_dir() else self.root

    def _videos(self) -> dict[str, Path]:
        return {
            f"{path.parent.name}/{path.stem}": path
            for cls_dir in sorted(p for p in self.video_root.iterdir() if p.is_dir())
            for path in sorted(cls_dir.iterdir())
            if path.suffix.lower() in VIDEO_SUFFIXES
        }

    def _official_split(self, clip_ids: list[str]) -> dict[str, str]:
        split_of = {}
        for cls in sorted({c.split("/")[0] for c in clip_ids}):
            ids = sorted(c for c in clip_ids if c.startswith(cls + "/"))
            n_valid = 128 if cls in self.LARGE_CLASSES else 64
            for i, clip_id in enumerate(ids):
                split_of[clip_id] = "valid" if i >= len(ids) - n_valid else "train"
        return split_of

    def _scan(self) -> tuple[list[ClipRecord], list[str]]:
        videos = self._videos()
        lists = {
            split: self.split_dir / f"vas_{split}.txt"
            for split in ("train", "valid")
            if self.split_dir is not None and (self.split_dir / f"vas_{split}.txt").is_file()
        }
        if lists:
            split_of = {clip_id: s for s, path in lists.items() for clip_id in _read_list(path)}
        else:
            split_of = self._official_split(list(videos))
        labels = sorted({clip_id.split("/")[0] for clip_id in split_of})
        records = []
        for clip_id, split in split_of.items():
            label = clip_id.split("/")[0]
            if clip_id not in videos:
                self.report.add(clip_id, self.video_root / f"{clip_id}.mp4", "listed in a split file but missing")
                continue
            records.append(ClipRecord(videos[clip_id], label, labels.index(label), split, clip_id))
        return records, labels


def _class_folders(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_dir())


def _class_folder_records(
    root: Path, suffixes: set[str], split_of: dict[str, str] | None, default_split: str
) -> list[ClipRecord]:
    classes = _class_folders(root)
    records = []
    for label_id, cls in enumerate(classes):
        for path in sorted((root / cls).rglob("*")):
            if path.suffix.lower() not in suffixes:
                continue
            clip_id = f"{cls}/{path.stem}"
            split = split_of.get(clip_id) if split_of else default_split
            if split is not None:
                records.append(ClipRecord(path, cls, label_id, split, clip_id))
    return records


class ImageHearIndex(DatasetIndex):
    """ImageHear (Sheffer & Adi, 2023): class folders of images, `<root>/<class>/<name>.jpg`.

    An evaluation-only set (each image is used as a still clip), so every record is in the test split.
    """

    name = "imagehear"

    def _scan(self) -> tuple[list[ClipRecord], list[str]]:
        return _class_folder_records(self.root, IMAGE_SUFFIXES, None, "test"), _class_folders(self.root)


class VEGASIndex(DatasetIndex):
    """VEGAS (Zhou et al., 2018): class folders of videos, `<root>/<class>/**/<name>.mp4`.

    Split lists `train.txt`, `valid.txt`, `test.txt` of `<class>/<name>` lines are used when present;
    otherwise, per class in sorted order, the last 10 % of clips are test and the 10 % before them valid.
    """

    name = "vegas"

    def _scan(self) -> tuple[list[ClipRecord], list[str]]:
        lists = {s: self.root / f"{s}.txt" for s in SPLITS if (self.root / f"{s}.txt").is_file()}
        if lists:
            split_of = {clip_id: s for s, path in lists.items() for clip_id in _read_list(path)}
            records = _class_folder_records(self.root, VIDEO_SUFFIXES, split_of, "train")
            found = {r.clip_id for r in records}
            for clip_id in sorted(set(split_of) - found):
                self.report.add(clip_id, self.root / clip_id, "listed in a split file but missing")
            return records, _class_folders(self.root)
        records = _class_folder_records(self.root, VIDEO_SUFFIXES, None, "train")
        by_class: dict[str, list[ClipRecord]] = {}
        for r in records:
            by_class.setdefault(r.label, []).append(r)
        out = []
        for clips in by_class.values():
            n_held = max(1, len(clips) // 10) if len(clips) >= 3 else 0
            for i, r in enumerate(clips):
                split = "test" if i >= len(clips) - n_held else "valid" if i >= len(clips) - 2 * n_held else "train"
                out.append(ClipRecord(r.path, r.label, r.label_id, split, r.clip_id))
        return out, _class_folders(self.root)
