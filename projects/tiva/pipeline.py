"""TiVA's toy pipeline (`make train PROJECT=tiva`): paper sec. 3.3 end to end at toy scale, then Table 5.

Stand-ins for the frozen pretrained parts first: a small mel VAE (written in AudioLDM2's folder layout, where
the paper configuration reads AudioLDM2's) and Melception for the metrics (trained on the toy clips as the
metrics see them); the vocoder is Griffin-Lim; CLIP is a small random-weight ViT (its features are cached
by the data module). Then the training strategies of sec. 3.3: T alone (eq. 8), S + G with ground-truth
layouts (eq. 9), the joint stage from those weights (eq. 10), and the "w/o T" ablation trained for as many
steps as the generator and joint stages together. The summary evaluates, on the test split with DPM-Solver
(25 steps, guidance 5.0, `EVAL_SAMPLES` samples per clip): TiVA, w/o T, w/o S (guidance 0), w/o Joint (the
S + G stage with predicted layouts) and G with ground-truth layouts (Table 3's upper bound), each metric as
`value [low, high]` with its 95 % bootstrap interval over the test clips (`shared.metrics.bootstrap`).
"""

from __future__ import annotations

from pathlib import Path

from shared.metrics import format_interval
from shared.pipeline import Stage, StageResult


def _audioldm(results: dict[str, StageResult]) -> list[str]:
    return [f"--model.init_args.audioldm_root={results['vae'].run_dir / 'audioldm'}"]


def _with_layout(results: dict[str, StageResult]) -> list[str]:
    return [*_audioldm(results), f"--model.init_args.layout_predictor_ckpt={results['layout'].checkpoint}"]


STAGES = [
    Stage("vae", "toy_vae.yaml"),
    Stage("melception", "toy_melception.yaml"),
    Stage("layout", "toy_layout.yaml", args=_audioldm),
    # the summary evaluates the generator stages on the test split: no valid-split generation after fitting
    Stage("generator", "toy_generator.yaml", args=_with_layout, validate=False),
    Stage(
        "joint",
        "toy_joint.yaml",
        args=lambda results: [
            *_audioldm(results),
            f"--model.init_args.init_ckpt={results['generator'].checkpoint}",
        ],
        validate=False,
    ),
    Stage("no_layout", "toy_no_layout.yaml", args=_audioldm, validate=False),
]

# (row label, stage, overrides of the evaluation)
ROWS = [
    ("TiVA", "joint", []),
    ("w/o T", "no_layout", []),
    ("w/o S (guidance 0)", "joint", ["--model.init_args.sampling.guidance_scale=0"]),
    ("w/o Joint", "generator", ["--model.init_args.sampling.layout=predicted"]),
    ("G w/ ground-truth layout", "generator", ["--model.init_args.sampling.layout=ground_truth"]),
]
# (heading, metric) in two blocks, so that a row of `value [low, high]` cells stays readable
COLUMNS = (
    (("FAD", "fid"), ("KL", "mkl"), ("IS", "is")),
    (("W-dis", "w_dis"), ("DTW-dis", "dtw_dis"), ("L2(t)", "layout_l2"), ("s/clip", "seconds_per_clip")),
)
# samples per test clip: the 300 toy test clips give each row one generation per clip, so the bootstrap over
# clips draws noise and clip together; the evaluation's cost grows with clips x samples (projects/tiva/README.md)
EVAL_SAMPLES = 1


def evaluate_run(
    run_dir: Path,
    checkpoint: Path,
    melception_ckpt: Path,
    overrides: list[str],
    samples: int = EVAL_SAMPLES,
) -> dict[str, float]:
    """`avgen test` of a generator stage's checkpoint with the evaluation metrics, on the test split, with
    `samples` generations per clip: {metric: value, `<metric>_lo`, `<metric>_hi`: its bootstrap interval}."""
    from shared.cli import AvgenCLI

    cli = AvgenCLI(
        args=["test", "--config", str(run_dir / "config.yaml"),
              f"--model.init_args.melception_ckpt={melception_ckpt}",
              f"--model.init_args.sampling.samples={samples}", *overrides,
              f"--ckpt_path={checkpoint}", "--trainer.logger=false"],
    )  # fmt: skip
    return {
        k.removeprefix("test/"): float(v)
        for k, v in cli.trainer.callback_metrics.items()
        if k.startswith("test/")
    }


def summarize(results: dict[str, StageResult]) -> str:
    melception = results["melception"].checkpoint
    lines = [
        "TiVA toy pipeline:",
        f"  VAE L1 of the log-mel (valid)     {results['vae'].metrics.get('val/l1', float('nan')):.4f}",
        f"  Melception accuracy (valid)       {results['melception'].metrics.get('val/acc', float('nan')):.3f}",
        f"  layout L2 of T alone (valid)      {results['layout'].metrics.get('val/layout_l2', float('nan')):.4f}",
        "",
        f"  test split ({len(results['joint'].datamodule.split('test'))} clips x {EVAL_SAMPLES} generations), "
        "95 % bootstrap intervals over clips",
    ]
    rows = {
        label: evaluate_run(results[stage].run_dir, results[stage].checkpoint, melception, overrides)
        for label, stage, overrides in ROWS
    }
    for block in COLUMNS:
        lines.append(f"  {'':<26}" + " ".join(f"{heading:<22}" for heading, _ in block))
        for label, metrics in rows.items():
            cells = [
                format_interval(*(metrics.get(f"{name}{end}", float("nan")) for end in ("", "_lo", "_hi")))
                for _, name in block
            ]
            lines.append(f"  {label:<26}" + " ".join(f"{cell:<22}" for cell in cells))
    return "\n".join(lines)
