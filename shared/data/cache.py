"""On-disk feature caches and the preparation loop that fills them.

Each cache is a folder named after the feature and a hash of every parameter that made it
(`<root>/<name>-<hash>/`, with the parameters in `params.json`), so a changed parameter means a new
cache, never a silent reuse. Features are written atomically, one `.npy` per clip: a killed preparation
keeps every finished clip and the re-run computes only the rest. Clips that fail are skipped and
reported, never dropped silently. A feature older than its source file counts as missing, so replacing a
clip (or regenerating the toy set) recomputes it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import multiprocessing
import os
import pickle
import queue
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from shared.data.records import ClipRecord, SkipReport
from shared.files import atomic_path
from shared.media import MediaError

log = logging.getLogger(__name__)

# seconds of work left for this process below which preparation starts no worker: about what a worker
# takes to start (a fresh interpreter that imports torch) on a machine whose cores are free
WORKER_START_S = 5.0


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


def _prepare_one(
    compute: Callable[[ClipRecord], np.ndarray], cache: FeatureCache, record: ClipRecord
) -> str | None:
    """Compute and store one clip's feature; return why it could not be computed (for the skip report), or None."""
    try:
        feature = compute(record)
    except (MediaError, FileNotFoundError, ValueError, RuntimeError) as err:
        return str(err)
    cache.save(record.clip_id, feature)
    return None


def prepare_features(
    records: Sequence[ClipRecord],
    cache: FeatureCache,
    compute: Callable[[ClipRecord], np.ndarray],
    report: SkipReport,
    workers: int = 0,
    desc: str = "features",
) -> list[ClipRecord]:
    """Compute the features of every record not yet in `cache`; return the records that have features.

    This process computes clips, and so do up to `workers` more processes (`compute` must then be
    picklable: a module-level function or a small class instance) once the clips left would keep this
    process busy for more than `WORKER_START_S`. Each process takes the next clip when it is ready and
    writes its feature itself, so this process never waits for a worker to start.

    Each process runs `compute.threads` torch threads where the feature names a number (per-clip work made
    of small operations, where a thread pool's wake-ups cost more than the threads give), else its share
    of the cores.
    """
    todo = [r for r in records if not cache.has(r.clip_id, r.path)]
    failed: set[str] = set()
    if todo:
        log.info("%s: computing %d of %d clips into %s", desc, len(todo), len(records), cache.dir)
        workers = max(0, min(workers, len(todo) - 1))
        threads = getattr(compute, "threads", None) or max(1, torch.get_num_threads() // (workers + 1))
        with (
            torch_threads(threads),
            _ClipPool(compute, cache, todo, workers, threads) as pool,
            tqdm(total=len(todo), desc=desc) as progress,
        ):
            for record, reason in pool.results():
                if reason is not None:
                    report.add(record.clip_id, record.path, reason)
                    failed.add(record.clip_id)
                progress.update()
    return [r for r in records if r.clip_id not in failed]


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """`threads` torch threads inside the block, the number before it after (preparation may run inside a
    training process)."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _take(next_clip, count: int) -> int | None:
    """The index of the next clip nobody has taken yet, or None when all are taken."""
    with next_clip.get_lock():
        index = next_clip.value
        if index >= count:
            return None
        next_clip.value = index + 1
    return index


def _work(payload: str, next_clip, done) -> None:
    """A worker process: take clips until none are left, reporting (index, failure or None) for each."""
    with open(payload, "rb") as f:
        compute, cache, todo, threads = pickle.load(f)
    torch.set_num_threads(threads)
    while (index := _take(next_clip, len(todo))) is not None:
        done.put((index, _prepare_one(compute, cache, todo[index])))


class _ClipPool:
    """This process and up to `workers` spawned ones computing `todo`, each taking the next clip when ready.

    The workers start only once the clips left would keep this process busy for longer than a worker
    takes to start (`WORKER_START_S`: it imports torch), so a short job never pays for a pool. Spawned,
    not forked: a forked child of a process whose torch thread pool has run can deadlock. The feature and
    the clip list reach the workers in a file, not as arguments of the process: a spawned child reads its
    arguments only once it has imported what they need, and `start()` would wait for that.
    """

    def __init__(self, compute, cache: FeatureCache, todo: list[ClipRecord], workers: int, threads: int):
        self.compute, self.cache, self.todo, self.threads = compute, cache, todo, threads
        self.context = multiprocessing.get_context("spawn")
        self.next_clip = self.context.Value("q", 0)
        self.done = self.context.Queue()
        self.worker_count = workers
        self.workers: list[multiprocessing.Process] = []
        self.payload: Path | None = None

    def _start_workers(self) -> None:
        fd, payload = tempfile.mkstemp(prefix="avgen-prepare-", suffix=".pickle")
        self.payload = Path(payload)
        with os.fdopen(fd, "wb") as f:
            pickle.dump((self.compute, self.cache, self.todo, self.threads), f)
        args = (payload, self.next_clip, self.done)
        self.workers = [
            self.context.Process(target=_work, args=args, daemon=True) for _ in range(self.worker_count)
        ]
        for worker in self.workers:
            worker.start()

    def results(self) -> Iterator[tuple[ClipRecord, str | None]]:
        """(record, why it failed or None) for every clip, in the order they finish."""
        waiting = len(self.todo)
        while (index := _take(self.next_clip, len(self.todo))) is not None:
            began = time.perf_counter()
            reason = _prepare_one(self.compute, self.cache, self.todo[index])
            left_seconds = (len(self.todo) - index - 1) * (time.perf_counter() - began)
            if self.worker_count and not self.workers and left_seconds > WORKER_START_S:
                self._start_workers()
            yield self.todo[index], reason
            waiting -= 1
            for index, reason in self._finished(block=False):
                yield self.todo[index], reason
                waiting -= 1
        while waiting:
            for index, reason in self._finished(block=True):
                yield self.todo[index], reason
                waiting -= 1

    def _finished(self, block: bool) -> Iterator[tuple[int, str | None]]:
        """What workers have finished: everything queued now, or (block) what arrives within a second."""
        try:
            while True:
                yield self.done.get(timeout=1.0) if block else self.done.get_nowait()
                block = False
        except queue.Empty:
            if block and (dead := [w.exitcode for w in self.workers if w.exitcode not in (None, 0)]):
                raise RuntimeError(
                    f"a preparation worker died (exit code {dead[0]}); the features written so far are "
                    "kept: run the same command again to compute the rest"
                ) from None

    def __enter__(self) -> _ClipPool:
        return self

    def __exit__(self, *exc) -> None:
        # every taken clip is written once its result is in, so a worker still running now is still
        # importing, or about to find no clip left
        for worker in self.workers:
            worker.terminate()
        for worker in self.workers:
            worker.join()
        if self.payload is not None:
            self.payload.unlink()
