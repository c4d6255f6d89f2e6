"""Atomic file writes: a killed process never leaves a half-written file under the final name."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Collection, Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is renamed to `path`, on error removed.

    The temporary name (`.<stem>.<random>.tmp<suffix>`) keeps the final suffix, so writers that infer the
    format from it still work. A process killed mid-write (kill -9, a lost node) leaves it behind:
    `remove_stale_temporaries` clears those.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes the file private; give it the usual permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def remove_stale_temporaries(folder: str | Path, stems: Collection[str]) -> int:
    """Remove the temporary files that `atomic_path` left in `folder` for the files named `stems`; the count.

    Only for files that no other process is writing now (a shard's own clips, say): a live writer's
    temporary file would go too, and its rename would fail.
    """
    removed = 0
    for path in Path(folder).glob(".*.tmp*"):
        stem_and_random = path.name[1:].rsplit(".tmp", 1)[0]
        if stem_and_random.rsplit(".", 1)[0] in stems:
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_folder(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside `path`; on success it replaces `path` (a folder), on error it is removed.

    For exports written by libraries as a folder of files (`save_pretrained`): a reader sees either the old
    folder or the new one, never a half-written mix. The old folder is moved aside, the new one renamed in,
    then the old removed; a kill between the two renames leaves the old one as `.<name>.*.old`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        old = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".old"))
        if path.exists():
            os.replace(path, old / path.name)
        os.replace(tmp, path)
        shutil.rmtree(old)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
