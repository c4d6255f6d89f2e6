"""`avgen generate --project gravo`: sound for a video or a still image (GRAVO, Interspeech 2023; Im2Wav,
arXiv:2211.03089).

    avgen generate --project gravo --video clip.mp4 --out clip_with_sound.mp4 \\
        --run runs/gravo/toy_low_gravo/default --up runs/gravo/toy_up/default
    avgen generate --project gravo --image photo.png --out photo.wav --run ... --up ... [--seconds 4]
    avgen generate --project gravo --video clip.mp4 --out out.mp4 --run low.tar --up up.tar --vqvae vqvae.tar

`--run` is the Low prior: a run folder of a Low stage (Im2Wav's or GRAVO's; its config names the VQ-VAE
checkpoint and the CLIP settings, its checkpoint best.ckpt else last.ckpt) or Im2Wav's official `low.tar`.
`--up` is an Up stage's run folder or the official `up.tar`; `--vqvae` overrides the VQ-VAE (a checkpoint of
the VQ-VAE stage or the official `vqvae.tar`; required with an official Low prior). With official files the
frames are embedded by OpenAI's CLIP ViT-B/32 (`--clip`: an open_clip tag or a local checkpoint).

The video's frames are embedded at 30 fps (padded with the last frame to the video's length) and the whole
video gets sound, in overlapping windows where it is longer than one (`projects.gravo.models.pipeline`); an
image is a clip of `--seconds` (4 s, as GRAVO uses ImageHear's images) of its one embedding. The Low prior's time
signal is told the clip lasts `--total-seconds` (10 s, Im2Wav's inference value), or the input's length when longer. Written: the wav
and a spectrogram picture (`<stem>.wav`, `<stem>.png`) and, for a video, the video with the new sound
(`--out`); with several samples, `<stem>_<i>.*` for each.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import nn

from projects.gravo.models.conditioning import DEFAULT_TOTAL_LENGTH, SAMPLE_RATE
from projects.gravo.models.pipeline import FPS, GravoPipeline, SamplingSettings
from shared.audio import MelFrontEnd, save_audio, save_mel_picture
from shared.encoders.clip_embeddings import CLIPEmbeddingFeature, pad_with_last
from shared.runs import UserError, build_module, run_checkpoint, run_config
from shared.transformer import item_generators
from shared.video import mux_audio, video_info

OFFICIAL_CLIP = {"model_name": "ViT-B-32", "pretrained": "openai"}


def _prior_from_run(run: Path) -> tuple[nn.Module, dict, dict]:
    """(the prior of a prior stage's run folder in eval mode, its model settings, its data settings)."""
    checkpoint, config = run_checkpoint(run), run_config(run)
    model = config["model"]["init_args"]
    prior = build_module(model["prior"])
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    prior.load_state_dict({k.removeprefix("prior."): v for k, v in state.items() if k.startswith("prior.")})
    return prior.eval(), model, config["data"]["init_args"]


def _official(path: Path, kind: str):
    from projects.gravo.convert import load_official

    return load_official(path, kind=kind)


def load_parts(run: str, up: str, vqvae: str | None, clip: str | None) -> tuple[GravoPipeline, dict]:
    """The inference pipeline and the CLIP feature settings from run folders and/or official files."""
    run_path, up_path = Path(run), Path(up)
    if run_path.suffix != ".tar":  # a run folder (run_checkpoint names one that is missing)
        low, model, data = _prior_from_run(run_path)
        vqvae = vqvae or model["vqvae_ckpt"]
        clip_settings = data["clip"].get("init_args", {})
    else:
        low, clip_settings = _official(run_path, "low"), dict(OFFICIAL_CLIP)
        if vqvae is None:
            raise UserError(f"{run_path}: an official Low prior needs --vqvae (the official vqvae.tar)")
    up_prior = _official(up_path, "up") if up_path.suffix == ".tar" else _prior_from_run(up_path)[0]
    vqvae_path = Path(vqvae)
    if vqvae_path.suffix == ".tar":
        vqvae_model = _official(vqvae_path, "vqvae")
    else:
        from projects.gravo.module_vqvae import load_vqvae

        vqvae_model = load_vqvae(vqvae_path)
    if clip is not None:
        clip_settings = {**clip_settings, "pretrained": clip}
    return GravoPipeline(vqvae_model, low, up_prior).eval(), clip_settings


def spectrogram_picture(wave: torch.Tensor) -> torch.Tensor:
    """A 16-kHz waveform [T] -> its 64-band log-mel [64, frames] in [0, 1], the top 8 nepers (about 70 dB)."""
    logmel = MelFrontEnd.from_preset("audioldm")(wave)
    return ((logmel - logmel.max() + 8) / 8).clamp(0, 1)


def generate(args: argparse.Namespace) -> list[Path]:
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {args.device}: no CUDA device on this machine")
    pipeline, clip_settings = load_parts(args.run, args.up, args.vqvae, args.clip)
    pipeline = pipeline.to(args.device)
    source = args.video or args.image
    if not Path(source).is_file():
        raise UserError(f"{source}: no such file")
    seconds = video_info(source).duration if args.video else args.seconds
    feature = CLIPEmbeddingFeature(**{**clip_settings, "fps": FPS, "device": args.device})
    frames = feature.extract(source).float()
    n_frames = max(1, int(seconds * FPS))
    frames = pad_with_last(frames, n_frames)[:n_frames] if args.video else frames.expand(n_frames, -1)
    overrides = {name: getattr(args, name) for name in ("guidance_scale", "temperature", "top_k", "top_p")}
    settings = SamplingSettings(
        samples=args.samples,
        total_length=round(args.total_seconds * SAMPLE_RATE),
        **{name: value for name, value in overrides.items() if value is not None},
    )
    length = round(seconds * pipeline.sample_rate)
    keys = [f"{Path(source).name}/{i}" for i in range(settings.samples)]
    batch = frames[None].expand(settings.samples, -1, -1).to(args.device)
    waves = pipeline.generate(batch, length, settings, item_generators(args.seed, keys)).cpu()

    out = Path(args.out)
    written = []
    for i, wave in enumerate(waves):
        stem = out.with_suffix("") if settings.samples == 1 else out.with_name(f"{out.stem}_{i}")
        written += [
            save_audio(stem.with_suffix(".wav"), wave, pipeline.sample_rate),
            save_mel_picture(spectrogram_picture(wave), stem.with_suffix(".png")),
        ]
        if args.video:
            written.append(
                mux_audio(source, wave, pipeline.sample_rate, stem.with_suffix(out.suffix or ".mp4"))
            )
    return written


def main(argv: list[str]) -> list[Path]:
    parser = argparse.ArgumentParser(
        prog="avgen generate --project gravo", description=__doc__.split("\n\n")[0]
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--video", help="an mp4 (or any video PyAV reads)")
    source.add_argument("--image", help="a still image (png, jpg)")
    parser.add_argument("--out", required=True, help="the muxed video (or, for an image, the wav)")
    parser.add_argument("--run", required=True, help="a Low stage's run folder or the official low.tar")
    parser.add_argument("--up", required=True, help="an Up stage's run folder or the official up.tar")
    parser.add_argument(
        "--vqvae", help="the VQ-VAE: a VQ-VAE stage checkpoint or vqvae.tar (default: the run's)"
    )
    parser.add_argument("--clip", help="CLIP weights: an open_clip tag or a local file (default: the run's)")
    parser.add_argument("--seconds", type=float, default=4.0, help="length of the sound of an image")
    parser.add_argument(
        "--total-seconds",
        dest="total_seconds",
        type=float,
        default=DEFAULT_TOTAL_LENGTH / SAMPLE_RATE,
        help="the clip length the Low prior's time signal is given (default 10 s, Im2Wav's: its VGGSound "
        "clips; the toy runs trained on 2-s clips); a longer input uses its own length",
    )
    parser.add_argument(
        "--guidance-scale", dest="guidance_scale", type=float, help="eta of eq. 7 (default 3)"
    )
    parser.add_argument("--temperature", type=float)
    parser.add_argument("--top-k", dest="top_k", type=int)
    parser.add_argument("--top-p", dest="top_p", type=float)
    parser.add_argument("--samples", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, ...")
    args = parser.parse_args(argv)
    written = generate(args)
    for path in written:
        print(path)
    return written
