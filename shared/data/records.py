"""Clip records and the skip report that every dataset reader and preparation step shares."""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path

from shared.files import atomic_path

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class ClipRecord:
    """One item of a dataset.

    path: the media file (mp4/wav/jpg); label: the dataset's class name; label_id: its index in the
    dataset's sorted label list; split: train, valid or test; clip_id: unique within the dataset, and the
    name its cached features are stored under (VGGSound `<ytid>_<start_ms>_<end_ms>`, VAS `<class>/video_XXXXX`).
    """

    path: Path
    label: str
    label_id: int
    split: str
    clip_id: str


class SkipReport:
    """Bad clips, each with the reason, so a run can skip them and say so instead of stopping or hiding them."""

    def __init__(self, name: str):
        self.name = name
        self.rows: list[tuple[str, str, str]] = []

    def add(self, clip_id: str, path: str | Path, reason: str) -> None:
        self.rows.append((clip_id, str(path), reason))
        log.debug("%s: skipping %s (%s): %s", self.name, clip_id, path, reason)

    def extend(self, other: SkipReport) -> None:
        self.rows.extend(other.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def write(self, path: str | Path) -> Path:
        """Write the report as TSV (clip_id, path, reason); an empty report still writes its header."""
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.writer(f, delimiter="\t")
            writer.writerow(["clip_id", "path", "reason"])
            writer.writerows(self.rows)
        return Path(path)

    def summary(self, total: int, report_path: str | Path | None = None) -> str:
        where = f" (reasons in {report_path})" if report_path and self.rows else ""
        return f"{self.name}: skipped {len(self.rows)} of {total} clips{where}"
