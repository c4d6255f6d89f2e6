"""`avgen generate --project specvqgan`: sound for a video (SpecVQGAN paper sec. 3, Fig. 2; reference sec. 6).

    avgen generate --project specvqgan --video clip.mp4 --out clip_with_sound.mp4 \\
        --run runs/specvqgan/toy_sampler/default [--vocoder runs/specvqgan/toy_vocoder/default/checkpoints/last.ckpt]
    avgen generate --project specvqgan --video clip.mp4 --out out.mp4 \\
        --official-ckpt transformer/checkpoints/epoch_14.ckpt --official-config transformer/configs/...-project.yaml \\
        --vocoder vocoder/logs/vggsound --top-k 512 --samples 4 --seconds 20 --prime-seconds 3

The video's frames go through the same per-frame feature extractor as the sampler's training data (read
from the run's `config.yaml`; ImageNet ResNet-50 for an official checkpoint), the sampler draws the codes
(top-k, temperature, a batch of `--samples`), the codebook decodes them, and the vocoder (MelGAN, or
Griffin-Lim when none is given) makes the sound. Written next to `--out`: `<stem>.wav`, `<stem>.png` (the
spectrogram) and the input video cut to the sound's length with the sound as its audio track; with
several samples, `<stem>_<i>.*` for each.

- `--seconds` (default: the video's duration, in whole latent columns of 0.186 s): longer than the model's
  window (9.85 s at paper size) slides the window one latent column at a time, with the visual condition
  of each window's own time span.
- `--prime-seconds`: the first seconds of codes come from the video's real audio (the paper's priming).
- The number of visual features (1, 5 or 212) is the sampler's, fixed by its training config.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch
from omegaconf import OmegaConf

from projects.specvqgan.models.sampler import VisualCodeSampler
from shared.audio import MelFrontEnd, load_audio, save_audio, save_mel_picture
from shared.encoders import ResNetFeature, ResNetFrameFeatures
from shared.encoders.frames import select_frames
from shared.video import mux_audio, video_info

MEL_FRAMES_PER_COLUMN = 16


class VisualCondition:
    """Per-frame features of a whole video, cut into the condition of any window of latent columns."""

    def __init__(self, feats: torch.Tensor, n_feats: int, feat_len: int, feat_crop: int, columns: int):
        self.feats, self.n_feats, self.feat_len, self.feat_crop = feats, n_feats, feat_len, feat_crop
        self.frames_per_column = feat_crop / columns  # 212 / 53 = 4 video frames a column

    def __call__(self, first_column: int) -> torch.Tensor:
        """Features [1, n_feats, D] of the window whose first latent column is `first_column`."""
        start = round(first_column * self.frames_per_column)
        window = select_frames(self.feats[start:], self.n_feats, self.feat_len, self.feat_crop)
        return window[None]


def load_run(run: Path) -> tuple[VisualCodeSampler, dict]:
    """Our sampler (best.ckpt, else last.ckpt) and its data settings from the run's config.yaml."""
    from projects.specvqgan.module_sampler import SpecVQGANTransformer

    ckpt = next(
        (p for p in (run / "checkpoints" / n for n in ("best.ckpt", "last.ckpt")) if p.is_file()), None
    )
    if ckpt is None:
        raise FileNotFoundError(f"{run}/checkpoints: no best.ckpt or last.ckpt")
    config = run / "config.yaml"
    if not config.is_file():
        raise FileNotFoundError(f"{config}: the run's resolved config is needed for its feature settings")
    module = SpecVQGANTransformer.load_from_checkpoint(ckpt, map_location="cpu", melception_ckpt=None)
    data = OmegaConf.to_container(OmegaConf.load(config).data.init_args, resolve=True)
    return module.sampler.eval(), data


def feature_extractor(data: dict) -> ResNetFrameFeatures | None:
    visual = data.get("visual")
    if not visual:
        return None
    if not visual["class_path"].endswith("ResNetFeature"):
        raise ValueError(f"generation computes features itself; {visual['class_path']} is not supported here")
    return ResNetFeature(**visual.get("init_args", {})).model


def official_data(sampler: VisualCodeSampler, resnet_weights: str) -> dict:
    visual = {"class_path": "shared.encoders.ResNetFeature", "init_args": {"weights": resnet_weights}}
    return {"visual": visual, "n_feats": sampler.n_feats, "feat_len": 215, "feat_crop": 212, "duration": 10.0}


def generate(args: argparse.Namespace) -> list[Path]:
    if args.run:
        sampler, data = load_run(Path(args.run))
    else:
        from projects.specvqgan.convert import load_official

        sampler = load_official(args.official_ckpt, args.official_config)
        data = official_data(sampler, args.resnet_weights)
    if sampler.cls_embedder is not None:
        raise ValueError(
            "class-conditional samplers need a class id; this command conditions on the video only"
        )
    from projects.specvqgan.vocoder import load_vocoder

    vocoder = load_vocoder(args.vocoder)
    front_end = MelFrontEnd.from_preset("specvqgan")
    sr, hop = front_end.sample_rate, front_end.config.hop_length
    rows, window = sampler.grid
    seconds_per_column = MEL_FRAMES_PER_COLUMN * hop / sr
    wanted = args.seconds if args.seconds is not None else video_info(args.video).duration
    n_columns = max(1, math.floor(wanted / seconds_per_column))  # whole latent columns, at most `wanted`
    seconds = max(n_columns * seconds_per_column, data.get("duration", 10.0))

    extractor = feature_extractor(data)
    condition_at = feats = None
    if extractor is not None:
        extractor.duration, extractor.loop = seconds + 1.0, True  # the whole span, short videos tiled
        frames = extractor.extract(args.video).float()
        condition = VisualCondition(frames, sampler.n_feats, data["feat_len"], data["feat_crop"], window)
        feats = condition(0).repeat(args.samples, 1, 1)
        condition_at = lambda c: (condition(c).repeat(args.samples, 1, 1), None)  # noqa: E731
    else:  # a "No Feats" sampler: one random vector
        feats = torch.rand(args.samples, 1, sampler.embedder.in_channels)
    prime = None
    if args.prime_seconds:
        wave = load_audio(args.video, sr, duration=window * seconds_per_column + 1.0, loop=True)
        mel = front_end(wave[None])[:, None, :, : window * MEL_FRAMES_PER_COLUMN]
        m = rows * min(window, math.floor(args.prime_seconds / seconds_per_column))
        prime = sampler.encode(mel)[:, :m].repeat(args.samples, 1)

    generator = torch.Generator().manual_seed(args.seed)
    codes = sampler.sample(
        feats, n_columns=n_columns, prime=prime, condition_at=condition_at, top_k=args.top_k,
        temperature=args.temperature, generator=generator,
    )  # fmt: skip
    mels = sampler.decode(codes).clamp(0, 1)[:, 0]
    with torch.no_grad():
        waves = vocoder(mels)
    out = Path(args.out)
    written = []
    for i in range(args.samples):
        stem = out.with_suffix("") if args.samples == 1 else out.with_name(f"{out.stem}_{i}")
        written += [
            save_audio(stem.with_suffix(".wav"), waves[i], sr),
            save_mel_picture(mels[i], stem.with_suffix(".png")),
            mux_audio(args.video, waves[i], sr, stem.with_suffix(out.suffix or ".mp4")),
        ]
    return written


def main(argv: list[str]) -> list[Path]:
    parser = argparse.ArgumentParser(
        prog="avgen generate --project specvqgan", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--video", required=True)
    parser.add_argument("--out", required=True, help="the muxed mp4; the wav and png go beside it")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", help="our sampler's run folder (config.yaml + checkpoints/)")
    source.add_argument("--official-ckpt", help="an official transformer checkpoint (with --official-config)")
    parser.add_argument("--official-config")
    parser.add_argument(
        "--resnet-weights", default="IMAGENET1K_V1", help="official checkpoints: ResNet-50 weights"
    )
    parser.add_argument(
        "--vocoder", default=None, help="MelGAN checkpoint or official folder; Griffin-Lim if unset"
    )
    parser.add_argument("--top-k", type=int, default=None)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--samples", type=int, default=1)
    parser.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="length (default: the video's); longer than the window slides it",
    )
    parser.add_argument(
        "--prime-seconds", type=float, default=0.0, help="seconds of real audio to prime with"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.official_ckpt and not args.official_config:
        parser.error("--official-ckpt needs --official-config")
    written = generate(args)
    for path in written:
        print(path)
    return written
