"""What the DataModules of cached clips share: each clip a cached waveform and a cached per-frame feature.

TiVA's and GRAVO's DataModules both read a clip as two feature caches (`shared.data.cache`): the audio
(`wave`, a `WaveFeature`) and the frames (`clip`: a CLIP feature of the project's kind). The mixin gives them
the same cache lookup, preparation, skip report and split of prepared records; each project builds its own
Dataset over them.
"""

from __future__ import annotations

from pathlib import Path

from shared.data.cache import FeatureCache
from shared.data.loaders import split_records
from shared.data.records import ClipRecord
from shared.prepare import feature_cache, prepare_dataset


class CachedClips:
    """Mixin for a DataModule with `dataset` (a `DatasetIndex`), `cache_dir` (Path), `wave` and `clip` (cache
    features) and `prepare_workers`; a DataModule with other cache features overrides `features` (and
    `prepare_data`)."""

    @property
    def n_classes(self) -> int:
        return len(self.dataset.labels)

    @property
    def report_path(self) -> Path:
        return self.cache_dir / f"{self.dataset.name}_skipped.tsv"

    @property
    def features(self) -> dict[str, object]:
        return {"wave": self.wave, self.clip.name: self.clip}

    def cache(self, name: str) -> FeatureCache:
        return feature_cache(self.cache_dir, self.dataset, name, self.features[name])

    def prepare_data(self) -> None:
        prepare_dataset(self.dataset, self.features, self.cache_dir, self.prepare_workers)

    def prepared_split(self, split: str) -> tuple[list[ClipRecord], FeatureCache, FeatureCache]:
        """The split's clips whose both caches are filled, with the two caches; an error when none is."""
        waves, clips = self.cache("wave"), self.cache(self.clip.name)
        available = split_records(self.dataset, split, waves, clips)
        if not available:
            raise RuntimeError(
                f"{self.dataset}: no prepared clips in split {split!r} (see {self.report_path})"
            )
        return available, waves, clips
