"""`avgen generate --project wavbrivl`: an image from a sound (WavBriVL, arXiv:2303.04585, sec. 5).

    avgen generate --project wavbrivl --audio dog.wav --out dog.png --run runs/wavbrivl/toy_audio_tower/default
    avgen generate --project wavbrivl --video clip.mp4 --out clip.png --run ... --vqgan vqgan_imagenet_f16_16384.ckpt

`--run` is a run folder of the audio-tower stage (its checkpoint best.ckpt else last.ckpt holds the audio tower,
its config names the frozen image tower it was trained against) or a checkpoint file of that stage (then
`--image-tower` is needed). `--image-tower` overrides the run's image tower (of the same kind: a toy
image-tower run, or BriVL's released checkpoint when the run used `image_tower_kind: brivl`). `--vqgan` is a
toy VQGAN run folder or checkpoint (`module_vqgan`), or taming's official `vqgan_imagenet_f16_16384`
checkpoint; by default the toy pipeline's `runs/wavbrivl/toy_vqgan/default`.

The sound (a video's audio track with `--video`) is decoded to mono 16 kHz, the audio tower's rate, and embedded
whole; that embedding is the target of `projects.wavbrivl.generation.generate_image`, the VQGAN latents
optimised with the image tower as perceptor. The image side (`--size`) is by default the frame size a toy VQGAN
run trained on, else 256. Written: the image (`--out`, png) of the best similarity and the similarity of the
image to the audio embedding over the iterations as a picture (`<stem>_similarity.png`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from projects.wavbrivl.generation import GenerationSettings, generate_image
from projects.wavbrivl.models.audio_tower import load_audio_tower
from projects.wavbrivl.module_audio_tower import build_image_tower
from projects.wavbrivl.module_vqgan import load_vqgan
from shared.audio import load_audio
from shared.media import MediaError
from shared.runs import UserError, run_config

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


def generate(args: argparse.Namespace) -> list[Path]:
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {args.device}: no CUDA device on this machine")
    source = Path(args.audio or args.video)
    if not source.is_file():
        raise UserError(f"{source}: no such file")
    try:
        wave = load_audio(source, SAMPLE_RATE)
    except MediaError as error:
        raise UserError(str(error)) from error  # the message names the file
    run, vqgan_path = Path(args.run), Path(args.vqgan)
    audio_tower = load_audio_tower(run).to(args.device)
    perceptor = load_image_tower_of(run, args.image_tower).to(args.device)
    vqgan = load_vqgan(vqgan_path).to(args.device)
    with torch.no_grad():
        target = audio_tower(wave[None].to(args.device))[0]
    settings = GenerationSettings(
        steps=args.steps,
        cutouts=args.cutouts,
        size=args.size or vqgan_frame_size(vqgan_path),
        patience=args.patience,
        threshold=args.threshold,
    )
    generator = torch.Generator().manual_seed(args.seed)
    image, curve = generate_image(vqgan, perceptor, target, settings, generator)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    pixels = image.clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()
    Image.fromarray(pixels).save(out)
    return [out, save_curve_picture(curve, out.with_name(f"{out.stem}_similarity.png"))]


def main(argv: list[str]) -> list[Path]:
    parser = argparse.ArgumentParser(
        prog="avgen generate --project wavbrivl", description=__doc__.split("\n\n")[0]
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--audio", help="a sound file (wav, flac, mp3, ...)")
    source.add_argument("--video", help="a video whose audio track is used (mp4, ...)")
    parser.add_argument("--out", required=True, help="the image (png)")
    parser.add_argument("--run", required=True, help="an audio-tower stage's run folder or checkpoint")
    parser.add_argument("--vqgan", default=DEFAULT_VQGAN, help=f"default: {DEFAULT_VQGAN}")
    parser.add_argument("--image-tower", dest="image_tower", help="default: the run's image tower")
    parser.add_argument("--steps", type=int, default=GenerationSettings.steps)
    parser.add_argument("--cutouts", type=int, default=GenerationSettings.cutouts)
    parser.add_argument("--patience", type=int, help="stop after this many steps without a better similarity")
    parser.add_argument("--threshold", type=float, help="stop when the similarity reaches this")
    parser.add_argument("--size", type=int, help="image side (default: see above)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, ...")
    args = parser.parse_args(argv)
    written = generate(args)
    for path in written:
        print(path)
    return written
