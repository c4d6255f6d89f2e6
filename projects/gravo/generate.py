"""`avgen generate --project gravo`: sound for a video or a still image (GRAVO, Interspeech 2023; Im2Wav,
arXiv:2211.03089).

    avgen generate --project gravo --video clip.mp4 --out clip_with_sound.mp4 \\
        --run runs/gravo/toy_low_gravo/default --up runs/gravo/toy_up/default
    avgen generate --project gravo --image photo.png --out photo.wav --run ... --up ... [--seconds 4]
    avgen generate --project gravo --video clip.mp4 --out out.mp4 --run low.tar --up up.tar --vqvae vqvae.tar

`--run` is the Low prior: a run folder of a Low stage (Im2Wav's or GRAVO's; its config names the VQ-VAE
checkpoint and the CLIP settings, its checkpoint best.ckpt else last.ckpt) or Im2Wav's official `low.tar`.
`--up` is an Up stage's run folder or the official `up.tar`; by default the Up run beside a Low run folder
(`runs/gravo/<experiment>/<version>` with an Up prior and the same version, the one of the same dataset prefix
where there are several: `runs/gravo/toy_up/default` for `runs/gravo/toy_low_gravo/default`); `--vqvae` overrides the VQ-VAE (a checkpoint of
the VQ-VAE stage or the official `vqvae.tar`; required with an official Low prior). With official files the
frames are embedded by OpenAI's CLIP ViT-B/32 (`--clip`: an open_clip tag or a local checkpoint).

The video's frames are embedded at 30 fps (padded with the last frame to the video's length) and the whole
video gets sound, in overlapping windows where it is longer than one (`projects.gravo.models.pipeline`); an
image is a clip of `--seconds` (4 s, as GRAVO uses ImageHear's images) of its one embedding. The Low prior's time
signal is told the clip lasts `--total-seconds` (10 s, Im2Wav's inference value), or the input's length when longer. Written: the wav
and a spectrogram picture (`<stem>.wav`, `<stem>.png`) and, for a video, the video with the new sound
(`--out`); with several samples, `<stem>_<i>.*` for each.

`avgen generate --run <Low run> --input <file or folder> --out <folder>` (`shared.generation`) uses the same
`GravoGenerator`: inputs of the same length (all the images; videos of the same duration) go through the
priors together, `--batch-size` at a time, every sample from its own random stream keyed by the input's name
and the sample (`item_generators`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import nn

from projects.gravo.models.conditioning import DEFAULT_TOTAL_LENGTH, SAMPLE_RATE
from projects.gravo.models.pipeline import FPS, GravoPipeline, SamplingSettings
from shared.audio import MelFrontEnd
from shared.encoders.clip_embeddings import CLIPEmbeddingFeature, pad_with_last
from shared.generation import Generator, check_device, check_stage, generate_to, kind_of, passes, save_sound
from shared.runs import UserError, build_module, run_checkpoint, run_config
from shared.transformer import item_generators
from shared.video import video_info

OFFICIAL_CLIP = {"model_name": "ViT-B-32", "pretrained": "openai"}


def _prior_class(run: Path) -> str | None:
    """The class path of a prior stage's prior; None for a run of another stage (the VQ-VAE, a classifier)."""
    prior = run_config(run).get("model", {}).get("init_args", {}).get("prior")
    return prior.get("class_path") if isinstance(prior, dict) else None


def check_run(run: Path) -> None:
    """A UserError unless `run` is a Low prior stage's run (read from its config.yaml): not the VQ-VAE's, a
    classifier's, nor the Up prior's, which generates only after a Low prior (`--up`)."""
    check_stage(run, ["GravoPrior"], "a Low prior stage's run (runs/gravo/toy_low_gravo/...)")
    prior_class = _prior_class(run)
    if prior_class is None:
        raise UserError(f"{run}: not a prior stage's run (its config has no model.init_args.prior)")
    if prior_class.endswith("UpPrior"):
        raise UserError(f"{run}: an Up stage's run; give the Low stage's run (--run) and this as --up")


def opens_run(run: Path) -> bool:
    """Whether `run` is of the stage this module generates with (`check_run`): the runs the demo offers."""
    return passes(check_run, run)


def up_beside(low: Path) -> Path:
    """The Up stage's run folder beside a Low stage's: `<runs>/<experiment>/<version>` of the same version whose
    prior is an Up prior; of several, the one whose experiment starts as the Low run's (toy_, vggsound_)."""
    candidates = [
        folder
        for folder in sorted(low.parent.parent.glob(f"*/{low.name}"))
        if folder.parent != low.parent and (folder / "config.yaml").is_file()
        and (_prior_class(folder) or "").endswith("UpPrior")
    ]  # fmt: skip
    if len(candidates) > 1:
        prefix = low.parent.name.split("_")[0] + "_"
        candidates = [folder for folder in candidates if folder.parent.name.startswith(prefix)] or candidates
    if len(candidates) != 1:
        found = f"several: {', '.join(map(str, candidates))}" if candidates else "none"
        raise UserError(
            f"{low}: which Up run? looked for one beside it ({low.parent.parent}/*/{low.name} with an Up prior) "
            f"and found {found}; give --up (an Up stage's run folder or the official up.tar)"
        )
    return candidates[0]


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


def load_parts(
    run: str | Path, up: str | Path | None, vqvae: str | None, clip: str | None
) -> tuple[GravoPipeline, dict, dict]:
    """The inference pipeline, the CLIP feature settings and the files it was built from, from run folders
    and/or official files."""
    run_path = Path(run)
    if run_path.suffix != ".tar":  # a run folder (run_checkpoint names one that is missing)
        run_checkpoint(run_path)
        check_run(run_path)
        low, model, data = _prior_from_run(run_path)
        vqvae = vqvae or model["vqvae_ckpt"]
        clip_settings = data["clip"].get("init_args", {})
    else:
        low, clip_settings = _official(run_path, "low"), dict(OFFICIAL_CLIP)
        if vqvae is None:
            raise UserError(f"{run_path}: an official Low prior needs --vqvae (the official vqvae.tar)")
    if up is None:
        if run_path.suffix == ".tar":
            raise UserError(f"{run_path}: an official Low prior needs --up (the official up.tar)")
        up = up_beside(run_path)
    up_path = Path(up)
    up_prior = _official(up_path, "up") if up_path.suffix == ".tar" else _prior_from_run(up_path)[0]
    vqvae_path = Path(vqvae)
    if vqvae_path.suffix == ".tar":
        vqvae_model = _official(vqvae_path, "vqvae")
    else:
        from projects.gravo.module_vqvae import load_vqvae

        vqvae_model = load_vqvae(vqvae_path)
    if clip is not None:
        clip_settings = {**clip_settings, "pretrained": clip}
    files = {"up": str(up_path), "vqvae": str(vqvae_path)}
    return GravoPipeline(vqvae_model, low, up_prior).eval(), clip_settings, files


def spectrogram_picture(wave: torch.Tensor) -> torch.Tensor:
    """A 16-kHz waveform [T] -> its 64-band log-mel [64, frames] in [0, 1], the top 8 nepers (about 70 dB)."""
    logmel = MelFrontEnd.from_preset("audioldm")(wave)
    return ((logmel - logmel.max() + 8) / 8).clamp(0, 1)


class GravoGenerator(Generator):
    """Sound for videos and images with one GRAVO (or Im2Wav) pipeline: CLIP frames -> Low -> Up -> VQ-VAE."""

    project, direction, inputs = "gravo", "video->audio", ("video", "image")

    def __init__(
        self,
        pipeline: GravoPipeline,
        clip_settings: dict,
        sampling: SamplingSettings,
        options: dict,
        device: str,
        run: Path,
        checkpoint: Path,
        batch_size: int = 1,
    ):
        super().__init__(run, checkpoint, batch_size)
        self.pipeline, self.sampling, self.options, self.device = (
            pipeline.to(device),
            sampling,
            options,
            device,
        )
        self.clip_settings = clip_settings
        self.feature = CLIPEmbeddingFeature(**{**clip_settings, "fps": FPS, "device": device})

    def settings(self) -> dict:
        sampling = {
            name: getattr(self.sampling, name) for name in ("guidance_scale", "temperature", "top_k", "top_p")
        }
        return {**sampling, **self.options, "clip": self.clip_settings}

    def frames(self, source: Path) -> tuple[torch.Tensor, float]:
        """The per-frame CLIP embeddings [n, 512] of a video (at 30 fps, over its whole length) or of an image
        (its one embedding for `--seconds`), and the seconds of sound they ask for."""
        is_video = kind_of(source) == "video"
        seconds = video_info(source).duration if is_video else self.options["seconds"]
        frames = self.feature.extract(source).float()
        n_frames = max(1, int(seconds * FPS))
        frames = pad_with_last(frames, n_frames)[:n_frames] if is_video else frames.expand(n_frames, -1)
        return frames, seconds

    def write(self, inputs: list[Path], stems: list[list[Path]], seed: int) -> list[list[dict[str, Path]]]:
        """Inputs of the same length in one call of the pipeline, each sample its own row."""
        frames = [self.frames(source) for source in inputs]
        rate = self.pipeline.sample_rate
        lengths = [round(seconds * rate) for _, seconds in frames]
        written: list[list[dict[str, Path]]] = [[] for _ in inputs]
        for length in dict.fromkeys(lengths):
            group = [i for i, n in enumerate(lengths) if n == length]
            rows = [(i, s) for i in group for s in range(len(stems[i]))]
            batch = torch.stack([frames[i][0] for i, _ in rows]).to(self.device)
            keys = [f"{inputs[i].name}/{s}" for i, s in rows]
            waves = self.pipeline.generate(batch, length, self.sampling, item_generators(seed, keys)).cpu()
            for (i, s), wave in zip(rows, waves, strict=True):
                picture = spectrogram_picture(wave)
                written[i].append(
                    save_sound(inputs[i], stems[i][s], wave, self.pipeline.sample_rate, picture)
                )
        return written


def add_options(parser) -> None:
    """The options of the GRAVO generator, for `avgen generate --run` and `--project gravo` alike."""
    parser.add_argument(
        "--up", help="an Up stage's run folder or the official up.tar (default: the Up run beside --run)"
    )
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


def load_generator(
    run: str | Path,
    device: str = "cpu",
    batch_size: int = 1,
    up: str | None = None,
    vqvae: str | None = None,
    clip: str | None = None,
    seconds: float = 4.0,
    total_seconds: float = DEFAULT_TOTAL_LENGTH / SAMPLE_RATE,
    guidance_scale: float | None = None,
    temperature: float | None = None,
    top_k: int | None = None,
    top_p: float | None = None,
) -> GravoGenerator:
    """The generator of a Low stage's run folder (or Im2Wav's official low.tar) with its Up prior."""
    check_device(device)
    pipeline, clip_settings, files = load_parts(run, up, vqvae, clip)
    overrides = {"guidance_scale": guidance_scale, "temperature": temperature, "top_k": top_k, "top_p": top_p}
    sampling = SamplingSettings(
        total_length=round(total_seconds * SAMPLE_RATE),
        **{name: value for name, value in overrides.items() if value is not None},
    )
    run = Path(run)
    checkpoint = run if run.suffix == ".tar" else run_checkpoint(run)
    options = {"seconds": seconds, "total_seconds": total_seconds, **files}
    return GravoGenerator(
        pipeline, clip_settings, sampling, options, device, None if run.suffix == ".tar" else run, checkpoint,
        batch_size,
    )  # fmt: skip


def main(argv: list[str]) -> list[Path]:
    parser = argparse.ArgumentParser(
        prog="avgen generate --project gravo", description=__doc__.split("\n\n")[0]
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--video", help="an mp4 (or any video PyAV reads)")
    source.add_argument("--image", help="a still image (png, jpg)")
    parser.add_argument("--out", required=True, help="the muxed video (or, for an image, the wav)")
    parser.add_argument("--run", required=True, help="a Low stage's run folder or the official low.tar")
    add_options(parser)
    parser.add_argument("--samples", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, ...")
    args = vars(parser.parse_args(argv))
    video, image, out, samples, seed = (
        args.pop(name) for name in ("video", "image", "out", "samples", "seed")
    )
    generator = load_generator(**args)
    source = Path(video or image)
    return generate_to(generator, source, Path(out), samples, seed)
