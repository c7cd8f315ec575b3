from pathlib import Path

import pytest
import torch
from conftest import randomise_weights
from torchvision.ops import nms

from singleshot.boxes import cxcywh_to_xyxy, decode
from singleshot.models import build
from singleshot.postprocess import PostProcessor, PostSettings
from singleshot.predict.loading import load_model
from singleshot.ssd import SSD

#: compares float results of kernels: `make test` runs these again under other kernel choices
pytestmark = pytest.mark.numeric


def _reference(logits, offsets, priors, sizes, thr, nms_thr, cand, top):
    """A plain per-image, per-class loop: the textbook SSD post-processing (``thr``: one threshold, or one per
    class)."""
    out = []
    for b in range(logits.shape[0]):
        h, w = sizes[b]
        scores = logits[b].softmax(-1)
        boxes = decode(offsets[b], priors).clamp(0, 1) * torch.tensor([w, h, w, h])
        all_boxes, all_scores, all_labels = [], [], []
        for c in range(1, logits.shape[-1]):
            s = scores[:, c]
            keep = s > (thr[c - 1] if isinstance(thr, list) else thr)
            s, bx = s[keep], boxes[keep]
            s, idx = s.topk(min(cand, s.numel()))
            bx = bx[idx]
            k = nms(bx, s, nms_thr)
            all_boxes.append(bx[k])
            all_scores.append(s[k])
            all_labels.append(torch.full((k.numel(),), c))
        s = torch.cat(all_scores)
        order = s.argsort(descending=True)[:top]
        out.append({"boxes": torch.cat(all_boxes)[order], "scores": s[order], "labels": torch.cat(all_labels)[order]})
    return out


@pytest.mark.parametrize("candidates", [100, 500])  # some classes over the cap (top-k path) / none (sparse path)
def test_matches_a_per_class_loop(candidates: int) -> None:
    g = torch.Generator().manual_seed(0)
    priors = torch.cat([torch.rand(500, 2, generator=g), torch.rand(500, 2, generator=g) * 0.3 + 0.02], 1)
    logits = torch.randn(3, 500, 6, generator=g) * 2
    offsets = torch.randn(3, 500, 4, generator=g)
    sizes = [(300, 300), (480, 640), (100, 50)]
    ours = PostProcessor(PostSettings(0.05, 0.45, 50, candidates))(logits, offsets, sizes, priors_cxcywh=priors)
    ref = _reference(logits, offsets, priors, sizes, 0.05, 0.45, candidates, 50)
    for a, b in zip(ours, ref, strict=True):
        assert a["boxes"].shape == (50, 4)
        torch.testing.assert_close(a["scores"], b["scores"])
        torch.testing.assert_close(a["boxes"], b["boxes"])
        assert torch.equal(a["labels"], b["labels"])


def test_hand_case_nms_threshold_and_scaling() -> None:
    priors = torch.tensor([[0.5, 0.5, 0.4, 0.4], [0.52, 0.5, 0.4, 0.4], [0.2, 0.2, 0.1, 0.1]])
    logits = torch.log(
        torch.tensor(
            [
                [[0.1, 0.9, 0.0], [0.2, 0.8, 0.0], [0.0, 0.5, 0.5]],
            ]
        )
        + 1e-12
    )
    post = PostProcessor(PostSettings(conf=0.3, iou=0.45))
    out = post(logits, torch.zeros(1, 3, 4), [(200, 400)], priors_cxcywh=priors)[0]
    # prior 1 overlaps prior 0 (same class 1, lower score): suppressed. Prior 2 scores 0.5 for classes 1 and 2.
    assert out["labels"].tolist() == [1, 1, 2]
    torch.testing.assert_close(out["scores"], torch.tensor([0.9, 0.5, 0.5]))
    expected_first = cxcywh_to_xyxy(priors[0]) * torch.tensor([400.0, 200.0, 400.0, 200.0])
    torch.testing.assert_close(out["boxes"][0], expected_first)
    torch.testing.assert_close(out["boxes"][1], torch.tensor([60.0, 30.0, 100.0, 50.0]))


def test_boxes_are_clipped_and_nothing_passes_a_high_threshold() -> None:
    priors = torch.tensor([[0.95, 0.95, 0.5, 0.5]])
    logits = torch.tensor([[[0.0, 5.0]]])
    out = PostProcessor()(logits, torch.zeros(1, 1, 4), [(100, 100)], priors_cxcywh=priors)[0]
    torch.testing.assert_close(out["boxes"], torch.tensor([[70.0, 70.0, 100.0, 100.0]]))
    empty = PostProcessor()(logits, torch.zeros(1, 1, 4), [(100, 100)], PostSettings(conf=0.999), priors)[0]
    assert empty["boxes"].shape == (0, 4) and empty["scores"].shape == (0,) and empty["labels"].dtype == torch.int64


def test_scores_sorted_and_capped_per_image() -> None:
    g = torch.Generator().manual_seed(3)
    priors = torch.cat([torch.rand(2000, 2, generator=g), torch.full((2000, 2), 0.01)], 1)
    out = PostProcessor(PostSettings(conf=0.0))(
        torch.randn(2, 2000, 21, generator=g), torch.zeros(2, 2000, 4), [(300, 300)] * 2, priors_cxcywh=priors
    )
    for det in out:
        assert det["scores"].numel() == 200
        assert torch.all(det["scores"][:-1] >= det["scores"][1:])


def test_settings_are_checked_once_frozen_and_written_under_the_files_keys() -> None:
    for bad, message in (({"conf": 1.5}, "conf=1.5"), ({"iou": -0.1}, "iou=-0.1"), ({"max_det": 0}, "max_det=0")):
        with pytest.raises(ValueError, match=message):
            PostSettings(**bad)
    settings = PostSettings(conf=0.2, iou=0.5, max_det=20, candidates=50)
    with pytest.raises(AttributeError):
        settings.conf = 0.3  # type: ignore[misc]  # frozen: the assignment is what is tested
    assert {settings, settings.replace(conf=0.2)} == {settings}  # hashable, equal by value
    with pytest.raises(ValueError, match="conf=2"):
        settings.replace(conf=2)
    # the keys weight and ONNX files have carried since the first ones written
    written = PostProcessor(settings).to_metadata()
    assert written == {"score_threshold": 0.2, "nms_threshold": 0.5, "candidates_per_class": 50,
                       "detections_per_image": 20, "variances": [0.1, 0.2]}  # fmt: skip  # one dict, two lines
    assert PostProcessor.from_metadata(written).settings == settings
    with pytest.raises(ValueError, match="unknown post-processing settings"):
        PostProcessor.from_metadata({"conf": 0.2})


@pytest.mark.parametrize("candidates", [100, 500])  # the top-k path and the sparse path
def test_per_class_thresholds_match_a_per_class_loop_and_equal_ones_the_global_path(candidates: int) -> None:
    g = torch.Generator().manual_seed(1)
    priors = torch.cat([torch.rand(500, 2, generator=g), torch.rand(500, 2, generator=g) * 0.3 + 0.02], 1)
    logits, offsets = torch.randn(2, 500, 6, generator=g) * 2, torch.randn(2, 500, 4, generator=g)
    sizes = [(300, 300), (480, 640)]
    per_class = PostSettings(0.05, 0.45, 50, candidates, class_conf=(0.3, None, 0.1, 0.6, 0.02))
    ours = PostProcessor()(logits, offsets, sizes, per_class, priors)
    ref = _reference(logits, offsets, priors, sizes, [0.3, 0.05, 0.1, 0.6, 0.02], 0.45, candidates, 50)
    for a, b in zip(ours, ref, strict=True):
        torch.testing.assert_close(a["scores"], b["scores"])
        torch.testing.assert_close(a["boxes"], b["boxes"])
        assert torch.equal(a["labels"], b["labels"])
        limits = torch.tensor([0.3, 0.05, 0.1, 0.6, 0.02])[a["labels"] - 1]
        assert bool((a["scores"] > limits).all()) and set(a["labels"].tolist()) == {1, 2, 3, 4, 5}
    same = PostSettings(0.2, 0.45, 50, candidates, class_conf=(0.2,) * 5)
    equal = PostProcessor()(logits, offsets, sizes, same, priors)
    one = PostProcessor()(logits, offsets, sizes, same.replace(class_conf=None), priors)
    for a, b in zip(equal, one, strict=True):
        assert len(a["scores"]) > 0 and all(torch.equal(a[k], b[k]) for k in ("boxes", "scores", "labels"))


def test_per_class_thresholds_keep_exactly_the_scores_above_their_class() -> None:
    # decoded input (an exported model's): 4 disjoint boxes, class probabilities given; background is the rest
    boxes = torch.tensor([[[0.0, 0.0, 0.1, 0.1], [0.2, 0.2, 0.3, 0.3], [0.4, 0.4, 0.5, 0.5], [0.6, 0.6, 0.7, 0.7]]])
    fg = torch.tensor([[[0.6, 0.0], [0.4, 0.0], [0.0, 0.4], [0.0, 0.2]]])
    probabilities = torch.cat([1 - fg.sum(-1, keepdim=True), fg], -1)
    post = PostProcessor()

    def kept(settings: PostSettings) -> list[tuple[int, float]]:
        (d,) = post(probabilities, boxes, [(100, 100)], settings)
        return list(zip(d["labels"].tolist(), [round(s, 3) for s in d["scores"].tolist()], strict=True))

    assert kept(PostSettings(conf=0.3)) == [(1, 0.6), (1, 0.4), (2, 0.4)]
    assert kept(PostSettings(conf=0.3, class_conf=(0.5, None))) == [(1, 0.6), (2, 0.4)]  # None: conf, for class 2
    assert kept(PostSettings(conf=0.5, class_conf=(0.1, 0.1))) == [(1, 0.6), (1, 0.4), (2, 0.4), (2, 0.2)]
    assert kept(PostSettings(class_conf=(0.35, 0.45))) == [(1, 0.6), (1, 0.4)]
    assert kept(PostSettings(conf=0.0, class_conf=(0.5, 0.3), classes=(2,))) == [(2, 0.4)]  # classes still apply
    with pytest.raises(ValueError, match="class_conf has 3 thresholds for a model of 2 classes"):
        kept(PostSettings(class_conf=(0.1, 0.2, 0.3)))


def test_per_class_thresholds_are_checked_hashable_and_carried_by_files_beside_the_settings() -> None:
    with pytest.raises(ValueError, match=r"class_conf \[1\.5\] must be in \[0, 1\]"):
        PostSettings(class_conf=(0.2, 1.5))
    given = PostSettings(class_conf=[0.25, None, 1])  # type: ignore[arg-type]  # a JSON list, as files give it
    assert given.class_conf == (0.25, None, 1.0) and hash(given) == hash(PostSettings(class_conf=(0.25, None, 1.0)))
    post = PostProcessor(PostSettings(conf=0.01, max_det=100), class_conf=[0.4, None, 0.7])
    written = post.to_metadata()
    assert written["class_score_thresholds"] == [0.4, None, 0.7]
    read = PostProcessor.from_metadata(written)
    assert read.class_conf == (0.4, None, 0.7) and read.settings == PostSettings(conf=0.01, max_det=100)
    assert "class_score_thresholds" not in PostProcessor(post.settings).to_metadata()
    old = {k: v for k, v in written.items() if k != "class_score_thresholds"}  # a file written without them
    assert PostProcessor.from_metadata(old).class_conf is None
    with pytest.raises(ValueError, match=r"class_conf \[2\.0\] must be in"):
        PostProcessor(class_conf=[2.0])


def test_prediction_uses_the_weights_thresholds_unless_given_a_conf() -> None:
    own = PostSettings(conf=0.01, max_det=100, candidates=200)
    carrying = PostProcessor(own, class_conf=(0.4, None))
    assert carrying.predict_settings(iou=0.5) == own.replace(conf=0.25, class_conf=(0.4, None), iou=0.5)
    assert carrying.predict_settings(0.6, max_det=3) == own.replace(conf=0.6, max_det=3)  # a conf overrides them all
    assert PostProcessor(own).predict_settings() == own.replace(conf=0.25)  # none carried: PREDICT's 0.25
    assert carrying.settings == own  # the model's own settings (evaluation's) do not use them


def _head_outputs(model: SSD, count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    images = [torch.randint(0, 256, (3, *model.preprocessing.image_size), dtype=torch.uint8, generator=g)
              for _ in range(count)]  # fmt: skip
    with torch.no_grad():
        return model.head_outputs(model.normalize(images))


@pytest.mark.parametrize("iou", [0.45, 0.02])  # 0.02: few boxes kept per class, so NMS's candidate list grows
def test_an_untrained_models_thousands_of_candidates_give_the_per_class_loops_detections(iou: float) -> None:
    # an untrained SSDLite of 20 classes at its own settings (torchvision's: conf 0.001, 300 candidates per class,
    # 300 detections): every class's 300 best boxes are candidates (6000 per image), of which NMS first sees only
    # each image's best 600 (postprocess.NMS_PREFIX)
    torch.manual_seed(0)
    model = build("ssdlite320_mobilenet_v3", 20).eval()
    randomise_weights(model, [*model.head.cls, *model.head.reg])  # its own init ties every score (1/21)
    logits, offsets = _head_outputs(model, 2, seed=1)
    settings = model.postprocess.settings.replace(iou=iou)
    assert (settings.conf, settings.candidates, settings.max_det) == (0.001, 300, 300)
    assert int((logits.softmax(-1)[..., 1:] > settings.conf).sum()) > 2 * 20 * 300  # dense: every class over its cap
    sizes = [(320, 320), (480, 640)]
    ours = model.postprocess(logits, offsets, sizes, settings, priors_cxcywh=model.priors)
    ref = _reference(logits, offsets, model.priors, sizes, settings.conf, iou, 300, 300)
    for a, b in zip(ours, ref, strict=True):
        assert len(a["scores"]) == (300 if iou == 0.45 else len(b["scores"])) > 200  # 0.02: fewer kept than 300
        assert torch.equal(a["scores"], b["scores"]) and torch.equal(a["labels"], b["labels"])
        assert torch.equal(a["boxes"], b["boxes"])


def test_a_trained_models_detections_equal_the_per_class_loops(trained_tiny: Path) -> None:
    model, _ = load_model(trained_tiny)
    logits, offsets = _head_outputs(model, 3, seed=2)
    for settings in (model.postprocess.settings, model.postprocess.settings.replace(max_det=5)):
        ours = model.postprocess(logits, offsets, [(160, 160)] * 3, settings, priors_cxcywh=model.priors)
        ref = _reference(logits, offsets, model.priors, [(160, 160)] * 3, settings.conf, settings.iou,
                         settings.candidates, settings.max_det)  # fmt: skip
        assert sum(len(d["scores"]) for d in ours) > 0
        for a, b in zip(ours, ref, strict=True):
            assert torch.equal(a["scores"], b["scores"]) and torch.equal(a["labels"], b["labels"])
            assert torch.equal(a["boxes"], b["boxes"])
