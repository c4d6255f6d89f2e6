import pytest
import torch

from projects.wavbrivl.models.vqgan import IMAGENET_F16_16384, load_taming_vqgan, taming_sizes, vqgan_model
from shared.runs import UserError
from shared.vq.taming import convert_vqgan_state_dict
from tests.shared.taming_reference import OfficialVQModel

# a narrow copy of vqgan_imagenet_f16_16384: same structure and key names, 32 channels instead of 128
SMALL = {
    "n_embed": 128,
    "embed_dim": 64,
    "ch": 32,
    "ch_mult": [1, 1, 2, 2, 4],
    "num_res_blocks": 2,
    "z_channels": 64,
}

pytestmark = pytest.mark.usefixtures("one_thread")


def official_model(sizes: dict) -> OfficialVQModel:
    return OfficialVQModel(**sizes, attn_levels=(4,), image_channels=3)


def write_taming_checkpoint(path, sizes: dict) -> OfficialVQModel:
    torch.manual_seed(0)
    official = official_model(sizes).eval()
    for name, p in official.named_parameters():  # move norms off their identity init so they matter
        if "norm" in name:
            p.data.normal_(1.0 if name.endswith("weight") else 0.0, 0.1)
    official.quantize.embedding.weight.data.normal_(0, 0.1)
    state = dict(official.state_dict())
    state["loss.discriminator.main.0.weight"] = torch.zeros(64, 3, 4, 4)  # the training loss rides along
    torch.save({"state_dict": state, "global_step": 1}, path)
    return official


def test_load_taming_vqgan_gives_the_official_outputs(tmp_path):
    official = write_taming_checkpoint(tmp_path / "last.ckpt", SMALL)
    model = load_taming_vqgan(tmp_path / "last.ckpt")
    assert not model.training
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        expected_image, expected_codes = official(x)
        latents = model.encode(x).latents
        z_q, _, (_, _, codes) = model.quantize(latents)
        image = model.decode(z_q, force_not_quantize=True).sample
        expected_latents = official.quant_conv(official.encoder(x))
    assert latents.shape == (2, 64, 4, 4)
    assert torch.allclose(latents, expected_latents, rtol=1e-4, atol=1e-4 * expected_latents.abs().max())
    assert torch.equal(codes.view(2, 4, 4), expected_codes)
    assert (image - expected_image).abs().max() <= 1e-4 * expected_image.abs().max()


def test_paper_size_layout_matches_taming_key_for_key():
    with torch.device("meta"):  # shapes only
        official = official_model({"n_embed": 16384, "embed_dim": 256, "ch": 128, "ch_mult": [1, 1, 2, 2, 4],
                                   "num_res_blocks": 2, "z_channels": 256})  # fmt: skip
        ours = vqgan_model(**IMAGENET_F16_16384)
    state = official.state_dict()
    assert taming_sizes(state) == {**IMAGENET_F16_16384, "image_channels": 3}
    converted, report = convert_vqgan_state_dict(state, ours)
    assert report.mapped == len(state) and not report.unmapped and not report.missing
    ours_state = ours.state_dict()
    assert all(converted[k].shape == ours_state[k].shape for k in ours_state)
    n_params = sum(p.numel() for p in ours.parameters())
    assert n_params == sum(p.numel() for p in official.parameters())
    with torch.device("meta"):
        z = torch.empty(1, 3, 512, 512)
        assert ours.encode(z).latents.shape == (1, 256, 32, 32)  # f = 16


def test_load_taming_vqgan_rejects_other_files(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        load_taming_vqgan(tmp_path / "missing.ckpt")
    torch.save({"state_dict": {"model.weight": torch.zeros(1)}}, tmp_path / "other.ckpt")
    with pytest.raises(UserError, match="not a taming-transformers VQGAN"):
        load_taming_vqgan(tmp_path / "other.ckpt")
