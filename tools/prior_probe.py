"""Why PRIOR's global term sits at chance in the overfit recipe (results/OVERFIT.md): per step, the
global loss, the logit scale, and the mean pairwise cosine of the batch's image and report embeddings.

    python tools/prior_probe.py [--steps 60] [--set temperature=0.07] [--no-local]

``--no-local`` zeroes PRIOR's local terms (SimSiam and the within-report InfoNCE), leaving the global
CLIP loss alone. The recipe is OVERFIT.md's: 8 phantom pairs, batch 8, ResNet-18 at 32 px, MiniLM.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

import benchmark.methods.prior as prior
from benchmark.config import parse_sets
from benchmark.data.pairs import EpochBatches, PairViews
from benchmark.data.sources import pretrain_corpus
from benchmark.device import seed_everything
from benchmark.factory import resolve
from benchmark.pretraining import make_optimizer, to_device, train_step

RECIPE = [("text_encoder", "minilm"), ("corpus_size", 8), ("batch_size", 8), ("max_steps", 120), ("epochs", 1000),
          ("backbone", "resnet18"), ("lr_restart_epochs", 0), ("lr", 1e-4), ("backbone_lr", 1e-3)]


def mean_cosine(x: torch.Tensor) -> float:
    x = F.normalize(x.float(), dim=-1)
    n = len(x)
    return float(((x @ x.T).sum() - n) / (n * (n - 1)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--set", dest="sets", action="append", default=[])
    ap.add_argument("--no-local", action="store_true")
    args = ap.parse_args()
    if args.no_local:
        prior.simsiam_loss = lambda x, y, predictor: x.sum() * 0
        prior.within_report_infonce = lambda s, c, m, k: s.sum() * 0
    r = resolve("prior", None, "smoke", RECIPE + parse_sets(args.sets))
    cfg, cpu = r.method_cfg, torch.device("cpu")
    corpus = pretrain_corpus(cfg, None)
    seed_everything(0)
    model = r.method_cls(cfg)
    model.prepare(corpus)
    model.train()
    params, opt = make_optimizer(model, cfg, cpu)
    data = PairViews(corpus.images, model.train_transform(), cfg.seed, model.views)
    loader = torch.utils.data.DataLoader(data, batch_sampler=EpochBatches(len(corpus), cfg.batch_size, cfg.seed))
    print("step global logit_scale image_cos report_cos local_text stage")
    step = 0
    while step < args.steps:
        data.epoch = loader.batch_sampler.epoch = step // len(loader)
        for batch in loader:
            batch = to_device(batch, cpu)
            terms = train_step(model, batch, opt, params, cfg.grad_clip, "prior", step)
            step += 1
            if step % 5 == 0 or step == 1:
                with torch.no_grad():
                    raw, _ = model.patch_grid(batch["view1"])
                    image = model.global_image(model.image_pool(raw))
                    sents, present = model.sentences(*model.reports(batch["index"]))
                    report = model.sentence_pool(sents, present)
                print(f"{step} {terms['global'].item():.3f} {model.clamped(model.logit_scale).item():.2f} "
                      f"{mean_cosine(image):.3f} {mean_cosine(report):.3f} {terms['local_text'].item():.3f} "
                      f"{terms['stage'].item():.0f}", flush=True)
            if step >= args.steps:
                break


if __name__ == "__main__":
    main()
