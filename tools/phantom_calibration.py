"""Diagnostics behind the phantom-calibration finding (docs/CALIBRATION.md); not part of the package.

probe: scikit-learn logistic regression (C=1, standardised features) on the
frozen pooled layer4 features of phantom RSNA at 64 px, 1 % stratified subsets
for seeds 42/0/1 and the whole training set; ``random`` = an untrained encoder.
supervised: an upper bound for short pre-training: the encoder trained with
multi-label BCE on the corpus's true lesion kinds (the information the reports
carry), IMITATE's augmentation, batch 16, AdamW.

    python tools/phantom_calibration.py probe random ENCODER.pt [--train 4000]
    python tools/phantom_calibration.py supervised --steps 200 --lr 1e-3 --pairs 1024 --out sup.pt
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from benchmark.data.phantom.anatomy import lesions_from_report
from benchmark.data.phantom.datasets import phantom_corpus
from benchmark.data.phantom.reports import load_reports
from benchmark.data.sets.rsna import phantom_rsna
from benchmark.data.transforms import ImitateViews, downstream_batch
from benchmark.models.encoders import ResNetStages
from benchmark.pretraining import read_weights
from benchmark.tasks.base import load_encoder


def pooled(path: str, split: str, n: int, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    torch.manual_seed(0)
    enc = ResNetStages()
    if path != "random":
        load_encoder(enc, read_weights(Path(path)))  # encoder.safetensors, or an older cache's encoder.pt
    enc.eval()
    data = phantom_rsna(split, n, size)
    with torch.no_grad():
        feats = [enc(downstream_batch(data.images[i : i + 100], size))[-1].mean((2, 3)) for i in range(0, n, 100)]
    return torch.cat(feats).numpy(), np.asarray(data.labels)


def probe(paths: list[str], train: int) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    from benchmark.data.splits import draw_subset

    for path in paths:
        xtr, ytr = pooled(path, "train", train)
        xte, yte = pooled(path, "test", 200)
        mu, sd = xtr.mean(0), xtr.std(0) + 1e-6
        xtr, xte = (xtr - mu) / sd, (xte - mu) / sd
        ids = [str(i) for i in range(train)]
        few = []
        for seed in (42, 0, 1):
            rows = [int(i) for i in draw_subset(ids, ytr, 0.01, seed)]
            clf = LogisticRegression(C=1.0, max_iter=3000).fit(xtr[rows], ytr[rows])
            few.append(roc_auc_score(yte, clf.decision_function(xte)))
        full = roc_auc_score(yte, LogisticRegression(C=1.0, max_iter=3000).fit(xtr, ytr).decision_function(xte))
        print(f"{path}: 1 % {np.round(few, 3)} mean {np.mean(few):.3f}; 100 % ({train}) {full:.3f}", flush=True)


def supervised(steps: int, lr: float, pairs: int, out: str) -> None:
    torch.manual_seed(0)
    corpus, reports = phantom_corpus(pairs, 73), load_reports()[:pairs]
    kinds = sorted({le.kind for r in reports for le in lesions_from_report(r)})
    target = torch.tensor([[float(any(le.kind == k for le in lesions_from_report(r))) for k in kinds] for r in reports])
    enc, head = ResNetStages(), torch.nn.Linear(2048, len(kinds))
    opt = torch.optim.AdamW([*enc.parameters(), *head.parameters()], lr=lr, weight_decay=0.05)
    views, rng = ImitateViews(64), np.random.default_rng(0)
    enc.train()
    for step in range(steps):
        idx = rng.choice(pairs, 16, replace=False)
        x = torch.stack([views(corpus.images[i]) for i in idx])
        loss = F.binary_cross_entropy_with_logits(head(enc(x)[-1].mean((2, 3))), target[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 20 == 0:
            print(f"step {step} loss {loss.item():.3f}", flush=True)
    torch.save(enc.state_dict(), out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    pr = sub.add_parser("probe")
    pr.add_argument("encoders", nargs="+")
    pr.add_argument("--train", type=int, default=1000)
    su = sub.add_parser("supervised")
    su.add_argument("--steps", type=int, default=200)
    su.add_argument("--lr", type=float, default=1e-3)
    su.add_argument("--pairs", type=int, default=1024)
    su.add_argument("--out", required=True)
    a = p.parse_args()
    probe(a.encoders, a.train) if a.cmd == "probe" else supervised(a.steps, a.lr, a.pairs, a.out)


if __name__ == "__main__":
    main()
