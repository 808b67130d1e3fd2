import logging

import pytest
import torch

from benchmark.models.text_cache import TextEmbeddingCache


def test_each_text_is_encoded_once_and_persisted():
    cache = TextEmbeddingCache("tiny-random", max_length=32)
    texts = ["no acute disease.", "right upper lobe opacity.", "no acute disease."]
    first = cache.encode(texts)
    assert first.shape == (3, 64)
    assert torch.equal(first[0], first[2])
    assert cache.encoder.calls == 1 and cache.misses == 2 and cache.hits == 1
    again = cache.encode(list(reversed(texts)))
    assert cache.encoder.calls == 1 and cache.hits == 4  # a second epoch is all hits
    assert torch.equal(again[1], first[1])
    fresh = TextEmbeddingCache("tiny-random", max_length=32)  # another process: from disk
    assert torch.equal(fresh.encode(texts), first)
    assert fresh._encoder is None and fresh.misses == 0  # the model was never even loaded


def test_encoder_is_frozen_and_in_eval_mode():
    cache = TextEmbeddingCache("tiny-random")
    enc = cache.encoder
    enc.train()
    assert not enc.model.training
    assert not any(p.requires_grad for p in enc.parameters())
    a, b = enc(["left effusion."]), enc(["left effusion."])
    assert torch.equal(a, b)  # no dropout


def test_minilm_is_available_offline():
    cache = TextEmbeddingCache("minilm", pooling="mean")
    emb = cache.encode(["There is a small right pleural effusion.", "Normal chest."])
    assert emb.shape == (2, 384)
    # mean pooling + normalisation is what sentence-transformers' all-MiniLM-L6-v2 encodes; similar sentences score higher
    e = torch.nn.functional.normalize(cache.encode(["Small right effusion.", "Normal chest.", "pleural effusion on the right"]))
    assert e[0] @ e[2] > e[0] @ e[1]


def _pretrain_text_calls(epochs: int, home, monkeypatch) -> tuple[int, dict]:
    from benchmark.factory import resolve
    from benchmark.models.encoders import FrozenTextEncoder
    from benchmark.runner import get_encoder

    calls = []
    real = FrozenTextEncoder.forward
    monkeypatch.setattr(FrozenTextEncoder, "forward", lambda self, texts: calls.append(len(texts)) or real(self, texts))
    monkeypatch.setenv("BENCHMARK_HOME", str(home))
    pre = get_encoder(resolve("imitate", None, "smoke", [("epochs", epochs)]), None)
    return len(calls), pre.meta


def test_pretraining_encodes_the_corpus_once_not_per_epoch(isolated_home, monkeypatch):
    one_calls, one = _pretrain_text_calls(1, isolated_home / "a", monkeypatch)
    two_calls, two = _pretrain_text_calls(2, isolated_home / "b", monkeypatch)
    assert two["steps"] == 2 * one["steps"]
    assert one_calls == two_calls > 0  # the second epoch only hits the cache
    assert two["text_cache"]["misses"] == one["text_cache"]["misses"]
    again_calls, again = _pretrain_text_calls(3, isolated_home / "b", monkeypatch)  # same home: disk cache
    assert again_calls == 0 and again["text_cache"]["misses"] == 0


@pytest.mark.parametrize("damage", ["truncated", "garbage", "fewer vectors than texts"])
def test_damaged_text_cache_is_rebuilt_with_one_warning(damage, caplog):
    texts = ["no acute disease.", "right upper lobe opacity."]
    first = TextEmbeddingCache("tiny-random", max_length=32).encode(texts)
    path = TextEmbeddingCache("tiny-random", max_length=32).path
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:100])
    elif damage == "garbage":
        path.write_bytes(b"PK\x03\x04 garbage" * 20)
    else:
        torch.save({"texts": texts, "emb": first[:1]}, path)
    with caplog.at_level(logging.WARNING):
        cache = TextEmbeddingCache("tiny-random", max_length=32)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and f"text-embedding cache {path} is damaged" in warnings[0], warnings
    assert torch.equal(cache.encode(texts), first) and cache.misses == 2  # encoded again
    fresh = TextEmbeddingCache("tiny-random", max_length=32)  # and written again, whole
    assert torch.equal(fresh.encode(texts), first) and fresh.misses == 0
