"""Detection (mgca protocol): YOLOv3 target assignment, decode + NMS, mAP on
hand-computed cases, and one smoke run through the CLI."""

import json
import math

import numpy as np
import pytest
import torch

from benchmark.tasks.detection import (
    COCO_ANCHORS,
    MAP_IOU_THRESHOLDS,
    assign_targets,
    decode,
    postprocess,
    scaled_anchors,
    yolo_loss,
)
from benchmark.tasks.metrics import detection_map

GRIDS_416 = [(52, 52), (26, 26), (13, 13)]


def test_anchors_and_thresholds():
    assert scaled_anchors(416).tolist() == [list(map(float, a)) for a in COCO_ANCHORS]
    assert scaled_anchors(224)[8].tolist() == pytest.approx([373 * 224 / 416, 326 * 224 / 416])
    assert MAP_IOU_THRESHOLDS == (0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75)


def test_assignment_one_box_best_anchor_and_ignore():
    # a 44 x 34 box centred at (100, 200), at 416 px (anchors unscaled). Shape IoUs:
    # (62,45): 44*34 / (62*45) = 1496/2790 = 0.536 (best: scale 1, anchor 1);
    # (33,23): 33*23 / (44*34) = 759/1496 = 0.507 > 0.5 (scale 0, anchor 2: ignored);
    # (30,61): 30*34 / (1496 + 1830 - 1020) = 0.442 (no effect).
    box = torch.tensor([[100 - 22, 200 - 17, 44, 34]], dtype=torch.float32)
    t = assign_targets([box], scaled_anchors(416), GRIDS_416, ignore_iou=0.5)
    assert [int(s["obj"].sum()) for s in t] == [0, 1, 0]
    # stride 16: centre (100, 200) / 16 = (6.25, 12.5): cell (x 6, y 12), offsets 0.25, 0.5
    assert t[1]["obj"][0, 1, 12, 6]
    assert t[1]["box"][0, 1, 12, 6].tolist() == pytest.approx([0.25, 0.5, math.log(44 / 62), math.log(34 / 45)])
    assert not t[1]["noobj"][0, 1, 12, 6]
    # the ignored anchor: stride 8, centre / 8 = (12.5, 25) -> cell (x 12, y 25), anchor 2
    assert not t[0]["noobj"][0, 2, 25, 12]
    assert [int((~s["noobj"]).sum()) for s in t] == [1, 1, 0]  # nothing else leaves the no-object loss
    assert all(not s["obj"].any() for s in assign_targets([torch.zeros(0, 4)], scaled_anchors(416), GRIDS_416))


def _raw_from_targets(targets, logit=8.0):
    """Head outputs that encode exactly the assigned targets (everything else: no object)."""
    outs = []
    for t in targets:
        n, a, h, w = t["obj"].shape
        p = torch.zeros(n, a, h, w, 6)
        p[..., 4] = -logit
        tx = t["box"][..., :2].clamp(1e-4, 1 - 1e-4)
        p[..., :2] = torch.log(tx / (1 - tx))
        p[..., 2:4] = t["box"][..., 2:4]
        p[..., 4] = torch.where(t["obj"], torch.tensor(logit), p[..., 4])
        p[..., 5] = logit
        outs.append(p.permute(0, 1, 4, 2, 3).reshape(n, a * 6, h, w))
    return outs


def test_decode_inverts_the_assignment_and_nms_merges_overlaps():
    anchors = scaled_anchors(416)
    box = torch.tensor([[78.0, 183.0, 44.0, 34.0]])
    targets = assign_targets([box], anchors, GRIDS_416)
    raw = _raw_from_targets(targets)
    (boxes, scores), = postprocess(*decode(raw, anchors), conf_threshold=0.5, nms_iou=0.5, image_size=416)
    assert boxes.tolist() == [pytest.approx([78.0, 183.0, 122.0, 217.0], abs=1e-3)]
    assert float(scores[0]) == pytest.approx(torch.sigmoid(torch.tensor(8.0)).item() ** 2)
    # a second, weaker prediction from another anchor of the same cell: a 44 x 34 box
    # centred at (6.5 * 16, 12.5 * 16) = (104, 200), IoU 40 * 34 / (48 * 34) = 0.83
    p1 = raw[1].view(1, 3, 6, 26, 26)
    p1[0, 0, :, 12, 6] = torch.tensor([0.0, 0.0, math.log(44 / 30), math.log(34 / 61), 4.0, 4.0])
    (boxes, scores), = postprocess(*decode(raw, anchors), conf_threshold=0.5, nms_iou=0.5, image_size=416)
    assert len(boxes) == 1 and boxes[0].tolist() == pytest.approx([78.0, 183.0, 122.0, 217.0], abs=1e-3)
    (boxes, _), = postprocess(*decode(raw, anchors), conf_threshold=0.5, nms_iou=0.99, image_size=416)
    assert len(boxes) == 2  # without NMS pressure both survive
    # a perfect prediction's loss is the entropy floor of the BCE on soft xy offsets
    # (0.25, 0.5): H(0.25) + H(0.5); every other term vanishes
    loss = yolo_loss([r.requires_grad_() for r in _raw_from_targets(targets, logit=20.0)], targets)
    loss.backward()
    entropy = lambda q: -(q * math.log(q) + (1 - q) * math.log(1 - q))
    assert loss.detach().item() == pytest.approx(entropy(0.25) + entropy(0.5), abs=1e-3)


GT = np.array([[0.0, 0.0, 10.0, 10.0]])
NONE = np.zeros((0, 4))


def test_map_perfect_and_missed():
    assert detection_map([GT, NONE], [np.array([0.9]), np.zeros(0)], [GT, NONE], MAP_IOU_THRESHOLDS) == 1.0
    # two truths, one found: precision 1 up to recall 0.5 -> 51 of the 101 recall points
    two = np.array([[0, 0, 10, 10], [50, 50, 60, 60]], float)
    assert detection_map([GT], [np.array([0.9])], [two], MAP_IOU_THRESHOLDS) == pytest.approx(51 / 101)
    assert math.isnan(detection_map([GT], [np.array([0.9])], [NONE], MAP_IOU_THRESHOLDS))  # no truth: undefined


def test_map_false_positive_on_a_negative_image_counts_unless_reference():
    fp = np.array([[20.0, 20.0, 30.0, 30.0]])
    preds, scores, truths = [GT, fp], [np.array([0.8]), np.array([0.9])], [GT, NONE]
    # ranked: FP (0.9) then TP (0.8): precision 1/2 at recall 1, interpolated 0.5 everywhere
    assert detection_map(preds, scores, truths, MAP_IOU_THRESHOLDS, count_negatives=True) == pytest.approx(0.5)
    # MGCA's code drops the image without truth, and with it the false positive
    assert detection_map(preds, scores, truths, MAP_IOU_THRESHOLDS, count_negatives=False) == 1.0
    # ...and an image with truth but no detection (a miss that then never counts)
    assert detection_map([GT, NONE], [np.array([0.9]), np.zeros(0)], [GT, GT], MAP_IOU_THRESHOLDS) == pytest.approx(51 / 101)
    assert detection_map([GT, NONE], [np.array([0.9]), np.zeros(0)], [GT, GT], MAP_IOU_THRESHOLDS, False) == 1.0


def test_map_iou_06_counts_up_to_06_only():
    pred = np.array([[0.0, 0.0, 10.0, 6.0]])  # IoU 60 / 100 = 0.6
    assert detection_map([pred], [np.array([0.7])], [GT], (0.6,)) == 1.0
    assert detection_map([pred], [np.array([0.7])], [GT], (0.65,)) == 0.0
    assert detection_map([pred], [np.array([0.7])], [GT], MAP_IOU_THRESHOLDS) == 5 / 8


def test_detection_through_the_cli(capsys):
    from benchmark.cli import main

    base = ["run", "--method", "random", "--task", "rsna_det", "--profile", "smoke", "--fraction", "1", "--json"]
    assert main(base) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["metric"] == "map" and 0 <= result["value"] <= 1
    assert result["metrics"]["train_images"] == 20 and "reference_skips_negatives" not in result["metrics"]
    # a low threshold gives every test image detections, so the reference's skipping leaves images with truth
    assert main([*base, "--set", "count_negatives=false", "--set", "conf_threshold=0.01"]) == 0
    out = (lambda c: c.err + c.out)(capsys.readouterr())
    assert "reference_skips_negatives 1" in out  # the printed "other:" line says the run skipped negatives
    assert json.loads(out.strip().splitlines()[-1])["metrics"]["reference_skips_negatives"] == 1


def test_detection_scores_under_bf16_autocast_reach_numpy(capsys):
    """Issue 28: under CUDA's bf16 autocast the head's scores were bfloat16, which numpy has no type
    for; the CPU's autocast stands in for it here."""
    import torch

    from benchmark.cli import main

    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert main(["run", "--method", "random", "--task", "rsna_det", "--profile", "smoke", "--fraction", "1",
                     "--set", "task.epochs=1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["metric"] == "map" and 0 <= result["value"] <= 1
