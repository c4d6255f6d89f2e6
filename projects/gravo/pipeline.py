"""GRAVO's toy pipeline (`make train PROJECT=gravo`): Im2Wav's and GRAVO's stages end to end, then Tables 1-2.

Stand-ins for the frozen pretrained parts first: the waveform VQ-VAE (Im2Wav's `small_multi_level_vqvae` at toy
widths), a classifier of the toy classes reading 16-kHz audio (the toy set's VGGish and PaSST: FAD on its
features, KL and ACC on its outputs) and a Wav2CLIP trained on the toy clips (GRAVO's audio target w and the CS
metric); CLIP is a small random-weight ViT whose per-frame embeddings the data module caches. Then the Low
prior's five variants of Table 2, each trained from scratch with the same seed (Im2Wav; the frame attention
alone; + L_w; + L_f; GRAVO = both, eq. 6) and the Up prior they share (eq. 2: Up is Im2Wav's).

The summary generates, for each Low variant, the first window of every test clip (classifier-free guidance
eta = 3, one generation per clip, `EVAL_SAMPLES`) and `IMAGEHEAR_GENERATIONS` clips per toy ImageHear class,
and prints Tables 1-2's columns with their 95 % bootstrap intervals over clips (`projects.gravo.evaluate`).
One training per row cannot order rows whose intervals overlap; `benchmarks/gravo_seeds.py` repeats the Low
stages over more training seeds.
"""

from __future__ import annotations

from pathlib import Path

import torch

from projects.gravo.data import SAMPLE_RATE, GravoImageHearDataModule
from projects.gravo.evaluate import evaluate_clips, evaluate_images
from projects.gravo.models.pipeline import GravoPipeline, SamplingSettings
from shared.data import ImageHearIndex
from shared.data.loaders import eval_loader
from shared.data.toy import TOY_CLASSES
from shared.metrics import AudioGenerationMetrics, format_interval
from shared.pipeline import Stage, StageResult

EVAL_SAMPLES = 1
# clips generated together: the samplers' steps are sequential, so large batches amortise each step's overhead
EVAL_BATCH = 300
IMAGEHEAR_GENERATIONS = 10
# Im2Wav's sampling defaults; the Low prior's time signal gets the length of a toy clip (2 s), as Im2Wav's gets
# that of a VGGSound clip (10 s)
SETTINGS = SamplingSettings(total_length=32_000, samples=EVAL_SAMPLES)


def _vqvae(results: dict[str, StageResult]) -> list[str]:
    return [f"--model.init_args.vqvae_ckpt={results['vqvae'].checkpoint}"]


def _vqvae_and_wav2clip(results: dict[str, StageResult]) -> list[str]:
    """The Low variants also get the Wav2CLIP target (GRAVO's losses and every variant's tCS)."""
    return [*_vqvae(results), f"--model.init_args.wav2clip_ckpt={results['wav2clip'].checkpoint}"]


# (row label, stage name, config): Table 2's rows, Im2Wav first and GRAVO (eq. 6) last
LOW_VARIANTS = [
    ("Im2Wav", "low_im2wav", "toy_low_im2wav.yaml"),
    ("MHA only", "low_mha", "toy_low_mha.yaml"),
    ("MHA + L_w", "low_lw", "toy_low_lw.yaml"),
    ("MHA + L_f", "low_lf", "toy_low_lf.yaml"),
    ("GRAVO (MHA + L_w + L_f)", "low_gravo", "toy_low_gravo.yaml"),
]

STAGES = [
    Stage("vqvae", "toy_vqvae.yaml"),
    Stage("classifier", "toy_classifier.yaml"),
    Stage("wav2clip", "toy_wav2clip.yaml"),
    *(Stage(stage, config, args=_vqvae_and_wav2clip, validate=False) for _, stage, config in LOW_VARIANTS),
    Stage("up", "toy_up.yaml", args=_vqvae, validate=False),
]

# ACC is a fraction; the paper's tables give it in % (CS and tCS are 100 x cosine already)
PERCENT = {"acc": 100, "ih_acc": 100, "acc_real": 100}
# (heading, metric): Table 1 (VGGSound: FAD, KL, CS, ACC; ImageHear: CS, ACC) and Table 2's tCS
COLUMNS = (
    (("FAD", "fad"), ("KL", "kl"), ("CS", "cs"), ("ACC", "acc")),
    (("tCS", "tcs"), ("IH CS", "ih_cs"), ("IH ACC", "ih_acc")),
)


def gravo_pipeline(results: dict[str, StageResult], low_stage: str) -> GravoPipeline:
    """The inference pipeline of one Low variant with the shared VQ-VAE and Up prior, in eval mode."""
    return GravoPipeline(
        results["vqvae"].model.vqvae, results[low_stage].model.prior, results["up"].model.prior
    ).eval()


def toy_imagehear(datamodule) -> GravoImageHearDataModule:
    """The toy ImageHear images as still clips of the toy window, embedded by the run's toy CLIP."""
    imagehear = GravoImageHearDataModule(
        dataset=ImageHearIndex(Path(datamodule.dataset.root).parent / "imagehear"),
        clip=datamodule.clip,
        cache_dir=str(datamodule.cache_dir),
        window_seconds=datamodule.window_samples / SAMPLE_RATE,
        generations_per_class=IMAGEHEAR_GENERATIONS,
        batch_size=EVAL_BATCH,
    )
    imagehear.prepare_data()
    return imagehear


def evaluate_variant(
    results: dict[str, StageResult], low_stage: str, settings: SamplingSettings, seed: int = 0
) -> dict[str, float]:
    """Table 1-2's metrics of one Low variant on the toy test clips and the toy ImageHear images."""
    pipeline = gravo_pipeline(results, low_stage)
    classifier = results["classifier"].model.net.eval()
    wav2clip = results["wav2clip"].model.model.eval()
    datamodule = results[low_stage].datamodule
    clips = eval_loader(datamodule.split("test"), EVAL_BATCH)
    values = evaluate_clips(
        pipeline,
        clips,
        AudioGenerationMetrics(classifier, classifier, real_accuracy=True),
        wav2clip,
        settings,
        seed,
    )
    return values | toy_imagehear_scores(pipeline, datamodule, classifier, wav2clip, settings, seed)


def toy_imagehear_scores(
    pipeline: GravoPipeline,
    datamodule,
    classifier: torch.nn.Module,
    wav2clip: torch.nn.Module,
    settings: SamplingSettings,
    seed: int = 0,
    device: str = "cpu",
) -> dict[str, float]:
    """Table 1's ImageHear CS and ACC (`ih_cs`, `ih_acc`, with intervals) on the toy ImageHear images."""
    # an ImageHear class is a toy class's folder (its slug); the classifier's classes are the sorted labels
    label_of_slug = {c.slug: datamodule.dataset.labels.index(c.label) for c in TOY_CLASSES}

    def image_targets(batch: dict) -> torch.Tensor:
        return torch.tensor([label_of_slug[name] for name in batch["class_name"]], device=device)

    images = (
        {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        for batch in toy_imagehear(datamodule).test_dataloader()
    )
    values = evaluate_images(pipeline, images, classifier, wav2clip, settings, seed, image_targets)
    return {f"ih_{name}": value for name, value in values.items()}


def table(rows: dict[str, dict[str, float]]) -> list[str]:
    lines = []
    for block in COLUMNS:
        lines.append(f"  {'':<26}" + " ".join(f"{heading:<22}" for heading, _ in block))
        for label, metrics in rows.items():
            cells = [
                format_interval(
                    *(
                        PERCENT.get(name, 1) * metrics.get(f"{name}{end}", float("nan"))
                        for end in ("", "_lo", "_hi")
                    )
                )
                for _, name in block
            ]
            lines.append(f"  {label:<26}" + " ".join(f"{cell:<22}" for cell in cells))
    return lines


def summarize(results: dict[str, StageResult]) -> str:
    rows = {label: evaluate_variant(results, stage, SETTINGS) for label, stage, _ in LOW_VARIANTS}
    reference = rows["Im2Wav"]
    lines = [
        "GRAVO toy pipeline:",
        f"  VQ-VAE level-0 reconstruction (valid, lmix)  {results['vqvae'].metrics.get('val/recon_l0', float('nan')):.4f}",
        f"  Wav2CLIP class retrieval R@1 (valid)          {results['wav2clip'].metrics.get('val/class_r1', float('nan')):.3f}",
        f"  classifier accuracy (valid)                   {results['classifier'].metrics.get('val/acc', float('nan')):.3f}",
        "",
        "  test clips (one generation each) and toy ImageHear "
        f"({IMAGEHEAR_GENERATIONS} per class), 95 % bootstrap intervals over clips",
        f"  {'Reference (real audio)':<26}CS {format_interval(reference['cs_real'], reference['cs_real_lo'], reference['cs_real_hi'])}"
        f"  ACC {format_interval(*(100 * reference[f'acc_real{end}'] for end in ('', '_lo', '_hi')))}",
        *table(rows),
    ]
    return "\n".join(lines)
