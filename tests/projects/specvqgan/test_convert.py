from ast import literal_eval
from pathlib import Path

import pytest
import torch
import yaml

from projects.specvqgan.convert import (
    load_official,
    load_official_discriminator,
    load_vggishish,
    vqgan_from_official_config,
)
from projects.specvqgan.models import PatchDiscriminator, VGGishish
from shared.vq.taming import official_vqgan_key
from tests.shared.taming_reference import OfficialVQModel

from . import patchgan_reference, vggishish_reference
from .official_files import save_official_classifier

# The key lists of the released checkpoints, one `<key><TAB><shape>` a line: the VGGSound codebook
# (`2021-05-19T22-16-54_vggsound_codebook`, all 398 keys of ckpt['state_dict']) and block 0 of a VGGSound
# transformer (212 features; blocks 1-23 repeat its keys).
KEYS = Path(__file__).parent / "data"
# a narrow copy of the official architecture: same structure and key names, 32 channels instead of 128
SMALL = {
    "ch": 32,
    "ch_mult": [1, 1, 2, 2, 4],
    "num_res_blocks": 2,
    "z_channels": 64,
    "n_embed": 128,
    "embed_dim": 64,
}


def official_key_list() -> list[tuple[str, str]]:
    return [
        tuple(line.split("\t"))
        for line in (KEYS / "specvqgan_vqgan_state_dict_keys.txt").read_text().splitlines()
    ]


def write_official_checkpoint(
    tmp_path: Path, sizes: dict, with_loss: bool = True
) -> tuple[OfficialVQModel, Path, Path]:
    torch.manual_seed(0)
    official = OfficialVQModel(
        sizes["n_embed"],
        sizes["embed_dim"],
        sizes["ch"],
        sizes["ch_mult"],
        sizes["num_res_blocks"],
        sizes["z_channels"],
        attn_levels=(4,),
    ).eval()
    for name, p in official.named_parameters():  # move norms off their identity init so they matter
        if "norm" in name:
            p.data.normal_(1.0 if name.endswith("weight") else 0.0, 0.1)
    official.quantize.embedding.weight.data.normal_(0, 0.1)
    state = dict(official.state_dict())
    if with_loss:
        disc = patchgan_reference.randomize(
            patchgan_reference.NLayerDiscriminator(input_nc=1, ndf=16), seed=2
        )
        state.update({f"loss.discriminator.{k}": v for k, v in disc.state_dict().items()})
        state["loss.perceptual_loss.scaling_layer.shift"] = torch.zeros(1, 1, 80, 1)
    ckpt = tmp_path / "epoch_39.ckpt"
    torch.save({"state_dict": state, "global_step": 1}, ckpt)
    config = tmp_path / "codebook.yaml"
    ddconfig = {
        "double_z": False,
        "z_channels": sizes["z_channels"],
        "resolution": 848,
        "in_channels": 1,
        "out_ch": 1,
        "ch": sizes["ch"],
        "ch_mult": sizes["ch_mult"],
        "num_res_blocks": sizes["num_res_blocks"],
        "attn_resolutions": [53],
        "dropout": 0.0,
    }
    params = {"embed_dim": sizes["embed_dim"], "n_embed": sizes["n_embed"], "ddconfig": ddconfig}
    config.write_text(
        yaml.safe_dump({"model": {"target": "specvqgan.models.vqgan.VQModel", "params": params}})
    )
    return official, ckpt, config


def test_reference_model_has_the_official_key_names_and_shapes():
    paper = OfficialVQModel(1024, 256, 128, [1, 1, 2, 2, 4], 2, 256, attn_levels=(4,))
    ours = {k: str(tuple(v.shape)) for k, v in paper.state_dict().items()}
    official = {k: shape for k, shape in official_key_list() if not k.startswith("loss.")}
    assert ours == official


def test_load_official_codebook_gives_the_official_outputs(tmp_path):
    official, ckpt, config = write_official_checkpoint(tmp_path, SMALL)
    model = load_official(ckpt, config)
    assert not model.training
    report = model.conversion_report
    assert report.mapped == len(official.state_dict()) and not report.unmapped and not report.missing
    assert all(k.startswith("loss.") for k in report.dropped)
    x = torch.rand(2, 1, 80, 848) * 2 - 1
    with torch.no_grad():
        expected_mel, expected_idx = official(x)
        z_q, indices = model.encode(x)
        mel = model.decode(z_q)
    assert z_q.shape == (2, 64, 5, 53) and indices.shape == (2, 5, 53)
    assert torch.equal(indices, expected_idx)
    assert torch.allclose(mel, expected_mel, atol=1e-4)
    assert torch.allclose(model.decode_indices(indices), mel, atol=1e-4)  # z + (z_q - z) rounds


def test_patchgan_reference_and_ours_have_the_official_keys():
    listed = {k: shape for k, shape in official_key_list() if k.startswith("loss.discriminator.")}
    assert len(listed) == 22
    for net in (patchgan_reference.NLayerDiscriminator(input_nc=1, ndf=64, n_layers=3), PatchDiscriminator()):
        keys = {f"loss.discriminator.{k}": str(tuple(v.shape)) for k, v in net.state_dict().items()}
        assert keys == listed, type(net).__module__


@torch.no_grad()
def test_official_discriminator_gives_the_official_patch_logits(tmp_path):
    _, ckpt, _ = write_official_checkpoint(tmp_path, SMALL)
    prefix = "loss.discriminator."
    state = {k[len(prefix) :]: v for k, v in torch.load(ckpt)["state_dict"].items() if k.startswith(prefix)}
    official = patchgan_reference.NLayerDiscriminator(input_nc=1, ndf=16)
    official.load_state_dict(state)
    disc = load_official_discriminator(ckpt)
    assert not disc.training
    x = torch.rand(2, 1, 80, 848) * 2 - 1
    expected = official.eval()(x)
    assert expected.shape == (2, 1, 8, 104) and expected.std() > 0.01
    assert torch.allclose(disc(x), expected, atol=1e-5 * expected.abs().max())


def test_load_official_refuses_a_checkpoint_that_does_not_fit(tmp_path):
    _, ckpt, config = write_official_checkpoint(tmp_path, SMALL)
    state = torch.load(ckpt, weights_only=False)
    del state["state_dict"]["decoder.up.4.attn.2.q.weight"]
    state["state_dict"]["encoder.extra.weight"] = torch.zeros(1)
    torch.save(state, ckpt)
    with pytest.raises(ValueError, match=r"could not map 1: \['encoder.extra.weight'\].*decoder.up_blocks.0"):
        load_official(ckpt, config)


def test_paper_config_builds_from_the_official_yaml(tmp_path):
    config = tmp_path / "vas.yaml"
    ddconfig = {
        "double_z": False,
        "z_channels": 256,
        "resolution": 848,
        "in_channels": 1,
        "out_ch": 1,
        "ch": 128,
        "ch_mult": [1, 1, 2, 2, 4],
        "num_res_blocks": 2,
        "attn_resolutions": [53],
        "dropout": 0.0,
    }
    params = {"embed_dim": 256, "n_embed": 128, "ddconfig": ddconfig}
    config.write_text(yaml.safe_dump({"model": {"params": params}}))
    model = vqgan_from_official_config(config)
    assert sum(p.numel() for p in model.parameters()) == 71_907_713
    # every official model key (listed with the VGGSound shapes) has a place of the same size in our model
    ours = model.state_dict()
    for key, shape in official_key_list():
        if key.startswith("loss.") or key == "quantize.embedding.weight":  # VAS has 128 codes, not 1024
            continue
        assert ours[official_vqgan_key(key, n_levels=5)].numel() == torch.Size(literal_eval(shape)).numel(), (
            key
        )


def test_vggishish_reference_and_ours_have_the_same_layout_at_paper_size():
    with torch.device("meta"):  # 137.6 M parameters: shapes only
        official = vggishish_reference.VGGishish(vggishish_reference.PAPER_CONV_LAYERS, num_classes=309)
        ours = VGGishish(n_classes=309)
    shapes = {k: v.shape for k, v in ours.state_dict().items() if k not in ("mel_mean", "mel_std")}
    assert shapes == {k: v.shape for k, v in official.state_dict().items()}
    assert sum(p.numel() for p in official.parameters()) == 137_622_517  # the paper's count


@torch.no_grad()
def test_official_vggishish_file_gives_the_official_logits(tmp_path):
    narrow = [8, 8, "MP", 8, 8, "MP", 16, 16, 16, "MP", 16, 16, 16, "MP", 24, 24, 24]
    official = vggishish_reference.randomize(vggishish_reference.VGGishish(narrow, 5, fc_dim=32), seed=0)
    path = save_official_classifier(official.state_dict(), tmp_path / "vggishish16.pt")
    stats = tmp_path / "train_means_stds_melspec_10s_22050hz.txt"
    mean, std = torch.linspace(0.3, 0.6, 80), torch.linspace(0.05, 0.1, 80)
    stats.write_text("".join(f"{m:.6f} {s:.6f}\n" for m, s in zip(mean.tolist(), std.tolist(), strict=True)))
    loaded = load_vggishish(path, stats_file=stats)
    assert loaded.n_classes == 5 and not loaded.training
    mel = torch.rand(2, 1, 80, 160)
    expected = official((mel[:, 0] - mean[:, None]) / std[:, None])  # the official dataset standardises
    assert expected.std() > 0.01
    assert torch.allclose(loaded(mel), expected, atol=1e-4 * expected.abs().max())
    with pytest.raises(ValueError, match="statistics file"):
        load_vggishish(path)
