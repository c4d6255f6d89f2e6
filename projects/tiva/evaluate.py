"""TiVA's evaluation for `avgen evaluate` (TiVA paper sec. 4.1.3, Tables 1-3): a generator stage's run scored as
its `avgen test` scores it (`module_tiva.TiVA`'s test step), with the same shared metrics.

Each clip of the split is generated `sampling.samples` times with the run's sampling settings (DPM-Solver 25
steps, guidance 5.0, T's layouts), the noise of batch b drawn from the stream seeded by (seed, b), and its first
`eval_seconds` scored against the same part of its real audio: FAD, KL and IS on Melception ("mel.", the audio
resampled to 22,050 Hz; `fid`, `mkl`, `is` as the module logs them), W-dis and DTW-dis of the onset curves, the
layout L2 of T, and the generation time per clip; each with its bootstrap interval over clips.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

import torch

DIRECTION = "video->audio"  # what `evaluate_run` scores (`avgen evaluate`)
SYSTEMS = {"toy_joint": "TiVA", "toy_no_layout": "TiVA w/o T"}  # experiments compared by `avgen compare`
SEED_STRIDE = 1_000_003  # batch b of seed s draws its noise from the stream s * SEED_STRIDE + b


def add_options(parser) -> None:
    """`avgen evaluate` options of a TiVA run (a generator stage's run folder)."""
    from shared.evaluation import add_melception_options

    add_melception_options(parser)


def evaluate_run(
    run,
    split: str = "test",
    device: str = "cpu",
    seed: int = 0,
    clips_per_class: int | None = None,
    samples: int | None = None,
    judges=None,  # the common metrics' judges: TiVA's metrics are on its own Melception
    melception: str | None = None,
    melception_stats: str | None = None,
):
    """A generator stage's run (`joint`, `no_layout` or `generator`) on `split` (module docstring)."""
    from projects.tiva.module_tiva import TiVA
    from shared.data.loaders import eval_loader
    from shared.encoders import load_melception, melception_inputs
    from shared.evaluation import RunOutputs, evaluation_clips, run_datamodule
    from shared.metrics import Bootstrap, ClipMean, MelceptionMetrics, OnsetSyncMetrics
    from shared.runs import UserError, run_checkpoint, sibling_run

    run = Path(run)
    checkpoint = run_checkpoint(run)
    module = TiVA.load_from_checkpoint(checkpoint, map_location="cpu", melception_ckpt=None).to(device).eval()
    if module.hparams.stage == "layout":
        raise UserError(f"{run}: a layout stage's run generates no sound; give a generator stage's run")
    sampling = replace(module.sampling, samples=samples or module.sampling.samples)
    prefix = run.parent.name.split("_")[0]
    melception = melception or module.hparams.melception_ckpt
    melception = melception or run_checkpoint(sibling_run(run, f"{prefix}_melception", "--melception"))
    bootstrap = Bootstrap(module.hparams.bootstrap_resamples) if module.hparams.bootstrap_resamples else None
    metrics = {
        "quality": MelceptionMetrics(load_melception(melception, melception_stats), bootstrap=bootstrap),
        "sync": OnsetSyncMetrics(module.front_end.sample_rate, bootstrap=bootstrap),
        "seconds": ClipMean("seconds_per_clip", bootstrap=bootstrap),
    }
    if module.hparams.stage != "no_layout":
        metrics["layout_l2"] = ClipMean("layout_l2", bootstrap=bootstrap)
    for metric in metrics.values():
        metric.to(device)
    datamodule = run_datamodule(run)
    dataset, clips = evaluation_clips(datamodule.split(split), clips_per_class)
    waves, item_ids = [], []
    rate = module.front_end.sample_rate
    with torch.no_grad():
        for index, batch in enumerate(eval_loader(dataset, datamodule.batch_size)):
            batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
            generator = torch.Generator(device).manual_seed(seed * SEED_STRIDE + index)
            out = module.generate(batch, generator, sampling)
            fakes, reals = module.scored(out["wave"]), module.scored(batch["wave"])  # sample-major copies
            ids = list(batch["clip_id"]) * sampling.samples
            metrics["seconds"].update(
                torch.full((len(fakes),), out["seconds"] / len(fakes), device=device), ids
            )
            if "layout_l2" in metrics:
                error = module.layout_predictor(batch["clip_cls"], batch["clip_patch"]) - module.true_layout(
                    batch["wave"]
                )
                metrics["layout_l2"].update(error.pow(2).flatten(1).mean(1), batch["clip_id"])
            metrics["sync"].update(fakes, reals.repeat(sampling.samples, 1), ids)
            real, fake = (melception_inputs(x, rate).unsqueeze(1) for x in (reals, fakes))
            metrics["quality"].update(real, batch["clip_id"], fake, ids)
            waves.append(out["wave"].cpu())
            item_ids += ids
    values = {}
    for metric in metrics.values():
        values |= {name: float(value) for name, value in metric.compute().items()}
    return RunOutputs(
        direction=DIRECTION,
        checkpoint=checkpoint,
        clips=clips,
        labels=list(datamodule.dataset.labels),
        item_ids=item_ids,
        items=torch.cat(waves),
        sample_rate=rate,
        metrics=values,
        settings={"sampling": asdict(sampling), "melception": str(melception), "stage": module.hparams.stage},
    )
