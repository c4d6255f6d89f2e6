"""AudioToken's toy pipeline (`make train PROJECT=audiotoken`): the frozen parts at toy size, the Embedder, then
Table 1 (AudioToken, arXiv:2305.13050).

Stable Diffusion, CLIP, BEATs and Wav2CLIP weights cannot be fetched here, so the pipeline first trains
stand-ins of the same classes on the embedded toy set, each frozen once trained:

1. `clip`: a transformers `CLIPModel` on the toy frames with captions "a photo of a <label>" (CLIP ViT-L/14's
   two roles: Stable Diffusion's text encoder and the metrics' CLIP); its folder also picks each clip's best
   frames (the frame with the highest CLIP score to its label, paper sec. 2.1) for every later stage;
2. `wav2clip`: Wav2CLIP against that CLIP's image tower (the audio side of AIS);
3. `vae`, `ldm`: a text-to-image latent diffusion model of Stable Diffusion's diffusers classes (AutoencoderKL,
   UNet2DConditionModel, the CLIP text tower), exported as a Stable Diffusion folder;
4. `beats`: BEATs at toy width, fine-tuned as a classifier of the toy classes, in the official file layout;
5. `audiotoken`: the Embedder, trained through the frozen text encoder and UNet (sec. 2.1), exactly as it would
   be with `--model.init_args.sd_root=<a real SD 1.x folder>`.

The summary generates one image per test clip (10-s audio, 64 x 64, 50 PNDM steps, guidance 7.5, the same
noise per clip in every row) for AudioToken and the two baselines of `projects.audiotoken.evaluate` (a random
token; the text label), and prints AIS, IIS, AIC and FID with 95 % bootstrap intervals over clips.
`benchmarks/audiotoken_seeds.py` repeats the Embedder stage over training seeds.
"""

from __future__ import annotations

from projects.audiotoken.evaluate import REFERENCE, ROWS, Judges, evaluate
from projects.audiotoken.models.pipeline import AudioTokenPipeline, SamplingSettings
from shared.data.loaders import eval_loader
from shared.encoders.clip_image_text import load_clip_image_text
from shared.encoders.wav2clip import load_wav2clip
from shared.metrics import format_interval
from shared.pipeline import Stage, StageResult

# the paper's inference (50 steps, guidance 7.5, SD 1.4's PNDM) at the toy's square size, as the paper
# generates 512 x 512 from a model trained on 512 x 320 frames
SETTINGS = SamplingSettings(height=64, width=64)
EVAL_BATCH = 100
# the best frames are chosen in every split: the test clips' real frames are IIS's and FID's references
BEST_FRAME_SPLITS = "[train,valid,test]"


def clip_folder(results: dict[str, StageResult]) -> str:
    return str(results["clip"].run_dir / "clip")


def _best_frames(results: dict[str, StageResult]) -> list[str]:
    return [
        f"--data.init_args.best_frames_clip={clip_folder(results)}",
        f"--data.init_args.best_frames_splits={BEST_FRAME_SPLITS}",
    ]


def _wav2clip(results: dict[str, StageResult]) -> list[str]:
    return [*_best_frames(results), f"--model.init_args.image_encoder_root={clip_folder(results)}"]


def _ldm(results: dict[str, StageResult]) -> list[str]:
    return [
        *_best_frames(results),
        f"--model.init_args.clip_root={clip_folder(results)}",
        f"--model.init_args.vae_root={results['vae'].run_dir / 'vae'}",
    ]


def sd_folder(results: dict[str, StageResult]) -> str:
    return str(results["ldm"].run_dir / "stable_diffusion")


def _audiotoken(results: dict[str, StageResult]) -> list[str]:
    return [
        *_best_frames(results),
        f"--model.init_args.sd_root={sd_folder(results)}",
        f"--model.init_args.beats_ckpt={results['beats'].run_dir / 'beats.pt'}",
    ]


STAGES = [
    Stage("clip", "toy_clip.yaml"),
    Stage("wav2clip", "toy_wav2clip.yaml", args=_wav2clip),
    Stage("vae", "toy_vae.yaml", args=_best_frames),
    Stage("ldm", "toy_ldm.yaml", args=_ldm, validate=False),
    Stage("beats", "toy_beats.yaml"),
    Stage("audiotoken", "toy_audiotoken.yaml", args=_audiotoken),
]

# (heading, metric, scale): Table 1's columns (AIC in %, AIS and IIS as win-rates in %)
COLUMNS = (("AIC", "aic", 100), ("AIS", "ais", 100), ("IIS", "iis", 100), ("FID", "fid", 1))


def judges(results: dict[str, StageResult]) -> Judges:
    """The toy set's scorers: the toy CLIP (its image tower also gives FID's features) and the toy Wav2CLIP."""
    clip = load_clip_image_text(clip_folder(results), crop=False)  # frames are stretched as in its training
    wav2clip = load_wav2clip(results["wav2clip"].checkpoint).eval()
    return Judges(clip, wav2clip, fid=clip, class_template="a photo of a {}")


def audiotoken_pipeline(results: dict[str, StageResult], stage: str = "audiotoken") -> AudioTokenPipeline:
    return results[stage].model.inference_pipeline()


def evaluate_stage(results: dict[str, StageResult], stage: str = "audiotoken", seed: int = 0, rows=ROWS):
    datamodule = results[stage].datamodule
    loader = eval_loader(datamodule.split("test"), EVAL_BATCH)
    return evaluate(
        audiotoken_pipeline(results, stage),
        loader,
        judges(results),
        list(datamodule.dataset.labels),
        SETTINGS,
        seed,
        batch_size=EVAL_BATCH,
        rows=rows,
    )


def table(rows: dict[str, dict[str, float]]) -> list[str]:
    lines = [f"  {'':<26}" + " ".join(f"{heading:<22}" for heading, _, _ in COLUMNS)]
    for label, metrics in rows.items():
        cells = []
        for _, name, scale in COLUMNS:
            if name not in metrics:
                cells.append("")
            elif f"{name}_lo" in metrics:
                cells.append(
                    format_interval(*(scale * metrics[f"{name}{end}"] for end in ("", "_lo", "_hi")))
                )
            else:
                cells.append(f"{scale * metrics[name]:.3g}")
        lines.append(f"  {label:<26}" + " ".join(f"{cell:<22}" for cell in cells))
    return lines


def summarize(results: dict[str, StageResult]) -> str:
    rows = evaluate_stage(results)
    ordered = {REFERENCE: rows[REFERENCE], **{row: rows[row] for row in ROWS}}
    metric = results.__getitem__
    lines = [
        "AudioToken toy pipeline:",
        f"  toy CLIP zero-shot accuracy (valid)      {metric('clip').metrics.get('val/zero_shot_acc', float('nan')):.3f}",
        f"  toy Wav2CLIP class retrieval R@1 (valid) {metric('wav2clip').metrics.get('val/class_r1', float('nan')):.3f}",
        f"  toy BEATs accuracy (valid)               {metric('beats').metrics.get('val/acc', float('nan')):.3f}",
        f"  Embedder noise loss (valid)              {metric('audiotoken').metrics.get('val/loss', float('nan')):.4f}",
        "",
        f"  test clips ({SETTINGS.steps} {SETTINGS.scheduler.upper()} steps, guidance {SETTINGS.guidance}, "
        f"{SETTINGS.width} x {SETTINGS.height}), 95 % bootstrap intervals over clips; AIC/AIS/IIS in %",
        *table(ordered),
    ]
    return "\n".join(lines)
