"""Loading official SpecVQGAN checkpoints (`v-iashin/SpecVQGAN`, arXiv:2110.08791) and our own classifier
checkpoints into our modules.

    model = load_official("2021-05-19T22-16-54_vggsound_codebook/checkpoints/epoch_39.ckpt",
                          "2021-05-19T22-16-54_vggsound_codebook/configs/..-project.yaml")
    z_q, indices = model.encode(mel * 2 - 1)        # mel [B, 1, 80, 848] in [0, 1]
    mel_hat = (model.decode(z_q) + 1) / 2

The official codebook is taming-transformers' VQModel; ours is built on diffusers' Encoder/Decoder, so the
keys are renamed (`down.i.block.j` -> `down_blocks.i.resnets.j`, attention 1x1 convs -> linear layers,
decoder levels counted from the other end). Every official key is either mapped, or known and
deliberately left out (the LPAPS copy inside `loss.*`), or reported as unmapped. An official transformer
checkpoint gives a `VisualCodeSampler`; `load_official_melgan` (MelGAN release folder) and
`load_melception` (`melception-*.pt`) are importable from here too.
"""

from __future__ import annotations

import itertools
import logging
from pathlib import Path

import torch
from omegaconf import OmegaConf

from projects.specvqgan.convert_melgan import load_official_melgan
from projects.specvqgan.models import PatchDiscriminator, SpectrogramVQGAN, VGGishish
from projects.specvqgan.models.sampler import VisualCodeSampler
from projects.specvqgan.models.vggishish import VGG16_BLOCKS
from shared.encoders.mel_statistics import read_mel_statistics
from shared.encoders.melception_loading import load_classifier_file, load_melception
from shared.runs import UserError
from shared.vq.taming import ConversionReport, convert_vqgan_state_dict

# the official vocoder and Melception loaders live in their own modules; one import place for all of them
__all__ = ["load_codebook", "load_melception", "load_official", "load_official_discriminator",
           "load_official_melgan", "load_vggishish"]  # fmt: skip

log = logging.getLogger(__name__)


def vqgan_from_official_config(config_path: str | Path) -> SpectrogramVQGAN:
    """Build our codebook model with the sizes in an official (OmegaConf `target`/`params`) YAML."""
    cfg = OmegaConf.load(config_path)
    params = cfg.model.params
    if "first_stage_config" in params:  # a transformer config embeds the codebook's config
        params = params.first_stage_config.params
    dd = params.ddconfig
    if dd.get("double_z", False) or dd.in_channels != dd.out_ch:
        raise ValueError(f"{config_path}: unsupported codebook ddconfig {OmegaConf.to_container(dd)}")
    attention_levels = tuple(
        i for i in range(len(dd.ch_mult)) if dd.resolution // 2**i in set(dd.attn_resolutions)
    )
    return SpectrogramVQGAN(
        n_codes=params.n_embed,
        embed_dim=params.embed_dim,
        ch=dd.ch,
        ch_mult=tuple(dd.ch_mult),
        num_res_blocks=dd.num_res_blocks,
        z_channels=dd.z_channels,
        attention_levels=attention_levels,
        in_channels=dd.in_channels,
    )


def _lightning_state_dict(ckpt_path: str | Path) -> dict[str, torch.Tensor]:
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)  # official Lightning 1.x pickles
    if "state_dict" not in ckpt:
        raise ValueError(
            f"{ckpt_path}: not a Lightning checkpoint (no 'state_dict'); keys: {list(ckpt)[:10]}"
        )
    return ckpt["state_dict"]


def load_official(ckpt_path: str | Path, config_path: str | Path) -> SpectrogramVQGAN | VisualCodeSampler:
    """An official checkpoint (`.ckpt` + its YAML) as our module, in eval mode.

    A codebook checkpoint gives our SpectrogramVQGAN; a transformer checkpoint (which includes its
    codebook) gives a VisualCodeSampler whose `forward(codes, feats)` and `sample(feats, ...)` work on the
    official (column-major) code order. Raises if any weight of our model is not provided; logs what was
    mapped, dropped and left unmapped.
    """
    official = _lightning_state_dict(ckpt_path)
    if any(k.startswith("transformer.") for k in official):
        model, state, report = _convert_sampler(official, config_path)
    else:
        model = vqgan_from_official_config(config_path)
        state, report = convert_vqgan_state_dict(official, model)
    log.info("%s: %s", ckpt_path, report)
    if report.missing or report.unmapped:
        raise ValueError(f"{ckpt_path}: checkpoint does not fit the config {config_path}: {report}")
    model.load_state_dict(state)
    model.conversion_report = report
    return model.eval()


def _convert_sampler(
    official: dict[str, torch.Tensor], config_path: str | Path
) -> tuple[VisualCodeSampler, dict[str, torch.Tensor], ConversionReport]:
    """Official Net2NetTransformer (GPTFeats / GPTClass / GPTFeatsClass + its VQModel) -> our sampler."""
    cfg = OmegaConf.load(config_path).model.params
    gpt = cfg.transformer_config.params.GPT_config
    permuter = cfg.first_stage_permuter_config.params
    if not cfg.first_stage_permuter_config.target.endswith("ColumnMajor"):
        raise ValueError(f"{config_path}: only the column-major permuter of the paper is supported")
    kind = cfg.transformer_config.target.rsplit(".", 1)[-1]
    feats_key = {
        "GPTFeats": "transformer.embedder.weight",
        "GPTFeatsClass": "transformer.feat_embedder.weight",
    }
    feat_weight = official.get(feats_key.get(kind, ""))
    if feat_weight is not None and feat_weight.dim() != 3:
        raise ValueError(f"{config_path}: only the Conv1d feature embedder is supported, got {kind}")
    cls_key = {"GPTClass": "transformer.embedder.weight", "GPTFeatsClass": "transformer.cls_embedder.weight"}
    cls_weight = official.get(cls_key.get(kind, ""))
    if feat_weight is None and cls_weight is None:
        raise ValueError(f"{config_path}: unsupported transformer {cfg.transformer_config.target}")
    grid = (permuter.H, permuter.W)
    n_feats = gpt.block_size - grid[0] * grid[1] - (cls_weight is not None)
    model = VisualCodeSampler(
        vqgan_from_official_config(config_path),
        grid=grid,
        feat_dim=None if feat_weight is None else feat_weight.shape[1],
        n_feats=n_feats,
        n_classes=None if cls_weight is None else cls_weight.shape[0],
        n_layer=gpt.n_layer,
        n_head=gpt.n_head,
        n_embd=gpt.n_embd,
    )
    codebook_state, report = convert_vqgan_state_dict(
        {
            k.removeprefix("first_stage_model."): v
            for k, v in official.items()
            if k.startswith("first_stage_model.")
        },
        model.codebook,
    )
    state = {f"codebook.{k}": v for k, v in codebook_state.items()}
    report.missing = [f"codebook.{k}" for k in report.missing]
    renames = {
        "transformer.embedder.": "cls_embedder." if kind == "GPTClass" else "embedder.",
        "transformer.feat_embedder.": "embedder.",
        "transformer.cls_embedder.": "cls_embedder.",
        "transformer.": "gpt.",
    }
    order = model.order
    for key, value in official.items():
        if key.startswith("first_stage_model."):
            continue
        if key.startswith("first_stage_permuter."):
            expected = order if key.endswith("forward_shuffle_idx") else torch.argsort(order)
            if not torch.equal(value.long().cpu(), expected.cpu()):
                raise ValueError(f"{key} is not the column-major order of a {grid} grid")
            report.dropped.append(key)
        elif key.endswith(".attn.mask"):  # the causal mask is implied by the attention kernel
            report.dropped.append(key)
        else:
            prefix = next(p for p in renames if key.startswith(p)) if key.startswith("transformer.") else None
            if prefix is None:
                report.unmapped.append(key)
                continue
            state[renames[prefix] + key[len(prefix) :]] = value
            report.mapped += 1
    ours = {k for k in model.state_dict()}
    report.unmapped += sorted(set(state) - ours)
    report.missing = sorted(ours - set(state))
    return model, state, report


OFFICIAL_FEATURES = ("resnet50", "bninception", "none")


def official_visual_features(config_path: str | Path) -> str:
    """The visual features an official transformer was trained on: "resnet50", "bninception" or "none".

    Read from the data section of its `configs/*-project.yaml` (`data.params` of `train.py`'s
    `ConditionedSpectrogramDataModuleFromConfig`): `replace_feats_with_random: true` is "No Feats" (README,
    "Controlling the Condition Size"); otherwise the feature folder names the extractor, as the official
    configs and README write them: `feature_resnet50_dim2048_21.5fps` without a flow folder is ResNet-50
    (RGB only), `feature_rgb_bninception_dim1024_21.5fps` + `feature_flow_bninception_dim1024_21.5fps` is
    BN-Inception RGB + flow. Anything else raises `UserError` naming the config and the fields read.
    """
    params = OmegaConf.select(OmegaConf.load(config_path), "data.params")
    if params is None:
        raise UserError(
            f"{config_path}: no data.params section, so the visual features the transformer was trained on "
            "are unknown; give the run's configs/*-project.yaml, which has it"
        )
    if params.get("replace_feats_with_random"):
        return "none"
    rgb, flow = params.get("rgb_feats_dir_path"), params.get("flow_feats_dir_path")
    rgb_name = Path(str(rgb or "")).name
    if "resnet50" in rgb_name and not flow:
        return "resnet50"
    if "bninception" in rgb_name and "bninception" in Path(str(flow or "")).name:
        return "bninception"
    raise UserError(
        f"{config_path}: cannot tell the visual features from data.params.rgb_feats_dir_path={rgb!r} and "
        f"flow_feats_dir_path={flow!r} (expected feature_resnet50_* without flow, feature_rgb_bninception_* "
        "with feature_flow_bninception_*, or replace_feats_with_random: true)"
    )


def load_codebook(ckpt_path: str | Path) -> tuple[SpectrogramVQGAN, dict]:
    """Our codebook stage's checkpoint -> (the autoencoder in eval mode, its constructor arguments)."""
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    config = ckpt.get("hyper_parameters", {}).get("autoencoder")
    if not isinstance(config, dict) or "init_args" not in config:
        raise ValueError(
            f"{ckpt_path}: not a checkpoint of the codebook stage (no autoencoder config in its hyper-parameters); "
            "official codebooks load with load_official(ckpt, config)"
        )
    model = SpectrogramVQGAN(**config["init_args"])
    prefix = "autoencoder."
    model.load_state_dict(
        {k[len(prefix) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    )
    return model.eval(), dict(config["init_args"])


def load_official_discriminator(ckpt_path: str | Path) -> PatchDiscriminator:
    """The PatchGAN stored under `loss.discriminator.*` of an official codebook checkpoint."""
    prefix = "loss.discriminator."
    state = {k[len(prefix) :]: v for k, v in _lightning_state_dict(ckpt_path).items() if k.startswith(prefix)}
    disc = PatchDiscriminator(
        in_channels=state["main.0.weight"].shape[1], ndf=state["main.0.weight"].shape[0]
    )
    disc.load_state_dict(state)
    return disc.eval()


def _is_conv(key: str, value: torch.Tensor) -> bool:
    return key.startswith("features.") and key.endswith(".weight") and value.dim() == 4


def _layer_index(item: tuple[str, torch.Tensor]) -> int:
    return int(item[0].split(".")[1]) if item[0].startswith("features.") else -1


def load_vggishish(path: str | Path, stats_file: str | Path | None = None) -> VGGishish:
    """A VGGish-ish classifier from our Lightning checkpoint or the official `vggishish16.pt`.

    The official file (`specvqgan/modules/losses/vggishish/logger.py`, `log_best_model`) holds
    `{'model': state_dict, 'metrics': ..., ...}` of `specvqgan/modules/losses/vggishish/model.py`'s network;
    its widths and FC size are read from the weights. Its input statistics live in a separate text file
    (`train_means_stds_melspec_10s_22050hz.txt`, 80 rows `mean std`), given as `stats_file`. Our
    checkpoints carry the statistics in the network's buffers. Files are read without running pickled code
    (`shared.encoders.melception_loading.load_classifier_file`).
    """
    path = Path(path)
    ckpt = load_classifier_file(path)
    if "state_dict" in ckpt and "hyper_parameters" in ckpt:
        from shared.classifier import SpectrogramClassifier

        return SpectrogramClassifier.load_from_checkpoint(path, map_location="cpu").net.eval()
    if "model" in ckpt:
        state = ckpt["model"]
        conv_widths = [v.shape[0] for k, v in sorted(state.items(), key=_layer_index) if _is_conv(k, v)]
        block_ends = itertools.accumulate(VGG16_BLOCKS)  # the VGG-16 blocks: 2, 2, 3, 3, 3 convs
        net = VGGishish(
            n_classes=state["classifier.4.weight"].shape[0],
            widths=tuple(conv_widths[end - 1] for end in block_ends),
            fc_dim=state["classifier.0.weight"].shape[0],
        )
        missing = net.load_state_dict(state, strict=False).missing_keys
        if set(missing) - {"mel_mean", "mel_std"}:
            raise ValueError(f"{path}: official VGGish-ish checkpoint lacks {missing}")
        if stats_file is None:
            raise ValueError(
                f"{path}: the official VGGish-ish needs its mel statistics file (stats_file=...)"
            )
        net.set_mel_statistics(*read_mel_statistics(stats_file))
        return net.eval()
    raise ValueError(f"{path}: neither an avgen classifier checkpoint nor an official VGGish-ish file")
