import pytest
import torch

from projects.specvqgan.models import LPAPS, PatchDiscriminator, SpectrogramVQGAN, VGGishish


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_paper_sizes_match_the_official_models():
    vggsound = SpectrogramVQGAN(n_codes=1024)
    assert n_params(vggsound.encoder) == 29_295_872
    assert n_params(vggsound.decoder) == 42_447_489
    assert n_params(vggsound.quantize) == 262_144
    assert n_params(vggsound) == 72_137_089
    assert n_params(SpectrogramVQGAN(n_codes=128)) == 71_907_713
    assert n_params(PatchDiscriminator(ndf=64, n_layers=3)) == 2_763_585
    assert n_params(VGGishish(n_classes=309)) == 137_622_517
    assert (
        n_params(VGGishish(n_classes=309).features) == 14_713_536
    )  # LPAPS backbone (+ 1,472 unused lin weights)


@torch.no_grad()
def test_paper_size_shapes_on_a_10_second_mel():
    torch.manual_seed(0)
    mel = torch.rand(1, 1, 80, 848)
    model = SpectrogramVQGAN(n_codes=1024).eval()
    z_q, indices = model.encode(mel * 2 - 1)
    assert z_q.shape == (1, 256, 5, 53) and indices.shape == (1, 5, 53)
    assert model.decode(z_q).shape == (1, 1, 80, 848)
    assert PatchDiscriminator()(mel).shape == (1, 1, 8, 104)
    scales = VGGishish().scales(mel)
    assert [s.shape[1:] for s in scales] == [
        (64, 80, 848), (128, 40, 424), (256, 20, 212), (512, 10, 106), (512, 5, 53),
    ]  # fmt: skip


def test_toy_grid_is_five_by_ten():
    model = SpectrogramVQGAN(n_codes=32, embed_dim=64, ch=16, num_res_blocks=1, z_channels=64, norm_groups=8)
    _, indices = model.encode(torch.rand(2, 1, 80, 160))
    assert indices.shape == (2, 5, 10) and model.grid_shape(80, 160) == (5, 10)
    assert n_params(model) < 1_000_000


def test_attention_sits_only_at_the_lowest_resolution():
    model = SpectrogramVQGAN(ch=32, z_channels=32, embed_dim=32, n_codes=16)
    with_attention = [type(b).__name__ for b in model.encoder.down_blocks]
    assert with_attention == ["DownEncoderBlock2D"] * 4 + ["AttnDownEncoderBlock2D"]
    assert type(model.decoder.up_blocks[0]).__name__ == "AttnUpDecoderBlock2D"
    assert len(model.decoder.up_blocks[0].attentions) == 3  # one per decoder res block, as official


def test_lpaps_is_a_frozen_distance():
    torch.manual_seed(0)
    classifier = VGGishish(n_classes=4, widths=(8, 8, 16, 16, 16), fc_dim=16)
    lpaps = LPAPS(classifier).train()
    assert not lpaps.classifier.training  # stays in eval mode
    assert all(not p.requires_grad for p in lpaps.parameters())
    x = torch.rand(3, 1, 80, 160) * 2 - 1
    assert torch.allclose(lpaps(x, x), torch.zeros(3))
    small = lpaps(x, x + 0.05 * torch.randn_like(x))
    large = lpaps(x, x + 0.5 * torch.randn_like(x))
    assert small.shape == (3,) and torch.all(small > 0) and torch.all(large > small)
    x_hat = (x + 0.3 * torch.randn_like(x)).requires_grad_(True)
    lpaps(x, x_hat).sum().backward()
    assert x_hat.grad is not None and x_hat.grad.abs().sum() > 0


def test_vggishish_standardises_with_its_statistics():
    net = VGGishish(n_classes=3, widths=(4, 4, 4, 4, 4), fc_dim=8)
    mean, std = torch.linspace(0.2, 0.6, 80), torch.linspace(0.1, 0.2, 80)
    net.set_mel_statistics(mean, std)
    x = mean.view(1, 1, 80, 1) + std.view(1, 1, 80, 1) * torch.ones(1, 1, 80, 5)
    assert torch.allclose(net.standardize(x), torch.ones_like(x), atol=1e-6)
    assert {"mel_mean", "mel_std"} <= set(net.state_dict())
    with pytest.raises(RuntimeError):
        net.set_mel_statistics(torch.zeros(10), torch.ones(10))
