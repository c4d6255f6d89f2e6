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

`avgen generate --run <sampler run> --input <file or folder> --out <folder>` (`shared.generation`) uses the
same `SpecVQGANGenerator`, one video at a time (each video its own length and sliding visual condition; a
video's samples are sampled together, `--chunk-size` at a time).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from projects.specvqgan.models.sampler import CodeSampling, VisualCodeSampler
from shared.audio import MelFrontEnd, load_audio
from shared.encoders import ResNetFeature, ResNetFrameFeatures
from shared.encoders.frames import select_frames
from shared.generation import Generator, check_device, check_stage, generate_to, passes, save_sound
from shared.runs import UserError, run_checkpoint, run_config, sibling_run
from shared.video import video_info

if TYPE_CHECKING:
    from projects.specvqgan.vocoder import Vocoder

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


def check_run(run: Path) -> None:
    """A UserError unless `run` is a sampler stage's run (read from its config.yaml)."""
    check_stage(run, ["SpecVQGANTransformer"], "a sampler stage's run (runs/specvqgan/toy_sampler/...)")


def opens_run(run: Path) -> bool:
    """Whether `run` is of the stage this module generates with (`check_run`): the runs the demo offers."""
    return passes(check_run, run)


def load_run(run: Path) -> tuple[VisualCodeSampler, dict, CodeSampling]:
    """Our sampler (`shared.runs.run_checkpoint`), its data settings (the run's config.yaml) and its
    evaluation sampling settings."""
    from projects.specvqgan.module_sampler import SpecVQGANTransformer

    ckpt, config = run_checkpoint(run), run_config(run)
    check_run(run)
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


def feature_extractor(data: dict, device: str = "cpu") -> ResNetFrameFeatures | None:
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
    return ResNetFeature(**{**visual.get("init_args", {}), "device": device}).model


def sampling_settings(defaults: CodeSampling, **overrides) -> CodeSampling:
    """The command line's sampling settings (those not None) over `defaults` (the run's, or the official
    demo's)."""
    try:
        return dataclasses.replace(defaults, **{k: v for k, v in overrides.items() if v is not None})
    except ValueError as error:  # an out-of-range option
        raise UserError(f"sampling options: {error}") from error


class SpecVQGANGenerator(Generator):
    """Sound for videos with one sampler, codebook and vocoder: the video's frames -> codes -> mel -> wave."""

    project, direction, inputs = "specvqgan", "video->audio", ("video",)

    def __init__(
        self,
        sampler: VisualCodeSampler,
        data: dict,
        sampling: CodeSampling,
        vocoder: Vocoder,
        options: dict,
        device: str,
        run: Path | None,
        checkpoint: Path | None,
        batch_size: int = 1,
    ):
        super().__init__(run, checkpoint, batch_size)
        self.sampler, self.data, self.sampling = sampler.to(device), data, sampling
        self.vocoder, self.options, self.device = vocoder.to(device), options, device
        self.extractor = feature_extractor(data, device)
        self.front_end = MelFrontEnd.from_preset("specvqgan")

    def settings(self) -> dict:
        sampling = {
            name: getattr(self.sampling, name) for name in ("top_k", "top_p", "temperature", "chunk_size")
        }
        visual = (self.data.get("visual") or {}).get("class_path")
        return {**sampling, **self.options, "vocoder_kind": self.vocoder.kind, "visual_features": visual,
                "n_feats": self.sampler.n_feats}  # fmt: skip

    def write(self, inputs: list[Path], stems: list[list[Path]], seed: int) -> list[list[dict[str, Path]]]:
        return [
            self.write_video(video, video_stems, seed)
            for video, video_stems in zip(inputs, stems, strict=True)
        ]

    def write_video(self, video: Path, stems: list[Path], seed: int) -> list[dict[str, Path]]:
        """The samples of one video, sample i to `stems[i]` (.wav, .png and the muxed .mp4)."""
        sampler, sampling = (
            self.sampler,
            dataclasses.replace(self.sampling, samples_per_clip=len(stems), seed=seed),
        )
        sr, hop = self.front_end.sample_rate, self.front_end.config.hop_length
        rows, window = sampler.grid
        seconds_per_column = MEL_FRAMES_PER_COLUMN * hop / sr
        wanted = (
            self.options["seconds"] if self.options["seconds"] is not None else video_info(video).duration
        )
        n_columns = max(1, math.floor(wanted / seconds_per_column))  # whole latent columns, at most `wanted`
        seconds = max(n_columns * seconds_per_column, self.data.get("duration", 10.0))

        feats = condition_at = None  # no features: "No Feats", one random vector per sample (`sample_items`)
        if self.extractor is not None:
            self.extractor.duration, self.extractor.loop = (
                seconds + 1.0,
                True,
            )  # the whole span, short videos tiled
            frames = self.extractor.extract(video).float().to(self.device)
            data = self.data
            condition = VisualCondition(frames, sampler.n_feats, data["feat_len"], data["feat_crop"], window)
            feats = condition(0)
            condition_at = lambda c: (condition(c), None)  # noqa: E731
        prime = None
        if self.options["prime_seconds"]:
            wave = load_audio(video, sr, duration=window * seconds_per_column + 1.0, loop=True)
            mel = self.front_end(wave[None])[:, None, :, : window * MEL_FRAMES_PER_COLUMN]
            m = rows * min(window, math.floor(self.options["prime_seconds"] / seconds_per_column))
            prime = sampler.encode(mel.to(self.device))[:, :m]

        keys = [str(i) for i in range(len(stems))]
        written = []
        for items, codes in sampler.sample_items(
            feats, None, keys, sampling, rows=[0] * len(keys), n_columns=n_columns, prime=prime,
            condition_at=condition_at,
        ):  # fmt: skip
            mels = sampler.decode(codes).clamp(0, 1)[:, 0]
            with torch.no_grad():
                waves = self.vocoder(mels).cpu()
            for stem, mel, wave in zip(stems[items], mels.cpu(), waves, strict=True):
                written.append(save_sound(video, stem, wave, sr, mel))
        return written


def add_options(parser) -> None:
    """The options of the SpecVQGAN generator, for `avgen generate --run` and `--project specvqgan` alike."""
    parser.add_argument(
        "--vocoder",
        default=None,
        help="MelGAN checkpoint or official folder, or griffin-lim (default: the <prefix>_vocoder run beside the "
        "run, else Griffin-Lim)",
    )
    parser.add_argument("--top-k", type=int, default=None, help="default: the run's (official: codes / 2)")
    parser.add_argument("--top-p", type=float, default=None, help="default: the run's (official: none)")
    parser.add_argument("--temperature", type=float, default=None, help="default: the run's (official: 1)")
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


def vocoder_beside(run: Path) -> str | None:
    """The checkpoint of the vocoder stage of the run's pipeline (`<prefix>_vocoder` beside it, the run's version
    or `default`) if it has one: a toy run then sounds as the toy pipeline's summary does."""
    prefix = run.parent.name.split("_")[0]
    try:
        return str(run_checkpoint(sibling_run(run, f"{prefix}_vocoder", "--vocoder")))
    except UserError:
        return None


def load_generator(
    run: str | Path | None,
    device: str = "cpu",
    batch_size: int = 1,
    official_ckpt: str | None = None,
    official_config: str | None = None,
    resnet_weights: str = "IMAGENET1K_V1",
    vocoder: str | None = None,
    top_k: int | None = None,
    top_p: float | None = None,
    temperature: float | None = None,
    chunk_size: int | None = None,
    seconds: float | None = None,
    prime_seconds: float = 0.0,
) -> SpecVQGANGenerator:
    """The generator of a sampler run folder (or, with `run` None, of an official transformer)."""
    check_device(device)
    if run is not None:
        run = Path(run)
        sampler, data, defaults = load_run(run)
        checkpoint = run_checkpoint(run)
    else:
        from projects.specvqgan.convert import load_official

        sampler = load_official(official_ckpt, official_config)
        data = official_data(sampler, official_config, resnet_weights)
        defaults = CodeSampling(top_k=sampler.codebook.n_codes // 2)  # the official demo's top_x = n_e // 2
        checkpoint = Path(official_ckpt)
    if sampler.cls_embedder is not None:
        raise UserError(
            "class-conditional samplers need a class id; this command conditions on the video only"
        )
    sampling = sampling_settings(
        defaults, top_k=top_k, top_p=top_p, temperature=temperature, chunk_size=chunk_size
    )
    from projects.specvqgan.vocoder import load_vocoder

    if vocoder is None and run is not None:
        vocoder = vocoder_beside(run)
    vocoder = None if vocoder == "griffin-lim" else vocoder
    options = {"seconds": seconds, "prime_seconds": prime_seconds, "vocoder": vocoder}
    return SpecVQGANGenerator(
        sampler, data, sampling, load_vocoder(vocoder), options, device, run, checkpoint, batch_size
    )


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
    add_options(parser)
    parser.add_argument("--samples", type=int, default=1)
    parser.add_argument(
        "--seed", type=int, default=0, help="seeds every sample's codes (and No Feats vector)"
    )
    args = vars(parser.parse_args(argv))
    if args["official_ckpt"] and not args["official_config"]:
        parser.error("--official-ckpt needs --official-config")
    video, out, samples, seed = (args.pop(name) for name in ("video", "out", "samples", "seed"))
    generator = load_generator(**args)
    return generate_to(generator, Path(video), Path(out), samples, seed)
