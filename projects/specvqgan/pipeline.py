"""SpecVQGAN's toy pipeline (`make train PROJECT=specvqgan`): VGGish-ish, then the spectrogram codebook.

The VGGish-ish classifier is trained first because the codebook's LPAPS loss uses it frozen (sec. 3.1).
"""

from __future__ import annotations

from projects.specvqgan.evaluate import evaluate_codebook
from shared.pipeline import Stage, StageResult

STAGES = [
    Stage("vggishish", "toy_vggishish.yaml"),
    Stage(
        "codebook",
        "toy_codebook.yaml",
        args=lambda results: [f"--model.init_args.classifier_ckpt={results['vggishish'].checkpoint}"],
    ),
]


def summarize(results: dict[str, StageResult]) -> str:
    classifier = results["vggishish"].metrics
    codebook = results["codebook"]
    quality = evaluate_codebook(codebook.model.autoencoder, codebook.datamodule)
    return "\n".join(
        [
            "SpecVQGAN toy pipeline, validation split:",
            f"  VGGish-ish accuracy            {classifier.get('val/acc', float('nan')):.3f}",
            f"  codebook L1 reconstruction     {quality['l1_reconstruction']:.4f}",
            f"  mean-spectrogram baseline L1   {quality['l1_mean_spectrogram']:.4f}"
            f"   (ratio {quality['l1_reconstruction'] / quality['l1_mean_spectrogram']:.2f})",
            f"  codes used                     {quality['codes_used']:.0%} of {quality['n_codes']}"
            f"   (perplexity {quality['perplexity']:.1f})",
            f"  clips                          {quality['clips']}",
        ]
    )
