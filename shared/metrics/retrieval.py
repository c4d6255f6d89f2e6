"""Cross-modal retrieval MRR between audio and image embeddings, both ways (WavBriVL arXiv:2303.04585, sec. 4,
Table 2 "CMR": MRR A->I and I->A on the VGGSound test clips).

For each query (a clip's audio embedding for A->I, its image embedding for I->A) every candidate of the other
modality is ranked by cosine similarity; the query's reciprocal rank is 1 / (1-based rank of the first relevant
candidate) and MRR is its mean over queries. The paper does not say what is relevant, so both are here:

- instance level (`mrr_a2i`, `mrr_i2a`): the candidate of the same clip (the default reading);
- class level (`mrr_a2i_class`, `mrr_i2a_class`): any candidate of the query's class.

The reciprocal ranks are torchmetrics' `RetrievalMRR` with one `indexes` value per query (asked for every
query's value through its `aggregation` hook rather than only their mean, so that the interval can resample
them); it sorts each query's candidates by score (ties in its sort order). Next to each MRR is its chance
level, the expected MRR of a random ranking (`chance_mrr`: H_N / N at instance level with N candidates), and
a bootstrap interval over clips (`shared.metrics.bootstrap`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torchmetrics import Metric
from torchmetrics.retrieval import RetrievalMRR
from torchmetrics.utilities import dim_zero_cat

from shared.metrics.bootstrap import (
    BOOTSTRAP,
    Bootstrap,
    ClipResampling,
    bootstrap_interval,
    clip_indices,
    clip_key_ids,
    mean_statistic,
    with_intervals,
)

QUERY_CHUNK = 512  # queries scored per RetrievalMRR call: N x 512 scores in memory, not N x N


def _per_query(values: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """`RetrievalMRR`'s aggregation hook that keeps every query's value (in ascending `indexes` order)."""
    return values


def reciprocal_ranks(
    queries: torch.Tensor, candidates: torch.Tensor, relevant: torch.Tensor, chunk: int = QUERY_CHUNK
) -> torch.Tensor:
    """1 / rank of the first relevant candidate for each query: queries [N, D], candidates [M, D] ranked by
    cosine similarity, relevant [N, M] bool -> [N] float64. Every query needs a relevant candidate."""
    if queries.dim() != 2 or candidates.dim() != 2 or queries.shape[1] != candidates.shape[1]:
        raise ValueError(
            f"expected queries [N, D] and candidates [M, D], got {tuple(queries.shape)}, {tuple(candidates.shape)}"
        )
    if relevant.shape != (len(queries), len(candidates)):
        raise ValueError(
            f"relevant must be [N, M] = {(len(queries), len(candidates))}, got {tuple(relevant.shape)}"
        )
    if not relevant.any(dim=1).all():
        raise ValueError("every query needs at least one relevant candidate")
    queries = F.normalize(queries.double(), dim=1)
    candidates = F.normalize(candidates.double(), dim=1)
    out = []
    for start in range(0, len(queries), chunk):
        # cosines shifted to [1, 3]: torchmetrics' reciprocal rank counts a relevant candidate only where its
        # score is positive, which would drop the relevant candidates of negative cosine (the order is kept)
        scores = queries[start : start + chunk] @ candidates.T + 2.0
        target = relevant[start : start + chunk].to(scores.device)
        indexes = torch.arange(len(scores), device=scores.device)[:, None].expand_as(scores)
        mrr = RetrievalMRR(empty_target_action="error", aggregation=_per_query, sync_on_compute=False)
        out.append(mrr(scores.reshape(-1), target.reshape(-1), indexes=indexes.reshape(-1)).double())
    return torch.cat(out)


def chance_mrr(relevant_counts: torch.Tensor, n_candidates: int) -> torch.Tensor:
    """Expected MRR of a uniformly random ranking: the mean over queries of E[1 / R], where R is the rank of
    the first of K relevant candidates among M: P(R = r) = C(M - r, K - 1) / C(M, K). K = 1 gives H_M / M."""
    counts = relevant_counts.long().cpu()
    if (counts < 1).any() or (counts > n_candidates).any():
        raise ValueError(f"relevant counts must lie in [1, {n_candidates}]")
    ranks = torch.arange(1, n_candidates + 1, dtype=torch.float64)
    m = torch.tensor(float(n_candidates), dtype=torch.float64)

    def log_comb(n: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return torch.lgamma(n + 1) - torch.lgamma(k + 1) - torch.lgamma(n - k + 1)

    expected = {}
    for k in counts.unique().tolist():
        k_ = torch.tensor(float(k), dtype=torch.float64)
        possible = ranks <= n_candidates - k + 1
        r = ranks[possible]
        p = torch.exp(log_comb(m - r, k_ - 1) - log_comb(m, k_))
        expected[k] = float((p / r).sum())
    return torch.tensor([expected[k] for k in counts.tolist()], dtype=torch.float64).mean()


class CrossModalMRR(ClipResampling, Metric):
    """`update(audio [N, D], image [N, D], labels [N], ids)`, one row per clip (its audio and its frame);
    `compute()` -> {`mrr_a2i`, `mrr_i2a` (instance level), `mrr_a2i_class`, `mrr_i2a_class` (class level), each
    with `<name>_chance` and, with a bootstrap, `<name>_lo` / `<name>_hi`}, over the rows of all processes.

    The embeddings are "cat" states, gathered across processes before the ranking (every query is ranked
    against all candidates, not only its own process's).
    """

    full_state_update = False
    higher_is_better = True

    def __init__(self, bootstrap: Bootstrap | None = BOOTSTRAP, **kwargs):
        super().__init__(**kwargs)
        self.bootstrap = bootstrap
        for name in ("audio", "image", "labels", "ids"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(
        self,
        audio: torch.Tensor,
        image: torch.Tensor,
        labels: torch.Tensor,
        ids: Sequence[str] | torch.Tensor,
    ) -> None:
        if (
            audio.dim() != 2
            or audio.shape != image.shape
            or len(labels) != len(audio)
            or len(ids) != len(audio)
        ):
            raise ValueError(
                f"expected audio and image embeddings [N, D] with N labels and N clip ids, got "
                f"{tuple(audio.shape)}, {tuple(image.shape)}, {len(labels)} labels, {len(ids)} ids"
            )
        self.audio.append(audio.detach().float())
        self.image.append(image.detach().float())
        self.labels.append(torch.as_tensor(labels).long().reshape(-1).to(audio.device))
        self.ids.append(clip_key_ids(ids).to(audio.device))

    def _reciprocal_ranks(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        audio, image = dim_zero_cat(self.audio), dim_zero_cat(self.image)
        ids, labels = dim_zero_cat(self.ids), dim_zero_cat(self.labels)
        relevance = {"": ids[:, None] == ids[None, :], "_class": labels[:, None] == labels[None, :]}
        ranks, chance = {}, {}
        for suffix, relevant in relevance.items():
            ranks[f"mrr_a2i{suffix}"] = reciprocal_ranks(audio, image, relevant)
            ranks[f"mrr_i2a{suffix}"] = reciprocal_ranks(image, audio, relevant.T)
            # the relation is symmetric, so both directions share their chance level
            chance[f"mrr_a2i{suffix}"] = chance[f"mrr_i2a{suffix}"] = chance_mrr(relevant.sum(1), len(ids))
        return ranks, chance

    def compute(self) -> dict[str, torch.Tensor]:
        ranks, chance = self._reciprocal_ranks()
        values = {name: rr.mean() for name, rr in ranks.items()}
        values |= {f"{name}_chance": value for name, value in chance.items()}
        if self.bootstrap is None:
            return values
        n_clips, statistics = self._statistics(ranks)
        return with_intervals(
            values, {name: bootstrap_interval(fn, n_clips, self.bootstrap) for name, fn in statistics.items()}
        )

    def _statistics(self, ranks: dict[str, torch.Tensor]) -> tuple[int, dict]:
        n_clips, (clips,) = clip_indices(dim_zero_cat(self.ids))
        return n_clips, {name: mean_statistic(rr, clips.to(rr.device), n_clips) for name, rr in ranks.items()}

    def clip_statistics(self) -> tuple[int, dict]:
        return self._statistics(self._reciprocal_ranks()[0])
