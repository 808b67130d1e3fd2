"""Naive training steps: what the authors' code does per step, built from the same
modules, so ``benchmark speed`` can show what the project's optimised step saves.

What "naive" means per method (the work the project's step does not repeat):

- imitate: the frozen text encoder runs every step on the batch's findings and
  impression texts (two BERT passes, as the authors' code; no text cache), and the
  backbone runs four times: two views x two channel draws (pass 1/2: views 1/2 with
  draws 1/2 for the image-text terms; pass 3/4: views 1/2 again with draws 3/4 for
  the view-view terms). Same loss as ``Imitate.training_step`` for the same batch
  and draws (BN in train mode normalises a repeated pass with the same batch
  statistics; only the running statistics see 4 updates instead of 2).
  ``hierarchical: false``: the report text encoded every step, the two views once each.
- convirt, gloria (trainable text tower, one drawn text unit per sample): the
  drawn units are tokenised from their strings every step (the authors' data
  loaders call the tokenizer per sample) instead of being indexed from the
  per-corpus ``TokenBank``. The unit draws are the same.
- prior, asg (trainable text tower, whole report in sentences): the batch's reports
  are tokenised every step instead of indexed from the per-corpus ``ReportTokens``.

Methods with no text (random, checkpoint) have no naive step.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from benchmark.methods.sentences import ReportTokens, corpus_reports
from benchmark.models.text_cache import corpus_texts


def naive_step_fn(model, corpus) -> Callable[[dict], dict] | None:
    """``step(batch) -> terms`` doing the authors' per-step work, or None when the
    method has no text side the project caches. Call after ``model.prepare(corpus)``."""
    from benchmark.methods.imitate import Imitate
    from benchmark.models.encoders import DrawsTextUnits

    if isinstance(model, Imitate):
        return NaiveImitate(model, corpus)
    if isinstance(model, DrawsTextUnits):
        return NaiveUnits(model, corpus)
    if isinstance(getattr(model, "reports", None), ReportTokens):
        return NaiveReports(model, corpus)
    return None


class NaiveImitate:
    """IMITATE as the authors' step computes it (see the module docstring)."""

    def __init__(self, model, corpus) -> None:
        self.model = model
        fields = ("findings", "impression") if model.cfg.hierarchical else ("report",)
        self.texts = {f: corpus_texts(corpus, f) for f in fields}

    def encode(self, field: str, index: torch.Tensor) -> torch.Tensor:
        """The frozen text encoder on this batch's texts: run now, not looked up."""
        m = self.model
        texts = [self.texts[field][i] for i in index.tolist()]
        return m.text_cache.encoder(texts).to(m.text_projection[0].weight.device)

    def __call__(self, batch: dict[str, torch.Tensor], draws: list[list[torch.Tensor]] | None = None) -> dict:
        m, cfg, index = self.model, self.model.cfg, batch["index"]
        if not cfg.hierarchical:
            e = self.encode("report", index)
            u = m.text_projection(e)
            imp1, imp2 = m.impression(m.backbone(batch["view1"])), m.impression(m.backbone(batch["view2"]))
            report = m._cicl(imp1, u, e, cfg.temperature) + m._cicl(imp2, u, e, cfg.temperature)
            view = m._cicl(imp1, imp2, e, cfg.view_temperature) if cfg.view_view else imp1.new_zeros(()).float()
            return {"loss": report + cfg.view_weight * view, "report_text": report.detach(), "view_impression": view.detach()}

        from benchmark.methods.losses import cicl_loss

        draws = draws or [m.findings_branch.draw(m.generator) for _ in range(4)]
        e_find, e_imp = self.encode("findings", index), self.encode("impression", index)
        has = torch.tensor([bool(self.texts["findings"][i].strip()) for i in index.tolist()], device=e_find.device)
        # passes 1 and 2: the image-text terms
        feats1, feats2 = m.backbone(batch["view1"]), m.backbone(batch["view2"])
        imp1, imp2 = m.impression(feats1), m.impression(feats2)
        find1, find2 = m.findings(feats1, draws[0]), m.findings(feats2, draws[1])
        u_imp = m.text_projection(e_imp)
        impression_text = m._cicl(imp1, u_imp, e_imp, cfg.temperature) + m._cicl(imp2, u_imp, e_imp, cfg.temperature)
        zero = imp1.new_zeros(()).float()
        findings_text = zero
        if int(has.sum()) >= 2:
            u_find = m.text_projection(e_find[has])
            findings_text = m._cicl(find1[has], u_find, e_find[has], cfg.temperature) + m._cicl(
                find2[has], u_find, e_find[has], cfg.temperature
            )
        view_impression = view_findings = zero
        if cfg.view_view:
            # passes 3 and 4: the same views again with the second channel draws
            feats1b, feats2b = m.backbone(batch["view1"]), m.backbone(batch["view2"])
            view_impression = m._cicl(m.impression(feats1b), m.impression(feats2b), e_imp, cfg.view_temperature)
            view_findings = cicl_loss(
                m.findings(feats1b, draws[2]), m.findings(feats2b, draws[3]), None, cfg.view_temperature
            )
        lam = cfg.findings_weight
        loss = impression_text + lam * findings_text + cfg.view_weight * (view_impression + lam * view_findings)
        terms = {"impression_text": impression_text, "findings_text": findings_text,
                 "view_impression": view_impression, "view_findings": view_findings}
        return {"loss": loss, **{k: v.detach() for k, v in terms.items()}}


class NaiveUnits:
    """ConVIRT / GLoRIA: the drawn text units tokenised from strings every step."""

    def __init__(self, model, corpus) -> None:
        self.model = model
        self.units = [u for f, i in zip(corpus.findings, corpus.impressions) for u in model.text_units(f, i)]

    def tokens(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m = self.model
        drawn = m.bank.draw(index, m.generator)  # the same draws as the bank-indexed step
        tok = m.text_tower.tokenize([self.units[u] for u in drawn.tolist()])
        return tok["input_ids"].to(index.device), tok["attention_mask"].to(index.device)

    def __call__(self, batch: dict[str, torch.Tensor]) -> dict:
        m = self.model
        m.drawn_tokens = self.tokens  # an instance attribute shadows the bank lookup for this call
        try:
            return m.training_step(batch)
        finally:
            del m.drawn_tokens


class _PerStepReports(nn.Module):
    """Stands in for a corpus' ``ReportTokens``: tokenises the batch's reports on every call."""

    def __init__(self, tokenizer, reports: list[list[str]], max_length: int, max_sentences: int) -> None:
        super().__init__()
        self.tokenizer, self.reports = tokenizer, reports
        self.max_length, self.max_sentences = max_length, max_sentences

    def forward(self, index: torch.Tensor):
        picked = [self.reports[i] for i in index.tolist()]
        tokens = ReportTokens(self.tokenizer, picked, self.max_length, self.max_sentences)
        return tuple(t.to(index.device) for t in tokens(torch.arange(len(picked))))


class NaiveReports:
    """PRIOR / ASG: the batch's reports tokenised every step."""

    def __init__(self, model, corpus) -> None:
        cfg = model.cfg
        self.model = model
        self.per_step = _PerStepReports(model.text_tower.tokenizer, corpus_reports(corpus), cfg.text_max_length, cfg.max_sentences)

    def __call__(self, batch: dict[str, torch.Tensor]) -> dict:
        m = self.model
        cached, m.reports = m.reports, self.per_step
        try:
            return m.training_step(batch)
        finally:
            m.reports = cached
