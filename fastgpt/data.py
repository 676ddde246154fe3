"""Training data: a UTF-8 corpus tokenized once into train.bin / val.bin memmaps, and batches.

`prepare_dataset(source, tokenizer_name, cache_dir)` reads a text file or a folder of them (the
shipped Tiny Shakespeare when source is None), tokenizes it, splits the token stream 90/10 and
writes uint16 (uint32 for vocabularies over 65,536) `train.bin` / `val.bin` plus `meta.json` in
a cache folder. The next run reuses them while the sha256 of the content and the tokenizer name
match meta.json, and rebuilds them when the source changes. Files are written to temporary
names and renamed, meta.json last, so an interrupted build is never mistaken for a finished one.

`BatchSampler` draws (x, y) batches of random windows. Batch number p of a sampler is a pure
function of (seed, split, rank, p): its whole state is the integer position, which checkpoints
store, so a resumed run draws exactly the batches the uninterrupted run would have. Under DDP
each rank draws its window starts from its own contiguous, disjoint slice of the stream.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from fastgpt.checkpoint import write_atomic
from fastgpt.tokenizer import Tokenizer, TokenizerError, get_tokenizer, tokenizer_from_dict

CACHE_FORMAT = 1          # bump when the cache layout or the tokenization changes
TRAIN_FRACTION = 0.9
SPLITS = ("train", "val")


class DataError(ValueError):
    """Data the user pointed at that cannot be used (missing, empty, not UTF-8, too small)."""


def shipped_corpus() -> Path:
    """The Tiny Shakespeare text that ships inside the package."""
    return Path(str(resources.files("fastgpt") / "data" / "tinyshakespeare.txt"))


def default_cache_dir() -> Path:
    """$FASTGPT_CACHE, else $XDG_CACHE_HOME/fastgpt, else ~/.cache/fastgpt."""
    if os.environ.get("FASTGPT_CACHE"):
        return Path(os.environ["FASTGPT_CACHE"])
    xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(xdg) / "fastgpt"


def source_files(source: Path) -> list[Path]:
    """The text files of `source`: itself, or every non-hidden file below the folder, sorted."""
    if not source.exists():
        raise DataError(f"data path {str(source)!r} does not exist")
    if source.is_file():
        return [source]
    files = sorted(p for p in source.rglob("*")
                   if p.is_file() and not any(part.startswith(".") for part in p.relative_to(source).parts))
    if not files:
        raise DataError(f"data folder {str(source)!r} holds no files")
    return files


def read_documents(files: list[Path]) -> tuple[list[str], str]:
    """(the text of each file, sha256 of all their names and bytes)."""
    digest = hashlib.sha256()
    texts = []
    for path in files:
        raw = path.read_bytes()
        digest.update(f"{path.name}\0{len(raw)}\0".encode())
        digest.update(raw)
        try:
            texts.append(raw.decode("utf-8"))
        except UnicodeDecodeError as e:
            raise DataError(f"{path} is not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start}); "
                            "fastgpt trains on UTF-8 text files only") from None
    if not any(text.strip() for text in texts):
        raise DataError(f"the data is empty: {len(files)} file(s) with no text "
                        f"({files[0]}{' ...' if len(files) > 1 else ''})")
    return texts, digest.hexdigest()


@dataclasses.dataclass
class Dataset:
    """The token streams of one prepared corpus."""
    folder: Path
    tokenizer: Tokenizer
    train: np.ndarray     # read-only memmaps of token ids
    val: np.ndarray
    meta: dict

    def split(self, name: str) -> np.ndarray:
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; choose one of {', '.join(SPLITS)}")
        return self.train if name == "train" else self.val


def prepare_dataset(source: str | os.PathLike | None, tokenizer_name: str,
                    cache_dir: str | os.PathLike | None = None, log=print) -> Dataset:
    """Tokenize `source` (a UTF-8 text file or folder; None: the shipped Tiny Shakespeare) into
    the cache, or reuse what an earlier run wrote there for the same content and tokenizer."""
    source = Path(source).expanduser() if source is not None else shipped_corpus()
    files = source_files(source)
    texts, content_hash = read_documents(files)
    key = hashlib.sha256(f"{CACHE_FORMAT}\0{tokenizer_name}\0{content_hash}".encode()).hexdigest()
    # one folder per (source path, tokenizer): a changed source rebuilds in place
    place = hashlib.sha256(str(source.resolve()).encode()).hexdigest()[:10]
    folder = Path(cache_dir or default_cache_dir()).expanduser() / f"{source.stem}-{tokenizer_name}-{place}"
    meta = read_meta(folder)
    if meta is not None and meta.get("key") == key:
        return open_dataset(folder, meta)
    log(f"tokenizing {source} ({len(files)} file{'s' * (len(files) > 1)}) with the {tokenizer_name} "
        f"tokenizer into {folder}")
    try:
        tokenizer = get_tokenizer(tokenizer_name, "".join(texts))
    except TokenizerError as e:
        raise DataError(str(e)) from None
    tokens = encode_documents(tokenizer, texts)
    n_train = int(len(tokens) * TRAIN_FRACTION)
    meta = {"format": CACHE_FORMAT, "key": key, "source": str(source), "files": len(files),
            "tokenizer": tokenizer.to_dict(), "dtype": tokens.dtype.name,
            "train_tokens": n_train, "val_tokens": len(tokens) - n_train}
    try:
        folder.mkdir(parents=True, exist_ok=True)
        write_atomic(folder / "train.bin", tokens[:n_train].tofile)
        write_atomic(folder / "val.bin", tokens[n_train:].tofile)
        write_atomic(folder / "meta.json", lambda f: f.write(json.dumps(meta, indent=1).encode()))
    except OSError as e:
        raise DataError(f"cannot write the token cache {folder}: {e.strerror or e}; "
                        "choose another folder with --cache-dir") from None
    return open_dataset(folder, meta)


def encode_documents(tokenizer: Tokenizer, texts: list[str]) -> np.ndarray:
    """One token stream: the documents back to back, each followed by the eot token if any."""
    dtype = np.uint16 if tokenizer.model_vocab_size <= 2 ** 16 else np.uint32
    encode_batch = getattr(tokenizer, "encode_batch", None)   # tiktoken encodes in threads
    encoded = encode_batch(texts) if encode_batch else [tokenizer.encode(t) for t in texts]
    tail = [tokenizer.eot] if tokenizer.eot is not None else []
    return np.concatenate([np.asarray(ids + tail, dtype=dtype) for ids in encoded])


def read_meta(folder: Path) -> dict | None:
    try:
        meta = json.loads((folder / "meta.json").read_text())
    except (OSError, ValueError):
        return None
    return meta if meta.get("format") == CACHE_FORMAT else None


def open_dataset(folder: Path, meta: dict) -> Dataset:
    dtype = np.dtype(meta["dtype"])
    splits = {}
    for name in SPLITS:
        n = meta[f"{name}_tokens"]
        # np.memmap cannot map an empty file; an empty split is reported by check_block_size
        splits[name] = (np.memmap(folder / f"{name}.bin", dtype=dtype, mode="r", shape=(n,))
                        if n else np.zeros(0, dtype=dtype))
    return Dataset(folder, tokenizer_from_dict(meta["tokenizer"]), splits["train"], splits["val"], meta)


class BatchSampler:
    """Random (x, y) windows of one split; batch p depends only on (seed, split, rank, p).

    x is (batch_size, block_size) token ids and y the same shifted by one. Rank r of
    world_size draws window starts from its own contiguous slice of the stream, so no two
    ranks train on the same window.
    """

    def __init__(self, data: np.ndarray, batch_size: int, block_size: int, seed: int,
                 split: str = "train", rank: int = 0, world_size: int = 1, position: int = 0):
        self.data, self.batch_size, self.block_size = data, batch_size, block_size
        self.seed, self.split, self.rank, self.world_size = seed, split, rank, world_size
        self.position = position
        n_starts = len(data) - block_size          # windows [i, i + block_size] fit for i < n_starts
        self.lo = rank * n_starts // world_size
        self.hi = (rank + 1) * n_starts // world_size
        if n_starts < world_size:   # every rank needs a window (the same test on every rank)
            per_rank = f" for each of {world_size} ranks" if world_size > 1 else ""
            raise DataError(
                f"the {split} split has {len(data):,} tokens, too few for windows of block_size + 1 = "
                f"{block_size + 1}{per_rank}; use more data or a smaller --block-size")

    def batch(self, position: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch at `position` (int64 tensors on the CPU), without moving the sampler."""
        rng = np.random.default_rng([self.seed, SPLITS.index(self.split), self.rank, position])
        starts = rng.integers(self.lo, self.hi, size=self.batch_size)
        windows = np.stack([self.data[i:i + self.block_size + 1] for i in starts]).astype(np.int64)
        windows = torch.from_numpy(windows)
        return windows[:, :-1].contiguous(), windows[:, 1:].contiguous()

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        batch = self.batch(self.position)
        self.position += 1
        return batch

    def __iter__(self):
        return self

    def state_dict(self) -> dict:
        return {"seed": self.seed, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.seed, self.position = int(state["seed"]), int(state["position"])
