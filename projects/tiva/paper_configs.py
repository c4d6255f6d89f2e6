"""Writes TiVA's paper-size configs (VGGSound) as `configs/vggsound_<stage>.yaml`.

    python -m projects.tiva.paper_configs      # rewrite them after changing a setting here

One file per training strategy of sec. 3.3 and per Table 5 ablation, differing only in a few fields, so they are
generated rather than written by hand (a test keeps the committed files equal to this output). What they share
(trainer, S, T and G at the paper's sizes, data) is written once, to `configs/base/vggsound.yaml`, which each
stage file extends (`extends:`, see `shared.cli`); a stage file holds its stage, learning rate, length, what it
starts from and how it samples where that differs:

| file | what | then evaluate with `avgen test --config <file> --ckpt_path=...` as |
| --- | --- | --- |
| `vggsound_layout` | T alone (eq. 8) | - |
| `vggsound_generator` | S + G with ground-truth layouts (eq. 9), T from the layout run | Table 5 "w/o Joint" |
| `vggsound_joint` | S, T, G jointly (eq. 10), from the generator run | TiVA |
| `vggsound_wo_s` | the joint weights, guidance scale 0 | Table 5 "w/o S" |
| `vggsound_no_layout` | S + G without any layout | Table 5 "w/o T" |

Fixed by the paper: CLIP layers 4/8/11 at 10 fps (ViT-B/16, OpenAI weights: the paper names neither, "layer 11"
fits a 12-block ViT-B), 16 kHz audio of 10.24 s, layout [102, 5], AudioLDM2's VAE, HiFi-GAN vocoder and T-UNet
widths, 10 % of s zeroed, DPM-Solver 25 steps with guidance 5.0 (sec. 4.1.1), and the evaluation of the first
8 s of each output (sec. 4.1.2, `eval_seconds`). Ours (not in the paper): learning rates, batch sizes, step
counts, T's sizes. `model.init_args.audioldm_root` points to a local copy of `cvssp/audioldm2` (give it as an
absolute path: a run folder records it as given); its `vocoder/` is required, never replaced by Griffin-Lim.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from projects.tiva.models import paper_unet_config

OUT = Path(__file__).parent / "configs"
BASE = "base/vggsound"  # what every stage file extends, relative to OUT
BASE_COMMENT = "What every paper-size TiVA stage shares; each vggsound_<stage>.yaml extends it."
AUDIOLDM = "models/audioldm2"  # a local snapshot of cvssp/audioldm2 (vae/, vocoder/, ...)

STAGES = {  # name: (stage, lr, max_steps, extra model args, comment)
    "layout": ("layout", 1.0e-4, 200_000, {}, "T alone (TiVA sec. 3.3, eq. 8)."),
    "generator": (
        "generator", 1.0e-4, 400_000,
        {"layout_predictor_ckpt": "runs/tiva/vggsound_layout/default/checkpoints/best.ckpt"},
        "S + G with ground-truth layouts (eq. 9); tested as is, Table 5's w/o Joint.",
    ),
    "joint": (
        "joint", 2.0e-5, 100_000,
        {"init_ckpt": "runs/tiva/vggsound_generator/default/checkpoints/best.ckpt"},
        "S, T and G jointly with predicted layouts (eq. 10), from the generator run: TiVA.",
    ),
    "wo_s": (
        "joint", 2.0e-5, 100_000,
        {"init_ckpt": "runs/tiva/vggsound_generator/default/checkpoints/best.ckpt"},
        "Table 5's w/o S: test the joint weights with guidance scale 0 (--ckpt_path=<joint run>/checkpoints/best.ckpt).",
    ),
    "no_layout": ("no_layout", 1.0e-4, 500_000, {}, "Table 5's w/o T: S + G without any layout."),
}  # fmt: skip
SAMPLING = {
    "wo_s": {"guidance_scale": 0.0},
    "no_layout": {"layout": "none"},
}  # where a stage differs from the base


def base() -> dict:
    """What every paper-size stage shares: the trainer, S, T and G at the paper's sizes, and the data."""
    unet = {k: list(v) if isinstance(v, tuple) else v for k, v in paper_unet_config().items()}
    model = {
        "semantic": {
            "class_path": "projects.tiva.models.SemanticEncoder",
            "init_args": {"clip_dim": 768, "context_dim": 768},
        },
        "layout_predictor": {
            "class_path": "projects.tiva.models.LayoutPredictor",
            "init_args": {"clip_dim": 768, "n_layers": 3, "n_frames": 102, "layout_size": [102, 5]},
        },
        "generator": {
            "class_path": "projects.tiva.models.LayoutConditionedUNet",
            "init_args": {"unet": unet},
        },
        "audioldm_root": AUDIOLDM,
        "vocoder": "hifigan",
        "layout_size": [102, 5],
        "cond_drop": 0.1,
        "sampling": {"sampler": "dpm_solver", "steps": 25, "guidance_scale": 5.0, "layout": "predicted"},
        "eval_seconds": 8.0,
    }
    data = {
        "dataset": {"class_path": "shared.data.VGGSoundIndex", "init_args": {"root": "data/vggsound"}},
        "clip": {
            "class_path": "shared.encoders.CLIPFeature",
            "init_args": {
                "model_name": "ViT-B-16",
                "pretrained": "openai",
                "layers": [4, 8, 11],
                "fps": 10.0,
                "duration": 10.24,
            },
        },
        "cache_dir": "data/cache",
        "duration": 10.24,
        "batch_size": 16,
        "num_workers": 8,
    }
    checkpoint = {
        "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
        "init_args": {"monitor": "val/loss", "mode": "min", "filename": "best"},
    }
    examples = {"class_path": "shared.callbacks.ExampleLogger", "init_args": {"n_examples": 4}}
    trainer = {
        "accelerator": "auto", "devices": "auto", "precision": "bf16-mixed",
        "val_check_interval": 5000, "check_val_every_n_epoch": None, "callbacks": [checkpoint, examples],
    }  # fmt: skip
    return {
        "seed_everything": 0,
        "trainer": trainer,
        "model": {"class_path": "projects.tiva.module_tiva.TiVA", "init_args": model},
        "data": {"class_path": "projects.tiva.data.TiVADataModule", "init_args": data},
    }


def config(name: str) -> dict:
    """One stage: what it trains (`stage`), how fast and how long, what it starts from, how it samples."""
    stage, lr, max_steps, extra, _ = STAGES[name]
    sampling = {"sampling": SAMPLING[name]} if name in SAMPLING else {}
    model = {"stage": stage, "lr": lr, **sampling, **extra}
    return {
        "extends": f"{BASE}.yaml",  # relative to this file (shared.cli)
        "trainer": {"max_steps": max_steps},
        "model": {"init_args": model},
    }


def configs() -> dict[str, str]:
    """File name (relative to `configs/`) -> YAML text: the shared base, then one file per stage."""
    header = "# Generated by projects/tiva/paper_configs.py; do not edit."
    out = {f"{BASE}.yaml": f"{header} {BASE_COMMENT}\n" + yaml.safe_dump(base(), sort_keys=False)}
    for name, (*_, comment) in STAGES.items():
        out[f"vggsound_{name}.yaml"] = f"{header} {comment}\n" + yaml.safe_dump(config(name), sort_keys=False)
    return out


if __name__ == "__main__":
    for file_name, text in configs().items():
        (OUT / file_name).parent.mkdir(exist_ok=True)
        (OUT / file_name).write_text(text)
        print(OUT / file_name)
