import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
import torchvision

from benchmark.config import build
from benchmark.methods.gloria import Gloria, GloriaConfig, clean_sentence
from benchmark.methods.losses import gloria_local_loss, gloria_local_scores, infonce_loss
from benchmark.models.encoders import continuation_mask, merge_word_pieces

CORPUS = SimpleNamespace(
    findings=["Heart size is normal. Lungs are clear.", "", "Small left pleural effusion. Mild cardiomegaly."],
    impressions=["No acute disease.", "Stable chest.", "Effusion."],
)


@pytest.fixture(scope="module")
def model() -> Gloria:
    torch.manual_seed(0)
    values = {"backbone_weights": "none", "image_size": 32, "batch_size": 3, "text_encoder": "tiny-random"}
    m = Gloria(build(GloriaConfig, values, "test"))
    m.prepare(CORPUS)
    return m


def test_merge_word_pieces_on_a_real_tokenizer(model):
    tokenizer = model.text_tower.tokenizer  # MiniLM's WordPiece vocabulary (tiny-random's tokenizer)
    tok = tokenizer(["no pneumothorax. cardiomegaly", "effusion"], padding=True, return_tensors="pt")
    pieces = tokenizer.convert_ids_to_tokens(tok["input_ids"][0])
    assert pieces[2:8] == ["p", "##ne", "##um", "##otho", "##ra", "##x"]  # one word, six pieces
    length = tok["input_ids"].shape[1]
    states = torch.eye(length).expand(2, -1, -1)  # token t's state is the t-th unit vector
    words, mask = merge_word_pieces(states, tok["input_ids"], tok["attention_mask"], continuation_mask(tokenizer))
    assert tokenizer.tokenize("effusion") == ["e", "##ff", "##usion"]
    assert mask.tolist() == [[True] * 6, [True] * 3 + [False] * 3]  # [CLS] effusion [SEP], then padding
    members = [[t for t in range(length) if words[0, w, t]] for w in range(6)]
    assert ["".join(pieces[t].removeprefix("##") for t in m) for m in members] == [
        "[CLS]", "no", "pneumothorax", ".", "cardiomegaly", "[SEP]"
    ]
    assert torch.equal(words[0].sum(0), torch.ones(length))  # every real token counted once
    assert words[1].sum() == 5 and words[1, ~mask[1]].abs().sum() == 0  # padding tokens dropped


def test_local_score_hand_computed():
    # one image with regions r1 = (1, 0), r2 = (0, 1); one report with words w1 = (1, 0), w2 = (1, 2).
    # dot products (word x region): w1 [1, 0], w2 [1, 2]; softmax over words per region:
    # region 1 [1, 1] -> (1/2, 1/2); region 2 [0, 2] -> (1 - q, q), q = e^2 / (1 + e^2).
    # x4, softmax over regions: p1 = softmax(2, 4(1 - q)), p2 = softmax(2, 4q); c_k = p_k (basis regions).
    # R = log(exp(5 cos(w1, p1)) + exp(5 cos(w2, p2))).
    q = math.exp(2) / (1 + math.exp(2))

    def softmax2(x: float, y: float) -> tuple[float, float]:
        return math.exp(x) / (math.exp(x) + math.exp(y)), math.exp(y) / (math.exp(x) + math.exp(y))

    p1, p2 = softmax2(2, 4 * (1 - q)), softmax2(2, 4 * q)
    cos1 = p1[0] / math.hypot(*p1)
    cos2 = (p2[0] + 2 * p2[1]) / (math.sqrt(5) * math.hypot(*p2))
    expected = math.log(math.exp(5 * cos1) + math.exp(5 * cos2))
    regions = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    words = torch.tensor([[[1.0, 0.0], [1.0, 2.0], [7.0, 7.0]]])  # third word is padding
    mask = torch.tensor([[True, True, False]])
    assert gloria_local_scores(regions, words, mask).item() == pytest.approx(expected, rel=1e-6)
    assert gloria_local_scores(regions, words, mask, agg="max").item() == pytest.approx(5 * max(cos1, cos2), rel=1e-6)


def authors_local_similarities(
    img: torch.Tensor, words: torch.Tensor, cap_lens: list[int], zero_shot: bool = False
) -> torch.Tensor:
    """The authors' loops in their layout (img B x D x H x W, words B x D x L): pre-training
    (gloria/loss/gloria_loss.py ``local_loss`` + ``attention_fn``) runs
    ``words_emb[i, :, :words_num]`` and sums over words; zero-shot (gloria_model.py
    ``get_local_similarities``) runs ``text_emb_l[i, :, 1 : words_num + 1]`` and takes the max."""
    batch, dim = img.shape[:2]
    context = img.view(batch, dim, -1)
    sims = []
    for i in range(words.shape[0]):
        n = cap_lens[i]
        word = words[i, :, 1 : n + 1] if zero_shot else words[i, :, :n]
        word = word.unsqueeze(0).repeat(batch, 1, 1)  # B x D x n
        attn = torch.bmm(context.transpose(1, 2), word).softmax(dim=-1)  # B x M x n, over words
        attn = (attn.transpose(1, 2) * 4.0).softmax(dim=-1)  # B x n x M, over regions
        weighted = torch.bmm(context, attn.transpose(1, 2))  # B x D x n
        cos = (word * weighted).sum(1) / (word.norm(dim=1) * weighted.norm(dim=1)).clamp(min=1e-8)
        row = (5.0 * cos).exp()
        row = row.max(dim=1, keepdim=True)[0] if zero_shot else row.sum(dim=1, keepdim=True)
        sims.append(torch.log(row))
    return torch.cat(sims, 1)  # images x reports


def test_vectorised_local_loss_matches_the_authors_loop():
    g = torch.Generator().manual_seed(0)
    img = torch.randn(3, 6, 2, 3, generator=g)
    words = torch.randn(3, 6, 7, generator=g)
    cap_lens = [2, 5, 3]  # pre-training: [CLS] + (cap_len - 1) words; positions after them are [SEP], padding
    reference = authors_local_similarities(img, words, cap_lens)
    pos = torch.arange(7)
    mask = torch.stack([pos < n for n in cap_lens])
    scores = gloria_local_scores(img.flatten(2).transpose(1, 2), words.transpose(1, 2), mask)
    assert torch.allclose(scores, reference, atol=1e-5)
    labels = torch.arange(3)
    expected = F.cross_entropy(10 * reference, labels) + F.cross_entropy(10 * reference.T, labels)
    loss = gloria_local_loss(img.flatten(2).transpose(1, 2), words.transpose(1, 2), mask)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    # zero-shot: cap_len words after [CLS] (the words and [SEP]), max over words
    reference = authors_local_similarities(img, words, cap_lens, zero_shot=True)
    mask = torch.stack([(pos >= 1) & (pos <= n) for n in cap_lens])
    scores = gloria_local_scores(img.flatten(2).transpose(1, 2), words.transpose(1, 2), mask, agg="max")
    assert torch.allclose(scores, reference, atol=1e-5)


def test_text_cleaning_and_units(model):
    assert clean_sentence("Heart size is NORMAL, no effusion (stable).") == "heart size is normal no effusion stable"
    assert model.text_units(CORPUS.findings[2], CORPUS.impressions[2]) == [
        "small left pleural effusion", "mild cardiomegaly"  # one-word sentences are dropped, as in the code
    ]
    assert model.bank.count.tolist() == [3, 1, 2]


class Boom:
    def __call__(self, *args, **kwargs):
        raise AssertionError("the tokenizer must not run during training_step")


def test_training_step_is_global_plus_local_on_layer3_regions(model):
    model.eval()  # no dropout / batch statistics: the step can be recomputed by hand
    tokenizer, model.text_tower.tokenizer = model.text_tower.tokenizer, Boom()
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    batch = {"view1": images, "index": torch.tensor([1, 2, 0])}
    try:
        state = model.rng_state()
        out = model.training_step(batch)
    finally:
        model.text_tower.tokenizer = tokenizer
    assert set(out) == {"loss", "global", "local"}
    assert out["loss"].item() == pytest.approx(out["global"].item() + out["local"].item(), rel=1e-6)

    model.load_rng_state(state)
    ids, mask = model.drawn_tokens(batch["index"])
    with torch.no_grad():
        img_g, regions = model.image_features(images)
        layers = model.text_tower(ids, mask, all_layers=True)
    assert img_g.shape == (3, 64) and regions.shape == (3, 4, 64)  # 32 px -> layer3 2 x 2, 1x1 conv to BERT width
    width = layers[0].shape[1]
    words, word_mask = merge_word_pieces(
        sum(layers[-4:]), ids[:, :width], mask[:, :width], continuation_mask(tokenizer)
    )
    text_g = torch.stack([w[m].mean(0) for w, m in zip(words, word_mask)])  # [CLS] and [SEP] included
    local_mask = word_mask.clone()
    local_mask[torch.arange(3), word_mask.sum(1) - 1] = False  # [CLS] stays a local word, [SEP] does not
    assert out["global"].item() == pytest.approx(infonce_loss(img_g, text_g, 0.1).item(), rel=1e-5)
    assert out["local"].item() == pytest.approx(gloria_local_loss(regions, words, local_mask).item(), rel=1e-5)

    out["loss"].backward()
    for p in (model.local_embedder.weight, model.global_embedder.weight, model.backbone.layer3[0].conv1.weight,
              model.text_tower.model.encoder.layer[0].attention.self.query.weight):
        assert p.grad is not None and p.grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)


def test_zero_shot_similarity_is_mean_of_global_and_local(model):
    model.eval()
    images, texts = torch.randn(2, 3, 32, 32), ["Small left effusion.", "no pneumothorax", "cardiomegaly"]
    with torch.no_grad():
        sim = model.similarity(images, texts)
        glob = model.embed_images(images) @ model.embed_texts(texts).T
        _, regions = model.image_features(images)
        tok = model.text_tower.tokenize([clean_sentence(t) for t in texts])
        _, words, mask = model.text_features(tok["input_ids"], tok["attention_mask"])
        assert mask.sum(1).tolist() == [5, 4, 3]  # [CLS] small left effusion [SEP], ...
        mask[:, 0] = False  # zero-shot: the words and [SEP], not [CLS]
        local = gloria_local_scores(regions, words, mask, agg="max")
    assert sim.shape == (2, 3)
    assert torch.allclose(sim, (glob + local) / 2, atol=1e-5)
    assert torch.allclose(model.embed_texts(texts).norm(dim=1), torch.ones(3))


def test_two_step_pretraining_through_the_loop(monkeypatch):
    from benchmark.factory import resolve
    from benchmark.runner import get_encoder

    seen, adamw = {}, torch.optim.AdamW
    monkeypatch.setattr(torch.optim, "AdamW", lambda params, **kw: seen.update(kw) or adamw(params, **kw))
    pre = get_encoder(resolve("gloria", None, "smoke", [("max_steps", 2)]), None)
    assert pre.meta["steps"] == 2
    assert seen["betas"] == (0.5, 0.999) and seen["lr"] == 5e-5  # the loop honours the YAML's Adam betas
    assert pre.meta["config"]["grad_clip"] == 0.25
    header = (pre.path.parent / "losses.csv").read_text().splitlines()[0].split(",")
    assert {"loss", "global", "local"} <= set(header)
    net = torchvision.models.resnet50()
    net.fc = torch.nn.Identity()
    net.load_state_dict(torch.load(pre.path), strict=True)


# -- which words the local terms use: the authors' lines that run -------------------------
def hand_r(words: list, regions: list, agg: str = "sum") -> float:
    """R for one image and one report in scalar Python: per region a softmax of the dot
    products over the words; per word a softmax of 4 x that over the regions gives its
    context c; R = log sum_k exp(5 cos(w_k, c_k)) (agg "max": log max_k)."""
    def dot(a, b) -> float:
        return sum(x * y for x, y in zip(a, b))

    attn = []
    for r in regions:
        e = [math.exp(dot(w, r)) for w in words]
        attn.append([v / sum(e) for v in e])
    sims = []
    for k, w in enumerate(words):
        e = [math.exp(4 * attn[m][k]) for m in range(len(regions))]
        c = [sum(e[m] / sum(e) * regions[m][d] for m in range(len(regions))) for d in range(len(w))]
        sims.append(5 * dot(w, c) / math.sqrt(dot(w, w) * dot(c, c)))
    return math.log(sum(math.exp(s) for s in sims)) if agg == "sum" else max(sims)


def hand_paired_ce(r: list) -> float:
    """CE over rows (images) + CE over columns (reports) of the logits 10 R, matched on the diagonal."""
    n = len(r)
    rows = sum(math.log(sum(math.exp(10 * v) for v in r[b])) - 10 * r[b][b] for b in range(n)) / n
    cols = sum(math.log(sum(math.exp(10 * r[b][i]) for b in range(n))) - 10 * r[i][i] for i in range(n)) / n
    return rows + cols


# token ids of "no clear" and "effusion" (e ##ff ##usion) in tiny-random's WordPiece vocabulary
HAND_IDS = torch.tensor([[101, 2053, 3154, 102, 0], [101, 1041, 4246, 14499, 102]])
HAND_MASK = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]])
HAND_STATES = torch.tensor([
    [[1.0, 0.0], [0.5, 1.0], [1.0, 2.0], [-2.0, 1.0], [9.0, 9.0]],  # [CLS] no clear [SEP] [PAD]
    [[0.0, 1.0], [1.0, 0.0], [0.0, 1.0], [1.0, -2.0], [1.0, 1.0]],  # [CLS] e ##ff ##usion [SEP]
])
HAND_WORDS = {  # per report: [CLS], its words (pieces summed), [SEP]
    "cls": [(1.0, 0.0), (0.0, 1.0)],
    "words": [[(0.5, 1.0), (1.0, 2.0)], [(2.0, -1.0)]],
    "sep": [(-2.0, 1.0), (1.0, 1.0)],
}
HAND_REGIONS = [[(1.0, 0.0), (0.0, 1.0), (1.0, 1.0)], [(-1.0, 0.5), (0.5, -1.0), (0.0, 1.0)]]
HAND_IMG_G = torch.tensor([[1.0, 2.0], [2.0, -1.0]])


def stub_towers(model: Gloria, monkeypatch) -> None:
    """Hand-set hidden states (sum of the last 4 layers = HAND_STATES) and image features."""
    zeros = torch.zeros_like(HAND_STATES)
    monkeypatch.setattr(model.text_tower, "forward", lambda ids, mask, all_layers=False: (zeros,) * 4 + (HAND_STATES,))
    monkeypatch.setattr(model, "image_features", lambda images: (HAND_IMG_G, torch.tensor(HAND_REGIONS)))


def test_training_local_words_are_cls_and_words_without_sep_hand_computed(model, monkeypatch):
    # gloria_model.py `_calc_local_loss`: cap_lens = (words not starting with "[") + 1, and
    # gloria_loss.py `local_loss` runs `words_emb[i, :, :words_num]`: [CLS] + the words, no [SEP]
    # (the `1:words_num+1` line without [CLS] is commented out).
    stub_towers(model, monkeypatch)
    monkeypatch.setattr(model, "drawn_tokens", lambda index: (HAND_IDS, HAND_MASK))
    out = model.training_step({"view1": torch.zeros(2, 3, 32, 32), "index": torch.tensor([0, 1])})

    def loss(words: list) -> float:
        return hand_paired_ce([[hand_r(words[i], HAND_REGIONS[b]) for i in range(2)] for b in range(2)])

    authors = loss([[HAND_WORDS["cls"][i], *HAND_WORDS["words"][i]] for i in range(2)])
    without_cls = loss([[*HAND_WORDS["words"][i], HAND_WORDS["sep"][i]] for i in range(2)])
    assert abs(authors - without_cls) > 0.05 * authors  # the case tells the two word sets apart
    assert out["local"].item() == pytest.approx(authors, rel=1e-5)
    every = [[HAND_WORDS["cls"][i], *HAND_WORDS["words"][i], HAND_WORDS["sep"][i]] for i in range(2)]
    text_g = torch.tensor([[sum(w[d] for w in ws) / len(ws) for d in range(2)] for ws in every])
    assert out["global"].item() == pytest.approx(infonce_loss(HAND_IMG_G, text_g, 0.1).item(), rel=1e-5)


def test_zero_shot_local_words_are_words_and_sep_without_cls_hand_computed(model, monkeypatch):
    # gloria_model.py `get_local_similarities` runs `text_emb_l[i, :, 1 : words_num + 1]` with
    # max over words: the words and [SEP], no [CLS] (its padding leak is not copied: the docstring)
    stub_towers(model, monkeypatch)
    monkeypatch.setattr(model, "_tokens", lambda texts: (HAND_IDS, HAND_MASK))
    sim = model.similarity(torch.zeros(2, 3, 32, 32), ["no clear", "effusion"])
    words = [[*HAND_WORDS["words"][i], HAND_WORDS["sep"][i]] for i in range(2)]
    local = torch.tensor([[hand_r(words[i], HAND_REGIONS[b], "max") for i in range(2)] for b in range(2)])
    with_cls = torch.tensor([[hand_r([HAND_WORDS["cls"][i], *words[i]], HAND_REGIONS[b], "max") for i in range(2)]
                             for b in range(2)])
    assert (local - with_cls).abs().max() > 0.1  # [CLS] would change the score
    every = [[HAND_WORDS["cls"][i], *words[i]] for i in range(2)]
    text_g = torch.tensor([[sum(w[d] for w in ws) / len(ws) for d in range(2)] for ws in every])
    glob = F.normalize(HAND_IMG_G, dim=1) @ F.normalize(text_g, dim=1).T
    assert torch.allclose(sim, (glob + local) / 2, atol=1e-5)


def authors_aggregate_tokens(states: torch.Tensor, ids: torch.Tensor, idxtoword: dict) -> tuple[torch.Tensor, list]:
    """gloria/models/text_model.py ``aggregate_tokens`` (one layer): word pieces summed,
    [CLS] and [SEP] words of their own, stop at [SEP], zero padding. Layout B x L x D."""
    batch, words_emb = [], []
    for embs, caption in zip(states, ids):
        agg, tokens, words, bank = [], [], [], []
        for emb, token in zip(embs, caption):
            word = idxtoword[token.item()]
            if word == "[SEP]":
                agg.append(torch.stack(tokens).sum(0))
                words.append("".join(bank))
                agg.append(emb)
                words.append(word)
                break
            if not word.startswith("##"):
                if bank:
                    agg.append(torch.stack(tokens).sum(0))
                    words.append("".join(bank))
                tokens, bank = [emb], [word]
            else:
                tokens.append(emb)
                bank.append(word[2:])
        pad = len(embs) - len(agg)
        words_emb.append(torch.cat([torch.stack(agg), torch.zeros(pad, embs.shape[-1])]))
        batch.append(words + ["[PAD]"] * pad)
    return torch.stack(words_emb), batch


def test_local_loss_and_zero_shot_score_equal_the_authors_on_the_same_hidden_states(model, monkeypatch):
    tokenizer = model.text_tower.tokenizer
    texts = ["no pneumothorax", "heart size is normal", "effusion"]  # word pieces, lengths 2, 4, 1
    tok = tokenizer(texts, padding="max_length", max_length=12, return_tensors="pt")
    ids, mask = tok["input_ids"], tok["attention_mask"]
    g = torch.Generator().manual_seed(3)
    states = torch.randn(3, 12, 8, generator=g)
    img_g, regions = torch.randn(3, 8, generator=g), torch.randn(3, 8, 2, 3, generator=g)
    monkeypatch.setattr(model.text_tower, "forward", lambda i, m, all_layers=False: (states * 0,) * 3 + (states,))
    monkeypatch.setattr(model, "image_features", lambda images: (img_g, regions.flatten(2).transpose(1, 2)))
    monkeypatch.setattr(model, "drawn_tokens", lambda index: (ids, mask))
    monkeypatch.setattr(model, "_tokens", lambda t: (ids, mask))

    idxtoword = {i: t for t, i in tokenizer.get_vocab().items()}
    words_emb, sents = authors_aggregate_tokens(states, ids, idxtoword)
    assert sents[0][:4] == ["[CLS]", "no", "pneumothorax", "[SEP]"]
    words_emb = words_emb.transpose(1, 2)  # B x D x L, the authors' layout
    cap_lens = [len([w for w in s if not w.startswith("[")]) + 1 for s in sents]  # _calc_local_loss
    assert cap_lens == [3, 5, 2]
    r = authors_local_similarities(regions, words_emb, cap_lens)
    labels = torch.arange(3)
    authors = F.cross_entropy(10 * r, labels) + F.cross_entropy(10 * r.T, labels)
    out = model.training_step({"view1": torch.zeros(3, 3, 32, 32), "index": labels})
    assert out["local"].item() == pytest.approx(authors.item(), rel=1e-5)

    # zero-shot (get_similarities): (cosine of the global embeddings + local max score) / 2. process_text's
    # cap_lens counts the prompt's characters, which reach past the words to [SEP] (and on into zero
    # padding: that part is the bug not copied); so positions 1 .. words + 1: the words and [SEP]
    chars = [len([c for c in t if not c.startswith("[")]) for t in texts]
    assert all(c >= n for c, n in zip(chars, cap_lens))
    local = authors_local_similarities(regions, words_emb, cap_lens, zero_shot=True)
    glob = F.normalize(img_g, dim=1) @ F.normalize(words_emb.mean(2), dim=1).T  # mean over the padded length
    sim = model.similarity(torch.zeros(3, 3, 32, 32), texts)
    assert torch.allclose(sim, (glob + local) / 2, atol=1e-5)
