"""Why ConVIRT stays at chance on the phantom: the controls behind results/OVERFIT.md. Not part of the package.

    python tools/convirt_probe.py fit [--aug] [--sentences] [--head-lr 1e-4] [--steps 160] [--profile phantom]
    python tools/convirt_probe.py noise [--profile phantom]
    python tools/convirt_probe.py sentences

``fit``: one fixed batch of 16 phantom pairs (ResNet-18, the profile's image size and text
encoder), ConVIRT's own modules and loss, the ResNet at 1e-3 and heads + trainable text layers at
``--head-lr``; ``--aug`` draws new random crops every step, ``--sentences`` one random report
sentence per sample every step (ConVIRT's text augmentation; otherwise the whole report).
Prints the loss every 20 steps (chance: ln 16 = 2.77). ``noise``: the text tower's [CLS] state in
train mode, two passes over the same 32 texts, against the spread between the texts in eval mode.
``sentences``: how generic the corpus's report sentences are (ConVIRT draws one per step).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from benchmark.data.sources import pretrain_corpus
from benchmark.factory import resolve
from benchmark.methods.losses import asymmetric_infonce
from benchmark.registry import METHODS

PAIRS = 16


def build(profile: str, unit: str, pairs: int):
    cfg = resolve("convirt", None, profile, [("corpus_size", pairs), ("batch_size", pairs), ("backbone", "resnet18"),
                                             ("text_unit", unit)]).method_cfg
    corpus = pretrain_corpus(cfg, None)
    model = METHODS.get("convirt")(cfg)
    model.prepare(corpus)
    return cfg, corpus, model


def fit(args: argparse.Namespace) -> None:
    torch.manual_seed(0)
    cfg, corpus, model = build(args.profile, "sentence" if args.sentences else "report", PAIRS)
    model.train()
    transform = model.train_transform()

    def views() -> torch.Tensor:
        return torch.stack([transform(np.asarray(image)) for image in corpus.images[:PAIRS]])

    heads = [*model.image_head.parameters(), *model.text_head.parameters(),
             *(p for p in model.text_tower.parameters() if p.requires_grad)]
    opt = torch.optim.AdamW([{"params": list(model.backbone.parameters()), "lr": 1e-3},
                             {"params": heads, "lr": args.head_lr}])
    batch, (ids, mask) = views(), model.drawn_tokens(torch.arange(PAIRS))
    for step in range(args.steps):
        if args.aug:
            batch = views()
        if args.sentences:
            ids, mask = model.drawn_tokens(torch.arange(PAIRS))
        loss = asymmetric_infonce(model.image_embedding(batch), model.text_embedding(ids, mask),
                                  cfg.temperature, cfg.image_weight).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 20 == 0:
            print(f"step {step:4d}  loss {loss.item():.3f}")


@torch.no_grad()
def noise(args: argparse.Namespace) -> None:
    cfg, _, model = build(args.profile, "sentence", 32)
    ids, mask = model.drawn_tokens(torch.arange(32))
    tower = model.text_tower
    tower.train()
    a, b = tower(ids, mask)[:, 0], tower(ids, mask)[:, 0]
    tower.eval()
    e = tower(ids, mask)[:, 0]
    spread = (e - e.mean(0)).norm(dim=1).mean()
    print(f"{cfg.text_encoder}: dropout noise of [CLS] (train, pass to pass) / spread between texts (eval) = "
          f"{float((a - b).norm(dim=1).mean() / spread):.3f}")


def sentences(args: argparse.Namespace) -> None:
    from collections import Counter

    from benchmark.data import catalog
    from benchmark.methods.sentences import report_sentences

    corpus = catalog.corpus().phantom_pairs(0, 73)  # the whole phantom corpus (its reports)
    counts = Counter(s for f, i in zip(corpus.findings, corpus.impressions) for s in report_sentences(f, i))
    print(f"{len(corpus)} reports: {len(counts)} distinct sentences of {sum(counts.values())}; most common:")
    for text, n in counts.most_common(5):
        print(f"  {n:5d}  {text}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    f = sub.add_parser("fit")
    f.add_argument("--aug", action="store_true")
    f.add_argument("--sentences", action="store_true")
    f.add_argument("--head-lr", type=float, default=1e-4)
    f.add_argument("--steps", type=int, default=160)
    f.add_argument("--profile", default="phantom")
    n = sub.add_parser("noise")
    n.add_argument("--profile", default="phantom")
    sub.add_parser("sentences")
    args = parser.parse_args()
    {"fit": fit, "noise": noise, "sentences": sentences}[args.what](args)


if __name__ == "__main__":
    main()
