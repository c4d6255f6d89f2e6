from ast import literal_eval
from pathlib import Path

import pytest
import torch
import yaml

from projects.specvqgan.convert import (
    load_official,
    load_official_discriminator,
    load_vggishish,
    official_vqgan_key,
    vqgan_from_official_config,
)
from projects.specvqgan.models import PatchDiscriminator, VGGishish

from .taming_reference import OfficialVQModel

KEYS = Path(__file__).resolve().parents[4] / "shared" / "reference" / "keys"
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
        disc = PatchDiscriminator(ndf=16)
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
    disc = load_official_discriminator(ckpt)
    assert disc(x).shape == (2, 1, 8, 104)


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


def test_official_vggishish_file_loads_with_its_statistics(tmp_path):
    torch.manual_seed(0)
    net = VGGishish(n_classes=309, widths=(64, 128, 256, 512, 512), fc_dim=4096)
    state = {k: v for k, v in net.state_dict().items() if not k.startswith("mel_")}
    torch.save({"model": state}, tmp_path / "vggishish16.pt")
    stats = tmp_path / "train_means_stds_melspec_10s_22050hz.txt"
    stats.write_text("\n".join(f"{0.5 + i / 1000} {0.08 + i / 10000}" for i in range(80)))
    loaded = load_vggishish(tmp_path / "vggishish16.pt", stats_file=stats)
    assert loaded.mel_mean[0].item() == pytest.approx(0.5) and loaded.mel_std[79].item() == pytest.approx(
        0.0879
    )
    assert torch.equal(loaded.features[28].weight, net.features[28].weight)
    with pytest.raises(ValueError, match="statistics file"):
        load_vggishish(tmp_path / "vggishish16.pt")
