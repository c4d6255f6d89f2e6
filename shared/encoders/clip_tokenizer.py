"""The CLIP BPE tokenizer (OpenAI CLIP, arXiv:2103.00020) as transformers' `CLIPTokenizer`, with no download.

Stable Diffusion 1.x's `tokenizer/` folder holds OpenAI CLIP's tokenizer (vocabulary 49,408: 256 byte
symbols, their 256 end-of-word forms, 48,894 merges, then `<|startoftext|>` 49406 and `<|endoftext|>` 49407,
which is also the padding; 77 positions). open_clip ships the same merges (`bpe_simple_vocab_16e6.txt.gz`), so
the vocabulary and merge files are rebuilt here in the order CLIP's `SimpleTokenizer` builds them
(`openai/CLIP`, `clip/simple_tokenizer.py`): the toy pipelines then tokenise exactly as SD's real tokenizer
does, ids included, without fetching it.
"""

from __future__ import annotations

import gzip
import json
import tempfile
from functools import cache
from pathlib import Path

from open_clip.tokenizer import bytes_to_unicode, default_bpe
from transformers import CLIPTokenizer

MAX_LENGTH = 77
START, END = "<|startoftext|>", "<|endoftext|>"
# SimpleTokenizer keeps the first 49152 - 256 - 2 merges of the file (the first line is a header)
N_MERGES = 49152 - 256 - 2


def _merges() -> list[str]:
    return gzip.open(default_bpe()).read().decode("utf-8").split("\n")[1 : N_MERGES + 1]


def write_vocabulary(folder: str | Path) -> tuple[Path, Path]:
    """Write CLIP's `vocab.json` and `merges.txt` into `folder`; returns their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    merges = _merges()
    symbols = list(bytes_to_unicode().values())
    vocab = [*symbols, *(s + "</w>" for s in symbols), *("".join(m.split()) for m in merges), START, END]
    vocab_file, merges_file = folder / "vocab.json", folder / "merges.txt"
    vocab_file.write_text(json.dumps({token: i for i, token in enumerate(vocab)}))
    merges_file.write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    return vocab_file, merges_file


@cache
def _vocabulary_folder() -> Path:
    return Path(tempfile.mkdtemp(prefix="clip_tokenizer_"))


def clip_tokenizer() -> CLIPTokenizer:
    """A fresh `CLIPTokenizer` equal to Stable Diffusion 1.x's (padding with `<|endoftext|>` to 77)."""
    folder = _vocabulary_folder()
    if not (folder / "merges.txt").is_file():
        write_vocabulary(folder)
    return CLIPTokenizer(
        str(folder / "vocab.json"),
        str(folder / "merges.txt"),
        bos_token=START,
        eos_token=END,
        pad_token=END,
        model_max_length=MAX_LENGTH,
    )
