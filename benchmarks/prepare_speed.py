"""Time `avgen prepare --features mel` per clip against an official-style chain on the same real clips.

    python benchmarks/prepare_speed.py                        # 36 clips, 3 rounds, ours with 0 and 1 workers
    python benchmarks/prepare_speed.py --clips 72 --workers 0,1,3

Ours: `shared.prepare.main` (the code `avgen prepare` runs: index scan, feature construction, decoding,
resampling, mel, atomic writes) on a VAS-layout folder of the clips, into an empty cache each round; the
interpreter's start-up and imports are printed apart (they are paid once per command, not per clip).

Official-style: what v-iashin/SpecVQGAN's `feature_extraction/extract_audio_and_video.py` and
`extract_mel_spectrogram.py` do per clip, in one process: the ffmpeg CLI writes the audio as a mono
22,050 Hz wav, looped and cut to 10 s (one call with `-stream_loop`, where the official script runs six,
re-encoding the video twice, so this side is faster than the original), then `librosa.load`, zero-pad or
cut to 220,500 samples, |STFT| with reflect padding (librosa 0.8's default, which the released features
used), the mel basis built once, the LowerThresh / log10 / scale / clip chain, TrimSpec(860), `np.save`.

The clips are the real VAS demo clips beside the repository, listed as many times as `--clips` asks (each
decoded every time). Both sides get one untimed warm-up clip. Per clip: wall-clock ms and CPU ms (this
process, its workers and the ffmpeg processes); rounds alternate between the sides, and the median round
is printed. On a machine that others share, CPU ms is the steadier figure. Also printed: the mean absolute
difference between the two sides' mels (the same feature, so it should be near 0.01).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from shared.prepare import main as prepare_main

REPO = Path(__file__).resolve().parents[1]
DEMO_VIDEOS = REPO.parent / "shared" / "data" / "specvqgan-demo" / "vas" / "videos"
SAMPLE_RATE, LENGTH, FRAMES = 22050, 220_500, 860


def cpu_seconds() -> float:
    """CPU time of this process and of every child it has waited for (workers, ffmpeg)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def clip_folder(source: Path, count: int, root: Path) -> list[Path]:
    """A VAS-layout folder (`videos/<class>/<name>.mp4`) of `count` links to the source clips, cycled."""
    sources = sorted(source.glob("*/*.mp4"))
    if not sources:
        raise SystemExit(f"{source}: no <class>/<clip>.mp4 files (the team's demo data beside the repo)")
    links = []
    for i in range(count):
        clip = sources[i % len(sources)]
        link = root / "videos" / clip.parent.name / f"{clip.stem}_{i:03d}.mp4"
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(clip.resolve())
        links.append(link)
    return links


def run_ours(root: Path, cache: Path, workers: int, quiet) -> None:
    shutil.rmtree(cache, ignore_errors=True)
    argv = ["--dataset", "vas", "--root", str(root), "--features", "mel", "--cache-dir", str(cache)]
    with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
        prepare_main([*argv, "--workers", str(workers)])


class OfficialStyle:
    """The per-clip chain of the official preparation (see the module docstring)."""

    def __init__(self, out: Path):
        import librosa

        self.librosa = librosa
        self.out = out
        self.mel_basis = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=1024, fmin=125, fmax=7600, n_mels=80)

    def __call__(self, clip: Path) -> np.ndarray:
        wav_path = self.out / f"{clip.stem}.wav"
        subprocess.run(
            ["ffmpeg", "-nostdin", "-loglevel", "error", "-stream_loop", "-1", "-t", "10", "-i", str(clip),
             "-vn", "-ac", "1", "-ar", str(SAMPLE_RATE), "-f", "wav", "-y", str(wav_path)],
            check=True,
        )  # fmt: skip
        wav, _ = self.librosa.load(wav_path, sr=None)
        y = np.zeros(LENGTH)
        y[: min(len(wav), LENGTH)] = wav[:LENGTH]
        spec = np.abs(self.librosa.stft(y, n_fft=1024, hop_length=256, pad_mode="reflect"))
        x = np.log10(np.maximum(1e-5, self.mel_basis @ spec))
        mel = np.clip((x * 20 - 20 + 100) / 100, 0, 1.0)[:, :FRAMES]
        np.save(self.out / f"{clip.stem}_mel.npy", mel)
        return mel


def timed(fn, *args) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), cpu_seconds()
    fn(*args)
    return time.perf_counter() - wall, cpu_seconds() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=36)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", default="0,1", help="comma-separated `avgen prepare --workers` values")
    parser.add_argument("--source", type=Path, default=DEMO_VIDEOS, help="folder of <class>/<clip>.mp4")
    args = parser.parse_args()
    workers = [int(w) for w in args.workers.split(",")]
    have_ffmpeg = shutil.which("ffmpeg") is not None
    if not have_ffmpeg:
        print(
            "ffmpeg CLI not found: timing ours only (the official-style chain needs it: apt-get install ffmpeg)"
        )

    with tempfile.TemporaryDirectory() as tmp, open(os.devnull, "w") as quiet:
        tmp = Path(tmp)
        clips = clip_folder(args.source, args.clips, tmp / "vas")
        warm = clip_folder(args.source, 1, tmp / "warm")
        official = OfficialStyle(tmp / "official") if have_ffmpeg else None
        if official:
            official.out.mkdir()
            official(warm[0])
        run_ours(tmp / "warm", tmp / "cache", 0, quiet)

        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "shared", "prepare", "--help"], cwd=REPO, check=True, stdout=quiet
        )
        startup = time.perf_counter() - start

        rows: dict[str, list[tuple[float, float]]] = {}
        for _ in range(args.rounds):
            for w in workers:
                rows.setdefault(f"ours, avgen prepare --workers {w}", []).append(
                    timed(run_ours, tmp / "vas", tmp / "cache", w, quiet)
                )
            if official:
                rows.setdefault("official-style (ffmpeg CLI + librosa)", []).append(
                    timed(lambda: [official(c) for c in clips])
                )

        print(f"{args.clips} clips ({len(set(c.resolve() for c in clips))} distinct real VAS clips), "
              f"median of {args.rounds} rounds, {os.cpu_count()} CPUs")  # fmt: skip
        print(f"{'':44} {'wall ms/clip':>12} {'CPU ms/clip':>12}")
        per_clip = {}
        for name, times in rows.items():
            wall = statistics.median(t[0] for t in times) / args.clips * 1000
            cpu = statistics.median(t[1] for t in times) / args.clips * 1000
            per_clip[name] = (wall, cpu)
            print(f"{name:44} {wall:12.1f} {cpu:12.1f}")
        print(f"`avgen prepare` start-up (interpreter + imports, once per command): {startup:.2f} s")
        if official:
            base_wall, base_cpu = per_clip["official-style (ffmpeg CLI + librosa)"]
            for name, (wall, cpu) in per_clip.items():
                if name.startswith("ours"):
                    print(f"official-style / {name}: {base_wall / wall:.1f}x wall, {base_cpu / cpu:.1f}x CPU")
            cache = next((tmp / "cache" / "vas").glob("mel-*"))
            diffs = [
                np.abs(np.load(cache / c.parent.name / f"{c.stem}.npy")[:, :FRAMES]
                       - np.load(official.out / f"{c.stem}_mel.npy")).mean()
                for c in clips
            ]  # fmt: skip
            print(f"mean |ours - official-style| per clip: {min(diffs):.4f} to {max(diffs):.4f}")


if __name__ == "__main__":
    main()
