"""Opening media files with PyAV, and the one error type every reader raises.

Audio (`shared.audio`) and video (`shared.video`) readers both go through :func:`open_media`, so a
missing file, a corrupt container or a missing stream always gives the same kind of message: the file
path first, then what is wrong with it. Dataset preparation catches :class:`MediaError` to skip and
report a clip instead of stopping the run.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import av


class MediaError(ValueError):
    """A media file that cannot be used: corrupt, empty, or without the stream that was asked for."""

    def __init__(self, path: str | Path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


@contextlib.contextmanager
def open_media(path: str | Path, audio_only: bool = False) -> Iterator[av.container.InputContainer]:
    """Open `path` for reading; raise FileNotFoundError or MediaError with the path in the message.

    `audio_only`: the caller decodes no video, so opening skips the video frames that FFmpeg otherwise
    decodes to probe the streams (most of the time it takes to open a high-resolution clip).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise MediaError(path, "file is empty (0 bytes)")
    try:
        container = av.open(str(path), options={"skip_frame": "all"} if audio_only else None)
    except av.error.FFmpegError as err:
        raise MediaError(path, f"cannot be opened as a media file (corrupt or unsupported): {err}") from err
    try:
        yield container
    except av.error.FFmpegError as err:
        raise MediaError(path, f"cannot be decoded (corrupt data): {err}") from err
    finally:
        container.close()
