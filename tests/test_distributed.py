"""DDP pre-training (issue 7): gathered negatives give the single-process
gradient of the global batch, per-process negatives the mean of the local
losses' gradients, and a 2-process run through Ray Train writes an encoder."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file

from benchmark.data.pairs import EpochBatches
from benchmark.distributed import gather_rows, global_min, mean_terms, world
from benchmark.methods.losses import cicl_loss, clip_loss

B, D, E = 8, 5, 6


def _data():
    g = torch.Generator().manual_seed(3)
    x, y, prior = torch.randn(B, D, generator=g), torch.randn(B, D, generator=g), torch.randn(B, E, generator=g)
    torch.manual_seed(11)
    heads = torch.nn.Linear(D, 4), torch.nn.Linear(D, 4)
    return x, y, prior, heads


def _loss(heads, x, y, prior, gather: bool):
    a, b = heads[0](x), heads[1](y)
    if gather:
        a, b, prior = gather_rows(a), gather_rows(b), gather_rows(prior)
    return cicl_loss(a, b, prior, 0.1, 0.5) + clip_loss(a, b, torch.tensor(7.0))


def _grads(heads):
    return torch.cat([p.grad.flatten() for h in heads for p in h.parameters()])


def _worker(rank: int, size: int, init: str, out: str, gather: bool) -> None:
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=size)
    x, y, prior, heads = _data()
    rows = slice(rank * B // size, (rank + 1) * B // size)
    loss = _loss(heads, x[rows], y[rows], prior[rows], gather)
    loss.backward()
    grads = _grads(heads)
    dist.all_reduce(grads)  # what DDP does: the mean of the processes' gradients
    grads /= size
    ragged = gather_rows(torch.full((rank + 1, 2), float(rank), requires_grad=True))  # 1 row from rank 0, 2 from rank 1
    ragged.sum().backward()
    fewest = global_min(10 * (rank + 1))
    terms = mean_terms({"loss": torch.tensor(float(rank)), "x": torch.tensor(2.0 * rank)})
    if rank == 0:
        torch.save({"grads": grads, "loss": loss.detach(), "ragged": ragged.detach(), "fewest": fewest,
                    "terms": {k: float(v) for k, v in terms.items()}, "world": world()}, out)
    dist.destroy_process_group()


def _spawn(tmp_path, gather: bool) -> dict:
    out = tmp_path / f"out-{gather}.pt"
    mp.spawn(_worker, args=(2, f"file://{tmp_path}/pg-{gather}", str(out), gather), nprocs=2, join=True)
    return torch.load(out)


def test_gathered_negatives_give_the_global_batch_gradient(tmp_path):
    got = _spawn(tmp_path, gather=True)
    x, y, prior, heads = _data()
    loss = _loss(heads, x, y, prior, gather=False)  # one process, the whole global batch
    loss.backward()
    assert got["world"] == (0, 2)
    assert torch.allclose(got["loss"], loss.detach(), atol=1e-6)
    assert torch.allclose(got["grads"], _grads(heads), atol=1e-6)
    # helpers: ragged gathers in rank order, the min over processes, mean terms in the caller's order
    assert got["ragged"].tolist() == [[0.0, 0.0], [1.0, 1.0], [1.0, 1.0]]
    assert got["fewest"] == 10
    assert got["terms"] == {"loss": 0.5, "x": 1.0}


def test_per_process_negatives_average_the_local_losses(tmp_path):
    got = _spawn(tmp_path, gather=False)
    x, y, prior, heads = _data()
    half = B // 2
    local = [_loss(heads, x[s], y[s], prior[s], gather=False) for s in (slice(0, half), slice(half, B))]
    (0.5 * (local[0] + local[1])).backward()
    assert torch.allclose(got["grads"], _grads(heads), atol=1e-6)
    whole = _data()
    _loss(whole[3], *whole[:3], gather=False).backward()
    assert not torch.allclose(got["grads"], _grads(whole[3]), atol=1e-4)  # a different objective


def _ddp_pretrain(rank: int, size: int, init: str, home: str, die_at_call: int) -> None:
    """``train_loop`` in one of two gloo processes (what a Ray Train worker runs),
    optionally interrupted at its ``die_at_call``-th step."""
    import os

    os.environ["BENCHMARK_HOME"] = home
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=size)
    from benchmark.data.sources import pretrain_corpus
    from benchmark.factory import method_key, resolve
    from benchmark.methods.imitate import Imitate
    from benchmark.pretraining import encoder_dir, train_loop

    resolved = resolve("imitate", None, "smoke", DDP_RUN)
    cfg = resolved.method_cfg
    corpus = pretrain_corpus(cfg, None)
    if die_at_call:
        real, calls = Imitate.training_step, []

        def dies(self, *a, **k):
            calls.append(1)
            if len(calls) == die_at_call:
                raise KeyboardInterrupt
            return real(self, *a, **k)

        Imitate.training_step = dies
    try:
        train_loop("imitate", cfg, corpus, torch.device("cpu"), encoder_dir("imitate", method_key(resolved, None)))
    except KeyboardInterrupt:
        pass
    dist.destroy_process_group()


DDP_RUN = [("ddp_workers", 2), ("epochs", 2), ("corpus_size", 16), ("checkpoint_every", 1)]  # 2 x 2 steps


def test_an_interrupted_ddp_pretraining_resumes_to_the_same_encoder(tmp_path):
    def run(home: str, die_at_call: int = 0) -> None:
        init = f"file://{tmp_path}/pg-{home}-{die_at_call}"
        mp.spawn(_ddp_pretrain, args=(2, init, str(tmp_path / home), die_at_call), nprocs=2, join=True)

    run("straight")
    run("killed", die_at_call=3)  # both processes stop in step 3; rank 0 saved step 2
    killed = list((tmp_path / "killed").glob("encoders/*"))
    assert len(killed) == 1 and (killed[0] / "checkpoint.pt").exists() and not (killed[0] / "meta.json").exists()
    run("killed")
    metas = [json.loads(next((tmp_path / h).glob("encoders/*/meta.json")).read_text()) for h in ("straight", "killed")]
    assert metas[0]["steps"] == metas[1]["steps"] == 4 and metas[0]["processes"] == 2
    assert metas[0]["final_loss"] == pytest.approx(metas[1]["final_loss"], abs=1e-5)
    a, b = (load_file(next((tmp_path / h).glob("encoders/*/encoder.safetensors"))) for h in ("straight", "killed"))
    for key, value in a.items():
        assert torch.allclose(value.float(), b[key].float(), atol=1e-5), key


def test_single_process_helpers_are_the_identity():
    x = torch.randn(3, 2)
    assert world() == (0, 1) and gather_rows(x) is x and global_min(4) == 4
    terms = {"loss": torch.tensor(1.0)}
    assert mean_terms(terms) is terms


def test_global_batches_do_not_depend_on_the_process_count():
    whole = EpochBatches(23, 6, seed=5)
    parts = [EpochBatches(23, 3, seed=5, rank=r, world=2) for r in (0, 1)]
    for s in (whole, *parts):
        s.epoch = 2
    assert len(whole) == len(parts[0]) == 3
    for batch, b0, b1 in zip(whole, *parts):
        assert batch == b0 + b1
    parts[1].start = 2
    assert list(parts[1]) == [list(whole)[2][3:]]


def test_memmapped_corpus_pickles_as_its_path(tmp_path, monkeypatch):
    import pickle

    from benchmark.data.types import PairCorpus

    monkeypatch.setenv("BENCHMARK_HOME", str(tmp_path))
    arr = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.uint8, shape=(50, 64, 64))
    arr[:] = np.arange(50, dtype=np.uint8)[:, None, None]
    arr.flush()
    images = np.load(tmp_path / "x.npy", mmap_mode="r")
    corpus = PairCorpus(ids=[str(i) for i in range(50)], images=images, findings=[""] * 50, impressions=[""] * 50)
    blob = pickle.dumps(corpus)
    assert len(blob) < 50 * 64 * 64 // 4  # not the pixels
    again = pickle.loads(blob)
    assert isinstance(again.images, np.memmap) and np.array_equal(again.images, images)
    shifted = PairCorpus(ids=["a"], images=images[10:], findings=[""], impressions=[""])
    assert np.array_equal(pickle.loads(pickle.dumps(shifted)).images, images[10:])  # a view keeps its rows


def test_two_process_pretraining_through_ray_train(tmp_path, monkeypatch):
    from benchmark.factory import resolve
    from benchmark.runner import get_encoder

    monkeypatch.setenv("BENCHMARK_HOME", str(tmp_path))
    sets = [("ddp_workers", 2), ("max_steps", 2), ("corpus_size", 16), ("gather_negatives", True)]
    pre = get_encoder(resolve("prior", "rsna_cls", "smoke", sets), None, "cpu")
    assert pre.meta["processes"] == 2 and pre.meta["steps"] == 2
    assert np.isfinite(pre.meta["final_loss"])
    rows = (pre.path.parent / "losses.csv").read_text().strip().splitlines()
    assert len(rows) == 3 and "global" in rows[0]
    assert json.loads((pre.path.parent / "meta.json").read_text())["config"]["ddp_workers"] == 2
    state = torch.load(pre.path)
    assert "conv1.weight" in state
    log = (pre.path.parent / "ddp.log").read_text()  # rank 0's lines, echoed by the driver while it ran
    assert "pre-training prior on 16 phantom pairs: 2 steps (batch 4 x 2 DDP processes" in log
