"""AudioToken's image metrics (`shared.metrics.image`, arXiv:2305.13050 sec. 2.2): the AIS/IIS win-rate, AIC with
the 0.75 name matching, FID on a custom encoder and on torch-fidelity's Inception from a local file."""

from __future__ import annotations

import math

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from shared.encoders import load_clip_image_text
from shared.metrics import (
    AudioImageClassAgreement,
    AudioImageSimilarity,
    ImageFID,
    ImageImageSimilarity,
    class_matches,
    pool_indices,
    win_rates,
)
from shared.runs import UserError
from tests.shared.tiny_hf_clip import save_tiny_clip


def randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def ids(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


def test_paired_embedding_above_every_pool_entry_wins_everything():
    images = randn(5, 8, seed=0)
    ais = AudioImageSimilarity(randn(20, 8, seed=1), ids("pool", 20), bootstrap=None)
    ais.update(images, 3 * images, ids("clip", 5))  # cosine 1 with the paired one, < 1 with the pool
    assert ais.compute()["ais"].item() == 1.0


def test_ties_lose_so_identical_embeddings_score_zero():
    same = torch.ones(4, 8)
    iis = ImageImageSimilarity(torch.ones(10, 8), ids("pool", 10), bootstrap=None)
    iis.update(same, same, ids("clip", 4))
    assert iis.compute()["iis"].item() == 0.0


def test_random_embeddings_score_chance():
    n, p = 400, 300
    ais = AudioImageSimilarity(randn(p, 16, seed=2), ids("pool", p))
    ais.update(randn(n, 16, seed=3), randn(n, 16, seed=4), ids("clip", n))
    values = ais.compute()
    # with unrelated embeddings the paired cosine is one more draw beside the pool's P: its rank among the
    # P + 1 is uniform, so an image's win-rate has variance (P + 2) / (12 P) and the mean of N of them
    # sqrt((P + 2) / (12 P N)) (0.0145 here); 4 standard deviations
    std = math.sqrt((p + 2) / (12 * p * n))
    assert abs(values["ais"].item() - 0.5) < 4 * std
    assert values["ais_lo"] < values["ais"] < values["ais_hi"]
    assert values["ais_hi"] - values["ais_lo"] == pytest.approx(2 * 1.96 * std, rel=0.3)


def test_a_clip_is_not_compared_with_its_own_pool_entry():
    images = F.normalize(randn(3, 8, seed=5), dim=-1)
    pool = torch.cat([images, -images])  # each image's own entry equals its paired embedding: a tie
    pool_ids = ids("clip", 3) + ids("other", 3)
    ais = AudioImageSimilarity(pool, pool_ids, bootstrap=None)
    ais.update(images, images, ids("clip", 3))
    # own entry left out: the paired cosine 1 beats the two other images' entries (< 1) and the 3 negatives
    assert ais.compute()["ais"].item() == 1.0
    without_exclusion = win_rates(images, images, pool)
    assert torch.allclose(without_exclusion, torch.full((3,), 5 / 6, dtype=torch.float64))
    with pytest.raises(ValueError, match="no pool entry but its own"):
        win_rates(images[:1], images[:1], images[:1], own=torch.ones(1, 1, dtype=torch.bool))


def test_pool_indices_are_fixed_by_the_seed():
    first = pool_indices(100, 10, seed=7)
    assert torch.equal(first, pool_indices(100, 10, seed=7))
    assert len(set(first.tolist())) == 10 and not torch.equal(first, pool_indices(100, 10, seed=8))
    with pytest.raises(ValueError):
        pool_indices(5, 6, seed=0)


def test_aic_counts_a_classifier_that_predicts_the_label_as_full_agreement():
    names = ["dog", "cat", "car"]
    aic = AudioImageClassAgreement(class_matches(names, names, torch.eye(3), torch.eye(3)))
    labels = torch.tensor([0, 1, 2, 2, 1])
    aic.update(labels, labels, ids("clip", 5))
    assert aic.compute()["aic"].item() == 1.0
    aic.update(torch.tensor([1, 2]), torch.tensor([0, 0]), ids("miss", 2))
    assert aic.compute()["aic"].item() == pytest.approx(5 / 7)


def test_names_match_above_the_threshold_or_when_identical():
    def unit(cosine: float) -> list[float]:  # a unit vector at this cosine to [1, 0, 0]
        return [cosine, math.sqrt(1 - cosine**2), 0.0]

    labels, label_embeddings = ["dog"], torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64)
    predicted = ["puppy", "hound", "wolf", "dog"]
    cosines = [0.75 + 1e-6, 0.75 - 1e-6, 0.3]
    predicted_embeddings = torch.tensor([*map(unit, cosines), [0.0, 0.0, 1.0]], dtype=torch.float64)
    match = class_matches(predicted, labels, predicted_embeddings, label_embeddings)
    # just above 0.75 matches, just below does not; the same name matches whatever its embedding
    assert match[:, 0].tolist() == [True, False, False, True]

    class CraftedTexts:
        def __init__(self):
            self.table = dict(
                zip(predicted + labels, [*predicted_embeddings, *label_embeddings], strict=True)
            )

        def encode_texts(self, texts):
            return torch.stack([self.table[t] for t in texts])

    aic = AudioImageClassAgreement.from_text_encoder(CraftedTexts(), labels, predicted, bootstrap=None)
    aic.update(torch.tensor([0, 1, 2, 3]), torch.zeros(4), ids("clip", 4))
    assert aic.compute()["aic"].item() == 0.5


def test_aic_with_zero_shot_clip_agrees_with_its_own_predictions(tmp_path):
    clip = load_clip_image_text(save_tiny_clip(tmp_path / "clip"))
    names = ["dog", "cat", "violin"]
    images = torch.rand(6, 3, 40, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    predicted = clip.zero_shot(images, names)
    aic = AudioImageClassAgreement.from_text_encoder(clip, names, bootstrap=None)
    assert aic.match.diagonal().all()
    aic.update(predicted, predicted, ids("clip", 6))
    assert aic.compute()["aic"].item() == 1.0


def run_similarities(rows: slice) -> dict[str, float]:
    """AIS, IIS and AIC on rows of a fixed set of 24 clips (two samples of each of 12 clips)."""
    n = 24
    images, audio, real = randn(n, 8, seed=10), randn(n, 8, seed=11), randn(n, 8, seed=12)
    audio[::3] = images[::3]  # some pairs similar, so the values are away from chance
    clip_ids = [f"clip{i // 2}" for i in range(n)]
    pool = pool_indices(n, 10, seed=0)
    ais = AudioImageSimilarity(audio[pool], [clip_ids[i] for i in pool])
    iis = ImageImageSimilarity(real[pool], [clip_ids[i] for i in pool])
    aic = AudioImageClassAgreement(torch.eye(3, dtype=torch.bool))
    predicted, labels = torch.arange(n) % 3, torch.arange(n) % 2
    ais.update(images[rows], audio[rows], clip_ids[rows])
    iis.update(images[rows], real[rows], clip_ids[rows])
    aic.update(predicted[rows], labels[rows], clip_ids[rows])
    values = {}
    for metric in (ais, iis, aic):
        values |= {k: v.item() for k, v in metric.compute().items()}
    return values


def _ddp_similarities(rank: int, world: int, rdzv: str, out: str) -> None:
    torch.set_num_threads(1)  # a forked child must not reuse the parent's OpenMP pool
    dist.init_process_group("gloo", init_method=f"file://{rdzv}", rank=rank, world_size=world)
    torch.save(run_similarities(slice(0, 9) if rank == 0 else slice(9, 24)), f"{out}.{rank}")
    dist.destroy_process_group()


def test_two_processes_give_the_one_process_values_and_intervals(tmp_path):
    single = run_similarities(slice(0, 24))
    assert single["ais"] > 0.6  # the similar pairs show
    args = (2, str(tmp_path / "rdzv"), str(tmp_path / "m"))
    mp.start_processes(_ddp_similarities, args=args, nprocs=2, join=True, start_method="fork")
    for rank in range(2):
        assert torch.load(tmp_path / f"m.{rank}") == pytest.approx(single, rel=1e-10)


def fid_of(fid: ImageFID, real: torch.Tensor, fake: torch.Tensor) -> float:
    fid.reset()
    fid.update(real, real=True)
    fid.update(fake, real=False)
    return fid.compute().item()


def test_fid_on_an_image_encoder_is_zero_for_the_same_set_and_grows_with_a_shift(tmp_path):
    fid = ImageFID(load_clip_image_text(save_tiny_clip(tmp_path / "clip")))
    images = torch.rand(24, 3, 40, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1
    same = fid_of(fid, images, images)
    slightly = fid_of(fid, images, (images + 0.2).clamp(-1, 1))
    strongly = fid_of(fid, images, (images + 0.6).clamp(-1, 1))
    assert abs(same) < 1e-6 * slightly
    assert 0 < slightly < strongly


def test_fid_features_are_what_update_accumulates_and_give_its_distance(tmp_path):
    from shared.metrics import FrechetDistance

    fid = ImageFID(load_clip_image_text(save_tiny_clip(tmp_path / "clip")))
    generator = torch.Generator().manual_seed(3)
    real, fake = (torch.rand(16, 3, 40, 64, generator=generator) * 2 - 1 for _ in range(2))
    fid.update(real, real=True)
    fid.update(fake, real=False)
    real_features, fake_features = fid.features(real), fid.features(fake)
    torch.testing.assert_close(real_features.sum(0), fid.real_features_sum, rtol=1e-9, atol=1e-9)
    distance = FrechetDistance(real_features.shape[1])
    distance.update(real_features, real=True)
    distance.update(fake_features, real=False)
    assert distance.compute().item() == pytest.approx(fid.compute().item(), rel=1e-4)


@pytest.fixture(scope="module")
def inception_weights(tmp_path_factory):
    """torch-fidelity's Inception v3 with random weights (its own initialisation), saved as its weights file."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    class Unloaded(FeatureExtractorInceptionV3):
        def load_state_dict(self, state_dict, *args, **kwargs):  # keeps the random initialisation
            return None

    path = tmp_path_factory.mktemp("inception") / "empty.pth"
    torch.save({}, path)
    torch.manual_seed(0)
    state = Unloaded("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(path)).state_dict()
    weights = path.with_name("weights-inception-random.pth")
    torch.save(state, weights)
    return weights, state


def test_fid_reads_inception_from_the_local_file_and_never_downloads(inception_weights, monkeypatch):
    import torch_fidelity.feature_extractor_inceptionv3 as inception_module

    def no_download(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(inception_module, "load_state_dict_from_url", no_download)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    weights, state = inception_weights
    fid = ImageFID(2048, weights_path=weights)
    loaded = fid.inception.state_dict()
    assert loaded.keys() == state.keys() and all(torch.equal(loaded[k], state[k]) for k in state)

    # the input policy and the distances on the same file's 64-d features (2048-d ones take minutes here)
    small = ImageFID(64, weights_path=weights)
    generator = torch.Generator().manual_seed(2)
    images = (torch.randint(0, 256, (6, 3, 64, 64), generator=generator) / 127.5 - 1).float()
    # [-1, 1] -> rounded 8-bit levels, which torchmetrics resizes to 299 (antialiased bilinear) and scales
    small.update(images, real=True)
    expected = small.inception(((images + 1) * 127.5).round().to(torch.uint8)).double().sum(dim=0)
    torch.testing.assert_close(
        small.real_features_sum, expected, rtol=1e-6, atol=1e-6 * expected.abs().max().item()
    )
    same = fid_of(small, images, images)
    shifted = fid_of(small, images, (images + 0.5).clamp(-1, 1))
    assert abs(same) < 1e-6 * shifted

    with pytest.raises(UserError, match="nothing is downloaded"):
        ImageFID(2048)
    with pytest.raises(UserError, match="missing.pth"):
        ImageFID(2048, weights_path=weights.with_name("missing.pth"))
