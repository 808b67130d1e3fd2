import math
from types import SimpleNamespace

import pytest
import torch
import torchvision

from benchmark.config import build
from benchmark.data.transforms import CropJitterView
from benchmark.methods.convirt import Convirt, ConvirtConfig, make_head
from benchmark.methods.losses import asymmetric_infonce

CORPUS = SimpleNamespace(
    findings=["Heart size is normal. Lungs are clear. No effusion.", "", "Small left effusion. Mild cardiomegaly."],
    impressions=["No acute disease.", "Stable chest.", "Effusion."],
)
SENTENCES = [
    ["Heart size is normal.", "Lungs are clear.", "No effusion.", "No acute disease."],
    ["Stable chest."],
    ["Small left effusion.", "Mild cardiomegaly.", "Effusion."],
]


@pytest.fixture(scope="module")
def shared() -> Convirt:
    """One model for the read-only tests (building one costs seconds on a loaded CPU)."""
    return make()


def make(**over) -> Convirt:
    values = {"backbone_weights": "none", "image_size": 32, "batch_size": 3, "text_encoder": "tiny-random", **over}
    torch.manual_seed(0)
    model = Convirt(build(ConvirtConfig, values, "test"))
    model.prepare(CORPUS)
    return model


def test_asymmetric_infonce_hand_computed():
    # cosines S = [[1, 1], [0, 0]] (b is rescaled: only directions count); tau 0.1 -> logits 10 S.
    # image->text rows: [10, 10] label 0 and [0, 0] label 1 -> log 2 each.
    # text->image rows of S.T = [[10, 0], [10, 0]]: label 0 -> log(1 + e^-10), label 1 -> log(1 + e^10).
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    b = torch.tensor([[3.0, 0.0], [0.5, 0.0]])
    rows = math.log(2)
    cols = (math.log(1 + math.exp(-10)) + math.log(1 + math.exp(10))) / 2
    loss, i2t, t2i = asymmetric_infonce(a, b, temperature=0.1, weight=0.75)
    assert i2t.item() == pytest.approx(rows, rel=1e-6) and t2i.item() == pytest.approx(cols, rel=1e-6)
    assert loss.item() == pytest.approx(0.75 * rows + 0.25 * cols, rel=1e-6)
    assert loss.item() == pytest.approx(1.769872, abs=1e-5)


def test_text_units_are_the_report_sentences(shared):
    assert [shared.text_units(f, i) for f, i in zip(CORPUS.findings, CORPUS.impressions)] == SENTENCES
    assert shared.bank.count.tolist() == [4, 1, 3]
    report = SimpleNamespace(cfg=SimpleNamespace(text_unit="report"))
    assert Convirt.text_units(report, CORPUS.findings[2], CORPUS.impressions[2]) == [" ".join(SENTENCES[2])]


def test_random_sentence_draw_is_per_sample_and_reproducible(shared):
    model = shared
    model.generator.manual_seed(model.cfg.seed)
    tokenizer = model.text_tower.tokenizer
    index = torch.tensor([0, 1, 2])
    state = model.rng_state()
    seen = [set(), set(), set()]
    first = []
    for _ in range(30):
        ids, mask = model.drawn_tokens(index)
        first.append(ids)
        for i in range(3):
            text = tokenizer.decode(ids[i][mask[i].bool()], skip_special_tokens=True)
            wanted = [tokenizer.decode(tokenizer(s)["input_ids"], skip_special_tokens=True) for s in SENTENCES[i]]
            assert text in wanted  # a sentence of this sample's own report
            seen[i].add(text)
    assert [len(s) for s in seen] == [4, 1, 3]  # every sentence gets drawn
    model.load_rng_state(state)
    again = [model.drawn_tokens(index)[0] for _ in range(30)]
    assert all(torch.equal(x, y) for x, y in zip(first, again))
    model.generator.manual_seed(model.cfg.seed)  # the generator is seeded from cfg.seed
    assert torch.equal(model.drawn_tokens(index)[0], first[0])


class Boom:
    def __call__(self, *args, **kwargs):
        raise AssertionError("the tokenizer must not run during training_step")


def test_training_step_uses_pretokenised_sentences_and_trains_both_towers():
    model = make(text_freeze_layers=1)
    model.text_tower.tokenizer = Boom()
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    out = model.training_step({"view1": images, "index": torch.tensor([2, 0, 1])})
    assert set(out) == {"loss", "image_text", "text_image"}
    expected = 0.75 * out["image_text"].item() + 0.25 * out["text_image"].item()
    assert out["loss"].item() == pytest.approx(expected, rel=1e-6)
    out["loss"].backward()
    bert = model.text_tower.model
    assert model.backbone.layer4[0].conv1.weight.grad is not None and model.image_head[0].weight.grad is not None
    assert bert.encoder.layer[1].attention.self.query.weight.grad is not None  # trainable layer
    assert bert.encoder.layer[0].attention.self.query.weight.grad is None  # frozen (text_freeze_layers=1)
    assert bert.embeddings.word_embeddings.weight.grad is None


def test_heads_and_joint_space(shared):
    model = shared
    assert [type(m).__name__ for m in model.image_head] == ["Linear", "ReLU", "Linear"]
    assert model.image_head[0].in_features == 2048 and model.image_head[2].out_features == 512
    assert model.text_head[0].in_features == model.text_tower.dim
    bn = make_head("bn", 2048, 128)  # MGCA's head
    assert isinstance(bn[1], torch.nn.BatchNorm1d) and bn[0].out_features == 2048 and bn[-1].num_features == 128
    model.eval()
    with torch.no_grad():
        img = model.embed_images(torch.randn(2, 3, 32, 32))
        txt = model.embed_texts(["no effusion", "cardiomegaly"])
    assert img.shape == txt.shape == (2, 512)
    tok = model.text_tower.tokenize(["small left effusion"])
    with torch.no_grad():
        cls = model.text_tower.model(**tok).last_hidden_state[:, 0]  # text = the [CLS] state -> head
        text = model.text_embedding(tok["input_ids"], tok["attention_mask"])
    assert torch.allclose(text, model.text_head(cls), atol=1e-5)
    assert torch.allclose(img.norm(dim=1), torch.ones(2)) and torch.allclose(txt.norm(dim=1), torch.ones(2))


def test_crop_jitter_view():
    image = torch.randint(0, 256, (36, 36), dtype=torch.uint8).numpy()
    view = CropJitterView(32)
    torch.manual_seed(0)
    x = view(image)
    assert x.shape == (3, 32, 32) and x.min() >= -1 and x.max() <= 1
    torch.manual_seed(0)
    assert torch.equal(view(image), x)  # seeded by the loader per (seed, epoch, index)
    plain = CropJitterView(32, scale=None, flip=False, jitter=0)
    assert [type(t).__name__ for t in plain.augment.transforms] == ["Resize", "RandomCrop"]


def test_two_step_pretraining_through_the_loop():
    from benchmark.factory import resolve
    from benchmark.runner import get_encoder

    pre = get_encoder(resolve("convirt", None, "smoke", [("max_steps", 2)]), None)
    assert pre.meta["steps"] == 2
    header = (pre.path.parent / "losses.csv").read_text().splitlines()[0].split(",")
    assert {"loss", "image_text", "text_image"} <= set(header)
    net = torchvision.models.resnet50()
    net.fc = torch.nn.Identity()
    net.load_state_dict(torch.load(pre.path), strict=True)
