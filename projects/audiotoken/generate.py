"""`avgen generate --project audiotoken`: an image from a sound (AudioToken, arXiv:2305.13050).

    avgen generate --project audiotoken --audio dog.wav --out dog.png --run runs/audiotoken/toy_audiotoken/default
    avgen generate --project audiotoken --video clip.mp4 --out clip.png --run ... --samples 4
    avgen generate --project audiotoken --audio dog.wav --out dog.png --embedder embedder_learned_embeds.bin \\
        --beats BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt --sd-root stable-diffusion-v1-4

`--run` is a run folder of the AudioToken stage: its config names the Stable Diffusion folder and the BEATs
file, its checkpoint (best.ckpt else last.ckpt) holds the Embedder. Without a run, the official release: the
Embedder file (`embedder_learned_embeds.bin`), a BEATs checkpoint and an SD 1.x folder in the diffusers layout;
`--beats` and `--sd-root` also override a run's.

The sound (a video's audio track with `--video`) is decoded to mono 16 kHz (the rate BEATs' front end assumes)
and looped or cut to `--seconds` (10 s, what the official inference feeds BEATs). Sampling: `--steps` 50,
`--guidance` 7.5, SD 1.4's PNDM scheduler (`--scheduler`), "a photo of <*>" plus `--suffix` (the official
inference's was ", 4k, high resolution"), at SD's native size unless `--height` / `--width` say otherwise.
Written: `--out` (png), or `<stem>_<i>.png` for each of several `--samples`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from projects.audiotoken.models.pipeline import SCHEDULERS, AudioTokenPipeline, SamplingSettings
from projects.audiotoken.models.stable_diffusion import load_stable_diffusion
from shared.audio import load_audio
from shared.media import MediaError
from shared.runs import UserError, run_checkpoint, run_config
from shared.transformer import item_generators

SAMPLE_RATE = 16_000


def load_pipeline(
    run: str | None, embedder: str | None, beats: str | None, sd_root: str | None
) -> AudioTokenPipeline:
    """The inference pipeline from a run folder and/or the official files (see the module docstring)."""
    from projects.audiotoken.convert import load_official_beats, load_official_embedder
    from projects.audiotoken.module_audiotoken import load_embedder

    if run is not None:
        model = run_config(run)["model"]["init_args"]
        beats, sd_root = beats or model["beats_ckpt"], sd_root or model["sd_root"]
        embedder_module = load_embedder(run_checkpoint(run))
    else:
        embedder_module = load_official_embedder(embedder)
    return AudioTokenPipeline(load_official_beats(beats), embedder_module, load_stable_diffusion(sd_root))


def native_size(pipeline: AudioTokenPipeline) -> int:
    """The side SD generates by default: the UNet's sample size x the VAE's downsampling (512 for SD 1.x)."""
    return pipeline.unet.config.sample_size * pipeline.stable_diffusion.vae_scale_factor


def generate(args: argparse.Namespace) -> list[Path]:
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {args.device}: no CUDA device on this machine")
    if args.run is None and None in (args.embedder, args.beats, args.sd_root):
        raise UserError("give --run, or all of --embedder, --beats and --sd-root (the official release)")
    source = Path(args.audio or args.video)
    if not source.is_file():
        raise UserError(f"{source}: no such file")
    try:
        wave = load_audio(source, SAMPLE_RATE, duration=args.seconds, loop=True)
    except MediaError as error:
        raise UserError(f"{source}: {error}") from error
    pipeline = load_pipeline(args.run, args.embedder, args.beats, args.sd_root).to(args.device)
    side = native_size(pipeline)
    settings = SamplingSettings(
        steps=args.steps,
        guidance=args.guidance,
        scheduler=args.scheduler,
        suffix=args.suffix,
        height=args.height or side,
        width=args.width or side,
    )
    keys = [f"{source.name}/{i}" for i in range(args.samples)]
    waves = wave[None].expand(args.samples, -1)
    images = pipeline.generate(waves, settings, item_generators(args.seed, keys))

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for i, image in enumerate(images):
        path = out if args.samples == 1 else out.with_name(f"{out.stem}_{i}{out.suffix or '.png'}")
        image.save(path)
        written.append(path)
    return written


def main(argv: list[str]) -> list[Path]:
    parser = argparse.ArgumentParser(
        prog="avgen generate --project audiotoken", description=__doc__.split("\n\n")[0]
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--audio", help="a sound file (wav, flac, mp3, ...)")
    source.add_argument("--video", help="a video whose audio track is used (mp4, ...)")
    parser.add_argument("--out", required=True, help="the image (png)")
    parser.add_argument("--run", help="an AudioToken stage's run folder")
    parser.add_argument("--embedder", help="the official embedder_learned_embeds.bin (without --run)")
    parser.add_argument("--beats", help="a BEATs checkpoint (official layout; default: the run's)")
    parser.add_argument(
        "--sd-root", dest="sd_root", help="an SD 1.x folder, diffusers layout (default: the run's)"
    )
    parser.add_argument(
        "--seconds", type=float, default=10.0, help="audio length given to BEATs (default 10)"
    )
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--guidance", type=float, default=7.5)
    parser.add_argument("--scheduler", choices=SCHEDULERS, default="pndm")
    parser.add_argument(
        "--suffix", default="", help='appended to "a photo of <*>", e.g. ", 4k, high resolution"'
    )
    parser.add_argument("--height", type=int, help="default: SD's native size (512 for SD 1.x)")
    parser.add_argument("--width", type=int, help="default: SD's native size")
    parser.add_argument("--samples", type=int, default=1, help="images per input (different noise)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    written = generate(args)
    for path in written:
        print(path)
    return written
