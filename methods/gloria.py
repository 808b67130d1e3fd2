"""GLoRIA (Huang et al., ICCV 2021): a global image/text InfoNCE plus a local loss
in which every word attends over the image's layer3 regions.

Which words the local terms use follows the lines of the authors' code that run
(marshuang80/gloria), not its comments:

- Pre-training (``gloria/models/gloria_model.py`` ``_calc_local_loss``): ``cap_lens`` is
  the number of merged words not starting with "[" plus one, and ``local_loss``
  (``gloria/loss/gloria_loss.py``) takes ``words_emb[i, :, :words_num]``: [CLS] and the
  words, without [SEP] (the ``1:words_num+1`` line under "TODO: remove [SEP]" is
  commented out). ``cls_and_words`` selects them.
- Zero-shot (``get_local_similarities``, called by ``gloria/gloria.py``
  ``get_similarities``/``zero_shot_classification``): ``text_emb_l[i, :, 1:words_num+1]``
  with a max over words: the words and [SEP], without [CLS]. ``words_and_sep`` selects them.
- Global text embedding (``gloria/models/text_model.py``): the mean over all merged words,
  [CLS] and [SEP] included (the code's mean over the zero-padded length differs only in
  scale, which cosine ignores).

Deliberate differences from the authors' code (see shared reference/methods.md):

- Text unit: one random sentence per sample per step, as the authors' pre-training
  configs do (``full_report: false``); ``text_unit: report`` uses the whole report.
  Sentences are cleaned as in the code (lower case, ``\\w+`` tokens, ASCII, at least
  two tokens) but split by ``methods.sentences``; the code's "stop when exactly 5
  words have been collected" quirk is not copied. Units are tokenised once per corpus
  and drawn with a method-owned generator.
- Word pieces are merged by a vectorised helper (``merge_word_pieces``, the code's
  ``aggregate_tokens``), and the local loss is batched over all image/report pairs
  (``methods.losses.gloria_local_scores``) instead of a loop over reports; same values
  (tests/test_gloria.py checks both against ports of the authors' loops).
- Images: a random crop of the 8/7-resized image, mean/std 0.5, as the code; but no
  resize of the crop to 299 px, so at 224 px layer3 gives 14 x 14 regions, not 19 x 19.
- Optimiser: the loop's AdamW with betas (0.5, 0.999) (decoupled weight decay 1e-6
  instead of Adam's L2 1e-6) and one cosine decay over the run instead of plateau
  decay on a validation loss.
- Zero-shot local score: log max_k exp(5 cos) over the prompt's words and [SEP] only.
  The code's ``process_text`` counts a prompt's characters as its ``cap_lens``, so up to
  that many zero-padded positions join the words (they dilute the softmax over words and
  floor the max at cos 0): a bug, not copied.
- Retrieval uses the zero-shot similarity above, as every method's retrieval here uses its
  joint-space similarity. The authors' ``gloria/models/retrival_model.py`` differs: it
  removes [CLS] (``text_emb_l[:, :, 1:]``) and then slices ``1:words_num+1`` again, so its
  local score skips each report's first word and keeps [SEP]; it sums exp(5 cos) over words
  (``agg="sum"``) instead of the max; and "both" is the mean of the local and global scores
  each standardised over the candidate reports, not their plain mean. Not copied: the
  retrieval task ranks reports per image with one similarity for all methods.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.config import Layers, NonNegative, Positive
from benchmark.data.transforms import HALF
from benchmark.methods.base import Method, MethodConfig
from benchmark.methods.losses import gloria_local_loss, gloria_local_scores, infonce_loss
from benchmark.methods.sentences import report_sentences
from benchmark.models.encoders import (
    DrawsTextUnits,
    TextTower,
    continuation_mask,
    merge_word_pieces,
)
from benchmark.registry import METHODS

_WORD = re.compile(r"\w+")


@dataclass
class GloriaConfig(MethodConfig):
    text_unit: Literal["sentence", "report"] = "sentence"
    last_layers: Layers = 4  # word states = sum of the last 4 BERT layers
    attention_temperature: Positive = 4.0  # temp1: sharpens the word->region attention
    word_temperature: Positive = 5.0  # temp2: R = log sum_k exp(temp2 * cos)
    logit_scale: Positive = 10.0  # temp3: logits = 10 * cos (global), 10 * R (local)
    local_weight: NonNegative = 1.0
    global_weight: NonNegative = 1.0


def cls_and_words(word_mask: torch.Tensor) -> torch.Tensor:
    """Pre-training's local words: [CLS] and the words, [SEP] (each row's last word) dropped."""
    keep = word_mask.clone()
    keep[torch.arange(len(keep), device=keep.device), word_mask.sum(1) - 1] = False
    return keep


def words_and_sep(word_mask: torch.Tensor) -> torch.Tensor:
    """Zero-shot's local words: the words and [SEP], [CLS] (each row's first word) dropped."""
    keep = word_mask.clone()
    keep[:, 0] = False
    return keep


def clean_sentence(sentence: str) -> str:
    """GLoRIA's text cleaning: lower case, alphanumeric tokens only, ASCII."""
    words = (w.encode("ascii", "ignore").decode() for w in _WORD.findall(sentence.lower()))
    return " ".join(w for w in words if w)


@METHODS.register("gloria")
class Gloria(DrawsTextUnits, Method):
    config_class = GloriaConfig
    needs_pyramid = "its words attend over the stride-16 stage's regions (layer3)"
    image_stats = HALF  # its pre-training normalisation (mean/std 0.5)
    views = 1

    def __init__(self, cfg: GloriaConfig) -> None:
        super().__init__(cfg)
        self.text_tower = TextTower(cfg.text_encoder, cfg.text_max_length)
        dim = self.text_tower.dim  # the joint space is BERT's (768): no text projection, as in the code
        self.global_embedder = nn.Linear(self.backbone.channels[-1], dim)
        self.local_embedder = nn.Conv2d(self.backbone.channels[2], dim, kernel_size=1, bias=False)
        self.register_buffer("continuation", continuation_mask(self.text_tower.tokenizer), persistent=False)
        self.generator = torch.Generator().manual_seed(cfg.seed)

    def train_transform(self) -> Callable:
        from benchmark.data.transforms import CropJitterView

        return CropJitterView(self.cfg.image_size, scale=None, flip=False, jitter=0.0)

    def text_units(self, findings: str, impression: str) -> list[str]:
        """Cleaned sentences of two or more words, or the whole cleaned report."""
        sentences = [c for c in map(clean_sentence, report_sentences(findings, impression)) if len(c.split()) > 1]
        if self.cfg.text_unit == "report":
            return [" ".join(sentences)]
        return sentences or [""]

    # -- towers ---------------------------------------------------------------
    def image_features(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(global B x D, regions B x M x D)."""
        feats = self.backbone(images)
        regions = self.local_embedder(feats[2]).flatten(2).transpose(1, 2)
        return self.global_embedder(feats[3].mean(dim=(2, 3))), regions

    def text_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        """(global B x D, words B x W x D, word mask B x W): word states are the sum of
        the last ``last_layers`` layers with word pieces merged; the mask covers every
        word, [CLS] and [SEP] included (the local terms select theirs)."""
        layers = self.text_tower(input_ids, attention_mask, all_layers=True)
        states = torch.stack(layers[-self.cfg.last_layers :]).sum(0)
        width = states.shape[1]
        words, mask = merge_word_pieces(states, input_ids[:, :width], attention_mask[:, :width], self.continuation)
        m = mask.unsqueeze(-1).to(words.dtype)
        return (words * m).sum(1) / m.sum(1), words, mask

    def _tokens(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        tok = self.text_tower.tokenize([clean_sentence(t) for t in texts])
        device = self.global_embedder.weight.device
        return tok["input_ids"].to(device), tok["attention_mask"].to(device)

    def embed_images(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.image_features(images)[0], dim=-1)

    def embed_texts(self, texts: list[str]) -> torch.Tensor:
        return F.normalize(self.text_features(*self._tokens(texts))[0], dim=-1)

    def similarity(self, images: torch.Tensor, texts: list[str]) -> torch.Tensor:
        """(global cosine + local score) / 2, the local score a max over the prompt's words and [SEP]."""
        img_g, regions = self.image_features(images)
        txt_g, words, mask = self.text_features(*self._tokens(texts))
        global_ = F.normalize(img_g.float(), dim=-1) @ F.normalize(txt_g.float(), dim=-1).T
        cfg = self.cfg
        local = gloria_local_scores(
            regions, words, words_and_sep(mask), cfg.attention_temperature, cfg.word_temperature, "max"
        )
        return (global_ + local) / 2

    # -- the step -------------------------------------------------------------
    def training_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        ids, mask = self.drawn_tokens(batch["index"])
        img_g, regions = self.image_features(batch["view1"])
        txt_g, words, word_mask = self.text_features(ids, mask)
        global_ = infonce_loss(*self.negatives(img_g, txt_g), 1 / cfg.logit_scale)  # the local loss stays per process
        local = gloria_local_loss(
            regions, words, cls_and_words(word_mask), cfg.attention_temperature, cfg.word_temperature, cfg.logit_scale
        )
        loss = cfg.local_weight * local + cfg.global_weight * global_
        return {"loss": loss, "global": global_.detach(), "local": local.detach()}
