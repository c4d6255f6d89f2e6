"""TiVA's training strategies and evaluation (paper sec. 3.3, 4.1, Table 5), one LightningModule for all stages.

The networks (sec. 3.2): the semantic encoder S (eq. 2), the layout predictor T (eqs. 3-4) and the generator G
(eq. 7), on top of frozen parts: CLIP (cached features from the data module), the mel VAE and the vocoder
(`audioldm_root`, `vocoder`: AudioLDM2's HiFi-GAN, or Griffin-Lim where a config asks for it). `stage` picks
what is trained:

| stage | trains | G's layout input | loss | paper |
| --- | --- | --- | --- | --- |
| `layout` | T | - | ‖t_a - T(v)‖² | eq. 8 |
| `generator` | S, G | ground truth t_a | ‖ε - G([z_t, t_a], S(v), t)‖² | eq. 9 |
| `joint` | S, T, G | predicted T(v) | ‖ε - G([z_t, T(v)], S(v), t)‖² | eq. 10 |
| `no_layout` | S, G | none (zeros) | ‖ε - G([z_t, 0], S(v), t)‖² | Table 5 "w/o T" |

T runs once per step: the layout G gets in the joint stage is the one whose L2 to t_a is logged (`layout_l2`).
In every generator stage 10 % of the semantic embeddings are zeroed, per sample (`cond_drop`, sec. 4.1.1; zero
is also the unconditional input of guidance). The DDPM schedule is AudioLDM2's
(`shared.diffusion.training_scheduler`: 1000 steps, scaled-linear betas 0.0015-0.0195, ε-prediction). A fresh
start takes T from a `layout` run (`layout_predictor_ckpt`) and S, T and G from an earlier generator stage
(`init_ckpt`; the joint stage starts from the separately trained parts, sec. 3.3); a trained checkpoint holds
all three, so evaluating or generating from it never reads those files again. `layout_predictor_lr` gives T
its own learning rate (the paper gives none): eq. 10 has no layout term, so a pretrained T fine-tuned at the
generator's rate can drift away from layouts before G has adapted to T's errors.

Frozen parts and the run folder: with `bundle_frozen_parts` (the toy configs, whose VAE is a stand-in trained
by an earlier stage of the pipeline) every checkpoint also carries the VAE and the vocoder, so a run folder
that is copied or moved away from the runs it came from still generates and evaluates; otherwise (the paper
configs) `audioldm_root` names the AudioLDM2 snapshot, best by absolute path.

Inference is `projects.tiva.models.TiVAPipeline` (S, T, G, VAE, vocoder; no Lightning) with the `sampling`
settings (`SamplingSettings`: DPM-Solver 25 steps, guidance 5.0, T's layouts, one sample per clip by default).

Evaluation (`avgen test`): each clip is generated `sampling.samples` times (fresh noise each time, all in one
sampler call, the noise drawn from `eval_seed`) and scored on its first `eval_seconds` (8.0: the paper scores
the first 8 s of its 10.24-s outputs for consistency with Diff-Foley, sec. 4.1.2; a shorter clip, such as the
toy set's 1.92 s, is scored whole; None scores every clip whole), against the same part of the reference
audio. Logged: FAD / KL / IS on Melception (`melception_ckpt`: the toy-trained one or SpecVQGAN's official
file; the 16 kHz audio is resampled to 22,050 Hz for it, `shared.encoders.melception_inputs`), W-dis and
DTW-dis of the onset-detection curves (sec. 4.1.3), the layout L2 of T, and the generation time per clip from
the cached CLIP features to the decoded mel (the vocoder excluded, sec. 4.1.3; a ground-truth layout is
computed before the clock starts).
At validation, `examples(batch)` gives `shared.callbacks.ExampleLogger` what to show in TensorBoard:
generated mels beside the real ones, T's layouts beside the true ones, and the generated and real sound.

Each evaluation metric also gets a 95 % bootstrap interval over the clips (`<name>_lo`, `<name>_hi`;
`shared.metrics.bootstrap`, `bootstrap_resamples` resamples, 0 for none): a clip's samples and its reference
are drawn together.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

import torch
import torch.nn.functional as F
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
from lightning.pytorch import LightningModule
from torch import nn

from projects.tiva.frontend import AudioFrontEnd
from projects.tiva.models import (
    FROZEN_PARTS_KEY,
    VOCODERS,
    LayoutConditionedUNet,
    LayoutPredictor,
    SamplingSettings,
    SemanticEncoder,
    TiVAPipeline,
    frozen_parts_from_state,
    frozen_parts_state,
    layout_to_latent,
    load_frozen_parts,
    load_parts,
    mel_posterior,
    sample_latents,
)
from projects.tiva.pictures import beside, layout_picture, mel_picture
from shared.callbacks import Examples
from shared.diffusion import training_scheduler
from shared.encoders import load_melception, melception_inputs
from shared.guidance import drop_condition
from shared.metrics import Bootstrap, ClipMean, MelceptionMetrics, OnsetSyncMetrics, StageMeans

STAGES = ("layout", "generator", "joint", "no_layout")
TRAINED = {
    "layout": ("layout_predictor",),
    "generator": ("semantic", "generator"),
    "joint": ("semantic", "layout_predictor", "generator"),
    "no_layout": ("semantic", "generator"),
}


def _load_checkpoint_parts(module: nn.Module, ckpt_path: str, names: tuple[str, ...]) -> None:
    """Copy the weights of submodules `names` from a Lightning checkpoint of this class."""
    state = torch.load(ckpt_path, map_location="cpu", weights_only=True)["state_dict"]
    load_parts({name: getattr(module, name) for name in names}, state, ckpt_path)


class TiVA(LightningModule):
    """Batch keys used: `wave` [B, samples] at 16 kHz, `clip_cls` / `clip_patch` [B, N, L, D], `clip_id`."""

    def __init__(
        self,
        semantic: SemanticEncoder,
        layout_predictor: LayoutPredictor,
        generator: LayoutConditionedUNet,
        audioldm_root: str,
        vocoder: Literal["hifigan", "griffin_lim"] = "hifigan",
        bundle_frozen_parts: bool = False,
        stage: str = "joint",
        layout_size: tuple[int, int] = (102, 5),
        layout_predictor_ckpt: str | None = None,
        init_ckpt: str | None = None,
        lr: float = 1e-4,
        layout_predictor_lr: float | None = None,
        cond_drop: float = 0.1,
        sampling: SamplingSettings = SamplingSettings(),  # noqa: B008 (frozen: safe as a default)
        eval_seconds: float | None = 8.0,
        eval_seed: int = 1234,
        melception_ckpt: str | None = None,
        melception_stats: str | None = None,
        cache_audio_targets: bool = False,
        bootstrap_resamples: int = 1000,
    ):
        super().__init__()
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
        if (stage == "no_layout") != (sampling.layout == "none"):
            raise ValueError(
                f"stage {stage!r} with sampling.layout {sampling.layout!r}: a G trained without layouts "
                "(stage no_layout) samples with layout 'none', and only such a G does"
            )
        if vocoder not in VOCODERS:
            raise ValueError(f"vocoder must be one of {VOCODERS}, got {vocoder!r}")
        self.save_hyperparameters()
        self.sampling = sampling
        self.semantic, self.layout_predictor, self.generator = semantic, layout_predictor, generator
        for name in ("semantic", "layout_predictor", "generator"):
            getattr(self, name).requires_grad_(name in TRAINED[stage])
        self.front_end = AudioFrontEnd(layout_size)
        self.scheduler = training_scheduler()
        # Plain containers, not submodules: the frozen parts and Melception stay out of the state dict (the
        # checkpoint carries the frozen parts separately, with bundle_frozen_parts), and the pipeline shares
        # S, T and G with this module.
        self._inference: dict[str, object] = {}
        self.metrics: dict[str, nn.Module] = {}
        self.eval_means = StageMeans(["loss", "layout_l2"])
        # clip id -> {"layout", "posterior"}; filled only with cache_audio_targets
        self._audio_targets: dict[str, dict[str, torch.Tensor]] = {}

    # --- inference and the frozen parts ----------------------------------------------------------------
    @property
    def pipeline(self) -> TiVAPipeline:
        """S, T and G of this module with the frozen VAE and vocoder (loaded on first use), on its device."""
        if "pipeline" not in self._inference:
            vae, vocoder = load_frozen_parts(self.hparams.audioldm_root, self.hparams.vocoder)
            self._set_frozen_parts(vae, vocoder)
        pipeline = self._inference["pipeline"]
        return pipeline.to(self.device)

    def _set_frozen_parts(self, vae: nn.Module, vocoder: nn.Module) -> None:
        self._inference["pipeline"] = TiVAPipeline(
            self.semantic, self.layout_predictor, self.generator, vae.requires_grad_(False).eval(), vocoder
        )

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if self.hparams.bundle_frozen_parts:
            pipeline = self.pipeline
            checkpoint[FROZEN_PARTS_KEY] = frozen_parts_state(pipeline.vae, pipeline.vocoder)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """The VAE and vocoder a checkpoint carries are the ones its G was trained with: they win over the
        config's `audioldm_root`."""
        if FROZEN_PARTS_KEY in checkpoint:
            self._set_frozen_parts(*frozen_parts_from_state(checkpoint[FROZEN_PARTS_KEY]))

    # --- conditions ----------------------------------------------------------------------------------
    def true_layout(self, wave: torch.Tensor) -> torch.Tensor:
        """The ground-truth layout t_a [B, M, C] of 16 kHz audio (eq. 1): the front end only, no VAE."""
        return self.front_end.layout(self.front_end(wave))

    def audio_targets(self, batch: dict) -> dict[str, torch.Tensor]:
        """{"layout": the ground-truth layout t_a [B, M, C] of each clip's audio, "posterior": the frozen VAE's
        posterior moments [B, 2c, h, w] of its log-mel (not in the layout stage, which has no latents)}.

        With `cache_audio_targets` both are kept per clip id once computed: the VAE is frozen and the data
        module serves each clip's audio unchanged, so they never change. Off by default: at VGGSound scale the
        cache would hold tens of GB; a data module that augments audio must leave it off.
        """
        ids = list(batch["clip_id"])
        if ids and all(i in self._audio_targets for i in ids):
            return {
                k: torch.stack([self._audio_targets[i][k] for i in ids]) for k in self._audio_targets[ids[0]]
            }
        logmel = self.front_end(batch["wave"])
        targets = {"layout": self.front_end.layout(logmel)}
        if self.hparams.stage != "layout":
            with torch.no_grad():
                targets["posterior"] = mel_posterior(self.pipeline.vae, logmel).parameters
        if self.hparams.cache_audio_targets:
            for n, clip_id in enumerate(ids):
                self._audio_targets[clip_id] = {k: v[n] for k, v in targets.items()}
        return targets

    # --- training ------------------------------------------------------------------------------------
    def on_fit_start(self) -> None:
        """A fresh start loads the earlier stages' weights; a resumed run has them in its checkpoint."""
        if self.trainer.ckpt_path is not None:
            return
        if self.hparams.layout_predictor_ckpt:
            _load_checkpoint_parts(self, self.hparams.layout_predictor_ckpt, ("layout_predictor",))
        if self.hparams.init_ckpt:
            _load_checkpoint_parts(
                self, self.hparams.init_ckpt, ("semantic", "layout_predictor", "generator")
            )

    def configure_optimizers(self):
        lr, t_lr = self.hparams.lr, self.hparams.layout_predictor_lr
        groups = [
            {
                "params": list(getattr(self, name).parameters()),
                "lr": t_lr if name == "layout_predictor" and t_lr is not None else lr,
            }
            for name in TRAINED[self.hparams.stage]
        ]
        # fused: one kernel for all tensors instead of one per tensor (the for-each default)
        return torch.optim.AdamW(groups, lr=lr, fused=True)

    def losses(self, batch: dict, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        targets = self.audio_targets(batch)
        stage, out = self.hparams.stage, {}
        predicted = None
        if stage != "no_layout":
            predicted = self.layout_predictor(batch["clip_cls"], batch["clip_patch"])
            out["layout_l2"] = F.mse_loss(predicted, targets["layout"])
        if stage == "layout":
            out["loss"] = out["layout_l2"]
            return out
        vae = self.pipeline.vae
        z0 = sample_latents(vae, DiagonalGaussianDistribution(targets["posterior"]), generator=generator)
        if stage == "no_layout":
            layout = torch.zeros_like(targets["layout"])
        else:
            layout = predicted if stage == "joint" else targets["layout"]
        s = self.semantic(batch["clip_cls"])
        if self.training:
            s = drop_condition(s, self.hparams.cond_drop)
        noise = torch.randn(z0.shape, generator=generator, device=z0.device)
        steps = self.scheduler.config.num_train_timesteps
        t = torch.randint(0, steps, (z0.shape[0],), generator=generator, device=z0.device)
        z_t = self.scheduler.add_noise(z0.float(), noise, t)
        out["loss"] = F.mse_loss(self.generator(z_t, layout_to_latent(layout, z0.shape[-2:]), t, s), noise)
        return out

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        losses = self.losses(batch)
        self.log_dict({f"train/{k}": v for k, v in losses.items()}, prog_bar=True)
        return losses["loss"]

    # --- generation ----------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(
        self, batch: dict, generator: torch.Generator | None = None, sampling: SamplingSettings | None = None
    ) -> dict:
        """`TiVAPipeline.generate` for a batch, as long as its `wave`, with `sampling` (default: this module's);
        the ground-truth layout, where asked for, comes from the batch's audio before the clock starts."""
        sampling = sampling or self.sampling
        wave = batch["wave"]
        true_layout = self.true_layout(wave) if sampling.layout == "ground_truth" else None
        return self.pipeline.generate(
            batch["clip_cls"], batch["clip_patch"], wave.shape[-1], sampling, generator, true_layout
        )

    @torch.no_grad()
    def examples(self, batch: dict) -> Examples:
        """What `shared.callbacks.ExampleLogger` shows of a validation batch: per clip, the generated log-mel
        beside the real one and T's layout beside the true one (stretched to the mel's size), and the
        generated and real sound (one sample, this module's sampling settings, fixed noise)."""
        real = self.front_end(batch["wave"])
        pictures, sounds = {}, {}
        if self.hparams.stage != "no_layout":
            predicted = self.layout_predictor(batch["clip_cls"], batch["clip_patch"])
            true = self.front_end.layout(real)
            pictures["layout_predicted_true"] = torch.stack(
                [
                    beside(layout_picture(p, m.shape), layout_picture(t, m.shape))
                    for p, t, m in zip(predicted, true, real, strict=True)
                ]
            )
        if self.hparams.stage != "layout":
            generator = torch.Generator(self.device).manual_seed(0)
            out = self.generate(batch, generator, replace(self.sampling, samples=1))
            pictures["mel_generated_real"] = torch.stack(
                [beside(mel_picture(g), mel_picture(r)) for g, r in zip(out["logmel"], real, strict=True)]
            )
            sounds = {"generated": out["wave"], "real": batch["wave"]}
        return Examples(pictures, sounds, self.front_end.sample_rate)

    # --- evaluation ----------------------------------------------------------------------------------
    def scored(self, wave: torch.Tensor) -> torch.Tensor:
        """The part of each clip [B, samples] that the metrics score: its first `eval_seconds`."""
        seconds = self.hparams.eval_seconds
        return wave if seconds is None else wave[..., : round(seconds * self.front_end.sample_rate)]

    def _start_metrics(self) -> None:
        if self.trainer.state.fn == "fit":
            return
        if not self.metrics:
            resamples = self.hparams.bootstrap_resamples
            bootstrap = Bootstrap(resamples) if resamples else None
            self.metrics["sync"] = OnsetSyncMetrics(self.front_end.sample_rate, bootstrap=bootstrap)
            self.metrics["seconds"] = ClipMean("seconds_per_clip", bootstrap=bootstrap)
            if self.hparams.stage != "no_layout":
                self.metrics["layout_l2"] = ClipMean("layout_l2", bootstrap=bootstrap)
            if self.hparams.melception_ckpt:
                melception = load_melception(self.hparams.melception_ckpt, self.hparams.melception_stats)
                self.metrics["quality"] = MelceptionMetrics(melception, bootstrap=bootstrap)
        for metric in self.metrics.values():
            metric.to(self.device).reset()

    def on_validation_start(self) -> None:
        self._start_metrics()

    def on_test_start(self) -> None:
        self._start_metrics()

    def _evaluate(self, batch: dict, stage: str) -> None:
        # the same noise at every check
        generator = torch.Generator(self.device).manual_seed(self.hparams.eval_seed)
        losses = self.losses(batch, generator=generator)
        self.eval_means.log(self, stage, losses, len(batch["wave"]))
        if self.trainer.state.fn == "fit" or self.hparams.stage == "layout":
            return
        n = self.sampling.samples
        out = self.generate(batch, generator)
        fakes, reals = self.scored(out["wave"]), self.scored(batch["wave"])  # fakes: n copies, sample-major
        sample_ids = list(batch["clip_id"]) * n
        self.metrics["seconds"].update(
            torch.full((len(fakes),), out["seconds"] / len(fakes), device=fakes.device), sample_ids
        )
        if "layout_l2" in self.metrics:  # T's layout error per clip, as the `layout_l2` loss averages it
            error = self.layout_predictor(batch["clip_cls"], batch["clip_patch"]) - self.true_layout(
                batch["wave"]
            )
            self.metrics["layout_l2"].update(error.pow(2).flatten(1).mean(1), batch["clip_id"])
        self.metrics["sync"].update(fakes, reals.repeat(n, 1), sample_ids)
        if "quality" in self.metrics:
            # each real clip once: MKL pairs every sample with its clip's real one by id
            real = melception_inputs(reals, self.front_end.sample_rate).unsqueeze(1)
            fake = melception_inputs(fakes, self.front_end.sample_rate).unsqueeze(1)
            self.metrics["quality"].update(real, batch["clip_id"], fake, sample_ids)

    def _log_metrics(self, stage: str) -> None:
        if self.trainer.state.fn == "fit" or self.hparams.stage == "layout":
            return
        values = {}
        for metric in self.metrics.values():
            values |= {name: float(v) for name, v in metric.compute().items()}
        values.pop("layout_l2", None)  # logged with the losses by `eval_means`; its interval comes from here
        self.log_dict({f"{stage}/{k}": v for k, v in values.items()}, rank_zero_only=True)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._log_metrics("val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._log_metrics("test")

    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        out = self.generate(batch)
        return {"clip_id": batch["clip_id"], "wave": out["wave"], "logmel": out["logmel"]}
