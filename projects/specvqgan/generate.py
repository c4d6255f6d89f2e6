"""`avgen generate --project specvqgan`: sound for a video (SpecVQGAN, arXiv:2110.08791, sec. 3, Fig. 2;
official demo `v-iashin/SpecVQGAN`, `feature_extraction/demo_utils.py` and `SpecVQGAN_Demo.ipynb`).

    avgen generate --project specvqgan --video clip.mp4 --out clip_with_sound.mp4 \\
        --run runs/specvqgan/toy_sampler/default [--vocoder runs/specvqgan/toy_vocoder/default/checkpoints/last.ckpt]
    avgen generate --project specvqgan --video clip.mp4 --out out.mp4 \\
        --official-ckpt transformer/checkpoints/epoch_14.ckpt --official-config transformer/configs/...-project.yaml \\
        --vocoder vocoder/logs/vggsound --samples 4 --seconds 20 --prime-seconds 3

The video's frames go through the per-frame feature extractor the sampler was trained with: for our runs the
one in the run's `config.yaml`; for an official checkpoint the one its YAML names (ImageNet ResNet-50, or
"No Feats"; BN-Inception RGB + flow transformers are refused, since their features need a flow network this
command does not have). The sampler draws the codes (`CodeSampling`: top-k, top-p, temperature; `--samples`
of them, `--chunk-size` per sampler call, each from its own random stream seeded by `--seed` and the
sample's index, which also draws a "No Feats" sampler's random vector), the codebook decodes them, and the
vocoder (MelGAN, or Griffin-Lim when none is given) makes the sound. Top-k, top-p and temperature default to
the run's evaluation settings; for an official checkpoint top-k defaults to half the codebook (512 or 64),
as the official demo and evaluation use. Written next to `--out`: `<stem>.wav`, `<stem>.png` (the
spectrogram) and the input video cut to the sound's length with the sound as its audio track; with several
samples, `<stem>_<i>.*` for each.

- `--seconds` (default: the video's duration, in whole latent columns of 0.186 s): longer than the model's
  window (9.85 s at paper size) slides the window one latent column at a time, with the visual condition
  of each window's own time span.
- `--prime-seconds`: the first seconds of codes come from the video's real audio (the paper's priming).
- The number of visual features (1, 5 or 212) is the sampler's, fixed by its training config.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from pathlib import Path

import torch

from projects.specvqgan.models.sampler import CodeSampling, VisualCodeSampler
from shared.audio import MelFrontEnd, load_audio, save_audio, save_mel_picture
from shared.encoders import ResNetFeature, ResNetFrameFeatures
from shared.encoders.frames import select_frames
from shared.runs import UserError, run_checkpoint, run_config
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


def load_run(run: Path) -> tuple[VisualCodeSampler, dict, CodeSampling]:
    """Our sampler (`shared.runs.run_checkpoint`), its data settings (the run's config.yaml) and its
    evaluation sampling settings."""
    from projects.specvqgan.module_sampler import SpecVQGANTransformer

    ckpt, config = run_checkpoint(run), run_config(run)
    module = SpecVQGANTransformer.load_from_checkpoint(ckpt, map_location="cpu", melception_ckpt=None)
    data = dict(config["data"]["init_args"], config=str(run / "config.yaml"))
    return module.sampler.eval(), data, module.sampling


def official_data(sampler: VisualCodeSampler, config: str, resnet_weights: str) -> dict:
    """The data settings of an official transformer: its visual features read from its YAML."""
    from projects.specvqgan.convert import official_visual_features

    features = official_visual_features(config)
    if features == "bninception":
        raise UserError(
            f"{config}: this transformer was trained on BN-Inception RGB + optical-flow features "
            "(data.params.rgb_feats_dir_path / flow_feats_dir_path); generating from a video would need "
            "the TSN BN-Inception RGB and flow networks and TV-L1 optical flow, which avgen does not have. "
            "Use an official ResNet-50 or No Feats transformer (the official README lists them), or "
            "`avgen test` with the precomputed feature pickles (shared.encoders.OfficialFeatureFiles)"
        )
    data = {"n_feats": sampler.n_feats, "feat_len": 215, "feat_crop": 212, "duration": 10.0, "config": config}
    if features == "resnet50":
        data["visual"] = {
            "class_path": "shared.encoders.ResNetFeature",
            "init_args": {"weights": resnet_weights},
        }
    return data


def feature_extractor(data: dict) -> ResNetFrameFeatures | None:
    """The per-frame extractor of the sampler's training data; None for "No Feats" (no visual features)."""
    visual = data.get("visual")
    if not visual:
        return None
    if not visual["class_path"].endswith("ResNetFeature"):
        raise UserError(
            f"{data['config']}: the sampler was trained on {visual['class_path']} features, which are read "
            "from precomputed files; generating from a video computes the features itself and supports "
            "shared.encoders.ResNetFeature only"
        )
    return ResNetFeature(**visual.get("init_args", {})).model


def sampling_settings(args: argparse.Namespace, defaults: CodeSampling) -> CodeSampling:
    """The command line's sampling settings over `defaults` (the run's, or the official demo's)."""
    overrides = {"top_k": args.top_k, "top_p": args.top_p, "temperature": args.temperature}
    try:
        return dataclasses.replace(
            defaults,
            **{k: v for k, v in overrides.items() if v is not None},
            samples_per_clip=args.samples,
            chunk_size=args.chunk_size,
            seed=args.seed,
        )
    except ValueError as error:  # an out-of-range option
        raise UserError(f"sampling options: {error}") from error


def generate(args: argparse.Namespace) -> list[Path]:
    if args.run:
        sampler, data, defaults = load_run(Path(args.run))
    else:
        from projects.specvqgan.convert import load_official

        sampler = load_official(args.official_ckpt, args.official_config)
        data = official_data(sampler, args.official_config, args.resnet_weights)
        defaults = CodeSampling(top_k=sampler.codebook.n_codes // 2)  # the official demo's top_x = n_e // 2
    if sampler.cls_embedder is not None:
        raise UserError(
            "class-conditional samplers need a class id; this command conditions on the video only"
        )
    sampling = sampling_settings(args, defaults)
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
    feats = condition_at = None  # no features: "No Feats", one random vector per sample (`sample_items`)
    if extractor is not None:
        extractor.duration, extractor.loop = seconds + 1.0, True  # the whole span, short videos tiled
        frames = extractor.extract(args.video).float()
        condition = VisualCondition(frames, sampler.n_feats, data["feat_len"], data["feat_crop"], window)
        feats = condition(0)
        condition_at = lambda c: (condition(c), None)  # noqa: E731
    prime = None
    if args.prime_seconds:
        wave = load_audio(args.video, sr, duration=window * seconds_per_column + 1.0, loop=True)
        mel = front_end(wave[None])[:, None, :, : window * MEL_FRAMES_PER_COLUMN]
        m = rows * min(window, math.floor(args.prime_seconds / seconds_per_column))
        prime = sampler.encode(mel)[:, :m]

    out = Path(args.out)
    keys = [str(i) for i in range(args.samples)]
    written = []
    for items, codes in sampler.sample_items(
        feats, None, keys, sampling, rows=[0] * len(keys), n_columns=n_columns, prime=prime,
        condition_at=condition_at,
    ):  # fmt: skip
        mels = sampler.decode(codes).clamp(0, 1)[:, 0]
        with torch.no_grad():
            waves = vocoder(mels)
        for i, mel, wave in zip(range(items.start, items.stop), mels, waves, strict=True):
            stem = out.with_suffix("") if args.samples == 1 else out.with_name(f"{out.stem}_{i}")
            written += [
                save_audio(stem.with_suffix(".wav"), wave, sr),
                save_mel_picture(mel, stem.with_suffix(".png")),
                mux_audio(args.video, wave, sr, stem.with_suffix(out.suffix or ".mp4")),
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
    parser.add_argument("--official-config", help="the official run's configs/*-project.yaml")
    parser.add_argument(
        "--resnet-weights",
        default="IMAGENET1K_V1",
        help="official ResNet-50 transformers: the ResNet-50 weights",
    )
    parser.add_argument(
        "--vocoder", default=None, help="MelGAN checkpoint or official folder; Griffin-Lim if unset"
    )
    parser.add_argument("--top-k", type=int, default=None, help="default: the run's (official: codes / 2)")
    parser.add_argument("--top-p", type=float, default=None, help="default: the run's (official: none)")
    parser.add_argument("--temperature", type=float, default=None, help="default: the run's (official: 1)")
    parser.add_argument("--samples", type=int, default=1)
    parser.add_argument(
        "--chunk-size", type=int, default=None, help="samples per sampler call (default: all)"
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="length (default: the video's); longer than the window slides it",
    )
    parser.add_argument(
        "--prime-seconds", type=float, default=0.0, help="seconds of real audio to prime with"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seeds every sample's codes (and No Feats vector)"
    )
    args = parser.parse_args(argv)
    if args.official_ckpt and not args.official_config:
        parser.error("--official-ckpt needs --official-config")
    written = generate(args)
    for path in written:
        print(path)
    return written
