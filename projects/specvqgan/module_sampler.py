"""Training and evaluating the visually guided sampler (SpecVQGAN, arXiv:2110.08791, sec. 3.2, 4.1, 6.1.4,
6.1.7; official `v-iashin/SpecVQGAN`, `specvqgan/models/cond_transformer.py`,
`evaluation/generate_samples.py`).

Training: the frozen codebook turns each clip's mel into F'T' codes (column-major); the GPT learns them
with cross-entropy, conditioned on the clip's visual features, its class, both (Table 4 "+ cls"), or on one
uniform-random vector drawn anew for every clip ("No Feats", Table 3). AdamW betas (0.9, 0.95), weight
decay 0.01 on the Linear weights only (not biases, LayerNorms, embeddings, the Conv1d feature embedder or
the position table), fixed lr = base_lr x processes x batch size, as the official code.

Evaluation (`avgen test` / `validate` with `melception_ckpt`, and `melception_stats` for the official
Melception file): `sampling.samples_per_clip` codes per clip are sampled (`CodeSampling`: top-k, top-p,
temperature; `chunk_size` items per sampler call, each item from its own random stream seeded by
`sampling.seed` and "<clip id>/<sample index>") and decoded chunk by chunk; FID, MKL and IS on Melception
compare them with the real clips, and the codebook's reconstructions get the same metrics (the Table 1 vs
Table 3 comparison). `predict` writes the sampled mels of each clip (`mel_sample_<i>`), ready for a vocoder.
Each comes with a 95 % bootstrap interval over the clips (`<name>_lo_<kind>`, `<name>_hi_<kind>`;
`shared.metrics.bootstrap`): `bootstrap_resamples` resamples, 0 for none. FID's interval costs O(N D^2 + D^3)
per resample: with the paper's 2048-d features of 145K samples, run it on a GPU or lower `bootstrap_resamples`.

TensorBoard (`shared.callbacks.ExampleLogger` in the configs): at validation, the real and one sampled mel of a
few validation clips, as pictures and as Griffin-Lim sound (`examples`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, replace

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch import nn

from projects.specvqgan.convert import load_codebook
from projects.specvqgan.models.sampler import CodeSampling, VisualCodeSampler
from shared.encoders import load_melception
from shared.metrics import Bootstrap, MelceptionMetrics, StageMeans

CONDITIONS = ("feats", "class", "feats+class", "none")


class SpecVQGANTransformer(LightningModule):
    """Batch keys used: `mel` [B, 1, F, T] in [0, 1], `frame_feats` [B, N, D] (conditions with feats),
    `label` [B] (conditions with class), `clip_id` list."""

    def __init__(
        self,
        codebook_ckpt: str | None = None,
        codebook: dict | None = None,
        condition: str = "feats",
        feat_dim: int = 2048,
        n_feats: int = 212,
        n_classes: int | None = None,
        grid: tuple[int, int] = (5, 53),
        n_layer: int = 24,
        n_head: int = 16,
        n_embd: int = 1024,
        dropout: float = 0.0,
        base_lr: float = 5e-6,
        weight_decay: float = 0.01,
        melception_ckpt: str | None = None,
        melception_stats: str | None = None,
        sampling: CodeSampling | None = None,
        bootstrap_resamples: int = 1000,
    ):
        super().__init__()
        if condition not in CONDITIONS:
            raise ValueError(f"condition must be one of {CONDITIONS}, got {condition!r}")
        if codebook is None:
            if codebook_ckpt is None:
                raise ValueError("give codebook_ckpt: the trained codebook (stage 1) checkpoint")
            autoencoder, codebook = load_codebook(codebook_ckpt)
        else:  # rebuilt from this module's own checkpoint: the weights come with its state dict
            from projects.specvqgan.models import SpectrogramVQGAN

            autoencoder = SpectrogramVQGAN(**codebook)
        # a dict when rebuilt from this module's checkpoint, which stores it as one (see below)
        self.sampling = CodeSampling(**sampling) if isinstance(sampling, dict) else sampling or CodeSampling()
        self.save_hyperparameters(ignore=["codebook", "sampling"])
        self.hparams["codebook"] = codebook  # the codebook's constructor arguments travel with the sampler
        self.hparams["sampling"] = asdict(self.sampling)  # plain values: checkpoints load with weights_only
        uses_feats = condition in ("feats", "feats+class", "none")
        self.sampler = VisualCodeSampler(
            autoencoder,
            grid=grid,
            feat_dim=feat_dim if uses_feats else None,
            n_feats=1 if condition == "none" else n_feats,
            n_classes=n_classes if "class" in condition else None,
            n_layer=n_layer,
            n_head=n_head,
            n_embd=n_embd,
            dropout=dropout,
        )
        self.eval_means = StageMeans(["loss"])
        # a plain dict, not submodules: the evaluation network stays out of the sampler's checkpoints
        self.metrics: dict[str, MelceptionMetrics] = {}

    # --- conditions ----------------------------------------------------------------------------------
    def observed_condition(self, batch: dict) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """What the batch gives the condition: its clips' features and/or class ids (None where unused)."""
        condition = self.hparams.condition
        feats = batch["frame_feats"] if "feats" in condition else None
        labels = batch["label"] if "class" in condition else None
        return feats, labels

    def condition_inputs(self, batch: dict) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The condition for training and the loss; "No Feats" draws one uniform vector per clip from torch's
        global generator (evaluation draws one per sample from the sample's own stream, `sample_mels`)."""
        feats, labels = self.observed_condition(batch)
        if self.hparams.condition == "none":  # no information about the video
            ref = batch["mel"]
            feats = torch.rand(ref.shape[0], 1, self.hparams.feat_dim, device=ref.device, dtype=ref.dtype)
        return feats, labels

    # --- training ------------------------------------------------------------------------------------
    def configure_optimizers(self):
        decay, no_decay = [], []
        for module_name, module in self.sampler.named_modules():
            if module_name.startswith("codebook"):
                continue
            for name, param in module.named_parameters(recurse=False):
                (decay if isinstance(module, nn.Linear) and name == "weight" else no_decay).append(param)
        batch_size = self.trainer.datamodule.batch_size
        lr = self.hparams.base_lr * self.trainer.world_size * batch_size
        return torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": self.hparams.weight_decay},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=lr,
            betas=(0.9, 0.95),
        )

    def _loss(self, batch: dict) -> torch.Tensor:
        codes = self.sampler.encode(batch["mel"])
        logits = self.sampler(codes, *self.condition_inputs(batch))
        return F.cross_entropy(logits.flatten(0, 1), codes.flatten())

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = self._loss(batch)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    # --- evaluation ----------------------------------------------------------------------------------
    def _start_metrics(self) -> None:
        if (
            not self.hparams.melception_ckpt or self.trainer.state.fn == "fit"
        ):  # sampling is for validate/test
            return
        if not self.metrics:
            melception = load_melception(self.hparams.melception_ckpt, self.hparams.melception_stats)
            resamples = self.hparams.bootstrap_resamples
            bootstrap = Bootstrap(resamples) if resamples else None
            self.metrics = {
                kind: MelceptionMetrics(melception, bootstrap=bootstrap)
                for kind in ("samples", "reconstructions")
            }
        for metric in self.metrics.values():
            metric.to(self.device).reset()

    def on_validation_start(self) -> None:
        self._start_metrics()

    def on_test_start(self) -> None:
        self._start_metrics()

    def sample_mels(
        self, batch: dict, sampling: CodeSampling | None = None
    ) -> Iterator[tuple[list[str], torch.Tensor]]:
        """The batch's `sampling.samples_per_clip` samples per clip (`sampling`: this module's by default),
        chunk by chunk (`CodeSampling.chunk_size` items per sampler call): yields (clip id of each item, mels
        [n, 1, F, T] in [0, 1], not clamped). Item i of clip c is drawn from the stream of key "c/i", so it
        does not depend on the batch."""
        sampling = sampling or self.sampling
        ids, n = list(batch["clip_id"]), sampling.samples_per_clip
        feats, labels = self.observed_condition(batch)  # feats None for "No Feats": drawn per item
        item_ids = [clip for clip in ids for _ in range(n)]
        keys = [f"{clip}/{i}" for clip in ids for i in range(n)]
        rows = [row for row in range(len(ids)) for _ in range(n)]
        for items, codes in self.sampler.sample_items(feats, labels, keys, sampling, rows=rows):
            yield item_ids[items], self.sampler.decode(codes)

    def examples(self, batch: dict) -> dict[str, torch.Tensor]:
        """Mels in [0, 1], [N, F, T], for `shared.callbacks.ExampleLogger` (which draws them and makes their
        sound with Griffin-Lim): each clip's real mel and one sample of this module's `sampling` (sample 0 of
        `sample_mels`, the same sample at every validation)."""
        one = replace(self.sampling, samples_per_clip=1)
        generated = torch.cat([mels for _, mels in self.sample_mels(batch, one)])
        return {"real": batch["mel"][:, 0], "generated": generated[:, 0].clamp(0, 1)}

    def _evaluate(self, batch: dict, stage: str) -> None:
        self.eval_means.log(self, stage, {"loss": self._loss(batch)}, len(batch["mel"]))
        if not self.metrics or self.trainer.state.fn == "fit":
            return
        real, ids = batch["mel"], batch["clip_id"]
        for sample_ids, samples in self.sample_mels(batch):
            self.metrics["samples"].update(fake=samples, fake_ids=sample_ids)
        self.metrics["samples"].update(real=real, real_ids=ids)
        reconstructions = self.sampler.decode(self.sampler.encode(real))
        self.metrics["reconstructions"].update(real, ids, reconstructions, ids)

    def _log_metrics(self, stage: str) -> None:
        if not self.metrics or self.trainer.state.fn == "fit":
            return
        for kind, metric in self.metrics.items():
            values = metric.compute()  # already reduced over all processes
            self.log_dict(
                {f"{stage}/{name}_{kind}": float(v) for name, v in values.items()}, rank_zero_only=True
            )
            metric.reset()

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._log_metrics("val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._log_metrics("test")

    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        n = self.sampling.samples_per_clip
        samples = torch.cat([mels for _, mels in self.sample_mels(batch)])
        samples = samples.view(-1, n, *samples.shape[1:])
        out = {"clip_id": batch["clip_id"]}
        for i in range(n):
            out[f"mel_sample_{i}"] = samples[:, i, 0]
        return out
