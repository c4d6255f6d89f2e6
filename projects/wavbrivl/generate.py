"""`avgen generate --project wavbrivl`: an image from a sound (WavBriVL, arXiv:2303.04585, sec. 5).

    avgen generate --project wavbrivl --audio dog.wav --out dog.png --run runs/wavbrivl/toy_audio_tower/default
    avgen generate --project wavbrivl --video clip.mp4 --out clip.png --run ... --vqgan vqgan_imagenet_f16_16384.ckpt

`--run` is a run folder of the audio-tower stage (its checkpoint best.ckpt else last.ckpt holds the audio tower,
its config names the frozen image tower it was trained against) or a checkpoint file of that stage (then
`--image-tower` is needed). `--image-tower` overrides the run's image tower (of the same kind: a toy
image-tower run, or BriVL's released checkpoint when the run used `image_tower_kind: brivl`). `--vqgan` is a
toy VQGAN run folder or checkpoint (`module_vqgan`), or taming's official `vqgan_imagenet_f16_16384`
checkpoint; by default the toy VQGAN run beside the audio-tower run folder (`<runs>/toy_vqgan/<version>`), else
the toy pipeline's `runs/wavbrivl/toy_vqgan/default`.

The sound (a video's audio track with `--video`) is decoded to mono 16 kHz, the audio tower's rate, and embedded
whole; that embedding is the target of `projects.wavbrivl.generation.generate_image`, the VQGAN latents
optimised with the image tower as perceptor. The image side (`--size`) is by default the frame size a toy VQGAN
run trained on, else 256. Written: the image (`--out`, png) of the best similarity and the similarity of the
image to the audio embedding over the iterations as a picture (`<stem>_similarity.png`).

`avgen generate --run <run> --input <file or folder> --out <folder>` (`shared.generation`) uses the same
`WavBriVLGenerator`, one sound at a time (each image is its own optimisation, from a generator seeded by
`--seed`).
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from projects.wavbrivl.generation import GenerationSettings, generate_image
from projects.wavbrivl.models.audio_tower import load_audio_tower
from projects.wavbrivl.module_audio_tower import build_image_tower
from projects.wavbrivl.module_vqgan import load_vqgan
from shared.audio import load_audio
from shared.generation import Generator, check_device, check_stage, generate_to, passes
from shared.runs import UserError, run_checkpoint, run_config, sibling_run

SAMPLE_RATE = 16_000
DEFAULT_VQGAN = "runs/wavbrivl/toy_vqgan/default"
DEFAULT_SIZE = 256  # taming's ImageNet VQGAN trained on 256x256 crops


def load_image_tower_of(run: Path, image_tower: str | None) -> torch.nn.Module:
    """The frozen image tower an audio-tower run was trained against, or `image_tower` of the same kind."""
    if run.is_dir():
        model = run_config(run)["model"]["init_args"]
        return build_image_tower(
            image_tower or model["image_tower"],
            model.get("image_tower_kind", "run"),
            model.get("image_tower_args"),
        )
    if image_tower is None:
        raise UserError(f"{run}: a checkpoint file names no image tower; give --image-tower")
    return build_image_tower(image_tower)


def vqgan_frame_size(vqgan: Path) -> int:
    """The frame side a toy VQGAN run trained on (its config's data image_size), else taming's 256."""
    if (vqgan / "config.yaml").is_file():
        return int(run_config(vqgan).get("data", {}).get("init_args", {}).get("image_size", DEFAULT_SIZE))
    return DEFAULT_SIZE


def save_curve_picture(curve: list[float], path: Path, width: int = 480, height: int = 240) -> Path:
    """The similarity over the iterations as a line chart png (PIL: matplotlib is not a dependency), the y axis
    spanning the curve's range, labelled with its lowest and highest value and the number of iterations."""
    picture = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(picture)
    left, right, top, bottom = 60, width - 15, 15, height - 30
    low, high = min(curve), max(curve)
    span = (high - low) or 1.0
    draw.rectangle([left, top, right, bottom], outline="gray")
    points = [
        (
            left + (right - left) * i / max(len(curve) - 1, 1),
            bottom - (bottom - top) * (value - low) / span,
        )
        for i, value in enumerate(curve)
    ]
    if len(points) == 1:
        draw.ellipse([points[0][0] - 2, points[0][1] - 2, points[0][0] + 2, points[0][1] + 2], fill="blue")
    else:
        draw.line(points, fill="blue", width=2)
    draw.text((5, top), f"{high:.3f}", fill="black")
    draw.text((5, bottom - 10), f"{low:.3f}", fill="black")
    draw.text((left, bottom + 8), "1", fill="black")
    draw.text((right - 30, bottom + 8), str(len(curve)), fill="black")
    draw.text(((left + right) // 2 - 60, bottom + 8), "iteration: cosine similarity", fill="black")
    picture.save(path)
    return path


def check_run(run: Path) -> None:
    """A UserError unless `run` is an audio-tower stage's run (read from its config.yaml), not one of the VQGAN
    or image-tower runs the audio tower is trained against or generates with."""
    check_stage(run, ["WavBriVLTraining"], "an audio-tower stage's run (runs/wavbrivl/toy_audio_tower/...)")


def opens_run(run: Path) -> bool:
    """Whether `run` is of the stage this module generates with (`check_run`): the runs the demo offers."""
    return passes(check_run, run)


def vqgan_beside(run: Path) -> Path:
    """The toy VQGAN run beside an audio-tower run folder (its version, else `default`: `sibling_run`); for a
    checkpoint file, the toy pipeline's."""
    return sibling_run(run, "toy_vqgan", "--vqgan") if run.is_dir() else Path(DEFAULT_VQGAN)


class WavBriVLGenerator(Generator):
    """Images from sounds (or a video's sound): the audio tower's embedding steers a VQGAN's latents through the
    frozen image tower (paper sec. 5)."""

    project, direction, inputs = "wavbrivl", "audio->image", ("audio", "video")

    def __init__(
        self,
        audio_tower: torch.nn.Module,
        perceptor: torch.nn.Module,
        vqgan: torch.nn.Module,
        settings: GenerationSettings,
        files: dict,
        device: str,
        run: Path,
        checkpoint: Path,
        batch_size: int = 1,
    ):
        super().__init__(run, checkpoint, batch_size)
        self.audio_tower, self.perceptor, self.vqgan = (
            audio_tower.to(device),
            perceptor.to(device),
            vqgan.to(device),
        )
        self.generation, self.files, self.device = settings, files, device

    def settings(self) -> dict:
        return {**dataclasses.asdict(self.generation), **self.files}

    def write(self, inputs: list[Path], stems: list[list[Path]], seed: int) -> list[list[dict[str, Path]]]:
        return [
            self.write_sound(source, sound_stems, seed)
            for source, sound_stems in zip(inputs, stems, strict=True)
        ]

    def write_sound(self, source: Path, stems: list[Path], seed: int) -> list[dict[str, Path]]:
        """The images of one sound, sample i to `stems[i]` (.png and its `_similarity.png` curve); the samples
        of one sound follow one generator seeded by `seed`."""
        wave = load_audio(source, SAMPLE_RATE)
        with torch.no_grad():
            target = self.audio_tower(wave[None].to(self.device))[0]
        generator = torch.Generator().manual_seed(seed)
        written = []
        for stem in stems:
            image, curve = generate_image(self.vqgan, self.perceptor, target, self.generation, generator)
            stem.parent.mkdir(parents=True, exist_ok=True)
            pixels = image.clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()
            Image.fromarray(pixels).save(stem.with_suffix(".png"))
            similarity = save_curve_picture(curve, stem.with_name(f"{stem.name}_similarity.png"))
            written.append({"image": stem.with_suffix(".png"), "similarity": similarity})
        return written


def add_options(parser) -> None:
    """The options of the WavBriVL generator, for `avgen generate --run` and `--project wavbrivl` alike."""
    parser.add_argument(
        "--vqgan",
        help=f"a toy VQGAN run or checkpoint, or taming's (default: the toy_vqgan run beside --run, else {DEFAULT_VQGAN})",
    )
    parser.add_argument("--image-tower", dest="image_tower", help="default: the run's image tower")
    parser.add_argument("--steps", type=int, default=GenerationSettings.steps)
    parser.add_argument("--cutouts", type=int, default=GenerationSettings.cutouts)
    parser.add_argument("--patience", type=int, help="stop after this many steps without a better similarity")
    parser.add_argument("--threshold", type=float, help="stop when the similarity reaches this")
    parser.add_argument(
        "--size", type=int, help=f"image side (default: the toy VQGAN run's frame size, else {DEFAULT_SIZE})"
    )


def load_generator(
    run: str | Path,
    device: str = "cpu",
    batch_size: int = 1,
    vqgan: str | None = None,
    image_tower: str | None = None,
    steps: int = GenerationSettings.steps,
    cutouts: int = GenerationSettings.cutouts,
    patience: int | None = None,
    threshold: float | None = None,
    size: int | None = None,
) -> WavBriVLGenerator:
    """The generator of an audio-tower run folder (or checkpoint file) with its image tower and a VQGAN."""
    check_device(device)
    run = Path(run)
    if run.is_dir():
        check_run(run)
    vqgan_path = Path(vqgan) if vqgan else vqgan_beside(run)
    audio_tower = load_audio_tower(run)
    perceptor = load_image_tower_of(run, image_tower)
    settings = GenerationSettings(
        steps=steps, cutouts=cutouts, size=size or vqgan_frame_size(vqgan_path), patience=patience,
        threshold=threshold,
    )  # fmt: skip
    files = {"vqgan": str(vqgan_path), "image_tower": image_tower}
    checkpoint = run_checkpoint(run) if run.is_dir() else run
    return WavBriVLGenerator(
        audio_tower, perceptor, load_vqgan(vqgan_path), settings, files, device, run if run.is_dir() else None,
        checkpoint, batch_size,
    )  # fmt: skip


def main(argv: list[str]) -> list[Path]:
    parser = argparse.ArgumentParser(
        prog="avgen generate --project wavbrivl", description=__doc__.split("\n\n")[0]
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--audio", help="a sound file (wav, flac, mp3, ...)")
    source.add_argument("--video", help="a video whose audio track is used (mp4, ...)")
    parser.add_argument("--out", required=True, help="the image (png)")
    parser.add_argument("--run", required=True, help="an audio-tower stage's run folder or checkpoint")
    add_options(parser)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, ...")
    args = vars(parser.parse_args(argv))
    audio, video, out, seed = (args.pop(name) for name in ("audio", "video", "out", "seed"))
    generator = load_generator(**args)
    return generate_to(generator, Path(audio or video), Path(out), 1, seed)
