"""FAD / KL / ACC of generated waveforms (`shared.metrics.AudioGenerationMetrics`, GRAVO sec. 3.3): ACC's
ignored classes and label sets, FAD on VGGish, and values and intervals independent of how clips are split
into updates and processes."""

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from shared.encoders import PaSST, VGGish
from shared.metrics import (
    AudioGenerationMetrics,
    Bootstrap,
    FrechetDistance,
    LabelSetAccuracy,
    MeanKLDivergence,
    top_class_hits,
)
from shared.metrics.audio import to_rate


def test_top_class_after_zeroing_the_ignored_classes_is_matched_against_the_label_set():
    # class 0 ("Music", say) wins outright, class 2 is second; the label set of each row is given
    logits = torch.tensor([[5.0, 0.0, 3.0, 1.0], [5.0, 0.0, 3.0, 1.0], [0.0, 4.0, 3.0, 1.0]])
    label_sets = torch.tensor([[0, 0, 1, 0], [0, 1, 0, 1], [0, 0, 0, 0]], dtype=torch.bool)
    hits, scored = top_class_hits(logits, label_sets)
    assert hits.tolist() == [False, False, False] and scored.tolist() == [True, True, False]
    hits, scored = top_class_hits(logits, label_sets, torch.tensor([0]))
    assert hits.tolist() == [True, False, False]  # row 0: class 2 is now on top and in its set
    # class indices as targets: ignoring 0 and 2 leaves class 3 on top of row 0
    hits, _ = top_class_hits(logits, torch.tensor([3, 3, 1]), torch.tensor([0, 2]))
    assert hits.tolist() == [True, True, True]
    with pytest.raises(ValueError, match="every class is ignored"):
        top_class_hits(logits, label_sets, torch.arange(4))


def test_label_set_accuracy_leaves_out_unscored_clips_and_gives_an_interval():
    acc = LabelSetAccuracy(ignored_classes=[0], bootstrap=Bootstrap(resamples=200))
    logits = torch.eye(4)[[1, 2, 3, 1, 2, 3]] * 5
    targets = torch.tensor([1, 2, 0, 1, 0, 3])  # 4 of 6 right
    acc.update(logits, targets, [f"c{i}" for i in range(6)])
    acc.update(logits[:2], torch.zeros(2, 4, dtype=torch.bool), ["x", "y"])  # empty sets: not scored
    values = acc.compute()
    assert values["acc"].item() == pytest.approx(4 / 6)
    assert values["acc_lo"] < values["acc"] < values["acc_hi"]


class FrameEmbedder(nn.Module):
    """A fixed random projection of each 0.25-s frame's power spectrum (a stand-in with windows, like VGGish)."""

    sample_rate, embedding_dim = 16000, 6

    def __init__(self):
        super().__init__()
        self.register_buffer("projection", torch.randn(2001, 6, generator=torch.Generator().manual_seed(0)))

    def embed(self, wave: torch.Tensor) -> torch.Tensor:
        frames = wave.unfold(1, 4000, 4000)
        return torch.log1p(torch.fft.rfft(frames).abs() ** 2) @ self.projection / 50


class BandClassifier(nn.Module):
    """Logits = log band energies in 5 bands (a stand-in classifier at another rate)."""

    sample_rate = 8000

    def logits(self, wave: torch.Tensor) -> torch.Tensor:
        power = torch.fft.rfft(wave).abs() ** 2
        return torch.log(torch.stack([band.sum(1) for band in power.tensor_split(5, dim=1)], 1) + 1e-6)


def clips(n: int, seed: int, pitch_shift: float = 1.0) -> torch.Tensor:
    """n one-second clips at 16 kHz: a tone per clip plus noise."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(16000) / 16000
    pitch = (200 + 600 * torch.rand(n, 1, generator=g)) * pitch_shift
    return torch.sin(2 * torch.pi * pitch * t) * 0.5 + 0.05 * torch.randn(n, 16000, generator=g)


def test_fad_and_kl_of_a_set_against_itself_are_zero_and_of_shifted_audio_positive():
    reals = clips(12, seed=1)
    ids = [f"clip{i}" for i in range(12)]
    same = AudioGenerationMetrics(FrameEmbedder(), BandClassifier(), accuracy=False, bootstrap=None)
    same.update(real=reals, real_ids=ids, fake=reals.clone(), fake_ids=ids)
    values = same.compute()
    scale = float(torch.cov(FrameEmbedder().embed(reals).flatten(0, 1).t()).trace())
    assert abs(values["fad"].item()) < 1e-6 * scale
    assert abs(values["kl"].item()) <= 5 * 1e-6 * 1.001  # only the official 1e-6 on p_fake: at most C x 1e-6
    shifted = AudioGenerationMetrics(FrameEmbedder(), BandClassifier(), accuracy=False, bootstrap=None)
    shifted.update(real=reals, real_ids=ids, fake=clips(12, seed=1, pitch_shift=3.0), fake_ids=ids)
    values = shifted.compute()
    assert values["fad"].item() > 0.1 * scale and values["kl"].item() > 0.01


def test_fad_on_vggish_is_zero_for_identical_sets_and_positive_for_shifted_ones():
    torch.manual_seed(0)
    vggish = VGGish().eval()
    reals, louder_tones = clips(3, seed=2), clips(3, seed=2, pitch_shift=4.0)
    fad = FrechetDistance(128)
    with torch.no_grad():
        real_rows = vggish.embed(reals.repeat(1, 2)).flatten(0, 1)  # 2-s clips: 3 windows each
        fake_rows = vggish.embed(louder_tones.repeat(1, 2)).flatten(0, 1)
    scale = float(torch.cov(real_rows.double().t()).trace())
    assert scale > 0
    fad.update(real_rows, real=True)
    fad.update(real_rows.clone(), real=False)
    assert abs(fad.compute().item()) < 1e-3 * scale
    fad.reset()
    fad.update(real_rows, real=True)
    fad.update(fake_rows, real=False)
    assert fad.compute().item() > 0.1 * scale


def test_vggish_and_passt_plug_in():
    torch.manual_seed(0)
    passt = PaSST(dim=64, depth=1, heads=2)  # the real architecture, narrowed
    metrics = AudioGenerationMetrics(VGGish(), passt, ignored_classes=[0, 1], bootstrap=None)
    reals, fakes = clips(3, seed=5).repeat(1, 2), clips(3, seed=6).repeat(1, 2)  # 2 s at 16 kHz
    ids = ["a", "b", "c"]
    metrics.update(real=reals, real_ids=ids, fake=fakes, fake_ids=ids, fake_targets=torch.tensor([2, 3, 4]))
    assert metrics.fad.fake_features_num_samples == 3 * 3  # three VGGish windows per 2-s clip
    values = metrics.compute()
    assert set(values) == {"fad", "kl", "acc"} and all(torch.isfinite(v) for v in values.values())


def run_metrics(chunks: list[tuple[slice, slice]]) -> dict[str, float]:
    """10 real clips, 2 generated clips for each, fed in the given (real, fake) chunks."""
    reals, fakes = clips(10, seed=3), clips(20, seed=4, pitch_shift=1.5)
    real_ids = [f"clip{i}" for i in range(10)]
    fake_ids = [f"clip{i // 2}" for i in range(20)]
    real_targets, fake_targets = torch.arange(10) % 5, (torch.arange(20) // 2) % 5
    metrics = AudioGenerationMetrics(
        FrameEmbedder(), BandClassifier(), real_accuracy=True, bootstrap=Bootstrap(resamples=100)
    )
    for r, f in chunks:
        if r.stop > r.start:
            metrics.update(real=reals[r], real_ids=real_ids[r], real_targets=real_targets[r])
        metrics.update(fake=fakes[f], fake_ids=fake_ids[f], fake_targets=fake_targets[f])
    return {name: value.item() for name, value in metrics.compute().items()}


def test_values_do_not_depend_on_how_clips_are_split_into_updates():
    whole = run_metrics([(slice(0, 10), slice(0, 20))])
    pieces = run_metrics(
        [(slice(0, 0), slice(0, 5)), (slice(0, 4), slice(5, 6)), (slice(4, 10), slice(6, 20))]
    )
    assert set(whole) == {f"{n}{e}" for n in ("fad", "kl", "acc", "acc_real") for e in ("", "_lo", "_hi")}
    # float32 embeddings of differently sized batches differ in their last bits (matmul blocking);
    # abs: an interval bound may sit near 0 (the values are of order 1)
    assert pieces == pytest.approx(whole, rel=1e-6, abs=1e-6)
    for name in ("fad", "kl"):
        assert whole[f"{name}_lo"] < whole[name] < whole[f"{name}_hi"]
    # KL agrees with MeanKLDivergence fed the classifier's logits at its own rate directly
    mkl, classifier = MeanKLDivergence(), BandClassifier()
    mkl.update(
        classifier.logits(to_rate(clips(10, seed=3), 16000, 8000)), [f"clip{i}" for i in range(10)], True
    )
    fakes = clips(20, seed=4, pitch_shift=1.5)
    mkl.update(classifier.logits(to_rate(fakes, 16000, 8000)), [f"clip{i // 2}" for i in range(20)], False)
    assert whole["kl"] == pytest.approx(mkl.compute().item(), rel=1e-6)


def _ddp_metrics(rank: int, world: int, rdzv: str, out: str) -> None:
    torch.set_num_threads(1)  # a forked child must not reuse the parent's OpenMP pool
    dist.init_process_group("gloo", init_method=f"file://{rdzv}", rank=rank, world_size=world)
    # uneven shards; rank 1 holds fakes whose reals are on rank 0
    chunks = [(slice(0, 7), slice(0, 3))] if rank == 0 else [(slice(7, 10), slice(3, 20))]
    torch.save(run_metrics(chunks), f"{out}.{rank}")
    dist.destroy_process_group()


def test_two_processes_give_the_one_process_values_and_intervals(tmp_path):
    single = run_metrics([(slice(0, 10), slice(0, 20))])
    args = (2, str(tmp_path / "rdzv"), str(tmp_path / "m"))
    mp.start_processes(_ddp_metrics, args=args, nprocs=2, join=True, start_method="fork")
    for rank in range(2):
        assert torch.load(tmp_path / f"m.{rank}") == pytest.approx(single, rel=1e-6, abs=1e-6)
