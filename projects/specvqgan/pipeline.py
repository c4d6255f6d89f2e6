"""SpecVQGAN's toy pipeline (`make train PROJECT=specvqgan`): arXiv:2110.08791, sec. 3, end to end at toy
scale.

VGGish-ish (the codebook's LPAPS needs it frozen, sec. 3.1) -> spectrogram codebook -> the toy visual
encoder (a frame classifier standing in for ImageNet pre-training, `module_frames`) -> the sampler
conditioned on its video features, and the "No Feats" sampler as its baseline (sec. 3.2, Table 3; the
visual features are cached by the data module's preparation) -> MelGAN vocoder (sec. 3.3) -> Melception
(sec. 3.4) -> evaluation: FID, MKL and IS on Melception for both samplers' samples and for the codebook's
reconstructions (the comparison of Tables 1 and 3), on the test split, each as `value [low, high]` with its
95 % bootstrap interval over the test clips (`shared.metrics.bootstrap`).
"""

from __future__ import annotations

from pathlib import Path

from projects.specvqgan.evaluate import evaluate_codebook
from shared.metrics import format_interval
from shared.pipeline import Stage, StageResult


def _codebook(results: dict[str, StageResult]) -> list[str]:
    return [f"--model.init_args.codebook_ckpt={results['codebook'].checkpoint}"]


STAGES = [
    Stage("vggishish", "toy_vggishish.yaml"),
    Stage(
        "codebook",
        "toy_codebook.yaml",
        args=lambda results: [f"--model.init_args.classifier_ckpt={results['vggishish'].checkpoint}"],
    ),
    Stage("frames", "toy_frames.yaml"),
    Stage(
        "sampler",
        "toy_sampler.yaml",
        args=lambda results: [
            *_codebook(results),
            f"--data.init_args.visual.init_args.weights={results['frames'].run_dir / 'frame_encoder.pt'}",
        ],
    ),
    Stage("sampler_nofeats", "toy_sampler_nofeats.yaml", args=_codebook),
    Stage("vocoder", "toy_vocoder.yaml"),
    Stage("melception", "toy_melception.yaml"),
]


def test_sampler(result: StageResult, melception_ckpt: Path) -> dict[str, float]:
    """`avgen test` of a sampler stage with the Melception metrics, on the test split."""
    from shared.cli import AvgenCLI

    config = result.run_dir / "config.yaml"
    cli = AvgenCLI(
        args=["test", "--config", str(config), f"--model.init_args.melception_ckpt={melception_ckpt}",
              f"--ckpt_path={result.checkpoint}", "--trainer.logger=false"],
    )  # fmt: skip
    return {k: float(v) for k, v in cli.trainer.callback_metrics.items() if k.startswith("test/")}


def summarize(results: dict[str, StageResult]) -> str:
    classifier = results["vggishish"].metrics
    codebook = results["codebook"]
    quality = evaluate_codebook(codebook.model.autoencoder, codebook.datamodule)
    melception = results["melception"].checkpoint
    rows = {name: test_sampler(results[name], melception) for name in ("sampler", "sampler_nofeats")}
    lines = [
        "SpecVQGAN toy pipeline:",
        f"  VGGish-ish accuracy (valid)       {classifier.get('val/acc', float('nan')):.3f}",
        f"  Melception accuracy (valid)       {results['melception'].metrics.get('val/acc', float('nan')):.3f}",
        f"  frame classifier accuracy (valid) {results['frames'].metrics.get('val/acc', float('nan')):.3f}",
        f"  codebook L1 reconstruction        {quality['l1_reconstruction']:.4f}"
        f"   (mean-spectrogram baseline {quality['l1_mean_spectrogram']:.4f})",
        f"  codes used                        {quality['codes_used']:.0%} of {quality['n_codes']}",
        f"  vocoder mel L1 (valid)            {results['vocoder'].metrics.get('val/mel_l1', float('nan')):.4f}",
        "",
        f"  test split ({len(results['sampler'].datamodule.split('test'))} clips), Melception metrics, "
        "95 % bootstrap intervals over clips",
        f"  {'':<33}" + " ".join(f"{name:<22}" for name in ("FID", "MKL", "IS")),
    ]
    reconstructions = rows["sampler"]
    lines.append(_row("codebook reconstructions", reconstructions, "reconstructions"))
    lines.append(_row("sampler, video features", rows["sampler"], "samples"))
    lines.append(_row("sampler, No Feats", rows["sampler_nofeats"], "samples"))
    return "\n".join(lines)


def _row(label: str, metrics: dict[str, float], kind: str) -> str:
    cells = [
        format_interval(
            *(metrics.get(f"test/{name}{end}_{kind}", float("nan")) for end in ("", "_lo", "_hi"))
        )
        for name in ("fid", "mkl", "is")
    ]
    return f"  {label:<33}" + " ".join(f"{cell:<22}" for cell in cells)
