"""The downstream classification datasets of WavBriVL's Table 1 (arXiv:2303.04585, sec. 4), with their folds.

- ESC-50 (Piczak 2015; `karolpiczak/ESC-50`): `meta/esc50.csv` with columns `filename, fold, target, category,
  ...` (folds 1-5, 2,000 5-s clips, 50 classes, class id `target`), the clips in `audio/`;
- UrbanSound8K (Salamon et al. 2014): `metadata/UrbanSound8K.csv` with columns `slice_file_name, fsID, start,
  end, salience, fold, classID, class` (folds 1-10, 8,732 clips of at most 4 s, 10 classes), the clips in
  `audio/fold<k>/`;
- VGGSound (any `shared.data.indexes.VGGSoundIndex`, the toy set included): the fold `test` is the test split,
  the fold `train` everything else (train and, where there is one, valid).

Each clip is a `FoldClip`; the classes are numbered as the datasets number them (`target`, `classID`; VGGSound:
the position in the sorted label list). `FoldedAudioDataModule` decodes every clip whole at 16 kHz (mono,
torchaudio's resampler) for the probes, which embed all folds once and then train per fold.
Rows of the CSV whose file is missing are skipped and listed in the reader's `report` (a partial download
still runs and says how much is missing).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from shared.audio.io import load_audio
from shared.data.indexes import DatasetIndex
from shared.data.records import SkipReport
from shared.runs import UserError

SAMPLE_RATE = 16_000


@dataclass(frozen=True)
class FoldClip:
    """One clip of a folded dataset: `fold` is the dataset's own fold name ("1".."5", "train" / "test")."""

    path: Path
    label: str
    label_id: int
    fold: str
    clip_id: str


class FoldedCSV:
    """Base of the CSV-described datasets: `clips` (on disk), `labels` (by class id), `folds`, `report`."""

    name = "dataset"
    csv_path = ""
    columns: ClassVar[dict[str, str]] = {}  # our field -> the CSV's column: file, fold, label_id, label

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.report = SkipReport(self.name)
        self.clips, self.labels = self._scan()
        self.folds = sorted({c.fold for c in self.clips}, key=lambda f: (len(f), f))

    def audio_path(self, row: dict[str, str]) -> Path:
        raise NotImplementedError

    def _scan(self) -> tuple[list[FoldClip], list[str]]:
        path = self.root / self.csv_path
        if not path.is_file():
            raise UserError(
                f"{path}: {self.name} metadata CSV not found (expected {self.csv_path} under the root)"
            )
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        missing = [c for c in self.columns.values() if rows and c not in rows[0]]
        if not rows or missing:
            raise UserError(
                f"{path}: expected a header with columns {sorted(self.columns.values())}, missing {missing}"
            )
        names: dict[int, str] = {}
        clips = []
        for line, row in enumerate(rows, 2):
            try:
                label_id = int(row[self.columns["label_id"]])
                fold = str(int(row[self.columns["fold"]]))
            except ValueError as error:
                raise UserError(f"{path}:{line}: fold and class id must be integers ({error})") from error
            label = row[self.columns["label"]]
            if names.setdefault(label_id, label) != label:
                raise UserError(
                    f"{path}:{line}: class id {label_id} is both {names[label_id]!r} and {label!r}"
                )
            audio = self.audio_path(row)
            if not audio.is_file():
                self.report.add(audio.stem, audio, "listed in the CSV but not on disk")
                continue
            clips.append(FoldClip(audio, label, label_id, fold, audio.stem))
        if sorted(names) != list(range(len(names))):
            raise UserError(f"{path}: class ids must be 0..{len(names) - 1}, found {sorted(names)}")
        if not clips:
            raise UserError(f"{self.root}: none of the {len(rows)} clips of {path.name} is on disk")
        return clips, [names[i] for i in range(len(names))]


class ESC50(FoldedCSV):
    name = "esc50"
    csv_path = "meta/esc50.csv"
    columns: ClassVar[dict[str, str]] = {
        "file": "filename",
        "fold": "fold",
        "label_id": "target",
        "label": "category",
    }

    def audio_path(self, row: dict[str, str]) -> Path:
        return self.root / "audio" / row["filename"]


class UrbanSound8K(FoldedCSV):
    name = "urbansound8k"
    csv_path = "metadata/UrbanSound8K.csv"
    columns: ClassVar[dict[str, str]] = {
        "file": "slice_file_name",
        "fold": "fold",
        "label_id": "classID",
        "label": "class",
    }

    def audio_path(self, row: dict[str, str]) -> Path:
        return self.root / "audio" / f"fold{int(row['fold'])}" / row["slice_file_name"]


class VGGSoundFolds:
    """A VGGSound index's clips as two folds: `test` (its test split) and `train` (all other clips)."""

    name = "vggsound"

    def __init__(self, index: DatasetIndex):
        self.report = index.report
        self.labels = index.labels
        self.clips = [
            FoldClip(r.path, r.label, r.label_id, "test" if r.split == "test" else "train", r.clip_id)
            for r in index.all_records
        ]
        self.folds = ["train", "test"]


FOLDED_DATASETS = {"esc50": ESC50, "urbansound8k": UrbanSound8K}


class FoldClipAudio(Dataset):
    """Items {"wave": [T] float32 at `sample_rate`, "label": int, "fold": str, "clip_id": str}, the whole clip."""

    def __init__(self, clips: list[FoldClip], sample_rate: int = SAMPLE_RATE):
        self.clips, self.sample_rate = clips, sample_rate

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> dict:
        clip = self.clips[i]
        return {
            "wave": load_audio(clip.path, self.sample_rate),
            "label": clip.label_id,
            "fold": clip.fold,
            "clip_id": clip.clip_id,
        }


def collate_padded(items: list[dict]) -> dict:
    """Waves zero-padded at the end to the longest: `wave` [B, T], `lengths` [B] int64 (valid samples)."""
    lengths = torch.tensor([len(item["wave"]) for item in items], dtype=torch.long)
    wave = torch.zeros(len(items), int(lengths.max()))
    for row, item in enumerate(items):
        wave[row, : len(item["wave"])] = item["wave"]
    return {
        "wave": wave,
        "lengths": lengths,
        "label": torch.tensor([item["label"] for item in items], dtype=torch.long),
        "fold": [item["fold"] for item in items],
        "clip_id": [item["clip_id"] for item in items],
    }


class FoldedAudioDataModule(LightningDataModule):
    """Every clip of a folded dataset, for embedding: `predict_dataloader()` in dataset order.

    `dataset`: "esc50" or "urbansound8k" with `root` its release folder, or a `VGGSoundFolds`/`FoldedCSV`
    already built. Batch keys: `wave` [B, T] float32 at 16 kHz (zero-padded), `lengths` [B] int64, `label` [B]
    int64 (the dataset's class id), `fold` list of B str, `clip_id` list of B str.
    """

    def __init__(
        self,
        dataset: str | FoldedCSV | VGGSoundFolds,
        root: str | None = None,
        batch_size: int = 32,
        num_workers: int = 0,
        sample_rate: int = SAMPLE_RATE,
    ):
        super().__init__()
        if isinstance(dataset, str):
            if dataset not in FOLDED_DATASETS:
                raise UserError(f"unknown folded dataset {dataset!r}; known: {sorted(FOLDED_DATASETS)}")
            if root is None:
                raise UserError(f"{dataset}: give the dataset's root folder")
            dataset = FOLDED_DATASETS[dataset](root)
        self.folded = dataset
        self.batch_size, self.num_workers, self.sample_rate = batch_size, num_workers, sample_rate

    @property
    def labels(self) -> list[str]:
        return self.folded.labels

    @property
    def folds(self) -> list[str]:
        return self.folded.folds

    def predict_dataloader(self) -> DataLoader:
        return DataLoader(
            FoldClipAudio(self.folded.clips, self.sample_rate),
            batch_size=self.batch_size,
            shuffle=False,
            num_workers=self.num_workers,
            collate_fn=collate_padded,
        )
