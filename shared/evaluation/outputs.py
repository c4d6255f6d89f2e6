"""What a project's `evaluate_run` hands the shared evaluation (`RunOutputs`), and what every one of them needs:
the run's DataModule, the evaluated clips of a split, and the runs of the pipeline's other stages."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import Dataset, Subset

from shared.data.records import ClipRecord
from shared.runs import UserError, run_config

DIRECTIONS = ("video->audio", "image->audio", "audio->image")


@dataclass
class RunOutputs:
    """A run's generations on the evaluated clips and its paper's metrics.

    `items`: the generated waveforms [N, T] at `sample_rate` (video/image -> audio) or images [N, 3, H, W] in
    [-1, 1] (audio -> image); `item_ids[i]`: the clip item i was generated for (several items per clip when a
    clip is sampled more than once). `clips`: the evaluated clips in order, whose media files hold the real
    audio and frames the common metrics compare with, and whose `label_id`s index `labels`. `metrics`: the
    paper's metrics as the project computes them, `<name>_lo` / `<name>_hi` beside a metric with a bootstrap
    interval. `settings`: what made the items (sampling settings, the other runs used), for the report.
    """

    direction: str
    checkpoint: Path
    clips: list[ClipRecord]
    labels: list[str]
    item_ids: list[str]
    items: torch.Tensor
    sample_rate: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    settings: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, got {self.direction!r}")
        audio = self.direction.endswith("->audio")
        if audio and (self.items.dim() != 2 or self.sample_rate is None):
            raise ValueError(
                f"generated audio must be [N, T] with a sample rate, got {tuple(self.items.shape)}"
            )
        if not audio and (self.items.dim() != 4 or self.items.shape[1] != 3):
            raise ValueError(f"generated images must be [N, 3, H, W], got {tuple(self.items.shape)}")
        if len(self.item_ids) != len(self.items):
            raise ValueError(
                f"{len(self.items)} generated items need as many clip ids, got {len(self.item_ids)}"
            )
        unknown = set(self.item_ids) - {clip.clip_id for clip in self.clips}
        if unknown:
            raise ValueError(f"items of clips that are not among the evaluated ones: {sorted(unknown)[:3]}")

    @property
    def clip_ids(self) -> list[str]:
        return [clip.clip_id for clip in self.clips]


def run_datamodule(run: str | Path):
    """The run's DataModule as its `config.yaml` builds it (jsonargparse, as the CLI builds it), prepared."""
    from jsonargparse import ArgumentParser
    from lightning.pytorch import LightningDataModule

    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--data", type=LightningDataModule)
    data = run_config(run).get("data")
    if data is None:
        raise UserError(f"{Path(run) / 'config.yaml'}: no `data` section to evaluate on")
    datamodule = parser.instantiate_classes(parser.parse_object({"data": data})).data
    datamodule.prepare_data()
    return datamodule


def evaluation_clips(
    dataset: Dataset, clips_per_class: int | None = None
) -> tuple[Dataset, list[ClipRecord]]:
    """A split's dataset (its `records` in order) and those records, or, with `clips_per_class`, its first that
    many clips of every class in split order (a smaller evaluation that every run of a comparison shares)."""
    records = list(dataset.records)
    if clips_per_class is None:
        return dataset, records
    if clips_per_class < 1:
        raise UserError(f"--clips-per-class must be at least 1, got {clips_per_class}")
    taken: dict[int, int] = {}
    keep = []
    for index, record in enumerate(records):
        if taken.get(record.label_id, 0) < clips_per_class:
            taken[record.label_id] = taken.get(record.label_id, 0) + 1
            keep.append(index)
    return Subset(dataset, keep), [records[i] for i in keep]


def add_melception_options(parser) -> None:
    """`--melception` and `--melception-stats`: the Melception a run's FID/FAD, MKL/KL and IS are computed on (the
    toy one found beside the run by default), or the official one with its statistics file."""
    parser.add_argument(
        "--melception",
        help="the Melception of the paper's metrics (default: <prefix>_melception beside the run)",
    )
    parser.add_argument(
        "--melception-stats", dest="melception_stats", help="the official Melception's statistics file"
    )
