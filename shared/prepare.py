"""`avgen prepare`: compute and cache a dataset's features once, resumably, in parallel, shardable.

    avgen prepare --dataset vggsound --root /data/vggsound --features mel --workers 8
    avgen prepare --dataset vas --root /data/vas --features mel --duration 10 --shard 3/16
    avgen prepare --dataset vas --root /data/vas --features mel,resnet50 --device cuda
    avgen prepare --dataset vggsound --root /data/vggsound --features wave   # waveforms (vocoder training)
    avgen prepare --dataset vggsound --root /data/vggsound --split-dir none --features wave,clip_emb \
        --sample-rate 16000 --duration full --no-loop     # GRAVO: whole clips, CLIP embeddings at 30 fps
    avgen prepare --dataset imagehear --root /data/ImageHear --features clip_emb

Every feature of every clip is one atomically written `.npy` in the feature's cache folder (see
`shared.data.cache`), the same folder the DataModules read, so training finds the work done. Killed at
any point, a re-run computes only the clips still missing (and removes the half-written temporary
files of its shard's clips that a kill -9 leaves). `--shard i/n` (or, inside a SLURM array job,
`SLURM_ARRAY_TASK_ID` of `SLURM_ARRAY_TASK_COUNT`) takes every n-th clip starting at the i-th, so n array
tasks share a dataset with no overlap. Clips that fail are skipped and listed with the reason in
`<cache-dir>/<dataset>_skipped[_shard-i-of-n].tsv`; a summary line says how many. This process computes
clips too; the `--workers` more start once the clips left would keep it busy for seconds (each worker
first imports torch), so a short job never waits for a pool.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from shared.data.cache import FeatureCache, prepare_features, torch_threads
from shared.data.features import MelFeature, WaveFeature
from shared.data.indexes import DatasetIndex, ImageHearIndex, VASIndex, VEGASIndex, VGGSoundIndex
from shared.data.records import SkipReport
from shared.files import remove_stale_temporaries

log = logging.getLogger(__name__)

DATASETS: dict[str, type[DatasetIndex]] = {
    "vggsound": VGGSoundIndex,
    "vas": VASIndex,
    "imagehear": ImageHearIndex,
    "vegas": VEGASIndex,
}


def feature_cache(cache_dir: str | Path, index: DatasetIndex, name: str, feature) -> FeatureCache:
    """The cache of one feature of one dataset; DataModules and `avgen prepare` share it."""
    return FeatureCache(Path(cache_dir) / index.name, name, {**feature.params(), **index.identity()})


def _mel(args: argparse.Namespace):
    return MelFeature(args.mel_preset, duration=args.duration, loop=not args.no_loop)


def _resnet(args: argparse.Namespace):
    """SpecVQGAN's per-frame ResNet-50 features at 21.5 fps, [floor(duration x 21.5), 2048] (215 for 10 s)."""
    from shared.encoders.resnet import ResNetFeature  # torchvision: only for the feature that needs it

    weights = None if args.resnet_weights.lower() == "none" else args.resnet_weights
    device = _device(args.device)
    feature = ResNetFeature(
        args.resnet_arch,
        weights,
        fps=args.frame_fps,
        image_size=args.frame_size,
        resize=args.frame_resize,
        duration=args.duration,
        loop=not args.no_loop,
        device=device,
    )
    feature.model  # noqa: B018  (build now: bad weights stop the run here, and a download happens once)
    return feature


def _wave(args: argparse.Namespace):
    return WaveFeature(args.sample_rate, duration=args.duration, loop=not args.no_loop)


def _clip_emb(args: argparse.Namespace):
    """Per-frame L2-normalised CLIP image embeddings at `--clip-fps` (Im2Wav, GRAVO), or of a still image."""
    import json

    from shared.encoders.clip_embeddings import CLIPEmbeddingFeature  # open_clip: only for this feature

    pretrained = None if args.clip_pretrained.lower() == "none" else args.clip_pretrained
    feature = CLIPEmbeddingFeature(
        args.clip_model,
        pretrained,
        fps=args.clip_fps,
        duration=args.clip_duration,
        model_cfg=json.loads(args.clip_model_cfg) if args.clip_model_cfg else None,
        device=_device(args.device),
    )
    feature.model  # noqa: B018  (build now: bad weights stop the run here, and a download happens once)
    return feature


def _device(device: str) -> str:
    import torch

    return device if device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")


def _seconds(text: str) -> float | None:
    """A duration in seconds, or `full` (the clip's own length)."""
    return None if text.lower() in ("full", "none") else float(text)


# name -> factory(parsed arguments) -> feature (callable on a ClipRecord, with params())
FEATURES: dict[str, Callable[[argparse.Namespace], object]] = {
    "mel": _mel,
    "resnet50": _resnet,
    "wave": _wave,
    "clip_emb": _clip_emb,
}


def _usable_cpus() -> int:
    """The CPUs this process may run on (a SLURM task's or taskset's share, not the whole machine's)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def parse_shard(text: str | None) -> tuple[int, int]:
    """'i/n' (0-based), else the SLURM array task, else (0, 1)."""
    if text:
        index, count = (int(v) for v in text.split("/"))
    elif "SLURM_ARRAY_TASK_ID" in os.environ:
        index = int(os.environ["SLURM_ARRAY_TASK_ID"]) - int(os.environ.get("SLURM_ARRAY_TASK_MIN", 0))
        count = int(os.environ["SLURM_ARRAY_TASK_COUNT"])
    else:
        index, count = 0, 1
    if not 0 <= index < count:
        raise ValueError(f"shard {index}/{count}: need 0 <= index < count")
    return index, count


def prepare_dataset(
    index: DatasetIndex,
    features: dict[str, object],
    cache_dir: str | Path,
    workers: int = 0,
    shard: tuple[int, int] = (0, 1),
) -> dict[str, list]:
    """Fill the caches of `features` for this shard of the dataset; return the prepared records per feature."""
    records = sorted(index.records(), key=lambda r: r.clip_id)[shard[0] :: shard[1]]
    suffix = "" if shard == (0, 1) else f"_shard-{shard[0]}-of-{shard[1]}"
    report_path = Path(cache_dir) / f"{index.name}_skipped{suffix}.tsv"
    report = SkipReport(index.name)
    if shard[0] == 0:
        report.extend(index.report)  # clips missing from disk are reported once, by the first shard
    prepared = {}
    for name, feature in features.items():
        cache = feature_cache(cache_dir, index, name, feature)
        # what a killed earlier run of this shard left half-written; other shards' clips are not touched
        stale = remove_stale_temporaries(cache.dir, {r.clip_id for r in records})
        if stale:
            log.info("%s: removed %d half-written files of an interrupted run", cache.dir, stale)
        prepared[name] = prepare_features(
            records, cache, feature, report, workers, desc=f"{index.name} {name}"
        )
    report.write(report_path)
    print(report.summary(len(records) + len(index.report) * (shard[0] == 0), report_path), flush=True)
    return prepared


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="avgen prepare", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True, choices=sorted(DATASETS))
    parser.add_argument("--root", required=True, help="the dataset's folder, in its official layout")
    parser.add_argument("--features", default="mel", help=f"comma-separated, from: {', '.join(FEATURES)}")
    parser.add_argument("--cache-dir", default="data/cache")
    parser.add_argument(
        "--workers",
        type=int,
        default=max(1, _usable_cpus() - 1),
        help="processes that compute besides this one, started once the clips left would take seconds "
        "(default: the usable CPUs less one)",
    )
    parser.add_argument("--shard", default=None, help="i/n: every n-th clip from the i-th (0-based)")
    parser.add_argument(
        "--duration",
        type=_seconds,
        default=10.0,
        help="seconds per clip (mel, wave: of audio; resnet50: of video); wave: `full` keeps whole clips",
    )
    parser.add_argument(
        "--no-loop",
        action="store_true",
        help="zero-pad short clips instead of looping (mel, wave); keep their frames untiled (resnet50)",
    )
    parser.add_argument("--sample-rate", type=int, default=22050, help="wave: sampling rate in Hz")
    parser.add_argument("--mel-preset", default="specvqgan")
    parser.add_argument("--resnet-arch", default="resnet50", help="torchvision ResNet (resnet50)")
    parser.add_argument(
        "--resnet-weights",
        default="IMAGENET1K_V1",
        help="weights file (torchvision state dict), torchvision weights name, or 'none' (random, seed 0)",
    )
    parser.add_argument("--frame-size", type=int, default=224, help="centre crop of the frames (resnet50)")
    parser.add_argument(
        "--frame-resize", type=int, default=None, help="shorter side before the crop (default size x 8/7)"
    )
    parser.add_argument("--frame-fps", type=float, default=21.5, help="video frames per second (resnet50)")
    parser.add_argument("--clip-model", default="ViT-B-32", help="clip_emb: open_clip architecture")
    parser.add_argument(
        "--clip-pretrained",
        default="openai",
        help="clip_emb: open_clip tag, weights file, or 'none' (random weights, seed 0)",
    )
    parser.add_argument(
        "--clip-model-cfg",
        default=None,
        help="clip_emb: JSON of open_clip config keys overriding the model's",
    )
    parser.add_argument("--clip-fps", type=float, default=30.0, help="clip_emb: frames per second")
    parser.add_argument(
        "--clip-duration",
        type=_seconds,
        default=None,
        help="clip_emb: seconds of video, short ones padded with the last frame (default: each video's own)",
    )
    parser.add_argument("--device", default="auto", help="device of the networks: auto, cpu, cuda, cuda:1")
    parser.add_argument("--media-dir", default="video", help="VGGSound: folder of the clips (video or audio)")
    parser.add_argument(
        "--split-dir",
        default=".",
        help="VGGSound: folder of the split lists, or `none` for the CSV's split; part of the caches' identity, "
        "so give what the data config's `dataset.split_dir` says",
    )
    args = parser.parse_args(argv)
    args.features = ",".join(name.strip() for name in args.features.split(",") if name.strip())
    unknown = set(args.features.split(",")) - set(FEATURES)
    if unknown or not args.features:
        parser.error(f"unknown features {sorted(unknown)}; known: {sorted(FEATURES)}")
    split_dir = None if args.split_dir.lower() == "none" else args.split_dir
    kwargs = {"media_dir": args.media_dir, "split_dir": split_dir} if args.dataset == "vggsound" else {}
    index = DATASETS[args.dataset](args.root, **kwargs)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    start = time.time()
    with torch_threads(1):  # building a feature (a mel filterbank) is small operations: see prepare_features
        features = {name: FEATURES[name](args) for name in args.features.split(",")}
    prepare_dataset(index, features, args.cache_dir, args.workers, parse_shard(args.shard))
    print(f"avgen prepare: done in {time.time() - start:.1f} s", flush=True)
