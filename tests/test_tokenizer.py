"""Tokenizers: GPT-2 BPE built offline from the shipped files (the known ids of "Hello world"),
character-level vocabularies, round trips, and what checkpoints store of them."""
import socket

import pytest

from fastgpt.tokenizer import (GPT2_EOT_ID, CharTokenizer, GPT2Tokenizer, TokenizerError, get_tokenizer,
                               gpt2_encoding, tokenizer_from_dict)

TEXTS = ["Hello world", "  spaces,\ttabs\nand newlines\n\n", "Ünïcödé — 日本語 🙂", "It's 12:30; we'll go.", ""]


def test_gpt2_hello_world_ids():
    assert GPT2Tokenizer().encode("Hello world") == [15496, 995]


@pytest.mark.parametrize("text", TEXTS)
def test_gpt2_round_trip(text):
    tok = GPT2Tokenizer()
    assert tok.decode(tok.encode(text)) == text


def test_gpt2_builds_without_network(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("the GPT-2 tokenizer tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")   # no cached copy to fall back on either
    gpt2_encoding.cache_clear()
    try:
        assert GPT2Tokenizer().encode("Hello world") == [15496, 995]
    finally:
        gpt2_encoding.cache_clear()


def test_gpt2_special_token_text_is_ordinary_text():
    tok = GPT2Tokenizer()
    ids = tok.encode("a<|endoftext|>b")
    assert GPT2_EOT_ID not in ids and tok.decode(ids) == "a<|endoftext|>b"
    assert tok.decode([GPT2_EOT_ID]) == "<|endoftext|>"
    assert tok.vocab_size == 50257 and tok.model_vocab_size == 50304


def test_gpt2_decodes_padded_ids():
    # the model's 47 padding rows can in principle be sampled; decoding must not crash
    assert isinstance(GPT2Tokenizer().decode([15496, 50300]), str)


@pytest.mark.parametrize("text", TEXTS[:-1])
def test_char_round_trip(text):
    tok = CharTokenizer.from_text(text)
    ids = tok.encode(text)
    assert len(ids) == len(text) and tok.decode(ids) == text
    assert max(ids) < tok.vocab_size == tok.model_vocab_size == len(set(text))


def test_char_vocab_is_sorted_and_stable():
    tok = CharTokenizer.from_text("banana!")
    assert tok.chars == ["!", "a", "b", "n"]
    assert tok.encode("nab!") == [3, 1, 2, 0]


def test_char_unknown_character_is_a_clear_error():
    tok = CharTokenizer.from_text("abc")
    with pytest.raises(TokenizerError, match="not in this character vocabulary: 'xz'"):
        tok.encode("axbz")


@pytest.mark.parametrize("tok", [CharTokenizer.from_text("To be, or not to be\n"), GPT2Tokenizer()])
def test_stored_tokenizer_decodes_the_same(tok):
    again = tokenizer_from_dict(tok.to_dict())
    assert again == tok
    ids = tok.encode("to be or not")
    assert again.encode("to be or not") == ids and again.decode(ids) == tok.decode(ids)


def test_get_tokenizer_errors():
    with pytest.raises(TokenizerError, match="unknown tokenizer 'bpe'"):
        get_tokenizer("bpe")
    with pytest.raises(TokenizerError, match="built from a corpus"):
        get_tokenizer("char")
    with pytest.raises(TokenizerError, match="at least one character"):
        CharTokenizer("")
    with pytest.raises(TokenizerError, match="stored tokenizer"):
        tokenizer_from_dict({"name": "sentencepiece"})
