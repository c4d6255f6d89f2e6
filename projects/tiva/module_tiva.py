"""TiVA's training strategies and evaluation (paper sec. 3.3, 4.1, Table 5), one LightningModule for all stages.

The networks (sec. 3.2): the semantic encoder S (eq. 2), the layout predictor T (eqs. 3-4) and the generator G
(eq. 7), on top of frozen parts: CLIP (cached features from the data module), the mel VAE and the vocoder
(AudioLDM2's, or the toy pipeline's VAE and Griffin-Lim; `audioldm_root`). `stage` picks what is trained:

| stage | trains | G's layout input | loss | paper |
| --- | --- | --- | --- | --- |
| `layout` | T | - | ‖t_a - T(v)‖² | eq. 8 |
| `generator` | S, G | ground truth t_a | ‖ε - G([z_t, t_a], S(v), t)‖² | eq. 9 |
| `joint` | S, T, G | predicted T(v) | ‖ε - G([z_t, T(v)], S(v), t)‖² | eq. 10 |
| `no_layout` | S, G | none (zeros) | ‖ε - G([z_t, 0], S(v), t)‖² | Table 5 "w/o T" |

In every generator stage 10 % of the semantic embeddings are zeroed, per sample (`cond_drop`, sec. 4.1.1;
zero is also the unconditional input of guidance, reference card sec. 5). The DDPM schedule is AudioLDM2's
(`shared.diffusion.training_scheduler`: 1000 steps, scaled-linear betas 0.0015-0.0195, ε-prediction).
`layout_predictor_ckpt` loads T from a `layout` run, `init_ckpt` loads S, T and G from an earlier generator
stage (the joint stage starts from the separately trained parts, sec. 3.3). `layout_predictor_lr` gives T its
own learning rate (the paper gives none): eq. 10 has no layout term, so a pretrained T fine-tuned at the
generator's rate can drift away from layouts before G has adapted to T's errors.

Evaluation (`avgen test`): each clip is generated `eval_samples` times (fresh noise each time, all in one
sampler call) with DPM-Solver (2nd order, `steps` = 25) and classifier-free guidance (`guidance_scale` = 5.0;
0 is Table 5's "w/o S", which runs the unconditional branch alone), from `eval_layout` (predicted by default;
the ground-truth layout gives Table 3's "G w/ t_a" upper bound), decoded by the VAE and vocoded. Logged: FAD /
KL / IS on Melception (`melception_ckpt`: the toy-trained one or SpecVQGAN's official file; the generated and
reference 16 kHz audio are resampled to 22,050 Hz for it, reference card sec. 8), W-dis and DTW-dis of the
onset-detection curves against the reference audio, the layout L2 of T, and the generation time per clip from
the cached CLIP features to the decoded mel (the vocoder excluded, sec. 4.1.3).

Each evaluation metric also gets a 95 % bootstrap interval over the clips (`<name>_lo`, `<name>_hi`;
`shared.metrics.bootstrap`, `bootstrap_resamples` resamples, 0 for none): a clip's samples and its reference
are drawn together.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
from lightning.pytorch import LightningModule
from torch import nn

from projects.tiva.frontend import AudioFrontEnd
from projects.tiva.models import (
    LayoutConditionedUNet,
    LayoutPredictor,
    SemanticEncoder,
    decode_latents,
    layout_to_latent,
    load_vae,
    load_vocoder_or_griffin_lim,
    mel_posterior,
    sample_latents,
)
from shared.diffusion import DDPMSampler, DPMSolverSampler, training_scheduler
from shared.encoders import load_melception, melception_inputs
from shared.guidance import batched_guidance, drop_condition
from shared.metrics import Bootstrap, ClipMean, MelceptionMetrics, OnsetSyncMetrics, StageMeans

STAGES = ("layout", "generator", "joint", "no_layout")
LAYOUTS = ("ground_truth", "predicted", "none")
TRAINED = {
    "layout": ("layout_predictor",),
    "generator": ("semantic", "generator"),
    "joint": ("semantic", "layout_predictor", "generator"),
    "no_layout": ("semantic", "generator"),
}


def _load_submodules(module: nn.Module, ckpt_path: str, names: tuple[str, ...]) -> None:
    """Copy the weights of submodules `names` from a Lightning checkpoint of this class."""
    state = torch.load(ckpt_path, map_location="cpu", weights_only=True)["state_dict"]
    for name in names:
        prefix = f"{name}."
        part = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        if not part:
            raise ValueError(f"{ckpt_path}: no weights for {name!r} (is it a TiVA checkpoint?)")
        getattr(module, name).load_state_dict(part)


class TiVA(LightningModule):
    """Batch keys used: `wave` [B, samples] at 16 kHz, `clip_cls` / `clip_patch` [B, N, L, D], `clip_id`."""

    def __init__(
        self,
        semantic: SemanticEncoder,
        layout_predictor: LayoutPredictor,
        generator: LayoutConditionedUNet,
        audioldm_root: str,
        stage: str = "joint",
        layout_size: tuple[int, int] = (102, 5),
        layout_predictor_ckpt: str | None = None,
        init_ckpt: str | None = None,
        lr: float = 1e-4,
        layout_predictor_lr: float | None = None,
        cond_drop: float = 0.1,
        eval_layout: str | None = None,
        sampler: str = "dpm_solver",
        steps: int = 25,
        guidance_scale: float = 5.0,
        eval_samples: int = 1,
        melception_ckpt: str | None = None,
        melception_stats: str | None = None,
        cache_audio_targets: bool = False,
        bootstrap_resamples: int = 1000,
    ):
        super().__init__()
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
        eval_layout = eval_layout or {"no_layout": "none", "layout": "predicted"}.get(stage, "predicted")
        if eval_layout not in LAYOUTS:
            raise ValueError(f"eval_layout must be one of {LAYOUTS}, got {eval_layout!r}")
        if eval_samples < 1:
            raise ValueError(f"eval_samples must be at least 1, got {eval_samples}")
        if sampler not in ("dpm_solver", "ddpm"):
            raise ValueError(f"sampler must be 'dpm_solver' or 'ddpm', got {sampler!r}")
        self.save_hyperparameters()
        self.hparams.eval_layout = eval_layout
        self.semantic, self.layout_predictor, self.generator = semantic, layout_predictor, generator
        if layout_predictor_ckpt:
            _load_submodules(self, layout_predictor_ckpt, ("layout_predictor",))
        if init_ckpt:
            _load_submodules(self, init_ckpt, ("semantic", "layout_predictor", "generator"))
        for name in ("semantic", "layout_predictor", "generator"):
            getattr(self, name).requires_grad_(name in TRAINED[stage])
        self.front_end = AudioFrontEnd(layout_size)
        self.scheduler = training_scheduler()
        # Plain dicts, not submodules: the frozen VAE, vocoder and Melception stay out of the checkpoints.
        self.frozen: dict[str, nn.Module] = {}
        self.metrics: dict[str, nn.Module] = {}
        self.eval_means = StageMeans(["loss", "layout_l2"])
        # clip id -> {"layout", "posterior"}; filled only with cache_audio_targets
        self._audio_targets: dict[str, dict[str, torch.Tensor]] = {}

    # --- frozen parts --------------------------------------------------------------------------------
    def part(self, name: str) -> nn.Module:
        """The frozen VAE or vocoder, loaded on first use and kept on this module's device."""
        if name not in self.frozen:
            root = self.hparams.audioldm_root
            self.frozen[name] = load_vae(root) if name == "vae" else load_vocoder_or_griffin_lim(root)
        return self.frozen[name].to(self.device)

    # --- conditions ----------------------------------------------------------------------------------
    def semantic_condition(self, batch: dict) -> torch.Tensor:
        return self.semantic(batch["clip_cls"])

    def predicted_layout(self, batch: dict) -> torch.Tensor:
        return self.layout_predictor(batch["clip_cls"], batch["clip_patch"])

    def layout_condition(self, batch: dict, true_layout: torch.Tensor | None, kind: str) -> torch.Tensor:
        """[B, M, C]: the ground-truth layout of the clip's audio, T's prediction, or zeros (no layout)."""
        if kind == "predicted":
            return self.predicted_layout(batch)
        if kind == "ground_truth":
            return true_layout
        cls = batch["clip_cls"]
        return cls.new_zeros(cls.shape[0], *self.front_end.layout_size)

    def audio_targets(self, batch: dict) -> dict[str, torch.Tensor]:
        """{"layout": the ground-truth layout t_a [B, M, C] of each clip's audio, "posterior": the frozen VAE's
        posterior moments [B, 2c, h, w] of its log-mel (not in the layout stage, which has no latents)}.

        With `cache_audio_targets` both are kept per clip id once computed: the VAE is frozen and the data
        module serves each clip's audio unchanged, so they never change, and on the toy set the front end and
        the VAE encoder are a fifth of a generator training step. Off by default: at VGGSound scale the cache
        would hold tens of GB; a data module that augments audio must leave it off.
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
                targets["posterior"] = mel_posterior(self.part("vae"), logmel).parameters
        if self.hparams.cache_audio_targets:
            for n, clip_id in enumerate(ids):
                self._audio_targets[clip_id] = {k: v[n] for k, v in targets.items()}
        return targets

    # --- training ------------------------------------------------------------------------------------
    def configure_optimizers(self):
        lr, t_lr = self.hparams.lr, self.hparams.layout_predictor_lr
        groups = [
            {
                "params": list(getattr(self, name).parameters()),
                "lr": t_lr if name == "layout_predictor" and t_lr is not None else lr,
            }
            for name in TRAINED[self.hparams.stage]
        ]
        # fused: one kernel for all tensors; the default for-each update is 30 ms of a 430 ms toy CPU step
        return torch.optim.AdamW(groups, lr=lr, fused=True)

    def _train_layout(self) -> str:
        return {"generator": "ground_truth", "joint": "predicted", "no_layout": "none"}[self.hparams.stage]

    def losses(self, batch: dict, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        targets = self.audio_targets(batch)
        out = {}
        if self.hparams.stage != "no_layout":
            out["layout_l2"] = F.mse_loss(self.predicted_layout(batch), targets["layout"])
        if self.hparams.stage == "layout":
            out["loss"] = out["layout_l2"]
            return out
        posterior = DiagonalGaussianDistribution(targets["posterior"])
        z0 = sample_latents(self.part("vae"), posterior, generator=generator)
        layout = layout_to_latent(
            self.layout_condition(batch, targets["layout"], self._train_layout()), z0.shape[-2:]
        )
        s = self.semantic_condition(batch)
        if self.training:
            s = drop_condition(s, self.hparams.cond_drop)
        noise = torch.randn(z0.shape, generator=generator, device=z0.device)
        steps = self.scheduler.config.num_train_timesteps
        t = torch.randint(0, steps, (z0.shape[0],), generator=generator, device=z0.device)
        z_t = self.scheduler.add_noise(z0.float(), noise, t)
        out["loss"] = F.mse_loss(self.generator(z_t, layout, t, s), noise)
        return out

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        losses = self.losses(batch)
        self.log_dict({f"train/{k}": v for k, v in losses.items()}, prog_bar=True)
        return losses["loss"]

    # --- generation ----------------------------------------------------------------------------------
    @torch.no_grad()
    def generate_latents(
        self, batch: dict, length: int, generator: torch.Generator | None = None, samples: int = 1
    ) -> torch.Tensor:
        """Sampled latents [samples * B, c, h, w] (sample-major) of `length` audio samples for the clips of a
        batch (DPM-Solver or DDPM, with CFG), all samples in one sampler call. The ground-truth layout
        (`eval_layout`) needs the batch's `wave`."""
        vae, mel = self.part("vae"), self.front_end.mel.config
        down = 2 ** (len(vae.config.block_out_channels) - 1)
        shape = (
            samples * len(batch["clip_cls"]),
            vae.config.latent_channels,
            length // mel.hop_length // down,
            mel.n_mels // down,
        )
        kind = self.hparams.eval_layout
        true_layout = self.audio_targets(batch)["layout"] if kind == "ground_truth" else None
        layout = layout_to_latent(self.layout_condition(batch, true_layout, kind), shape[-2:])
        layout, s = layout.repeat(samples, 1, 1, 1), self.semantic_condition(batch).repeat(samples, 1, 1)
        denoise = batched_guidance(
            # the layout conditions both branches; only s is dropped
            lambda x, t, c: self.generator(x, layout.repeat(len(x) // len(layout), 1, 1, 1), t, c),
            s,
            torch.zeros_like(s),
            self.hparams.guidance_scale,
        )
        sampler = DPMSolverSampler if self.hparams.sampler == "dpm_solver" else DDPMSampler
        return sampler(self.scheduler).sample(
            denoise, shape, steps=self.hparams.steps, generator=generator, device=self.device
        )

    @torch.no_grad()
    def generate(
        self, batch: dict, length: int, generator: torch.Generator | None = None, samples: int = 1
    ) -> dict[str, torch.Tensor]:
        """{"logmel": [N, 64, T], "wave": [N, length] at 16 kHz, "layout": [B, M, C] (None with ground-truth
        or no layouts), "seconds": generation time of all N = samples * B from features to mel, the vocoder
        excluded}; `samples` generations of each clip, sample-major (the batch's clips, then again)."""
        start = time.perf_counter()
        latents = self.generate_latents(batch, length, generator, samples)
        logmel = decode_latents(self.part("vae"), latents)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        seconds = time.perf_counter() - start
        wave = self.part("vocoder")(logmel)
        wave = F.pad(wave, (0, max(0, length - wave.shape[-1])))[..., :length]
        layout = self.predicted_layout(batch) if self.hparams.eval_layout == "predicted" else None
        return {"logmel": logmel, "wave": wave, "layout": layout, "seconds": torch.tensor(seconds)}

    # --- evaluation ----------------------------------------------------------------------------------
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
        generator = torch.Generator(self.device).manual_seed(1234)  # the same noise at every check
        losses = self.losses(batch, generator=generator)
        self.eval_means.log(self, stage, losses, len(batch["wave"]))
        if self.trainer.state.fn == "fit" or self.hparams.stage == "layout":
            return
        n = self.hparams.eval_samples
        out = self.generate(batch, batch["wave"].shape[-1], generator, samples=n)
        fakes = out["wave"]  # sample-major: n copies of the batch's clips
        sample_ids = list(batch["clip_id"]) * n
        self.metrics["seconds"].update(out["seconds"].expand(len(fakes)) / len(fakes), sample_ids)
        if "layout_l2" in self.metrics:  # T's layout error per clip, as the `layout_l2` loss averages it
            error = self.predicted_layout(batch) - self.audio_targets(batch)["layout"]
            self.metrics["layout_l2"].update(error.pow(2).flatten(1).mean(1), batch["clip_id"])
        self.metrics["sync"].update(fakes, batch["wave"].repeat(n, 1), sample_ids)
        if "quality" in self.metrics:
            # each real clip once: MKL pairs every sample with its clip's real one by id
            real = melception_inputs(batch["wave"], self.front_end.sample_rate).unsqueeze(1)
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
        out = self.generate(batch, batch["wave"].shape[-1])
        return {"clip_id": batch["clip_id"], "wave": out["wave"], "logmel": out["logmel"]}
