"""Training AudioToken's Embedder (arXiv:2305.13050, sec. 2.1, eqs. 2, 7, 8) against a frozen Stable Diffusion.

A frozen BEATs encoder (`beats_ckpt`: the official file or the toy stage's) gives blocks 4, 8 and 12 of a 5-s
window; the Embedder maps them to one token e_audio, which replaces the placeholder `<*>` of `prompt` ("a photo
of <*>") in the input embeddings of SD's frozen CLIP text encoder (`projects.audiotoken.models.injection`); the
text encoder's output conditions SD's frozen UNet. Only the Embedder trains (`sd_root`: a diffusers SD 1.x
folder, the real CompVis/stable-diffusion-v1-4 or the toy one, loaded by the same code). The loss:

- L_LDM (eq. 2): the image's VAE latent sampled from its posterior (`latent_dist.sample()`, as SD's training and
  the textual-inversion example the official code follows, `guyyariv/AudioToken` `train.py`) x the VAE's
  `scaling_factor` (read from the VAE config: 0.18215 for SD 1.x), noised at a uniform t of the folder's DDPM
  schedule (1000 steps for SD 1.4); the MSE of the UNet's ε (or v, if the scheduler says
  `v_prediction`) against the target;
- + `l1_weight` x mean |e_audio| (eq. 8; the official lambda_a = 0.01) + `l2_weight` x the batch mean of
  ||e_audio||² (the official lambda_b, 0 by default; not in the paper);
- + `label_weight` x L_CL (eq. 7; off by default as in the official code, whose switch crashes when on: it reads
  an undefined `args.multiple_tokens`). L_CL is the cosine distance between e_audio and the label vector l̄,
  per clip, averaged over the batch; eq. 7 squares it (`label_loss_form="squared"`; "linear" drops the
  square). The official code squares the batch mean of the cosine instead; both are 0 exactly when every
  token is parallel to its label vector. l̄ comes from `label_source`:
  - "text_encoder" (the paper: "the label is encoded using the generative model's textual encoder, and then
    the spatial dimension is reduced using average pooling", with l in R^{n_l x d}, n_l the label's length in
    tokens): the label alone is tokenised (BOS, its n_l BPE tokens, EOS, padding), run through the frozen text
    encoder, and its `last_hidden_state` is averaged over the n_l label positions only (BOS, EOS and padding
    dropped, so l has exactly the paper's n_l rows);
  - "input_embeddings" (the official code): the mean of the label's BPE rows of the text encoder's input
    embedding table, BOS and EOS dropped (no encoder pass).

Optimiser (official `train.py`): AdamW, betas (0.9, 0.999), weight decay 1e-2, eps 1e-8, constant rate. `lr` is
absolute. The official code scales its base rate, lr = 1e-5 x grad_accum x batch x n_gpu (`--scale_lr`, on by
default); the paper's 8e-5 is that rule at batch 8, one GPU, no accumulation, which the paper config sets.

Frozen parts (text encoder, VAE, UNet, noise scheduler, BEATs) are held by a plain object, not as submodules:
Lightning's DDP then wraps a module whose only parameters are the Embedder's (no `find_unused_parameters`, no
broadcast of SD), checkpoints hold only `embedder.*` (plus the optimiser and loop state for resuming), and
`train()` never reaches them (they stay in eval mode). They move to this module's device on first use.
The official code instead calls its submodules through `accelerator.unwrap_model`, which bypasses DDP: its
Embedder gradients were never all-reduced across GPUs.

Caches (`cache_dir`, optional): the VAE's posterior moments (mean and log-variance, so the latent is still
sampled afresh each step) per (clip_id, window_start, frame_index) and the BEATs features per (clip_id,
window_start), as `shared.data.FeatureCache` folders whose parameters record the frozen model (its path, and the
size and modification time of its weight files), the image size or the window length, and the data set's
paths with their modification times. They assume the data module serves a (clip, window, frame) unchanged every epoch (no augmentation).
At paper size a 5-s window's BEATs features take 2.3 MB (248 x 2304 float32) and a latent's moments 80 kB
(2 x 4 x 40 x 64 float32): `cached` picks which to keep.

Validation (`val/loss`): the same noise loss with the latent sample, noise and timesteps drawn from a generator
seeded by `val_seed` and the batch index, so checkpoints compare on equal terms; also the token statistics
`val/token_norm` (mean L2 norm, beside `val/vocab_norm`, the mean norm of the vocabulary's input embeddings),
`val/token_label_cos` (cosine to l̄) and `val/token_pairwise_cos` (mean cosine between the tokens of different
clips: 1 means the Embedder ignores the audio). Image metrics are computed after training, not here.

TensorBoard (`shared.callbacks.ExampleLogger` in the configs): at validation, `examples` generates an image from
the audio token of a few validation clips (the official sampling, `inference_pipeline`, with `example_steps`
denoising steps instead of 50 so that validation stays cheap, at the frames' size, a fixed seed) and shows each
beside the clip's real frame.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
from lightning.pytorch import LightningModule

from projects.audiotoken.convert import embedder_from_state_dict
from projects.audiotoken.models.embedder import Embedder
from projects.audiotoken.models.injection import PLACEHOLDER, TokenInjector, add_placeholder, prompt_ids
from projects.audiotoken.models.pipeline import AudioTokenPipeline, SamplingSettings
from projects.audiotoken.models.stable_diffusion import StableDiffusionParts, load_stable_diffusion
from shared.callbacks import Examples, side_by_side
from shared.data.cache import FeatureCache
from shared.encoders.beats import FILE_IN_RUN, load_beats
from shared.metrics import StageMeans

SAMPLE_RATE = 16000
LABEL_SOURCES = ("text_encoder", "input_embeddings")
CACHEABLE = ("latents", "beats")


@dataclass
class FrozenParts:
    """SD's parts, BEATs and the token injector: frozen, in eval mode, never registered with the LightningModule."""

    sd: StableDiffusionParts
    beats: torch.nn.Module
    injector: TokenInjector
    device: torch.device | None = None  # where the parts are; None: where they were loaded (the CPU)

    def to(self, device: torch.device) -> FrozenParts:
        if device != self.device:
            for module in (*self.sd.modules(), self.beats):
                module.to(device)
            self.device = device
        return self


def files_identity(path: str | Path) -> dict:
    """What identifies the weights under `path` (a file or a folder) without reading them: the resolved path and
    each file's size and modification time."""
    path = Path(path).resolve()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    names = [str(p.relative_to(path)) if path.is_dir() else p.name for p in files]
    stats = [[p.stat().st_size, p.stat().st_mtime_ns] for p in files]
    return {"path": str(path), "files": dict(zip(names, stats, strict=True))}


def label_penalty(tokens: torch.Tensor, labels: torch.Tensor, form: str) -> torch.Tensor:
    """L_CL of eq. 7 per clip, averaged: (1 - cos(e_audio, l̄))² ("squared") or 1 - cos ("linear")."""
    distance = 1 - F.cosine_similarity(tokens, labels, dim=-1)
    return (distance**2 if form == "squared" else distance).mean()


def token_regularisation(tokens: torch.Tensor, l1_weight: float, l2_weight: float) -> dict[str, torch.Tensor]:
    """{"l1": l1_weight x mean |e_audio| (eq. 8), "l2": l2_weight x batch mean of ||e_audio||² (official lambda_b)}."""
    return {
        "l1": l1_weight * tokens.abs().mean(),
        "l2": l2_weight * tokens.pow(2).sum(dim=-1).mean(),
    }


class AudioTokenTraining(LightningModule):
    """Batch keys used: `wave` [B, T] float32 at 16 kHz, `image` [B, 3, H, W] in [-1, 1], `label_text` list[str],
    `clip_id` list[str], `window_start` [B] int64, `frame_index` [B] int64."""

    def __init__(
        self,
        sd_root: str,
        beats_ckpt: str,
        official_dropout: bool = False,
        prompt: str = f"a photo of {PLACEHOLDER}",
        l1_weight: float = 0.01,
        l2_weight: float = 0.0,
        label_weight: float = 0.0,
        label_source: Literal["text_encoder", "input_embeddings"] = "text_encoder",
        label_loss_form: Literal["squared", "linear"] = "squared",
        lr: float = 8e-5,
        betas: tuple[float, float] = (0.9, 0.999),
        weight_decay: float = 1e-2,
        eps: float = 1e-8,
        cache_dir: str | None = None,
        cached: Sequence[str] = CACHEABLE,
        val_seed: int = 0,
        example_steps: int = 10,
    ):
        super().__init__()
        if label_source not in LABEL_SOURCES:
            raise ValueError(f"label_source must be one of {LABEL_SOURCES}, got {label_source!r}")
        if label_loss_form not in ("squared", "linear"):
            raise ValueError(f"label_loss_form must be 'squared' or 'linear', got {label_loss_form!r}")
        if unknown := set(cached) - set(CACHEABLE):
            raise ValueError(f"cached: unknown feature(s) {sorted(unknown)}; choose from {CACHEABLE}")
        self.save_hyperparameters()
        sd = load_stable_diffusion(sd_root)
        placeholder_id = add_placeholder(sd.tokenizer)
        self._frozen = FrozenParts(sd, load_beats(beats_ckpt), TokenInjector(sd.text_encoder, placeholder_id))
        self.prompt_ids = self._prompt_ids(prompt, placeholder_id)
        self.embedder = Embedder(
            self._frozen.beats.out_dim, sd.text_encoder.config.hidden_size, official_dropout=official_dropout
        )
        self.eval_means = StageMeans(["loss", "token_norm", "token_label_cos", "token_pairwise_cos"])
        self._label_vectors: dict[str, torch.Tensor] = {}  # label text -> l̄ (the text encoder is frozen)
        self._caches: dict[tuple, FeatureCache] = {}

    def _prompt_ids(self, prompt: str, placeholder_id: int) -> torch.Tensor:
        ids = prompt_ids(self._frozen.sd.tokenizer, [prompt])[0]
        if int((ids == placeholder_id).sum()) != 1:
            raise ValueError(f"prompt {prompt!r} must hold the placeholder {PLACEHOLDER!r} exactly once")
        return ids

    @property
    def frozen(self) -> FrozenParts:
        return self._frozen.to(self.device)

    # --- caches of the frozen features ---------------------------------------------------------------------
    def _data_identity(self) -> dict:
        """The data module's dataset index (`identity()`: its class and paths) with each path's modification
        time: another data set, or the toy set generated again in the same place, never reuses a cache."""
        dataset = getattr(getattr(self._trainer, "datamodule", None), "dataset", None)
        if dataset is None or not hasattr(dataset, "identity"):
            return {}
        return {
            key: [value, Path(value).stat().st_mtime_ns] if Path(value).exists() else value
            for key, value in dataset.identity().items()
        }

    def _cache(self, name: str, params: dict) -> FeatureCache | None:
        if self.hparams.cache_dir is None or name not in self.hparams.cached:
            return None
        key = (name, repr(sorted(params.items())))
        if key not in self._caches:
            self._caches[key] = FeatureCache(
                self.hparams.cache_dir, f"audiotoken_{name}", {**params, "data": self._data_identity()}
            )
        return self._caches[key]

    def _through_cache(
        self, cache: FeatureCache | None, keys: list[str], compute: Callable[[torch.Tensor], torch.Tensor]
    ) -> torch.Tensor:
        """`compute(indices)` for the rows of the batch whose key is not in `cache` (all rows without one), the
        stored arrays for the others, stacked in batch order."""
        if cache is None:
            return compute(torch.arange(len(keys)))
        found = [cache.has(key) for key in keys]
        missing = [i for i, hit in enumerate(found) if not hit]
        rows: list[torch.Tensor | None] = [None] * len(keys)
        if missing:
            fresh = compute(torch.tensor(missing))
            for row, i in zip(fresh, missing, strict=True):
                cache.save(keys[i], row.float().cpu().numpy())
                rows[i] = row
        for i, hit in enumerate(found):
            if hit:
                rows[i] = torch.from_numpy(cache.load(keys[i])).to(self.device)
        return torch.stack([row.float() for row in rows])

    def latent_moments(self, batch: dict) -> torch.Tensor:
        """The frozen VAE's posterior moments [B, 2 x 4, h, w] (mean and log-variance) of each image."""
        image = batch["image"]
        cache = self._cache(
            "latents",
            {"vae": files_identity(Path(self.hparams.sd_root) / "vae"), "image": list(image.shape[1:])},
        )
        keys = [
            f"{c}_w{int(w)}_f{int(f)}"
            for c, w, f in zip(batch["clip_id"], batch["window_start"], batch["frame_index"], strict=True)
        ]
        with torch.no_grad():
            return self._through_cache(
                cache,
                keys,
                lambda rows: self.frozen.sd.vae.encode(image[rows.to(image.device)]).latent_dist.parameters,
            )

    def _beats_file(self) -> Path:
        path = Path(self.hparams.beats_ckpt)
        return path / FILE_IN_RUN if path.is_dir() else path  # `load_beats` reads a toy run folder's file

    def audio_features(self, batch: dict) -> torch.Tensor:
        """BEATs' blocks 4, 8 and 12 [B, N, 3D] of each window."""
        wave = batch["wave"]
        cache = self._cache(
            "beats",
            {"beats": files_identity(self._beats_file()), "samples": wave.shape[-1], "rate": SAMPLE_RATE},
        )
        keys = [f"{c}_w{int(w)}" for c, w in zip(batch["clip_id"], batch["window_start"], strict=True)]
        with torch.no_grad():
            return self._through_cache(
                cache, keys, lambda rows: self.frozen.beats(wave[rows.to(wave.device)])
            )

    # --- the label vector l̄ of eq. 7 ------------------------------------------------------------------------
    def label_vectors(self, labels: list[str]) -> torch.Tensor:
        """l̄ [B, D] of each label text (`label_source`), computed once per label: the text encoder is frozen."""
        for label in set(labels) - self._label_vectors.keys():
            with torch.no_grad():
                self._label_vectors[label] = self._label_vector(label).float().cpu()
        return torch.stack([self._label_vectors[label] for label in labels]).to(self.device)

    def _label_vector(self, label: str) -> torch.Tensor:
        tokenizer, text_encoder = self.frozen.sd.tokenizer, self.frozen.sd.text_encoder
        ids = prompt_ids(tokenizer, [label]).to(self.device)  # BOS, the label's tokens, EOS, padding (EOS)
        n_label = len(tokenizer(label, truncation=True, max_length=tokenizer.model_max_length).input_ids) - 2
        if n_label < 1:
            raise ValueError(f"label {label!r} has no tokens")
        if self.hparams.label_source == "input_embeddings":
            return text_encoder.get_input_embeddings()(ids[0, 1 : 1 + n_label]).mean(dim=0)
        return text_encoder(ids).last_hidden_state[0, 1 : 1 + n_label].mean(dim=0)

    # --- the loss ------------------------------------------------------------------------------------------
    def tokens(self, batch: dict) -> torch.Tensor:
        """e_audio [B, D] (eqs. 4-6)."""
        return self.embedder(self.audio_features(batch))

    def noise_loss(
        self, batch: dict, tokens: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """L_LDM (eq. 2) of the images conditioned on "a photo of <e_audio>"; `generator` fixes the latent sample,
        the noise and the timesteps (validation), else torch's global generator draws them."""
        sd = self.frozen.sd
        latents = (
            DiagonalGaussianDistribution(self.latent_moments(batch)).sample(generator) * sd.scaling_factor
        )
        noise = torch.randn(latents.shape, generator=generator, device=self.device, dtype=latents.dtype)
        steps = sd.noise_scheduler.config.num_train_timesteps
        t = torch.randint(0, steps, (len(latents),), generator=generator, device=self.device)
        noisy = sd.noise_scheduler.add_noise(latents, noise, t)
        input_ids = self.prompt_ids.to(self.device).expand(len(latents), -1)
        context = self.frozen.injector.encode(input_ids, tokens)
        prediction = sd.unet(noisy, t, context).sample
        prediction_type = sd.noise_scheduler.config.prediction_type
        if prediction_type == "epsilon":
            target = noise
        elif prediction_type == "v_prediction":
            target = sd.noise_scheduler.get_velocity(latents, noise, t)
        else:
            raise ValueError(
                f"{self.hparams.sd_root}: unsupported scheduler prediction_type {prediction_type!r}"
            )
        return F.mse_loss(prediction.float(), target.float())

    def losses(self, batch: dict) -> dict[str, torch.Tensor]:
        """{"loss": the total (eq. 8, + L_CL when `label_weight` > 0), and its weighted pieces}."""
        tokens = self.tokens(batch)
        pieces = {"ldm": self.noise_loss(batch, tokens)}
        pieces.update(token_regularisation(tokens, self.hparams.l1_weight, self.hparams.l2_weight))
        if self.hparams.label_weight > 0:
            labels = self.label_vectors(list(batch["label_text"]))
            pieces["label"] = self.hparams.label_weight * label_penalty(
                tokens, labels, self.hparams.label_loss_form
            )
        return {"loss": sum(pieces.values()), **pieces}

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        losses = self.losses(batch)
        batch_size = len(batch["wave"])
        for name, value in losses.items():
            self.log(f"train/{name}", value, prog_bar=name == "loss", batch_size=batch_size)
        return losses["loss"]

    # --- validation ---------------------------------------------------------------------------------------
    def _evaluate(self, batch: dict, batch_idx: int, stage: str) -> None:
        generator = torch.Generator(self.device).manual_seed(self.hparams.val_seed + batch_idx)
        tokens = self.tokens(batch)
        loss = self.noise_loss(batch, tokens, generator)
        normed = F.normalize(tokens.float(), dim=-1)
        labels = self.label_vectors(list(batch["label_text"]))
        values = {
            "loss": loss,
            "token_norm": tokens.norm(dim=-1).mean(),
            "token_label_cos": F.cosine_similarity(tokens, labels, dim=-1).mean(),
        }
        if len(tokens) > 1:
            similarity = normed @ normed.T
            off_diagonal = ~torch.eye(len(tokens), dtype=torch.bool, device=tokens.device)
            values["token_pairwise_cos"] = similarity[off_diagonal].mean()
        self.eval_means.log(self, stage, values, len(tokens))
        if batch_idx == 0:
            vocab = self.frozen.sd.text_encoder.get_input_embeddings().weight
            self.log(f"{stage}/vocab_norm", vocab.norm(dim=-1).mean(), batch_size=1)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "test")

    def configure_optimizers(self):
        # no scheduler: the official rate is constant
        return torch.optim.AdamW(
            self.embedder.parameters(),
            lr=self.hparams.lr,
            betas=tuple(self.hparams.betas),
            weight_decay=self.hparams.weight_decay,
            eps=self.hparams.eps,
        )

    def inference_pipeline(self) -> AudioTokenPipeline:
        """The trained Embedder (a copy: the pipeline freezes what it holds) with this run's frozen BEATs and
        Stable Diffusion, as `projects.audiotoken.models.pipeline.AudioTokenPipeline`."""
        frozen = self.frozen
        return AudioTokenPipeline(frozen.beats, copy.deepcopy(self.embedder), frozen.sd)

    @torch.no_grad()
    def examples(self, batch: dict) -> Examples:
        """Per clip, the image generated from its audio token (`SamplingSettings` with `example_steps` steps, the
        frame's size, seed 0 for the batch) beside its real frame, RGB in [0, 1]."""
        real = (batch["image"].float() + 1) / 2
        height, width = real.shape[-2:]
        settings = SamplingSettings(steps=self.hparams.example_steps, height=height, width=width)
        generated = self.inference_pipeline().generate(batch["wave"], settings, output_type="pt")
        return Examples(images={"generated_real": side_by_side(generated.to(real), real)})


def load_embedder(checkpoint: str | Path) -> Embedder:
    """The Embedder of a checkpoint of this stage (its `embedder.*` tensors), in eval mode."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    prefix = "embedder."
    return embedder_from_state_dict(
        {key.removeprefix(prefix): value for key, value in state.items() if key.startswith(prefix)},
        checkpoint,
    )
