"""Data: tokenizing to train.bin/val.bin once, reusing the cache, rebuilding it when the source
changes, folders of files, clear errors for bad data, and the batch sampler whose whole state
is its position (so a resumed run draws the same batches) and whose ranks never overlap."""
import numpy as np
import pytest
import torch

from fastgpt.data import BatchSampler, DataError, prepare_dataset, shipped_corpus
from fastgpt.tokenizer import GPT2_EOT_ID

TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n" * 40


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


def prepare(source, tmp_path, tokenizer="char"):
    messages = []
    return prepare_dataset(source, tokenizer, tmp_path / "cache", log=messages.append), messages


def test_char_dataset_splits_90_10_and_decodes_back(corpus, tmp_path):
    ds, messages = prepare(corpus, tmp_path)
    assert len(messages) == 1 and "tokenizing" in messages[0]
    assert ds.train.dtype == np.uint16 and len(ds.train) == int(0.9 * len(TEXT))
    assert len(ds.train) + len(ds.val) == len(TEXT)
    assert ds.tokenizer.decode(np.concatenate([ds.train, ds.val]).tolist()) == TEXT
    assert {p.name for p in ds.folder.iterdir()} == {"train.bin", "val.bin", "meta.json"}


def test_cache_is_reused_then_rebuilt_when_the_source_changes(corpus, tmp_path):
    first, _ = prepare(corpus, tmp_path)
    mtime = (first.folder / "train.bin").stat().st_mtime_ns
    again, messages = prepare(corpus, tmp_path)
    assert messages == [] and (again.folder / "train.bin").stat().st_mtime_ns == mtime
    corpus.write_text(TEXT + "Zounds!\n", encoding="utf-8")
    changed, messages = prepare(corpus, tmp_path)
    assert len(messages) == 1 and changed.folder == first.folder
    assert len(changed.train) + len(changed.val) == len(TEXT) + 8
    assert "Z" in changed.tokenizer.decode(changed.val.tolist())


def test_cache_depends_on_the_tokenizer(corpus, tmp_path):
    char, _ = prepare(corpus, tmp_path)
    bpe, messages = prepare(corpus, tmp_path, "gpt2")
    assert messages and bpe.folder != char.folder
    assert bpe.tokenizer.name == "gpt2" and len(bpe.train) + len(bpe.val) < len(TEXT)


def test_folder_of_files_in_sorted_order_skipping_hidden(tmp_path):
    folder = tmp_path / "texts"
    (folder / "sub").mkdir(parents=True)
    (folder / "b.txt").write_text("bravo\n")
    (folder / "a.txt").write_text("alpha\n")
    (folder / "sub" / "c.md").write_text("charlie\n")
    (folder / ".hidden").write_bytes(b"\xff\xfe not text")
    ds, _ = prepare(folder, tmp_path, "gpt2")
    ids = np.concatenate([ds.train, ds.val]).tolist()
    assert ids.count(GPT2_EOT_ID) == 3 and ids[-1] == GPT2_EOT_ID   # one eot after each document
    assert ds.tokenizer.decode(ids) == "alpha\n<|endoftext|>bravo\n<|endoftext|>charlie\n<|endoftext|>"
    assert ds.meta["files"] == 3


def test_the_shipped_corpus_is_tiny_shakespeare():
    assert shipped_corpus().stat().st_size == 1115394


def test_missing_path(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        prepare(tmp_path / "nope.txt", tmp_path)


@pytest.mark.parametrize("content", [b"", b"  \n\n\t "])
def test_empty_data(tmp_path, content):
    path = tmp_path / "empty.txt"
    path.write_bytes(content)
    with pytest.raises(DataError, match="empty"):
        prepare(path, tmp_path)
    (tmp_path / "folder").mkdir()
    with pytest.raises(DataError, match="holds no files"):
        prepare(tmp_path / "folder", tmp_path)


def test_non_utf8_data_names_the_file(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("café au lait\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin1.txt is not UTF-8 text \(byte 0xe9 at offset 3\)"):
        prepare(path, tmp_path)


def test_unwritable_cache_is_a_data_error(corpus, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(DataError, match="cannot write the token cache"):
        prepare_dataset(corpus, "char", blocker / "cache")


# ---- the batch sampler ----

def stream(n=1000):
    return np.arange(n, dtype=np.uint16) % 500


def test_batches_are_shifted_windows():
    data = stream()
    x, y = next(BatchSampler(data, batch_size=5, block_size=16, seed=0))
    assert x.shape == y.shape == (5, 16) and x.dtype == torch.int64
    assert torch.equal(x[:, 1:], y[:, :-1]) and x.is_contiguous() and y.is_contiguous()
    for row_x, row_y in zip(x, y):
        start = int(row_x[0])
        assert torch.equal(row_y, torch.from_numpy(data[start + 1:start + 17].astype(np.int64)))


def test_position_is_the_whole_state():
    data = stream()
    a = BatchSampler(data, 4, 8, seed=3)
    first = [next(a) for _ in range(5)]
    b = BatchSampler(data, 4, 8, seed=3)
    b.load_state_dict(a.state_dict())        # as a resumed run does
    c = BatchSampler(data, 4, 8, seed=3, position=2)
    assert torch.equal(next(c)[0], first[2][0])
    assert not torch.equal(next(b)[0], first[4][0]) and b.position == 6
    assert torch.equal(a.batch(4)[0], first[4][0])
    assert not torch.equal(BatchSampler(data, 4, 8, seed=4).batch(0)[0], first[0][0])


def test_ranks_draw_from_disjoint_slices():
    data = np.arange(10_000, dtype=np.uint16)   # token value == its offset
    starts = []
    for rank in range(3):
        s = BatchSampler(data, 64, 32, seed=0, rank=rank, world_size=3)
        starts.append({int(row[0]) for p in range(20) for row in s.batch(p)[0]})
    assert not (starts[0] & starts[1]) and not (starts[1] & starts[2]) and not (starts[0] & starts[2])
    assert max(starts[0]) < min(starts[1]) and max(starts[1]) < min(starts[2])
    assert max(starts[2]) + 32 < len(data)


def test_block_size_too_large_for_the_data():
    with pytest.raises(DataError, match="the val split has 64 tokens, too few for windows of block_size \\+ 1 = 65"):
        BatchSampler(stream(64), 4, 64, seed=0, split="val")
    BatchSampler(stream(65), 4, 64, seed=0)   # exactly one window fits
    with pytest.raises(DataError, match="for each of 4 ranks"):
        BatchSampler(stream(67), 4, 64, seed=0, rank=3, world_size=4)
