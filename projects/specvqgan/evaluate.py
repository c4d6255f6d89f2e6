"""Evaluation helpers: codebook quality (`evaluate_codebook`) and a sampler run's evaluation for `avgen evaluate`
(`evaluate_run`). The Melception metrics of generated mels (FID, MKL, IS as in paper sec. 3.4 / 6.1.7) are
`shared.metrics.MelceptionMetrics` and `spectrogram_metrics`.

How good is a trained codebook? Reconstruction error against a trivial baseline, and codebook usage.
The baseline predicts the mean training spectrogram for every clip; a codebook that reconstructs far
better than it has learned something about each clip. Usage is the share of codes chosen at least once
on the evaluation split, and the perplexity of the code histogram (n_codes for perfectly even use).
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from projects.specvqgan.data import SpectrogramDataModule
from projects.specvqgan.models import SpectrogramVQGAN
from shared.vq import CodebookUsage


@torch.no_grad()
def mean_spectrogram(datamodule: SpectrogramDataModule) -> torch.Tensor:
    """Element-wise mean of the training mels, [1, F, T] in [0, 1]."""
    total, count = 0.0, 0
    for batch in DataLoader(datamodule.split("train"), batch_size=datamodule.batch_size):
        total = total + batch["mel"].sum(0)
        count += batch["mel"].shape[0]
    return total / count


@torch.no_grad()
def evaluate_codebook(
    model: SpectrogramVQGAN, datamodule: SpectrogramDataModule, split: str = "valid"
) -> dict:
    model.eval()
    baseline = mean_spectrogram(datamodule)
    usage = CodebookUsage(model.n_codes)
    l1_model = l1_baseline = 0.0
    n = 0
    loader = datamodule.val_dataloader() if split == "valid" else datamodule.test_dataloader()
    for batch in loader:
        mel = batch["mel"]
        recon, q = model(mel * 2 - 1)
        recon = ((recon + 1) / 2).clamp(0, 1)
        l1_model += (recon - mel).abs().mean(dim=(1, 2, 3)).sum().item()
        l1_baseline += (baseline - mel).abs().mean(dim=(1, 2, 3)).sum().item()
        usage.update(q.indices)
        n += mel.shape[0]
    stats = usage.compute()
    return {
        "clips": n,
        "l1_reconstruction": l1_model / n,
        "l1_mean_spectrogram": l1_baseline / n,
        "codes_used": float(stats["used_fraction"]),
        "perplexity": float(stats["perplexity"]),
        "n_codes": model.n_codes,
    }


DIRECTION = "video->audio"  # what `evaluate_run` scores (`avgen evaluate`)
SYSTEMS = {"toy_sampler": "SpecVQGAN", "toy_sampler_nofeats": "SpecVQGAN (No Feats)"}  # `avgen compare`


def add_options(parser) -> None:
    """`avgen evaluate` options of a SpecVQGAN run (a sampler stage's run folder)."""
    from shared.evaluation import add_melception_options

    add_melception_options(parser)
    parser.add_argument(
        "--vocoder", help="MelGAN checkpoint or official folder (default: <prefix>_vocoder beside)"
    )


def evaluate_run(
    run,
    split: str = "test",
    device: str = "cpu",
    seed: int = 0,
    clips_per_class: int | None = None,
    samples: int | None = None,
    judges=None,  # the common metrics' judges: SpecVQGAN's metrics are on its own Melception
    melception: str | None = None,
    melception_stats: str | None = None,
    vocoder: str | None = None,
):
    """A sampler stage's run on `split` as its `avgen test` scores it (paper sec. 3.4, 6.1.7): the run's
    `sampling` (top-k, `samples_per_clip` samples per clip unless `samples` says otherwise, every item's random
    stream keyed by `seed` and "<clip>/<sample>") and FID, MKL and IS of the sampled mels on Melception with
    their intervals; the mels vocoded by the MelGAN run beside it (`<prefix>_vocoder`) for the common metrics."""
    from dataclasses import asdict, replace
    from pathlib import Path

    from projects.specvqgan.module_sampler import SpecVQGANTransformer
    from projects.specvqgan.vocoder import load_vocoder
    from shared.data.loaders import eval_loader
    from shared.encoders import load_melception
    from shared.evaluation import RunOutputs, evaluation_clips, run_datamodule
    from shared.metrics import MelceptionMetrics
    from shared.runs import run_checkpoint, sibling_run

    run = Path(run)
    prefix = run.parent.name.split("_")[0]
    checkpoint = run_checkpoint(run)
    module = SpecVQGANTransformer.load_from_checkpoint(checkpoint, map_location="cpu", melception_ckpt=None)
    module = module.to(device).eval()
    module.sampling = replace(
        module.sampling, seed=seed, samples_per_clip=samples or module.sampling.samples_per_clip
    )
    melception = melception or module.hparams.melception_ckpt
    melception = melception or run_checkpoint(sibling_run(run, f"{prefix}_melception", "--melception"))
    vocoder = vocoder or run_checkpoint(sibling_run(run, f"{prefix}_vocoder", "--vocoder"))
    metrics = MelceptionMetrics(load_melception(melception, melception_stats)).to(device)
    voice = load_vocoder(vocoder).to(device)
    datamodule = run_datamodule(run)
    dataset, clips = evaluation_clips(datamodule.split(split), clips_per_class)
    waves, item_ids = [], []
    with torch.no_grad():
        for batch in eval_loader(dataset, datamodule.batch_size):
            batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
            for ids, mels in module.sample_mels(batch):
                metrics.update(fake=mels, fake_ids=ids)
                waves.append(voice(mels.clamp(0, 1)[:, 0]).cpu())
                item_ids += list(ids)
            metrics.update(real=batch["mel"], real_ids=batch["clip_id"])
    return RunOutputs(
        direction=DIRECTION,
        checkpoint=checkpoint,
        clips=clips,
        labels=list(datamodule.dataset.labels),
        item_ids=item_ids,
        items=torch.cat(waves),
        sample_rate=voice.sample_rate,
        metrics={name: float(value) for name, value in metrics.compute().items()},
        settings={
            "sampling": asdict(module.sampling),
            "melception": str(melception),
            "vocoder": str(vocoder),
        },
    )
