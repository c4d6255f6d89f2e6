from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile as sf
import torch

from shared.audio import GriffinLimVocoder, MelFrontEnd, audioldm_normalize, load_audio, save_audio
from shared.media import MediaError
from tests.shared.tiny_clip import write_video_only_mp4

SR = 22050
N = 220500  # 10 s


@pytest.fixture(scope="module")
def front_end() -> MelFrontEnd:
    return MelFrontEnd.from_preset("specvqgan")


def official_mel(y: np.ndarray) -> np.ndarray:
    """The official feature extraction (`v-iashin/SpecVQGAN`, `feature_extraction/extract_mel_spectrogram.py`),
    written with librosa as the official code is."""
    stft = np.abs(
        librosa.stft(y, n_fft=1024, hop_length=256, win_length=1024, center=True, pad_mode="reflect")
    )
    basis = librosa.filters.mel(sr=SR, n_fft=1024, n_mels=80, fmin=125, fmax=7600)
    return np.clip(0.8 + 0.2 * np.log10(np.maximum(basis @ stft, 1e-5)), 0, 1)


def mel(front_end: MelFrontEnd, y: np.ndarray) -> np.ndarray:
    return front_end(torch.from_numpy(y).unsqueeze(0))[0].numpy()


def test_specvqgan_mel_matches_the_reference_cross_checks(front_end):
    t = np.arange(N) / SR
    x = mel(front_end, (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32))
    assert x.shape == (80, 862)  # no cropping in the front end
    x = x[:, :860]
    assert x.mean(axis=1).argmax() == 24
    assert x[24, 100] == pytest.approx(0.927177, abs=2e-5)
    assert x[24, 0] == pytest.approx(0.880841, abs=2e-5)  # 0.882243 with constant padding
    assert x.mean() == pytest.approx(0.100580, abs=2e-5)
    noise = mel(front_end, np.random.RandomState(0).uniform(-1, 1, N).astype(np.float32))[:, :860]
    assert noise.mean() == pytest.approx(0.728697, abs=2e-5)
    assert noise[0, :3] == pytest.approx([0.834597, 0.793526, 0.726055], abs=2e-5)
    assert np.all(mel(front_end, np.zeros(N, np.float32)) == 0)


def test_specvqgan_mel_equals_librosa_on_the_same_waveform(front_end):
    y = np.random.RandomState(1).randn(N).astype(np.float32) * np.linspace(0, 0.5, N, dtype=np.float32)
    ours, ref = mel(front_end, y), official_mel(y)
    assert np.abs(ours - ref).mean() < 1e-5
    assert np.abs(ours - ref).max() < 1e-3


AUDIOLDM_N = 163_840  # 10.24 s at 16 kHz


def audioldm_reference(y: np.ndarray) -> np.ndarray:
    """AudioLDM2's front end written independently with librosa, keyword args (`haoheliu/AudioLDM2`,
    `audioldm2/utilities/data/dataset.py`)."""
    stft = np.abs(
        librosa.stft(y, n_fft=1024, hop_length=160, win_length=1024, center=True, pad_mode="reflect")
    )
    basis = librosa.filters.mel(sr=16000, n_fft=1024, n_mels=64, fmin=0, fmax=8000)
    return np.log(np.maximum(basis @ stft, 1e-5))[:, : len(y) // 160]


def test_audioldm_mel_matches_the_reference_cross_checks():
    front_end = MelFrontEnd.from_preset("audioldm")
    t = np.arange(AUDIOLDM_N) / 16000
    y = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    window = torch.hann_window(1024, periodic=True, dtype=torch.float64)
    spec = torch.stft(torch.from_numpy(y).double(), 1024, 160, window=window, center=True, pad_mode="reflect",
                      return_complex=True).abs()  # fmt: skip
    assert spec.shape[1] == 1025  # before AudioLDM2's crop
    assert spec[64, 500].item() == pytest.approx(128.0, rel=1e-4)  # 0.5 * sum(hann) / 2 at the 1 kHz bin
    x = front_end(torch.from_numpy(y)[None])[0].numpy()
    assert x.shape == (64, 1024)
    assert x[:, 500].argmax() == 21
    assert x[21, 500] == pytest.approx(1.0411, abs=1e-3)
    assert np.all(front_end(torch.zeros(1, AUDIOLDM_N)).numpy() == pytest.approx(np.log(1e-5)))
    assert np.log(1e-5) == pytest.approx(-11.5129, abs=1e-4)


def test_audioldm_mel_agrees_with_an_independent_librosa_front_end():
    y = np.random.RandomState(2).randn(48_000).astype(np.float32) * np.linspace(
        0, 0.5, 48_000, dtype=np.float32
    )
    ours = MelFrontEnd.from_preset("audioldm")(torch.from_numpy(y)[None])[0].numpy()
    ref = audioldm_reference(y)
    assert ours.shape == ref.shape == (64, 300)
    assert np.abs(ours - ref).max() < 1e-3


def test_audioldm_waveform_normalisation_centres_and_scales_each_clip():
    # float64, so the check is on the arithmetic and not on float32 rounding: the second clip's offset of 2 is
    # ~200x its spread, and in float32 its ulp (2.4e-7), scaled up ~16x by the peak normalisation, can exceed 1e-6.
    noise = torch.randn(1000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    wave = torch.stack([torch.linspace(-1, 3, 1000, dtype=torch.float64), 0.01 * noise + 2])
    out = audioldm_normalize(wave)
    assert torch.allclose(out.mean(-1), torch.zeros(2, dtype=torch.float64), atol=1e-9)
    peak = torch.full((2,), 0.5, dtype=torch.float64)
    assert torch.allclose(out.abs().amax(-1), peak, atol=1e-6)  # off by 0.5e-8 / peak: the 1e-8 guard
    assert torch.equal(audioldm_normalize(torch.zeros(1, 10)), torch.zeros(1, 10))  # silence stays silence


def demo_clips(demo_root: Path) -> list[tuple[Path, Path]]:
    pairs = []
    for video in sorted((demo_root / "vas" / "videos").glob("*/*.mp4")):
        cls = video.parent.name
        pairs.append(
            (video, demo_root / "vas" / "features" / cls / "melspec_10s_22050hz" / f"{video.stem}_mel.npy")
        )
    return pairs


def test_real_vas_clips_match_the_official_mels(demo_root, front_end):
    pairs = demo_clips(demo_root)
    assert len(pairs) == len(list((demo_root / "vas" / "features").glob("*/melspec_10s_22050hz/*.npy"))) >= 10
    for video, stored in pairs:
        wave = load_audio(video, SR, duration=10.0, loop=True)
        assert wave.shape == (N,)
        ours = mel(front_end, wave.numpy())[:, :860]
        official = np.load(stored)
        assert official.shape == (80, 860)
        assert np.abs(ours - official).mean() < 0.02, video
        # and the front end itself equals the official formula on this exact waveform
        assert np.abs(ours - official_mel(wave.numpy())[:, :860]).mean() < 1e-5, video


def test_short_clips_are_looped_not_padded(demo_root, front_end):
    video = demo_root / "vas" / "videos" / "dog" / "video_02677.mp4"  # 6 s of audio
    official = np.load(demo_root / "vas" / "features" / "dog" / "melspec_10s_22050hz" / "video_02677_mel.npy")
    looped = mel(front_end, load_audio(video, SR, duration=10.0, loop=True).numpy())[:, :860]
    padded_wave = load_audio(video, SR, duration=10.0, loop=False)
    assert padded_wave[-SR:].abs().max() == 0  # the last second of a 6-s clip padded to 10 s is silence
    padded = mel(front_end, padded_wave.numpy())[:, :860]
    assert np.abs(looped - official).mean() < 0.5 * np.abs(padded - official).mean()


def test_load_audio_resamples_downmixes_and_sets_length(tmp_path):
    rate = 48000
    t = np.arange(rate) / rate
    left = 0.5 * np.sin(2 * np.pi * 440 * t)
    stereo = np.stack([left, 0.2 * left], axis=1).astype(np.float32)
    path = tmp_path / "tone.flac"
    sf.write(path, stereo, rate)
    wave = load_audio(path, 16000)
    assert wave.dtype == torch.float32 and wave.shape == (16000,)
    assert wave.abs().max().item() == pytest.approx(0.3, abs=0.01)  # channel mean: (0.5 + 0.1) / 2
    spectrum = np.abs(np.fft.rfft(wave.numpy()))
    assert spectrum.argmax() == 440  # 1-s signal: bin = Hz
    assert load_audio(path, 16000, duration=0.25).shape == (4000,)
    looped = load_audio(path, 16000, duration=2.5, loop=True)
    assert looped.shape == (40000,)
    assert torch.allclose(looped[16000:32000], looped[:16000])  # a wav loops without a gap


def test_save_audio_round_trip(tmp_path):
    wave = torch.sin(torch.linspace(0, 200, 8000)) * 0.5
    path = save_audio(tmp_path / "sub" / "x.wav", wave, 8000)
    back = load_audio(path, 8000)
    assert torch.allclose(back, wave, atol=1e-4)
    assert not list(path.parent.glob("*.tmp*"))


def test_bad_files_raise_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.mp4"):
        load_audio(tmp_path / "missing.mp4", SR)
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(MediaError, match=r"empty.mp4: file is empty"):
        load_audio(tmp_path / "empty.mp4", SR)
    (tmp_path / "corrupt.mp4").write_bytes(np.random.RandomState(0).bytes(5000))
    with pytest.raises(MediaError, match=r"corrupt.mp4: cannot be opened"):
        load_audio(tmp_path / "corrupt.mp4", SR)
    write_video_only_mp4(tmp_path / "silent.mp4")
    with pytest.raises(MediaError, match=r"silent.mp4: has no audio stream"):
        load_audio(tmp_path / "silent.mp4", SR)
    sf.write(tmp_path / "zero.wav", np.zeros((0, 1), np.float32), SR)
    with pytest.raises(MediaError, match=r"zero.wav: .*zero length"):
        load_audio(tmp_path / "zero.wav", SR)


def test_griffin_lim_inverts_a_tone(front_end):
    t = np.arange(SR) / SR
    y = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    x = front_end(torch.from_numpy(y).unsqueeze(0))
    wave = GriffinLimVocoder(front_end)(x)[0].numpy()
    assert wave.shape[0] == 256 * (x.shape[-1] - 1)
    spectrum = np.abs(np.fft.rfft(wave[: len(wave) // 2 * 2]))
    peak_hz = spectrum.argmax() * SR / (len(wave) // 2 * 2)
    assert abs(peak_hz - 1000) < 30
    remel = front_end(torch.from_numpy(wave).unsqueeze(0))[..., : x.shape[-1]]
    assert (remel - x[..., : remel.shape[-1]]).abs().mean() < 0.05
