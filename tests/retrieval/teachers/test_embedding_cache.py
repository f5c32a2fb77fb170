import torch

from kd.retrieval.teachers.embedding_cache import EmbeddingCache


def _encoder(calls):
    def encode(texts):
        calls.append(list(texts))
        return torch.tensor([[float(len(t)), 1.0] for t in texts])
    return encode


def test_each_text_is_embedded_once_and_kept_on_disk(tmp_path):
    calls = []
    cache = EmbeddingCache(tmp_path, {"model": "m", "max_length": 8})
    first = cache.embed(["a", "bb", "a"], _encoder(calls))
    assert calls == [["a", "bb"]] and first.tolist() == [[1.0, 1.0], [2.0, 1.0], [1.0, 1.0]]
    again = EmbeddingCache(tmp_path, {"model": "m", "max_length": 8})
    assert torch.equal(again.embed(["bb", "ccc"], _encoder(calls)), torch.tensor([[2.0, 1.0], [3.0, 1.0]]))
    assert calls[-1] == ["ccc"]  # "bb" came from the file
    other = EmbeddingCache(tmp_path, {"model": "m", "max_length": 16})  # another identity: another file
    assert other.path != again.path and not other.vectors


def test_a_corrupt_cache_file_is_set_aside_and_rebuilt(tmp_path, caplog):
    cache = EmbeddingCache(tmp_path, {"model": "m"})
    cache.embed(["a"], _encoder([]))
    cache.path.write_bytes(b"not an npz")
    rebuilt = EmbeddingCache(tmp_path, {"model": "m"})
    assert rebuilt.vectors == {} and "corrupt" in caplog.text
    assert cache.path.with_suffix(".corrupt").is_file()
