"""WavBriVL's toy pipeline (`make train PROJECT=wavbrivl`): the frozen image tower, the audio tower trained into
its space with each loss, the image VQGAN, then Tables 1-2 (WavBriVL, arXiv:2303.04585).

BriVL, WavLM and VQGAN weights cannot be fetched here, so the pipeline trains stand-ins of the same
architectures on the embedded toy VGGSound:

1. `image_tower`: BriVL's image tower at toy size, trained on one frame per clip with the class as target, then
   frozen (the image side of every later stage);
2. `audio_tower`: the WavLM audio tower trained against that frozen tower with BriVL's MoCo cross-modal loss
   (sec. 3, the paper's recipe);
3. `audio_tower_infonce`: the same with Wav2CLIP's in-batch symmetric InfoNCE (the loss switch's other side);
4. `vqgan`: the toy image VQGAN, the generator of audio-to-image generation (sec. 5).

The summary evaluates, on the toy VGGSound test split (`projects.wavbrivl.evaluate`), four audio embeddings
with one protocol: the two trained towers, the same tower with random weights (what training added) and the
per-band mel statistics (what the spectral envelope alone gives): the linear and MLP probes' accuracy (Table 1,
trained on the train split) and the retrieval MRR audio->image and image->audio against the frozen image
tower's embedding of each clip's frame, instance and class level (Table 2), with 95 % bootstrap
intervals over clips and the chance levels. The mel statistics live outside the image space, so they have no
MRR. Then generation (sec. 5) from the audio of three test clips per class with the MoCo tower, the toy VQGAN
and the toy image tower as perceptor (`projects.wavbrivl.evaluate.evaluate_generation`): the similarity's
rise over the iterations, the image tower's class agreement with the clip against chance, seconds per image.
"""

from __future__ import annotations

import torch

from projects.wavbrivl.evaluate import EvaluationResult, evaluate_embedding, evaluate_generation, format_rows
from projects.wavbrivl.generation import GenerationSettings
from projects.wavbrivl.models.audio_tower import WavLMAudioTower
from shared.encoders.mel_summary import MelStatisticsEmbedding
from shared.pipeline import Stage, StageResult

# the seed of the random-init tower's weights (the "untrained" row)
RANDOM_TOWER_SEED = 0
# the toy generation: 64x64 images (the toy VQGAN's frames), 16 cutouts, 60 iterations
TOY_GENERATION = GenerationSettings(steps=60, cutouts=16, size=64)


def _image_tower(results: dict[str, StageResult]) -> list[str]:
    return [f"--model.init_args.image_tower={results['image_tower'].checkpoint}"]


STAGES = [
    Stage("image_tower", "toy_image_tower.yaml"),
    Stage("audio_tower", "toy_audio_tower.yaml", args=_image_tower),
    Stage("audio_tower_infonce", "toy_audio_tower_infonce.yaml", args=_image_tower),
    Stage("vqgan", "toy_vqgan.yaml"),
]


def random_init_tower(trained: WavLMAudioTower, seed: int = RANDOM_TOWER_SEED) -> WavLMAudioTower:
    """A tower of the trained one's architecture with fresh random weights, frozen, in eval mode; the global
    RNG is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        tower = WavLMAudioTower(**trained.settings())
    return tower.requires_grad_(False).eval()


def evaluate_rows(
    results: dict[str, StageResult], random_seed: int = RANDOM_TOWER_SEED
) -> dict[str, EvaluationResult]:
    """Table 1/2 rows on the toy test split: both trained towers, a random-init tower (its weights drawn
    from `random_seed`), the mel statistics."""
    moco, infonce = results["audio_tower"].model, results["audio_tower_infonce"].model
    image_tower = moco.image_tower.eval()
    datamodule = results["audio_tower"].datamodule
    towers = {
        "WavBriVL (MoCo)": moco.audio_tower.eval(),
        "WavBriVL (InfoNCE)": infonce.audio_tower.eval(),
        "random-init audio tower": random_init_tower(moco.audio_tower, random_seed),
    }
    rows = {name: evaluate_embedding(tower, datamodule, image_tower) for name, tower in towers.items()}
    rows["mel statistics"] = evaluate_embedding(MelStatisticsEmbedding().eval(), datamodule)
    return rows


def summarize(results: dict[str, StageResult]) -> str:
    metric = results.__getitem__
    nan = float("nan")
    image = metric("image_tower").metrics
    lines = [
        "WavBriVL toy pipeline:",
        f"  toy image tower accuracy (valid)          {image.get('val/acc', nan):.3f} "
        f"(chance {image.get('val/chance', nan):.3f})",
    ]
    for stage in ("audio_tower", "audio_tower_infonce"):
        values = metric(stage).metrics
        lines.append(
            f"  {stage:<20} R@1 (valid)          {values.get('val/r1', nan):.3f} "
            f"(chance {values.get('val/r1_chance', nan):.3f}); class R@1 {values.get('val/class_r1', nan):.3f} "
            f"(chance {values.get('val/class_r1_chance', nan):.3f})"
        )
    lines += [
        f"  toy VQGAN pixel loss (valid, [-1, 1])      {metric('vqgan').metrics.get('val/rec_loss', nan):.4f}",
        "",
        "  toy VGGSound test split: probes trained on the train split (accuracy), retrieval MRR against the",
        "  frozen image tower's evaluation frame; 95 % bootstrap intervals over clips",
        format_rows(evaluate_rows(results)),
        "",
        "  generation from the audio of 3 test clips per class (MoCo tower, toy VQGAN, the toy image tower as",
        "  perceptor and as class judge; 95 % bootstrap intervals over images):",
        *(f"  {line}" for line in generation(results).lines()),
    ]
    return "\n".join(lines)


def generation(results: dict[str, StageResult]):
    moco = results["audio_tower"].model
    vqgan = results["vqgan"].model.vqgan
    return evaluate_generation(
        moco.audio_tower.eval(),
        moco.image_tower,
        vqgan,
        results["audio_tower"].datamodule,
        TOY_GENERATION,
        per_class=3,
    )
