"""`avgen generate --project tiva`: time-aligned sound for a silent video (TiVA paper sec. 3.2, Fig. 3).

    avgen generate --project tiva --video clip.mp4 --out clip_with_sound.mp4 --run runs/tiva/toy_joint/default \\
        [--steps 25 --guidance-scale 5.0 --sampler dpm_solver --samples 1 --seed 0 --device cpu]

The run folder is all it needs, wherever it lies: its checkpoint (best.ckpt, else last.ckpt) holds S, T and G
(and, for the toy runs, the frozen VAE and vocoder), its `config.yaml` the CLIP feature settings, the sampling
settings and, for runs whose checkpoint does not carry them, where AudioLDM2's VAE and vocoder are
(`audioldm_root`; a relative path is taken from the working directory, as in training). Lightning is not
involved: the parts are built from the config and put into `projects.tiva.models.TiVAPipeline`.

The whole video gets sound. Its frames go through the run's CLIP feature extractor at the run's frame rate, and
are cut into windows of the model's clip length (10.24 s at paper size, 1.92 s for the toy runs) one after the
other, each window's frames time-aligned with its stretch of sound; a last window that runs past the video's
end repeats its own frames, as the training data loops a short clip. All windows are generated in one sampler
call (S and T condition each on its own frames; `--steps`, `--guidance-scale`, `--sampler` default to the
run's settings), decoded by the VAE, vocoded, put end to end and cut at the video's length. Written next to
`--out`: `<stem>.wav`, `<stem>.png` (T's layout above the generated log-mel, both on the same time axis) and
the video with the sound as its audio track, all as long as the video; with several samples,
`<stem>_<i>.*` for each.

`avgen generate --run <run> --input <file or folder> --out <folder>` (`shared.generation`) uses the same
`TiVAGenerator`, one video at a time (a video's windows and samples go through the sampler together; its noise
comes from one generator seeded by `--seed`).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import replace
from pathlib import Path

import torch

from projects.tiva.models import (
    FROZEN_PARTS_KEY,
    HOP,
    SamplingSettings,
    TiVAPipeline,
    frozen_parts_from_state,
    load_frozen_parts,
    load_parts,
)
from projects.tiva.pictures import above, layout_picture, mel_picture
from shared.encoders import CLIPFeature, loop_frames, split_clip_feature
from shared.generation import Generator, check_device, check_stage, generate_to, passes, save_sound
from shared.runs import UserError, build_module, run_checkpoint, run_config
from shared.video import video_info

PARTS = ("semantic", "layout_predictor", "generator")


def check_run(run: Path) -> None:
    """A UserError unless `run` is a TiVA generator, joint or no-layout stage's run (read from its config.yaml):
    not the VAE's or the classifier's, nor the layout stage's, which trains T alone and leaves G untrained."""
    check_stage(run, ["TiVA"], "a TiVA generator or joint stage's run (runs/tiva/toy_joint/...)")
    model = run_config(run).get("model") or {}
    if (model.get("init_args") or {}).get("stage") == "layout":
        raise UserError(
            f"{run}: a layout stage's run (its generator G is not trained); generating needs a TiVA generator "
            "or joint stage's run (runs/tiva/toy_joint/...)"
        )


def opens_run(run: Path) -> bool:
    """Whether `run` is of the stage this module generates with (`check_run`): the runs the demo offers."""
    return passes(check_run, run)


def load_run(run: str | Path, device: str = "cpu") -> tuple[TiVAPipeline, SamplingSettings, dict]:
    """The run's inference pipeline (eval mode, on `device`), its sampling settings and its data settings."""
    checkpoint_path, config = run_checkpoint(run), run_config(run)
    check_run(Path(run))
    model = config["model"]["init_args"]
    checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
    parts = {name: build_module(model[name]) for name in PARTS}
    load_parts(parts, checkpoint["state_dict"], str(checkpoint_path))
    if FROZEN_PARTS_KEY in checkpoint:
        vae, vocoder = frozen_parts_from_state(checkpoint[FROZEN_PARTS_KEY])
    else:
        vae, vocoder = load_frozen_parts(model["audioldm_root"], model.get("vocoder", "hifigan"))
    pipeline = TiVAPipeline(**parts, vae=vae, vocoder=vocoder).to(device).eval()
    return pipeline, SamplingSettings.from_config(model.get("sampling", {})), config["data"]["init_args"]


def windows(feats: torch.Tensor, n_windows: int, frames_per_window: float, n_frames: int) -> torch.Tensor:
    """Per-frame features [F, ...] of a whole video -> [n_windows, n_frames, ...]: window k starts at frame
    round(k * frames_per_window) (its stretch of sound starts at k clip lengths) and repeats its own frames
    from its start where it runs past the last one."""
    starts = [min(round(k * frames_per_window), len(feats) - 1) for k in range(n_windows)]
    return torch.stack([loop_frames(feats[start : start + n_frames], n_frames) for start in starts])


def end_to_end(parts: torch.Tensor, samples: int, length: int) -> torch.Tensor:
    """[samples * W, ..., T] (sample-major) -> [samples, ..., W * T] cut to `length` along the last axis."""
    parts = parts.reshape(samples, -1, *parts.shape[1:])
    return torch.cat(parts.unbind(1), dim=-1)[..., :length]


class TiVAGenerator(Generator):
    """Time-aligned sound for videos with one TiVA pipeline (S, T, G, the VAE and the vocoder)."""

    project, direction, inputs = "tiva", "video->audio", ("video",)

    def __init__(
        self,
        pipeline: TiVAPipeline,
        sampling: SamplingSettings,
        data: dict,
        device: str,
        run: Path,
        checkpoint: Path,
        batch_size: int = 1,
    ):
        super().__init__(run, checkpoint, batch_size)
        self.pipeline, self.sampling, self.device = pipeline, sampling, device
        self.clip_seconds = data["duration"]
        self.clip = data["clip"].get("init_args", {})
        self.feature = CLIPFeature(**(self.clip | {"duration": self.clip_seconds, "device": device}))

    def settings(self) -> dict:
        sampling = {k: v for k, v in dataclasses.asdict(self.sampling).items() if k != "samples"}
        return {**sampling, "clip_seconds": self.clip_seconds, "clip": self.clip}

    def write(self, inputs: list[Path], stems: list[list[Path]], seed: int) -> list[list[dict[str, Path]]]:
        return [
            self.write_video(video, video_stems, seed)
            for video, video_stems in zip(inputs, stems, strict=True)
        ]

    def write_video(self, video: Path, stems: list[Path], seed: int) -> list[dict[str, Path]]:
        """The samples of one video, sample i to `stems[i]` (.wav, .png and the muxed .mp4)."""
        pipeline, sampling = self.pipeline, replace(self.sampling, samples=len(stems))
        clip_seconds, sample_rate = self.clip_seconds, pipeline.sample_rate
        video_seconds = video_info(video).duration
        n_windows = max(1, math.ceil(video_seconds / clip_seconds - 1e-6))
        self.feature.duration = video_seconds
        cls, patch = split_clip_feature(self.feature.extract(video).float())
        n_frames = math.floor(clip_seconds * self.feature.fps + 1e-6)
        frames_per_window = clip_seconds * self.feature.fps
        cls, patch = (windows(x, n_windows, frames_per_window, n_frames) for x in (cls, patch))

        clip_length = round(clip_seconds * sample_rate)
        generator = torch.Generator(self.device).manual_seed(seed)
        out = pipeline.generate(cls, patch, clip_length, sampling, generator)
        length = round(video_seconds * sample_rate)
        waves = end_to_end(out["wave"], sampling.samples, length).cpu()
        mels = end_to_end(out["logmel"], sampling.samples, math.ceil(length / HOP)).cpu()
        layout = None
        if out["layout"] is not None:  # T's layouts, the same for every sample
            layout = end_to_end(
                out["layout"].transpose(1, 2), 1, round(length / clip_length * out["layout"].shape[1])
            )
            layout = layout[0].T.cpu()
        written = []
        for stem, wave, mel in zip(stems, waves, mels, strict=True):
            picture = mel_picture(mel)
            if layout is not None:
                picture = above(layout_picture(layout, picture.shape), picture)
            written.append(save_sound(video, stem, wave, sample_rate, picture))
        return written


def add_options(parser) -> None:
    """The options of the TiVA generator, for `avgen generate --run` and `--project tiva` alike."""
    parser.add_argument("--sampler", choices=("dpm_solver", "ddpm"), help="default: the run's")
    parser.add_argument("--steps", type=int, help="sampler steps (default: the run's)")
    parser.add_argument("--guidance-scale", type=float, help="default: the run's")


def load_generator(
    run: str | Path,
    device: str = "cpu",
    batch_size: int = 1,
    sampler: str | None = None,
    steps: int | None = None,
    guidance_scale: float | None = None,
) -> TiVAGenerator:
    """The generator of a TiVA run folder (its checkpoint and config, nothing else)."""
    check_device(device)
    pipeline, sampling, data = load_run(run, device)
    overrides = {"sampler": sampler, "steps": steps, "guidance_scale": guidance_scale}
    try:
        sampling = replace(sampling, **{k: v for k, v in overrides.items() if v is not None})
    except ValueError as error:
        raise UserError(f"sampling options: {error}") from error
    return TiVAGenerator(pipeline, sampling, data, device, Path(run), run_checkpoint(run), batch_size)


def main(argv: list[str]) -> list[Path]:
    parser = argparse.ArgumentParser(
        prog="avgen generate --project tiva", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--video", required=True)
    parser.add_argument("--out", required=True, help="the muxed mp4; the wav and png go beside it")
    parser.add_argument("--run", required=True, help="a TiVA run folder (config.yaml + checkpoints/)")
    add_options(parser)
    parser.add_argument("--samples", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, ...")
    args = vars(parser.parse_args(argv))
    video, out, samples, seed = (args.pop(name) for name in ("video", "out", "samples", "seed"))
    generator = load_generator(**args)
    return generate_to(generator, Path(video), Path(out), samples, seed)
