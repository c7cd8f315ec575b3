"""Weight files from other programs: each written here the way that program writes it (seeded random weights),
converted, and checked against an independent forward pass computed from the source tensors."""

from __future__ import annotations

import copy
import pickle
import struct
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import rounding_bound
from torch import Tensor

import singleshot
from singleshot.cli import main
from singleshot.convert.files import VOC_CLASSES, convert_file, detect_format
from singleshot.convert.reading import read_torch_file
from singleshot.convert.ssd_vgg import vgg16_base
from singleshot.ssd import SSD
from singleshot.weights import read_weights

# -- SSD300 as ssd.pytorch and Caffe define it -------------------------------------------------------------
#: (name, in, out, kernel) of the VGG16 body, fc6/fc7 and the extras, in forward order (Caffe names).
BODY = [
    ("conv1_1", 3, 64, 3), ("conv1_2", 64, 64, 3), ("conv2_1", 64, 128, 3), ("conv2_2", 128, 128, 3),
    ("conv3_1", 128, 256, 3), ("conv3_2", 256, 256, 3), ("conv3_3", 256, 256, 3), ("conv4_1", 256, 512, 3),
    ("conv4_2", 512, 512, 3), ("conv4_3", 512, 512, 3), ("conv5_1", 512, 512, 3), ("conv5_2", 512, 512, 3),
    ("conv5_3", 512, 512, 3), ("fc6", 512, 1024, 3), ("fc7", 1024, 1024, 1),
]  # fmt: skip
EXTRAS = [
    ("conv6_1", 1024, 256, 1, 1, 0), ("conv6_2", 256, 512, 3, 2, 1), ("conv7_1", 512, 128, 1, 1, 0),
    ("conv7_2", 128, 256, 3, 2, 1), ("conv8_1", 256, 128, 1, 1, 0), ("conv8_2", 128, 256, 3, 1, 0),
    ("conv9_1", 256, 128, 1, 1, 0), ("conv9_2", 128, 256, 3, 1, 0),
]  # fmt: skip
HEADS = [("conv4_3_norm", 512, 4), ("fc7", 1024, 6), ("conv6_2", 512, 6), ("conv7_2", 256, 6), ("conv8_2", 256, 4),
         ("conv9_2", 256, 4)]  # fmt: skip
LOGITS = 21  # VOC


def _source_tensors(seed: int = 0) -> dict[str, Tensor]:
    """Seeded random SSD300 weights by Caffe layer name: ``NAME.w``, ``NAME.b`` (scaled to keep activations O(1))."""
    g = torch.Generator().manual_seed(seed)
    out: dict[str, Tensor] = {}

    def conv(name: str, cin: int, cout: int, k: int) -> None:
        out[f"{name}.w"] = torch.randn(cout, cin, k, k, generator=g) * (2.0 / (cin * k * k)) ** 0.5
        out[f"{name}.b"] = torch.randn(cout, generator=g) * 0.1

    for name, cin, cout, k in BODY:
        conv(name, cin, cout, k)
    for name, cin, cout, k, _, _ in EXTRAS:
        conv(name, cin, cout, k)
    for name, cin, boxes in HEADS:
        conv(f"{name}_mbox_loc", cin, boxes * 4, 3)
        conv(f"{name}_mbox_conf", cin, boxes * LOGITS, 3)
    out["conv4_3_norm.scale"] = 20.0 + torch.randn(512, generator=g)
    return out


def _independent_forward(t: dict[str, Tensor], x: Tensor) -> tuple[Tensor, Tensor]:
    """SSD300 written out from the paper and the original prototxt, on ``x`` as the network takes it.

    Returns ``(conf (B, 8732, 21), loc (B, 8732, 4))`` flattened per cell, then per box (Caffe's Permute+Flatten).
    """

    def conv(name: str, h: Tensor, padding: int = 1, stride: int = 1, dilation: int = 1) -> Tensor:
        return F.conv2d(h, t[f"{name}.w"], t[f"{name}.b"], stride=stride, padding=padding, dilation=dilation)

    sources = {}
    h = x
    for name, _, _, _ in BODY[:13]:
        h = F.relu(conv(name, h))
        if name == "conv4_3":
            norm = h / (h.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            sources["conv4_3_norm"] = norm * t["conv4_3_norm.scale"].view(1, -1, 1, 1)
        if name in ("conv1_2", "conv2_2", "conv4_3"):
            h = F.max_pool2d(h, 2, 2)
        elif name == "conv3_3":
            h = F.max_pool2d(h, 2, 2, ceil_mode=True)  # 75 -> 38
    h = F.max_pool2d(h, 3, 1, 1)  # pool5
    h = F.relu(conv("fc6", h, padding=6, dilation=6))
    h = F.relu(conv("fc7", h, padding=0))
    sources["fc7"] = h
    for name, _, _, _kernel, stride, pad in EXTRAS:
        h = F.relu(conv(name, h, padding=pad, stride=stride))
        if name.endswith("_2"):
            sources[name] = h
    conf, loc = [], []
    for name, _, _ in HEADS:
        c = conv(f"{name}_mbox_conf", sources[name])
        lo = conv(f"{name}_mbox_loc", sources[name])
        conf.append(c.permute(0, 2, 3, 1).reshape(x.shape[0], -1, LOGITS))
        loc.append(lo.permute(0, 2, 3, 1).reshape(x.shape[0], -1, 4))
    return torch.cat(conf, 1), torch.cat(loc, 1)


def _image() -> Tensor:
    return torch.randint(0, 256, (3, 300, 300), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))


def _check_outputs(model: SSD, source: dict[str, Tensor], bgr: bool) -> None:
    """Our converted model's raw outputs equal the independent forward's on the same input, both in float64: a
    check of the layer mapping needs no float32 noise (float64 rounds ~1e-12 relative through these 23 layers, far
    inside ``assert_close``'s float64 default of 1e-7; a wrong mapping moves outputs by O(1)). Our float32 input
    stage is checked on its own, against its rounding bound."""
    image = _image()
    means = torch.tensor([123.0, 117.0, 104.0], dtype=torch.float64).view(3, 1, 1)  # RGB, both programs' means
    with torch.no_grad():
        x = model.normalize([image])  # float32, as inference runs it
    # (p / 255 - mean) / std: five roundings (the two constants, three operations) of terms up to p + mean
    bound = rounding_bound(image.double() + means, steps=5)
    assert bool(((x[0].double() - (image.double() - means)).abs() <= bound).all())
    x = x.double()
    model = copy.deepcopy(model).double()  # the caller's model stays float32
    with torch.no_grad():
        source64 = {k: v.double() for k, v in source.items()}
        want_conf, want_loc = _independent_forward(source64, x.flip(1) if bgr else x)  # Caffe's nets take BGR
        got_conf, got_loc = model.head_outputs(x)
    assert got_conf.shape == (1, 8732, LOGITS)
    torch.testing.assert_close(got_conf, want_conf)
    torch.testing.assert_close(got_loc, want_loc)
    # head ordering, layer by layer: each layer's slice of our outputs is that layer's flattened output
    start = 0
    for (name, _, boxes), size in zip(HEADS, (38, 19, 10, 5, 3, 1), strict=True):
        end = start + size * size * boxes
        torch.testing.assert_close(got_loc[:, start:end], want_loc[:, start:end], msg=name)
        start = end


def _ssd_pytorch_state(t: dict[str, Tensor]) -> OrderedDict[str, Tensor]:
    """The state dict ssd.pytorch's ``SSD`` module registers: ``vgg``, ``L2Norm``, ``extras``, ``loc``, ``conf``."""
    vgg_index = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28, 31, 33]
    state: OrderedDict[str, Tensor] = OrderedDict()
    for i, (name, *_rest) in zip(vgg_index, BODY, strict=True):
        state[f"vgg.{i}.weight"], state[f"vgg.{i}.bias"] = t[f"{name}.w"], t[f"{name}.b"]
    state["L2Norm.weight"] = t["conv4_3_norm.scale"]
    for i, (name, *_rest) in enumerate(EXTRAS):
        state[f"extras.{i}.weight"], state[f"extras.{i}.bias"] = t[f"{name}.w"], t[f"{name}.b"]
    for kind, suffix in (("loc", "loc"), ("conf", "conf")):
        for i, (name, _, _) in enumerate(HEADS):
            state[f"{kind}.{i}.weight"] = t[f"{name}_mbox_{suffix}.w"]
            state[f"{kind}.{i}.bias"] = t[f"{name}_mbox_{suffix}.b"]
    return state


@pytest.mark.slow
@pytest.mark.numeric
def test_ssd_pytorch_file_converts_to_the_same_outputs_and_boxes(tmp_path: Path) -> None:
    source = _source_tensors()
    path = tmp_path / "ssd300_VOC.pth"
    torch.save(_ssd_pytorch_state(source), path)
    assert detect_format(path) == "ssd-pytorch"
    model, names, _ = convert_file(path)
    assert model.name == "ssd300_vgg16" and names == list(VOC_CLASSES)
    _check_outputs(model, source, bgr=False)
    # ssd.pytorch clamps centres and sizes of its default boxes to [0, 1]: 134 of 8732 boxes move
    plain = singleshot.build("ssd300_vgg16", 20).priors
    assert int((model.priors != plain).any(dim=1).sum()) == 134
    assert float(model.priors.max()) <= 1.0 and float(plain.max()) > 1.0
    # through the command line; the metadata carries the names and the clamped boxes
    out = tmp_path / "converted.safetensors"
    assert main(["convert", str(path), "-o", str(out)]) == 0
    reloaded = singleshot.load(out, device="cpu", backend="pytorch", precision="fp32")
    assert reloaded.names == list(VOC_CLASSES)
    assert torch.equal(reloaded.model.priors, model.priors)


# -- Caffe: a NetParameter encoded here, following caffe.proto's field numbers --------------------------------
def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _blob(t: Tensor) -> bytes:
    dims = b"".join(_varint(d) for d in t.shape)
    shape = _field(1, dims)  # BlobShape.dim, packed
    return _field(7, shape) + _field(5, t.numpy().astype("<f4").tobytes())  # BlobProto.shape, .data (packed)


def _layer(name: str, kind: str, blobs: list[Tensor]) -> bytes:
    body = _field(1, name.encode()) + _field(2, kind.encode()) + b"".join(_field(7, _blob(b)) for b in blobs)
    return _field(100, body)  # NetParameter.layer


def _caffemodel(t: dict[str, Tensor]) -> bytes:
    """The original SSD300's layers with weights (Caffe stores conv4_3_norm's scale as its one blob), BGR input."""
    net = _field(1, b"VGG_VOC0712_SSD_300x300")
    names = [n for n, *_ in BODY] + [n for n, *_ in EXTRAS]
    names += [f"{n}_mbox_{k}" for n, _, _ in HEADS for k in ("loc", "conf")]
    for name in names:
        net += _layer(name, "Convolution", [t[f"{name}.w"], t[f"{name}.b"]])
        if name == "conv4_3":
            net += _layer("conv4_3_norm", "Normalize", [t["conv4_3_norm.scale"]])
    return net


@pytest.mark.slow
@pytest.mark.numeric
def test_caffemodel_converts_to_the_same_outputs(tmp_path: Path) -> None:
    source = _source_tensors(seed=1)
    path = tmp_path / "VGG_VOC0712_SSD_300x300.caffemodel"
    path.write_bytes(_caffemodel(source))
    model, names, _ = convert_file(path)
    assert model.name == "ssd300_vgg16" and names == list(VOC_CLASSES)
    # conv1_1 by hand: the converted weights take RGB, Caffe's took BGR
    assert torch.equal(model.backbone.conv4[0].weight[:, 0], source["conv1_1.w"][:, 2])
    _check_outputs(model, source, bgr=True)


def test_truncated_and_damaged_files_give_clear_errors(tmp_path: Path) -> None:
    small = _field(1, b"net") + _layer("conv1_1", "Convolution", [torch.ones(2, 3, 1, 1), torch.zeros(2)])
    cut = tmp_path / "cut.caffemodel"
    cut.write_bytes(small[:-5])
    with pytest.raises(ValueError, match=r"cut.caffemodel: not a readable caffemodel \(field \d+ claims \d+ bytes"):
        convert_file(cut)
    junk = tmp_path / "junk.caffemodel"
    junk.write_bytes(b"\x0b\x0c")  # wire types 3/4 (groups): not a NetParameter
    with pytest.raises(ValueError, match=r"junk.caffemodel: not a readable caffemodel"):
        convert_file(junk)
    good = tmp_path / "w.pth"
    torch.save({"vgg.0.weight": torch.ones(3)}, good)
    (tmp_path / "cut.pth").write_bytes(good.read_bytes()[:100])
    with pytest.raises(ValueError, match=r"cut.pth: not a readable PyTorch file"):
        read_torch_file(tmp_path / "cut.pth")
    singleshot.weights.save_weights(singleshot.build("ssd_tiny160", 3), tmp_path / "t.safetensors", ["a", "b", "c"])
    data = (tmp_path / "t.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"cut.safetensors: not a readable .safetensors file"):
        read_weights(tmp_path / "cut.safetensors")
    (tmp_path / "huge.safetensors").write_bytes(struct.pack("<Q", 2**60) + b"{}")  # header length beyond the file
    with pytest.raises(ValueError, match=r"huge.safetensors: not a readable .safetensors file"):
        read_weights(tmp_path / "huge.safetensors")


# -- safety --------------------------------------------------------------------------------------------------
class _Trap:
    """Unpickling this object would create a file: what a malicious checkpoint does, harmlessly."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.target), "w"))


def test_a_pickle_that_would_run_code_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "created_by_unpickling.txt"
    path = tmp_path / "evil.pth"
    torch.save({"vgg.0.weight": torch.zeros(1), "payload": _Trap(target)}, path, pickle_protocol=2)
    with pytest.raises(ValueError, match=r"evil.pth: refused: loading it would need arbitrary unpickling"):
        read_torch_file(path)
    with pytest.raises(SystemExit):
        main(["convert", str(path), "-o", str(tmp_path / "out.safetensors")])
    assert not target.exists()  # nothing was executed
    assert not (tmp_path / "out.safetensors").exists()
    with pytest.raises(pickle.UnpicklingError):  # the same file would run code under a plain torch.load
        torch.load(path, weights_only=True)


# -- ImageNet VGG16 base (paper section 3: fc6/fc7 subsampled) ------------------------------------------------
def test_vgg16_base_subsamples_fc6_and_fc7() -> None:
    from torchvision.models import vgg16

    torch.manual_seed(0)
    state = vgg16(weights=None).state_dict()
    base = vgg16_base(state)
    fc6 = state["classifier.0.weight"].view(4096, 512, 7, 7)
    ours6 = base["backbone.fc.1.weight"]
    assert ours6.shape == (1024, 512, 3, 3)
    # by hand: output i is fc6 output 4i; tap (y, x) is fc6 tap (3y, 3x)
    assert ours6[0, 0, 0, 0] == fc6[0, 0, 0, 0]
    assert ours6[1, 5, 2, 1] == fc6[4, 5, 6, 3]
    assert ours6[1023, 511, 1, 2] == fc6[4092, 511, 3, 6]
    assert base["backbone.fc.1.bias"][7] == state["classifier.0.bias"][28]
    ours7 = base["backbone.fc.3.weight"]
    assert ours7.shape == (1024, 1024, 1, 1)
    assert ours7[3, 10, 0, 0] == state["classifier.3.weight"][12, 40]
    assert torch.equal(base["backbone.conv4.0.weight"], state["features.0.weight"])  # conv1_1
    assert torch.equal(base["backbone.conv5.5.weight"], state["features.28.weight"])  # conv5_3
    with pytest.raises(ValueError, match=r"not a torchvision VGG16 state dict"):
        vgg16_base({"features.0.weight": torch.zeros(1)})


# -- torchvision: a saved state dict, and torchvision's weights API -------------------------------------------
def _torchvision_ssdlite_coco() -> torch.nn.Module:
    """torchvision's SSDLite with COCO's 91 label slots and seeded weights of order 1."""
    from test_torchvision_parity import randomise_torchvision
    from torchvision.models.detection import ssdlite320_mobilenet_v3_large

    torch.manual_seed(0)
    model = ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=91).eval()
    randomise_torchvision(model)
    return model


@pytest.mark.numeric
def test_torchvision_coco_file_keeps_the_80_named_classes(tmp_path: Path) -> None:
    from torchvision.models.detection import SSD300_VGG16_Weights

    reference = _torchvision_ssdlite_coco()
    path = tmp_path / "ssdlite_coco.pth"
    torch.save(reference.state_dict(), path)
    model, names, _ = convert_file(path)
    coco = SSD300_VGG16_Weights.COCO_V1.meta["categories"]
    kept = [i for i, n in enumerate(coco) if n != "N/A"]
    assert len(names) == 80 and names[0] == "person" and "N/A" not in names and names[-1] == "toothbrush"
    x = torch.randn(1, 3, 320, 320)
    model.use_channels_last(False)
    with torch.no_grad():
        want = reference.head(list(reference.backbone(x).values()))
        cls_logits, bbox_regression = model.head_outputs(x)
    torch.testing.assert_close(bbox_regression, want["bbox_regression"])
    torch.testing.assert_close(cls_logits, want["cls_logits"][..., kept])  # the named slots, background first


def test_torchvision_weights_api_from_its_cache_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import urllib.error

    from torchvision.models.detection import SSDLite320_MobileNet_V3_Large_Weights

    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("no network")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)  # offline even where CI has a network
    url = SSDLite320_MobileNet_V3_Large_Weights.COCO_V1.url
    spec = "torchvision:ssdlite320_mobilenet_v3_large"
    with pytest.raises(ValueError, match=r"could not download .*put it at .*torch/hub/checkpoints/ssdlite320"):
        convert_file(spec)  # no network here: the error says which file to fetch and where
    cached = tmp_path / "torch" / "hub" / "checkpoints" / Path(url).name
    cached.parent.mkdir(parents=True, exist_ok=True)
    torch.save(_torchvision_ssdlite_coco().state_dict(), cached)  # as torchvision's download would leave it
    detector = singleshot.load(spec, device="cpu")
    assert detector.name == "ssdlite320_mobilenet_v3" and len(detector.names) == 80
    result = detector.predict(torch.randint(0, 256, (3, 200, 240), dtype=torch.uint8), conf=0.5)[0]
    assert result.orig_size == (200, 240)


@pytest.mark.numeric
def test_folded_first_conv_sees_what_imagenet_vgg16_saw(tmp_path: Path) -> None:
    """``--base``: conv1_1 on our normalisation equals torchvision's conv1_1 on ImageNet's, inside the image."""
    from torchvision.models import vgg16

    from singleshot.convert.bases import imagenet_base
    from singleshot.convert.ssd_vgg import IMAGENET_NORMALISATION

    torch.manual_seed(0)
    reference = vgg16(weights=None).eval()
    path = tmp_path / "vgg16.pth"
    torch.save(reference.state_dict(), path)
    model = singleshot.build("ssd300_vgg16", 3)
    p = model.preprocessing
    base = imagenet_base(str(path), model.name, (p.mean, p.std))
    model.load_state_dict(base, strict=False)
    image = torch.rand(1, 3, 300, 300)
    mean, std = (torch.tensor(v, dtype=torch.float64).view(1, 3, 1, 1) for v in IMAGENET_NORMALISATION)
    conv = reference.features[0]
    with torch.no_grad():
        want = F.conv2d((image.double() - mean) / std, conv.weight.double(), conv.bias.double(), padding=1)
        got = model.backbone.conv4[0](model.normalize([image[0]]))
    # float32 rounding of our side: the input's five roundings (relative to (p + mean) / std), the folded weights'
    # four and the bias's 28 (a sum of 27 products), the convolution's 28: 65 steps on the absolute-value sums
    ours = model.backbone.conv4[0]
    ours_mean, ours_std = (torch.tensor(v, dtype=torch.float64).view(1, 3, 1, 1) for v in (p.mean, p.std))
    shift = ((ours_mean - mean) / std).abs()  # what the fold adds to the bias, per input channel
    magnitude = F.conv2d((image.double() + ours_mean) / ours_std, ours.weight.abs().double(), padding=1)
    magnitude += conv.bias.abs().double().view(1, -1, 1, 1)
    magnitude += (conv.weight.abs().double() * shift).sum(dim=(1, 2, 3)).view(1, -1, 1, 1)
    error = (got.double() - want)[..., 1:-1, 1:-1]  # the zero padding at the borders differs (see the fold)
    assert bool((error.abs() <= rounding_bound(magnitude[..., 1:-1, 1:-1], steps=65)).all())
    with pytest.raises(ValueError, match=r"fits the VGG16 SSDs, not ssd_tiny160"):
        imagenet_base(str(path), "ssd_tiny160", (p.mean, p.std))
    with pytest.raises(SystemExit):  # offline: the error names the file to fetch
        main(["train", "--model", "ssd300_vgg16", "--base", str(tmp_path / "missing.pth"), "--epochs", "1"])


@pytest.mark.numeric
def test_reduced_fc_caffemodel_base(tmp_path: Path) -> None:
    """``--base VGG_ILSVRC_16_layers_fc_reduced.caffemodel``: the original work's base, BGR input."""
    from singleshot.convert.bases import imagenet_base

    source = _source_tensors(seed=2)
    net = _field(1, b"VGG_ILSVRC_16_layers_fc_reduced")
    for name, *_rest in BODY:
        net += _layer(name, "Convolution", [source[f"{name}.w"], source[f"{name}.b"]])
    path = tmp_path / "VGG_ILSVRC_16_layers_fc_reduced.caffemodel"
    path.write_bytes(net)
    model = singleshot.build("ssd300_vgg16", 3)
    p = model.preprocessing
    model.load_state_dict(imagenet_base(str(path), model.name, (p.mean, p.std)), strict=False)
    assert torch.equal(model.backbone.fc[1].weight, source["fc6.w"])  # already reduced: taken as it is
    image = _image()
    means = torch.tensor([104.0, 117.0, 123.0], dtype=torch.float64).view(3, 1, 1)
    w, b = source["conv1_1.w"].double(), source["conv1_1.b"].double()
    with torch.no_grad():
        want = F.conv2d((image.double().flip(0) - means)[None], w, b, padding=1)  # Caffe: BGR minus its means
        got = model.backbone.conv4[0](model.normalize([image]))
    # float32 rounding of our side: the input's five (relative to pixel + mean), the 27 products' sum and the bias
    magnitude = F.conv2d((image.double().flip(0) + means)[None], w.abs(), b.abs(), padding=1)
    assert bool(((got.double() - want).abs() <= rounding_bound(magnitude, steps=33)).all())


def test_ssd512_caffemodel_maps_every_layer(tmp_path: Path) -> None:
    """SSD512 (7 heads, conv10_2): every layer of the original's names lands in ssd512_vgg16 (strict load)."""
    from singleshot.convert.ssd_vgg import L2NORM, VGG_BODY, extra_layers, head_layers

    ours = singleshot.build("ssd512_vgg16", 20).state_dict()
    g = torch.Generator().manual_seed(4)
    net = _field(1, b"VGG_VOC0712_SSD_512x512")
    for name, prefix in (VGG_BODY | extra_layers(5) | head_layers(7)).items():
        w, b = ours[f"{prefix}.weight"], ours[f"{prefix}.bias"]
        net += _layer(name, "Convolution", [torch.randn(w.shape, generator=g), torch.randn(b.shape, generator=g)])
    net += _layer(L2NORM[0], "Normalize", [torch.randn(512, generator=g)])
    path = tmp_path / "ssd512.caffemodel"
    path.write_bytes(net)
    model, names, _ = convert_file(path)
    assert model.name == "ssd512_vgg16" and names == list(VOC_CLASSES) and model.priors.shape == (24564, 4)


def test_vgg16_bn_and_mobilenet_bases(tmp_path: Path) -> None:
    """``--base`` for ``ssd300_vgg16_bn`` (torchvision's vgg16_bn) and SSDLite (mobilenet_v3_large): layers land
    where our backbones, cut from the same torchvision layer lists, hold them."""
    from torchvision.models import mobilenet_v3_large, vgg16_bn

    from singleshot.convert.bases import imagenet_backbone

    torch.manual_seed(0)
    state = vgg16_bn(weights=None).state_dict()
    state["features.41.running_mean"].normal_()  # conv5_3's batch norm, made recognisable
    path = tmp_path / "vgg16_bn.pth"
    torch.save(state, path)
    model = singleshot.build("ssd300_vgg16_bn", 3)
    tensors, report = imagenet_backbone(str(path), model)
    model.load_state_dict(tensors, strict=False)
    assert "93/" in report  # 13 convolutions + 13 batch norms + fc6/fc7 weights
    assert torch.equal(model.backbone.conv5[7].weight, state["features.40.weight"])  # conv5_3 (pool4 is 33)
    assert torch.equal(model.backbone.conv5[8].running_mean, state["features.41.running_mean"])
    assert torch.equal(model.backbone.fc[4].weight[5, 7, 0, 0], state["classifier.3.weight"][20, 28])

    net = mobilenet_v3_large(weights=None)
    path = tmp_path / "mobilenet.pth"
    torch.save(net.state_dict(), path)
    lite = singleshot.build("ssdlite320_mobilenet_v3", 3)
    tensors, report = imagenet_backbone(str(path), lite)
    lite.load_state_dict(tensors, strict=False)
    assert len(tensors) > 200 and "reduced last stage" in report
    assert torch.equal(lite.backbone.body[0][0][0].weight, net.features[0][0].weight)  # the stem
    c5 = 13  # torchvision's MobileNetV3-Large: features[13] is the first stride-32 block
    assert torch.equal(lite.backbone.body[0][c5][0].weight, net.features[c5].block[0][0].weight)  # C5 expansion
    assert torch.equal(lite.backbone.body[1][0][0][0].weight, net.features[c5].block[1][0].weight)  # C5 depthwise
