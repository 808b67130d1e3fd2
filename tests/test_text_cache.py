import torch

from methods.text_cache import TextEmbeddingCache


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
