"""Writes the sampler configs of the paper's Table 3 settings as `configs/sampler_<setting>_<features>.yaml`.

    python -m projects.specvqgan.paper_sampler_configs      # rewrite them after changing a setting here

Settings (arXiv:2110.08791, sec. 4.1, Table 3): (a) VGGSound codebook + VGGSound, (b) VGGSound codebook +
VAS, (c) VAS codebook + VAS; features ResNet-50 (computed from the videos with ImageNet weights,
`shared.encoders.ResNetFeature`) or BN-Inception RGB + flow (the official pickles,
`shared.encoders.OfficialFeatureFiles`), 1, 5 or 212 of them, and "No Feats". GPT: 24 layers, 16 heads,
width 1024; AdamW as the official configs (`v-iashin/SpecVQGAN`, `configs/{vggsound,vas}_transformer.yaml`);
base lr 5e-6 (VGGSound) / 1e-6 (VAS); batch 16 per GPU (x 4 GPUs = the paper's 64); early stopping on
val/loss with patience 2 (sec. 6.1.4).

Evaluation (`avgen test`) follows the protocol behind the reported numbers: 10 samples per VGGSound test clip,
100 per VAS validation clip (sec. 6.1.7; VAS has no test split, so `test` reads its validation clips), top-k
512 with the VGGSound codebook (1024 codes) and 64 with the VAS codebook (128 codes), as the official
README's evaluation section sets `TOP_K` ("use TOP_K=512 when evaluating a VAS transformer trained with a
VGGSound codebook"). 32 samples per sampler call, the official `evaluation/configs/sampler.yaml` batch.

18 + 3 files that differ only in those fields are generated rather than written by hand so that they
cannot drift apart; `tests/projects/specvqgan/test_configs.py` checks the committed files equal this
script's output and the settings against the values above. Each field is written once: `configs/base/sampler.yaml`
holds what every setting shares (trainer, GPT, mels; it extends the hand-written `base/paper.yaml`),
`base/sampler_<setting>.yaml` a setting's codebook, dataset, learning rate and evaluation protocol, and each
`sampler_<setting>_<features>.yaml` extends its setting's base with its visual features (`extends:`, see
`shared.cli`).
"""

from __future__ import annotations

from pathlib import Path

import yaml

OUT = Path(__file__).parent / "configs"

SETTINGS = {  # name: (codebook run, dataset class, dataset root, base lr)
    "a": ("vggsound_codebook", "shared.data.VGGSoundIndex", "data/vggsound", 5.0e-6),
    "b": ("vggsound_codebook", "shared.data.VASIndex", "data/vas", 1.0e-6),
    "c": ("vas_codebook", "shared.data.VASIndex", "data/vas", 1.0e-6),
}
TOP_K = {"vggsound_codebook": 512, "vas_codebook": 64}  # by codebook, as the official README's TOP_K
SAMPLES_PER_CLIP = {"shared.data.VGGSoundIndex": 10, "shared.data.VASIndex": 100}  # by evaluated dataset
CHUNK_SIZE = 32


def _visual(features: str, root: str, dataset: str) -> dict:
    if features == "resnet50":
        return {"class_path": "shared.encoders.ResNetFeature", "init_args": {"weights": "IMAGENET1K_V1"}}
    prefix = "" if dataset.endswith("VGGSoundIndex") else "{label}/"
    name = "{clip_id}" if dataset.endswith("VGGSoundIndex") else "{name}"
    folder = root if dataset.endswith("VGGSoundIndex") else f"{root}/features"
    return {
        "class_path": "shared.encoders.OfficialFeatureFiles",
        "init_args": {
            "root": folder,
            "rgb": f"{prefix}feature_rgb_bninception_dim1024_21.5fps/{name}.pkl",
            "flow": f"{prefix}feature_flow_bninception_dim1024_21.5fps/{name}.pkl",
        },
    }


def base() -> dict:
    """What every setting shares: the trainer (early stopping, sec. 6.1.4; generated and real mels of 4
    validation clips in TensorBoard), the GPT and the 10-s mels."""
    monitor = {"monitor": "val/loss", "mode": "min"}
    trainer = {
        "max_epochs": 100,
        "callbacks": [
            {
                "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                "init_args": {**monitor, "filename": "best"},
            },
            {
                "class_path": "lightning.pytorch.callbacks.EarlyStopping",
                "init_args": {**monitor, "patience": 2},
            },
            {"class_path": "shared.callbacks.ExampleLogger", "init_args": {"n_examples": 4}},
        ],
    }
    model = {
        "feat_dim": 2048,
        "grid": [5, 53],
        "n_layer": 24,
        "n_head": 16,
        "n_embd": 1024,
        "dropout": 0.0,
        "sampling": {"chunk_size": CHUNK_SIZE},
    }
    data = {
        "cache_dir": "data/cache",
        "duration": 10.0,
        "trim_frames": 860,
        "crop_frames": 848,
        "batch_size": 16,
        "num_workers": 8,
    }
    return {
        "extends": "paper.yaml",  # seed, accelerators; paths in `extends:` are relative to the file (shared.cli)
        "trainer": trainer,
        "model": {"class_path": "projects.specvqgan.module_sampler.SpecVQGANTransformer", "init_args": model},
        "data": {"class_path": "projects.specvqgan.data.SpectrogramDataModule", "init_args": data},
    }


def setting_base(setting: str) -> dict:
    """One setting of Table 3: its codebook, dataset, learning rate and evaluation protocol."""
    codebook, dataset, root, base_lr = SETTINGS[setting]
    model = {
        "codebook_ckpt": f"runs/specvqgan/{codebook}/default/checkpoints/last.ckpt",
        "base_lr": base_lr,
        "sampling": {"top_k": TOP_K[codebook], "samples_per_clip": SAMPLES_PER_CLIP[dataset]},
    }
    data = {"dataset": {"class_path": dataset, "init_args": {"root": root}}}
    return {"extends": "sampler.yaml", "model": {"init_args": model}, "data": {"init_args": data}}


def config(setting: str, features: str | None, n_feats: int) -> dict:
    """One sampler: a setting's base and its visual features (none for "No Feats")."""
    _, dataset, root, _ = SETTINGS[setting]
    model = {"condition": "feats" if features else "none", "n_feats": n_feats if features else 1}
    stage = {"extends": f"base/sampler_{setting}.yaml", "model": {"init_args": model}}
    if features is not None:
        data = {
            "visual": _visual(features, root, dataset),
            "n_feats": n_feats,
            "feat_len": 215,
            "feat_crop": 212,
        }
        stage["data"] = {"init_args": data}
    return stage


def configs() -> dict[str, str]:
    """File name (relative to `configs/`) -> YAML text: the bases, then every paper sampler config."""
    header = (
        "# Generated by projects/specvqgan/paper_sampler_configs.py (paper Table 3 settings); do not edit."
    )
    out = {"base/sampler.yaml": (base(), "What every Table 3 sampler shares.")}
    for setting in SETTINGS:
        codebook, dataset, root, _ = SETTINGS[setting]
        comment = (
            f"Table 3 setting ({setting}): the {codebook} codebook, {dataset.rsplit('.', 1)[1]} at {root}."
        )
        out[f"base/sampler_{setting}.yaml"] = (setting_base(setting), comment)
    for setting in SETTINGS:
        for features in ("resnet50", "bninception"):
            for n_feats in (1, 5, 212):
                out[f"sampler_{setting}_{features}_{n_feats}.yaml"] = (config(setting, features, n_feats), "")
        out[f"sampler_{setting}_nofeats.yaml"] = (config(setting, None, 1), "")
    return {
        name: f"{header}{' ' + comment if comment else ''}\n" + yaml.safe_dump(content, sort_keys=False)
        for name, (content, comment) in out.items()
    }


if __name__ == "__main__":
    for name, text in configs().items():
        (OUT / name).parent.mkdir(exist_ok=True)
        (OUT / name).write_text(text)
    print(f"wrote {len(configs())} configs to {OUT}")
