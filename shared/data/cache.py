"""On-disk feature caches and the preparation loop that fills them.

Each cache is a folder named after the feature and a hash of every parameter that made it
(`<root>/<name>-<hash>/`, with the parameters in `params.json`), so a changed parameter means a new
cache, never a silent reuse. Features are written atomically, one `.npy` per clip: a killed preparation
keeps every finished clip and the re-run computes only the rest. Clips that fail are skipped and
reported, never dropped silently. A feature older than its source file counts as missing, so replacing a
clip (or regenerating the toy set) recomputes it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

from shared.data.records import ClipRecord, SkipReport
from shared.files import atomic_path
from shared.media import MediaError

log = logging.getLogger(__name__)


class FeatureCache:
    def __init__(self, root: str | Path, name: str, params: dict):
        blob = json.dumps(params, sort_keys=True, default=str)
        self.params = json.loads(blob)
        self.dir = Path(root) / f"{name}-{hashlib.sha1(blob.encode()).hexdigest()[:10]}"
        params_file = self.dir / "params.json"
        if params_file.is_file():
            if json.loads(params_file.read_text()) != self.params:
                raise RuntimeError(f"{params_file}: parameters differ from the ones hashed into its name")
        else:
            with atomic_path(params_file) as tmp:
                tmp.write_text(json.dumps(self.params, indent=2, sort_keys=True))

    def path(self, clip_id: str) -> Path:
        return self.dir / f"{clip_id}.npy"

    def has(self, clip_id: str, source: Path | None = None) -> bool:
        """Whether the feature exists (and, given its source file, is not older than it)."""
        path = self.path(clip_id)
        if not path.is_file():
            return False
        return source is None or not source.exists() or path.stat().st_mtime_ns >= source.stat().st_mtime_ns

    def load(self, clip_id: str) -> np.ndarray:
        return np.load(self.path(clip_id))

    def save(self, clip_id: str, array: np.ndarray) -> None:
        with atomic_path(self.path(clip_id)) as tmp, open(tmp, "wb") as f:
            np.save(f, array)


def _compute_one(compute: Callable[[ClipRecord], np.ndarray], record: ClipRecord) -> np.ndarray | str:
    """The feature, or the reason it could not be computed (a str) for the skip report."""
    try:
        return compute(record)
    except (MediaError, FileNotFoundError, ValueError, RuntimeError) as err:
        return str(err)


def prepare_features(
    records: Sequence[ClipRecord],
    cache: FeatureCache,
    compute: Callable[[ClipRecord], np.ndarray],
    report: SkipReport,
    workers: int = 0,
    desc: str = "features",
) -> list[ClipRecord]:
    """Compute the features of every record not yet in `cache`; return the records that have features.

    `compute` must be picklable when `workers` > 0 (a module-level function or a small class instance).
    """
    todo = [r for r in records if not cache.has(r.clip_id, r.path)]
    failed: set[str] = set()
    if todo:
        log.info("%s: computing %d of %d clips into %s", desc, len(todo), len(records), cache.dir)
        if workers > 0:
            # spawn, not fork: a forked child of a process whose torch thread pool is running can deadlock
            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
                results = pool.map(_compute_one, [compute] * len(todo), todo, chunksize=4)
                outputs = zip(todo, results, strict=True)
                _store(tqdm(outputs, total=len(todo), desc=desc), cache, report, failed)
        else:
            outputs = ((r, _compute_one(compute, r)) for r in todo)
            _store(tqdm(outputs, total=len(todo), desc=desc), cache, report, failed)
    return [r for r in records if r.clip_id not in failed]


def _store(outputs, cache: FeatureCache, report: SkipReport, failed: set[str]) -> None:
    for record, result in outputs:
        if isinstance(result, str):
            report.add(record.clip_id, record.path, result)
            failed.add(record.clip_id)
        else:
            cache.save(record.clip_id, result)
