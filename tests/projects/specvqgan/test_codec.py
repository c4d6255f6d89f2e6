import pytest
import torch

from projects.specvqgan.codec import SpectrogramCodec
from projects.specvqgan.models import SpectrogramVQGAN
from projects.specvqgan.vocoder import load_vocoder


@pytest.mark.parametrize(("n_codes", "kbps"), [(1024, 0.27), (128, 0.19)])
def test_bitrate_of_the_paper_codebooks(n_codes, kbps):
    with torch.device("meta"):
        codebook = SpectrogramVQGAN(n_codes)
    codec = SpectrogramCodec(codebook, vocoder=None)
    assert codec.bitrate() / 1000 == pytest.approx(kbps, abs=0.005)
    # 265 codes of log2(n_codes) bits over the 848 frames of a 9.845-s clip
    assert codec.bitrate() == pytest.approx(265 * torch.tensor(n_codes).log2().item() / (848 * 256 / 22050))


def test_a_wave_goes_to_codes_and_back_to_a_wave_of_whole_columns():
    torch.manual_seed(0)
    codebook = SpectrogramVQGAN(32, embed_dim=8, ch=8, num_res_blocks=1, z_channels=8, norm_groups=4)
    codec = SpectrogramCodec(codebook, load_vocoder(None, griffin_lim_iters=2))
    wave = torch.randn(22050) * 0.1  # 1 s: 87 mel frames -> 5 whole columns of 16 frames
    codes = codec.encode(wave)
    assert codes.shape == (5, 5) and codes.dtype == torch.int64 and int(codes.max()) < 32
    out = codec.decode(codes)
    assert out.shape == (5 * codec.samples_per_column,)
    with pytest.raises(ValueError, match="shorter than one latent column"):
        codec.encode(torch.zeros(1000))
