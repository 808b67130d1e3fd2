import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
import torchvision

from benchmark.config import build
from methods.encoders import continuation_mask, merge_word_pieces
from methods.gloria import Gloria, GloriaConfig, clean_sentence
from methods.losses import gloria_local_loss, gloria_local_scores, infonce_loss

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


def authors_local_similarities(img: torch.Tensor, words: torch.Tensor, cap_lens: list[int]) -> torch.Tensor:
    """The authors' loop (gloria/loss/gloria_loss.py: local_loss + attention_fn) in
    their layout: img B x D x H x W, words B x D x L; report i uses words 1..cap_len."""
    batch, dim = img.shape[:2]
    context = img.view(batch, dim, -1)
    sims = []
    for i in range(words.shape[0]):
        n = cap_lens[i]
        word = words[i, :, 1 : n + 1].unsqueeze(0).repeat(batch, 1, 1)  # B x D x n
        attn = torch.bmm(context.transpose(1, 2), word).softmax(dim=-1)  # B x M x n, over words
        attn = (attn.transpose(1, 2) * 4.0).softmax(dim=-1)  # B x n x M, over regions
        weighted = torch.bmm(context, attn.transpose(1, 2))  # B x D x n
        cos = (word * weighted).sum(1) / (word.norm(dim=1) * weighted.norm(dim=1)).clamp(min=1e-8)
        sims.append(torch.log((5.0 * cos).exp().sum(dim=1, keepdim=True)))
    return torch.cat(sims, 1)  # images x reports


def test_vectorised_local_loss_matches_the_authors_loop():
    g = torch.Generator().manual_seed(0)
    img = torch.randn(3, 6, 2, 3, generator=g)
    words = torch.randn(3, 6, 7, generator=g)
    cap_lens = [2, 5, 3]
    reference = authors_local_similarities(img, words, cap_lens)
    pos = torch.arange(7)
    mask = torch.stack([(pos >= 1) & (pos <= n) for n in cap_lens])
    scores = gloria_local_scores(img.flatten(2).transpose(1, 2), words.transpose(1, 2), mask)
    assert torch.allclose(scores, reference, atol=1e-5)
    labels = torch.arange(3)
    expected = F.cross_entropy(10 * reference, labels) + F.cross_entropy(10 * reference.T, labels)
    loss = gloria_local_loss(img.flatten(2).transpose(1, 2), words.transpose(1, 2), mask)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


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
    local_mask[:, 0] = False  # [SEP] stays a local word, [CLS] does not
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
        local = gloria_local_scores(regions, words, mask, agg="max")
    assert sim.shape == (2, 3)
    assert torch.allclose(sim, (glob + local) / 2, atol=1e-5)
    assert torch.allclose(model.embed_texts(texts).norm(dim=1), torch.ones(3))


def test_two_step_pretraining_through_the_loop(monkeypatch):
    from benchmark.runner import get_encoder, resolve

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
