"""Tokenizers: character-level (vocabulary built from the corpus) and GPT-2 BPE (tiktoken).

Both have the same small interface: `encode(text) -> list[int]`, `decode(ids) -> str`,
`vocab_size`, `model_vocab_size` (the embedding rows the model needs), `eot` (the token that
separates documents, or None) and `to_dict()`; `tokenizer_from_dict` rebuilds one from what a
checkpoint or a dataset cache stored, so sampling decodes exactly as training encoded.

The GPT-2 encoding is built offline from the files shipped in fastgpt/data/gpt2/ (the same
bytes tiktoken downloads, checked against the same hashes): nothing is fetched at run time.
"""
from __future__ import annotations

import functools
from importlib import resources
from typing import Iterable, Protocol

# GPT-2's pre-tokenizer regex (tiktoken's r50k_pat_str) and its one special token
GPT2_PAT_STR = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
GPT2_ENDOFTEXT = "<|endoftext|>"
GPT2_EOT_ID = 50256
GPT2_VOCAB_BPE_SHA256 = "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"
GPT2_ENCODER_JSON_SHA256 = "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"

TOKENIZERS = ("char", "gpt2")


class TokenizerError(ValueError):
    """Text the tokenizer cannot encode, or a stored tokenizer it cannot rebuild."""


class Tokenizer(Protocol):
    name: str
    vocab_size: int
    model_vocab_size: int
    eot: int | None

    def encode(self, text: str) -> list[int]: ...
    def decode(self, ids: Iterable[int]) -> str: ...
    def to_dict(self) -> dict: ...


class CharTokenizer:
    """One token per character; the vocabulary is the sorted set of the corpus's characters."""

    name = "char"
    eot = None   # documents are plain concatenations of characters

    def __init__(self, chars: Iterable[str]):
        self.chars = sorted(set(chars))
        if not self.chars:
            raise TokenizerError("a character tokenizer needs at least one character")
        if any(len(c) != 1 for c in self.chars):
            raise TokenizerError("a character vocabulary holds single characters only")
        self.stoi = {c: i for i, c in enumerate(self.chars)}

    @classmethod
    def from_text(cls, text: str) -> "CharTokenizer":
        return cls(text)

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    @property
    def model_vocab_size(self) -> int:
        return self.vocab_size   # exact, as nanoGPT's shakespeare-char (65)

    def encode(self, text: str) -> list[int]:
        try:
            return [self.stoi[c] for c in text]
        except KeyError:
            unknown = sorted(set(text) - set(self.stoi))
            raise TokenizerError(
                f"text holds {len(unknown)} character(s) not in this character vocabulary: "
                f"{''.join(unknown)[:40]!r}") from None

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.chars[i] for i in ids)

    def to_dict(self) -> dict:
        return {"name": self.name, "chars": "".join(self.chars)}

    def __eq__(self, other) -> bool:
        return isinstance(other, CharTokenizer) and self.chars == other.chars

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"


@functools.lru_cache(maxsize=1)
def gpt2_encoding():
    """tiktoken's GPT-2 encoding, built from the shipped merges and vocabulary (no network)."""
    import tiktoken
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks

    folder = resources.files("fastgpt") / "data" / "gpt2"
    with resources.as_file(folder / "vocab.bpe") as vocab_bpe, \
            resources.as_file(folder / "encoder.json") as encoder_json:
        ranks = data_gym_to_mergeable_bpe_ranks(
            str(vocab_bpe), str(encoder_json),
            vocab_bpe_hash=GPT2_VOCAB_BPE_SHA256, encoder_json_hash=GPT2_ENCODER_JSON_SHA256)
    return tiktoken.Encoding(name="gpt2", pat_str=GPT2_PAT_STR, mergeable_ranks=ranks,
                             special_tokens={GPT2_ENDOFTEXT: GPT2_EOT_ID}, explicit_n_vocab=50257)


class GPT2Tokenizer:
    """GPT-2's byte-level BPE. Text is encoded as ordinary text: a literal "<|endoftext|>" in
    the data is not the special token; documents are separated by the eot token instead."""

    name = "gpt2"
    eot = GPT2_EOT_ID
    vocab_size = 50257
    model_vocab_size = 50304   # padded to a multiple of 64 for the matrix units, as nanoGPT

    def __init__(self):
        self.encoding = gpt2_encoding()

    def encode(self, text: str) -> list[int]:
        return self.encoding.encode_ordinary(text)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return self.encoding.encode_ordinary_batch(texts)

    def decode(self, ids: Iterable[int]) -> str:
        # ids >= 50257 exist only in the padded rows of the embedding: show them as U+FFFD
        return self.encoding.decode([i if i < self.vocab_size else GPT2_EOT_ID for i in ids],
                                    errors="replace")

    def to_dict(self) -> dict:
        return {"name": self.name}

    def __eq__(self, other) -> bool:
        return isinstance(other, GPT2Tokenizer)

    def __repr__(self) -> str:
        return "GPT2Tokenizer()"


def get_tokenizer(name: str, text: str | None = None) -> Tokenizer:
    """A tokenizer by name; "char" builds its vocabulary from `text`."""
    if name == "char":
        if text is None:
            raise TokenizerError("the character tokenizer is built from a corpus: pass its text")
        return CharTokenizer.from_text(text)
    if name == "gpt2":
        return GPT2Tokenizer()
    raise TokenizerError(f"unknown tokenizer {name!r}; choose one of {', '.join(TOKENIZERS)}")


def tokenizer_from_dict(state: dict) -> Tokenizer:
    """Rebuild the tokenizer that `to_dict()` described."""
    name = state.get("name")
    if name == "char":
        return CharTokenizer(state["chars"])
    if name == "gpt2":
        return GPT2Tokenizer()
    raise TokenizerError(f"stored tokenizer {name!r} is not one of {', '.join(TOKENIZERS)}")
