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

`avgen generate --run <run> --input <file or folder> --out <folder>` (`shared.generation`) uses the same
`AudioTokenGenerator`: `--batch-size` sounds go through BEATs and Stable Diffusion together, every sample from
its own random stream keyed by the input's name and the sample (`item_generators`), so a batch makes the same
images as one sound at a time.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import torch

from projects.audiotoken.models.pipeline import SCHEDULERS, AudioTokenPipeline, SamplingSettings
from projects.audiotoken.models.stable_diffusion import load_stable_diffusion
from shared.audio import load_audio
from shared.generation import Generator, check_device, check_stage, generate_to, passes
from shared.runs import UserError, run_checkpoint, run_config
from shared.transformer import item_generators

SAMPLE_RATE = 16_000


def check_run(run: Path) -> None:
    """A UserError unless `run` is an AudioToken stage's run (read from its config.yaml), not one of the toy
    CLIP, VAE, LDM or BEATs runs `make train` makes first."""
    check_stage(run, ["AudioTokenTraining"], "an AudioToken stage's run (runs/audiotoken/toy_audiotoken/...)")


def opens_run(run: Path) -> bool:
    """Whether `run` is of the stage this module generates with (`check_run`): the runs the demo offers."""
    return passes(check_run, run)


def load_pipeline(
    run: str | None, embedder: str | None, beats: str | None, sd_root: str | None
) -> tuple[AudioTokenPipeline, dict]:
    """The inference pipeline from a run folder and/or the official files (see the module docstring), and the
    files it was built from."""
    from projects.audiotoken.convert import load_official_beats, load_official_embedder
    from projects.audiotoken.module_audiotoken import load_embedder

    if run is not None:
        check_run(Path(run))
        model = run_config(run)["model"]["init_args"]
        beats, sd_root = beats or model["beats_ckpt"], sd_root or model["sd_root"]
        embedder = run_checkpoint(run)
        embedder_module = load_embedder(embedder)
    else:
        embedder_module = load_official_embedder(embedder)
    pipeline = AudioTokenPipeline(load_official_beats(beats), embedder_module, load_stable_diffusion(sd_root))
    return pipeline, {"embedder": str(embedder), "beats": str(beats), "sd_root": str(sd_root)}


def native_size(pipeline: AudioTokenPipeline) -> int:
    """The side SD generates by default: the UNet's sample size x the VAE's downsampling (512 for SD 1.x)."""
    return pipeline.unet.config.sample_size * pipeline.stable_diffusion.vae_scale_factor


class AudioTokenGenerator(Generator):
    """Images from sounds (or a video's sound) with one AudioToken pipeline, a batch of sounds at a time."""

    project, direction, inputs = "audiotoken", "audio->image", ("audio", "video")

    def __init__(
        self,
        pipeline: AudioTokenPipeline,
        sampling: SamplingSettings,
        seconds: float,
        files: dict,
        run: Path | None,
        batch_size: int = 1,
    ):
        super().__init__(run, Path(files["embedder"]), batch_size)
        self.pipeline, self.sampling, self.seconds, self.files = pipeline, sampling, seconds, files

    def settings(self) -> dict:
        sampling = {k: v for k, v in dataclasses.asdict(self.sampling).items() if k != "seed"}
        return {**sampling, "seconds": self.seconds, **self.files}

    def write(self, inputs: list[Path], stems: list[list[Path]], seed: int) -> list[list[dict[str, Path]]]:
        waves = [load_audio(path, SAMPLE_RATE, duration=self.seconds, loop=True) for path in inputs]
        batch = torch.stack([wave for wave, samples in zip(waves, stems, strict=True) for _ in samples])
        keys = [
            f"{path.name}/{i}"
            for path, samples in zip(inputs, stems, strict=True)
            for i in range(len(samples))
        ]
        images = iter(self.pipeline.generate(batch, self.sampling, item_generators(seed, keys)))
        written = []
        for samples in stems:
            written.append([])
            for stem in samples:
                stem.parent.mkdir(parents=True, exist_ok=True)
                path = stem.with_suffix(".png")
                next(images).save(path)
                written[-1].append({"image": path})
        return written


def add_options(parser) -> None:
    """The options of the AudioToken generator, for `avgen generate --run` and `--project audiotoken` alike."""
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


def load_generator(
    run: str | Path | None,
    device: str = "cpu",
    batch_size: int = 1,
    embedder: str | None = None,
    beats: str | None = None,
    sd_root: str | None = None,
    seconds: float = 10.0,
    steps: int = 50,
    guidance: float = 7.5,
    scheduler: str = "pndm",
    suffix: str = "",
    height: int | None = None,
    width: int | None = None,
) -> AudioTokenGenerator:
    """The generator of an AudioToken run folder (or, with `run` None, of the official `embedder`)."""
    check_device(device)
    if run is None and None in (embedder, beats, sd_root):
        raise UserError("give --run, or all of --embedder, --beats and --sd-root (the official release)")
    pipeline, files = load_pipeline(run, embedder, beats, sd_root)
    pipeline = pipeline.to(device)
    side = native_size(pipeline)
    try:
        sampling = SamplingSettings(
            steps=steps, guidance=guidance, scheduler=scheduler, suffix=suffix, height=height or side,
            width=width or side,
        )  # fmt: skip
    except ValueError as error:
        raise UserError(f"sampling options: {error}") from error
    return AudioTokenGenerator(pipeline, sampling, seconds, files, Path(run) if run else None, batch_size)


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
    add_options(parser)
    parser.add_argument("--samples", type=int, default=1, help="images per input (different noise)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    args = vars(parser.parse_args(argv))
    audio, video, out = args.pop("audio"), args.pop("video"), Path(args.pop("out"))
    samples, seed = args.pop("samples"), args.pop("seed")
    generator = load_generator(**args)
    source = Path(audio or video)
    return generate_to(generator, source, Path(out), samples, seed)
