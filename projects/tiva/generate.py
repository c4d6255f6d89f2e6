"""`avgen generate --project tiva`: time-aligned sound for a silent video (TiVA paper sec. 3.2, Fig. 3).

    avgen generate --project tiva --video clip.mp4 --out clip_with_sound.mp4 \\
        --run runs/tiva/toy_joint/default [--steps 25 --guidance-scale 5.0 --seed 0 --samples 1]

The video's frames go through the CLIP feature extractor of the run's training data (read from the run's
`config.yaml`) at 10 fps; S and T turn them into the semantic condition and the audio layout, DPM-Solver
(`--steps`, classifier-free guidance `--guidance-scale`) samples the latent, the run's VAE decodes it and its
vocoder (Griffin-Lim when the AudioLDM2 folder has none) makes the sound, as long as the model's training
clips (10.24 s at paper size; a shorter video is looped, as in training). Written next to `--out`:
`<stem>.wav`, `<stem>.png` (the predicted layout above the generated mel, both on the same time axis) and
the input video cut to the sound's length with the sound as its audio track; with several samples,
`<stem>_<i>.*` for each.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from projects.tiva.models import LOG_MEL_BOUNDS
from shared.audio import save_audio, save_mel_picture
from shared.data.records import ClipRecord
from shared.encoders import CLIPFeature, split_clip_feature
from shared.video import mux_audio


def load_run(run: Path, **overrides):
    """Our TiVA module (best.ckpt, else last.ckpt) and its data settings from the run's config.yaml."""
    from projects.tiva.module_tiva import TiVA

    ckpt = next(
        (p for p in (run / "checkpoints" / n for n in ("best.ckpt", "last.ckpt")) if p.is_file()), None
    )
    if ckpt is None:
        raise FileNotFoundError(f"{run}/checkpoints: no best.ckpt or last.ckpt")
    config = run / "config.yaml"
    if not config.is_file():
        raise FileNotFoundError(f"{config}: the run's resolved config is needed for its feature settings")
    module = TiVA.load_from_checkpoint(ckpt, map_location="cpu", melception_ckpt=None, **overrides)
    data = OmegaConf.to_container(OmegaConf.load(config).data.init_args, resolve=True)
    return module.eval(), data


def layout_picture(logmel: torch.Tensor, layout: torch.Tensor | None) -> torch.Tensor:
    """[F', T] in [0, 1]: the layout [M, C] stretched to the mel's size above the mel [F, T] (log-mel bounds)."""
    low, high = LOG_MEL_BOUNDS
    mel = ((logmel - low) / (high - low)).clamp(0, 1)
    if layout is None:
        return mel
    stretched = F.interpolate(layout.T[None, None], size=mel.shape, mode="nearest")[0, 0].clamp(0, 1)
    gap = torch.ones(2, mel.shape[1])
    return torch.cat([mel, gap, stretched])  # save_mel_picture puts row 0 at the bottom: the mel below


def generate(args: argparse.Namespace) -> list[Path]:
    module, data = load_run(Path(args.run), steps=args.steps, guidance_scale=args.guidance_scale)
    clip = data["clip"]
    feature = CLIPFeature(**clip.get("init_args", {}))
    record = ClipRecord(
        path=Path(args.video), label="", label_id=-1, split="predict", clip_id=Path(args.video).stem
    )
    cls, patch = (torch.from_numpy(x).float() for x in split_clip_feature(feature(record)))
    batch = {"clip_cls": cls[None], "clip_patch": patch[None]}
    sample_rate = module.front_end.sample_rate
    length = round(data["duration"] * sample_rate)
    out = module.generate(batch, length, torch.Generator().manual_seed(args.seed), samples=args.samples)
    path = Path(args.out)
    layout = None if out["layout"] is None else out["layout"][0]  # T's layout: the same for every sample
    written = []
    for i in range(args.samples):
        stem = path.with_suffix("") if args.samples == 1 else path.with_name(f"{path.stem}_{i}")
        written += [
            save_audio(stem.with_suffix(".wav"), out["wave"][i], sample_rate),
            save_mel_picture(layout_picture(out["logmel"][i], layout), stem.with_suffix(".png")),
            mux_audio(args.video, out["wave"][i], sample_rate, stem.with_suffix(path.suffix or ".mp4")),
        ]
    return written


def main(argv: list[str]) -> list[Path]:
    parser = argparse.ArgumentParser(
        prog="avgen generate --project tiva", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--video", required=True)
    parser.add_argument("--out", required=True, help="the muxed mp4; the wav and png go beside it")
    parser.add_argument("--run", required=True, help="a TiVA run folder (config.yaml + checkpoints/)")
    parser.add_argument("--steps", type=int, default=25, help="DPM-Solver steps")
    parser.add_argument("--guidance-scale", type=float, default=5.0)
    parser.add_argument("--samples", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    written = generate(args)
    for path in written:
        print(path)
    return written
