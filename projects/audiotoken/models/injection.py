"""The audio token as a pseudo-word of a frozen CLIP text encoder (AudioToken arXiv:2305.13050, sec. 2.1).

The paper feeds the text encoder "A photo of a" followed by e_audio in place of a word embedding. The official
code (`guyyariv/AudioToken`) adds the placeholder `<*>` to the tokenizer (id 49408 for SD 1.x's vocabulary of
49,408) and, in training, uses a copied and modified `modules/clip_text_model/modeling_clip.py` whose
`CLIPTextEmbeddings.forward` swaps id 49408 for a valid id, looks the ids up and overwrites those rows with the
audio token; at inference (`inference.py`) it resizes the vocabulary and writes the token into row 49408 of the
embedding matrix, which holds one token at a time (batch size 1 only).

Here `TokenInjector` does the training path's swap with two hooks on the stock transformers module
`text_encoder.get_input_embeddings()`: a forward pre-hook replaces the placeholder ids by a valid id before the
lookup (remembering where they were) and a forward hook writes each prompt's token into those rows. Nothing of
transformers is copied, the vocabulary is not resized, gradients reach the tokens, and every prompt of a batch
has its own token. The hooks live only inside `encode`, so the text encoder behaves normally otherwise. The
same `last_hidden_state` is what the inference pipeline passes to diffusers as `prompt_embeds`, so training and
inference see the same text-encoder output by construction.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from transformers import CLIPTextModel, PreTrainedTokenizerBase

PLACEHOLDER = "<*>"
PROMPT = "a photo of <*>"  # the official training prompt (`data/dataloader.py`)


def add_placeholder(tokenizer: PreTrainedTokenizerBase) -> int:
    """Add `<*>` to `tokenizer` as one token (if not there yet) and return its id (49408 for SD 1.x's)."""
    if PLACEHOLDER not in tokenizer.get_vocab():
        tokenizer.add_tokens(PLACEHOLDER)
    ids = tokenizer(PLACEHOLDER, add_special_tokens=False).input_ids
    if len(ids) != 1:
        raise ValueError(f"the tokenizer splits the placeholder {PLACEHOLDER!r} into {ids}; expected one id")
    return ids[0]


def prompt_ids(tokenizer: PreTrainedTokenizerBase, prompts: list[str]) -> torch.Tensor:
    """Token ids [B, L] of `prompts`, padded and truncated to the tokenizer's length (77 for CLIP), as diffusers'
    `StableDiffusionPipeline.encode_prompt` tokenises a prompt."""
    return tokenizer(
        prompts,
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids


def audio_prompt_ids(
    tokenizer: PreTrainedTokenizerBase, batch_size: int, prompt: str = PROMPT, suffix: str = ""
) -> torch.Tensor:
    """The ids [batch_size, 77] of `prompt + suffix` (the official inference's suffix: ", 4k, high resolution").
    The prompt must contain the placeholder, and the tokenizer must know it (`add_placeholder`)."""
    if PLACEHOLDER not in prompt:
        raise ValueError(f"the audio prompt {prompt!r} has no placeholder {PLACEHOLDER!r}")
    return prompt_ids(tokenizer, [prompt + suffix] * batch_size)


class TokenInjector:
    """Encode prompts whose placeholder ids stand for given vectors (one per prompt) with a frozen CLIP text
    encoder. A plain object, not an nn.Module: it owns no parameters and must not register the text encoder a
    second time in the module that holds it.

        injector = TokenInjector(parts.text_encoder, add_placeholder(parts.tokenizer))
        context = injector.encode(audio_prompt_ids(tokenizer, B), tokens)  # [B, 77, D], differentiable in tokens
    """

    def __init__(self, text_encoder: CLIPTextModel, placeholder_id: int, substitute_id: int = 0):
        self.text_encoder = text_encoder
        self.placeholder_id = placeholder_id
        # any id inside the vocabulary: its looked-up row is overwritten (the official code uses 5)
        self.substitute_id = substitute_id
        self._positions: torch.Tensor | None = None

    @contextmanager
    def injecting(self, tokens: torch.Tensor):
        """Inside this context every lookup of the text encoder's input embeddings puts `tokens[b]` at the
        placeholder positions of prompt b (each prompt must contain the placeholder)."""
        embeddings = self.text_encoder.get_input_embeddings()

        def swap_ids(module, args):
            (ids,) = args
            positions = ids == self.placeholder_id
            if not positions.any(dim=1).all():
                raise ValueError(
                    f"every prompt must contain the placeholder id {self.placeholder_id}; rows without it: "
                    f"{(~positions.any(dim=1)).nonzero().flatten().tolist()}"
                )
            if tokens.shape != (ids.shape[0], module.embedding_dim):
                raise ValueError(
                    f"tokens {list(tokens.shape)} do not fit {ids.shape[0]} prompts of a text encoder of width "
                    f"{module.embedding_dim}"
                )
            self._positions = positions
            return (ids.masked_fill(positions, self.substitute_id),)

        def write_tokens(module, args, output):
            rows = tokens[:, None, :].to(output.dtype).expand_as(output)
            return torch.where(self._positions[..., None], rows, output)

        handles = [
            embeddings.register_forward_pre_hook(swap_ids),
            embeddings.register_forward_hook(write_tokens),
        ]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()
            self._positions = None

    def encode_pooled(
        self, input_ids: torch.Tensor, tokens: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """input_ids [B, L] with the placeholder, tokens [B, D] -> (last_hidden_state [B, L, D], pooled [B, D]).

        pooled is the final hidden state at the first end-of-text token, CLIP's sentence embedding. It is taken
        here, with CLIP's own rule (`openai/CLIP`, `model.py`: the position of the highest id, end-of-text being
        the last id of CLIP's vocabulary) applied with the placeholder left out, because transformers' pooler
        uses that same argmax on the raw ids when a config carries the old `eos_token_id` 2, as SD 1.x's text
        encoder does, and would then pick the placeholder (49408).
        """
        input_ids = input_ids.to(self.text_encoder.device)
        with self.injecting(tokens):
            hidden = self.text_encoder(input_ids=input_ids).last_hidden_state
        end = input_ids.masked_fill(input_ids == self.placeholder_id, -1).argmax(dim=1)
        return hidden, hidden[torch.arange(hidden.shape[0], device=hidden.device), end]

    def encode(self, input_ids: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """input_ids [B, L] with the placeholder, tokens [B, D] -> last_hidden_state [B, L, D] (the UNet's
        cross-attention context)."""
        return self.encode_pooled(input_ids, tokens)[0]
