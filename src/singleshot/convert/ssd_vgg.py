"""The VGG16 SSD's layers by role, and the weights of the programs that share its layout: ssd.pytorch's SSD300
and the original Caffe SSD300/SSD512 (:mod:`singleshot.convert.caffe` reads those files), plus torchvision's
ImageNet VGG16 as a base network (paper section 3, "Base network": fc6/fc7 subsampled).

Every layer is mapped by its role (the Caffe prototxt's layer name), never by the order in which a program
registers its parameters: ssd.pytorch, Caffe and ours register them in different orders.

Head layout: all three emit, per feature-map cell (row-major), the cell's default boxes in the Caffe order (min
square, sqrt(min * max) square, then each ratio r followed by 1/r), each with its 4 offsets or C + 1 scores:
Caffe by ``Permute(0, 2, 3, 1)`` + ``Flatten`` after each ``*_mbox_loc``/``*_mbox_conf`` convolution, ssd.pytorch
by ``permute(0, 2, 3, 1).view(B, -1, K)``, ours by :func:`singleshot.head._flatten`. So head weights copy over
unchanged; the tests check the ordering by comparing every layer's flattened outputs with an independent forward.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor
from torchvision.models.vgg import cfgs, make_layers

#: Caffe layer name -> our parameter prefix (VGG16 body, fc6/fc7, L2Norm).
VGG_BODY = {
    "conv1_1": "backbone.conv4.0",
    "conv1_2": "backbone.conv4.2",
    "conv2_1": "backbone.conv4.5",
    "conv2_2": "backbone.conv4.7",
    "conv3_1": "backbone.conv4.10",
    "conv3_2": "backbone.conv4.12",
    "conv3_3": "backbone.conv4.14",
    "conv4_1": "backbone.conv4.17",
    "conv4_2": "backbone.conv4.19",
    "conv4_3": "backbone.conv4.21",
    "conv5_1": "backbone.conv5.1",
    "conv5_2": "backbone.conv5.3",
    "conv5_3": "backbone.conv5.5",
    "fc6": "backbone.fc.1",
    "fc7": "backbone.fc.3",
}
L2NORM = ("conv4_3_norm", "backbone.l2norm.weight")
#: Source feature map of each head, in order (SSD300 has the first six; SSD512 adds conv10_2).
HEAD_SOURCES = ("conv4_3_norm", "fc7", "conv6_2", "conv7_2", "conv8_2", "conv9_2", "conv10_2")
#: ssd.pytorch's ``vgg`` ModuleList index of each convolution (ReLUs and pools take the other indices).
SSD_PYTORCH_VGG = {
    0: "conv1_1", 2: "conv1_2", 5: "conv2_1", 7: "conv2_2", 10: "conv3_1", 12: "conv3_2", 14: "conv3_3",
    17: "conv4_1", 19: "conv4_2", 21: "conv4_3", 24: "conv5_1", 26: "conv5_2", 28: "conv5_3", 31: "fc6", 33: "fc7",
}  # fmt: skip  # a table, several entries to a line
#: torchvision's ImageNet normalisation (``VGG16_Weights.IMAGENET1K_V1``), RGB on [0, 1].
IMAGENET_NORMALISATION = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def extra_layers(count: int) -> dict[str, str]:
    """Caffe names of the extra layers (``conv6_1``, ``conv6_2``, ...) -> our parameter prefixes."""
    out = {}
    for k in range(count):
        out[f"conv{6 + k}_1"] = f"backbone.extras.{k}.0"
        out[f"conv{6 + k}_2"] = f"backbone.extras.{k}.2"
    return out


def head_layers(count: int) -> dict[str, str]:
    """Caffe names of the head layers (``conv4_3_norm_mbox_loc``, ...) -> our parameter prefixes."""
    out = {}
    for k, source in enumerate(HEAD_SOURCES[:count]):
        out[f"{source}_mbox_loc"] = f"head.reg.{k}"
        out[f"{source}_mbox_conf"] = f"head.cls.{k}"
    return out


def model_name(num_heads: int) -> str:
    """``ssd300_vgg16`` (6 heads) or ``ssd512_vgg16`` (7 heads)."""
    names = {6: "ssd300_vgg16", 7: "ssd512_vgg16"}
    if num_heads not in names:
        raise ValueError(f"a VGG16 SSD has 6 (SSD300) or 7 (SSD512) heads, this one has {num_heads}")
    return names[num_heads]


Normalisation = tuple[tuple[float, ...], tuple[float, ...]]  # (mean, std) of RGB pixels in [0, 1]


def from_ssd_pytorch(state_dict: Mapping[str, Tensor], source: str = "state dict") -> tuple[dict[str, Tensor], str]:
    """ssd.pytorch's SSD state dict (``vgg.N.*``, ``L2Norm.weight``, ``extras.N.*``, ``loc.N.*``, ``conf.N.*``)
    as ours; returns the tensors and our model's name.

    Raises:
        ValueError: a key with no place in our model, or a missing one (the message names them).
    """
    heads = len({k.split(".")[1] for k in state_dict if k.startswith("loc.")})
    name = model_name(heads)
    rename: dict[str, str] = {f"vgg.{i}": VGG_BODY[layer] for i, layer in SSD_PYTORCH_VGG.items()}
    # ssd.pytorch's k-th extra convolution is the k-th of conv6_1, conv6_2, conv7_1, ...
    for k, ours in enumerate(extra_layers(heads - 2).values()):
        rename[f"extras.{k}"] = ours
    for k in range(heads):
        rename[f"loc.{k}"] = f"head.reg.{k}"
        rename[f"conf.{k}"] = f"head.cls.{k}"
    out: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        if key == "L2Norm.weight":
            out[L2NORM[1]] = value
            continue
        prefix, _, leaf = key.rpartition(".")
        if prefix not in rename:
            raise ValueError(f"{source}: key '{key}' has no counterpart in {name}: is this an ssd.pytorch SSD?")
        out[f"{rename[prefix]}.{leaf}"] = value
    return out, name


def torchvision_features_map(batch_norm: bool) -> dict[str, str]:
    """torchvision's ``vgg16(_bn).features.N`` -> our backbone prefix, derived from torchvision's own layer list
    (which our :class:`~singleshot.models.vgg.VGGBackbone` is cut from: ``conv4`` up to pool4, ``conv5`` from it)."""
    features = make_layers(cfgs["D"], batch_norm=batch_norm)
    pools = [i for i, m in enumerate(features) if isinstance(m, torch.nn.MaxPool2d)]
    return {
        f"features.{i}": f"backbone.conv4.{i}" if i < pools[3] else f"backbone.conv5.{i - pools[3]}"
        for i in range(pools[4])
    }


def vgg16_base(
    state_dict: Mapping[str, Tensor], source: str = "state dict", batch_norm: bool = False
) -> dict[str, Tensor]:
    """Our SSD backbone's VGG16 layers from torchvision's ImageNet ``vgg16`` (or ``vgg16_bn``) state dict
    (``features.N``, ``classifier.0`` = fc6, ``classifier.3`` = fc7), with fc6/fc7 turned into convolutions by
    subsampling (paper section 3, the original's "reduced fc" VGG16):

    * fc6 ``(4096, 512*7*7)`` -> ``(1024, 512, 3, 3)``: every 4th output, every 3rd spatial tap (rows and columns
      0, 3, 6 of the 7x7 window); the 3x3 kernel then runs with dilation 6 (``atrous``);
    * fc7 ``(4096, 4096)`` -> ``(1024, 1024, 1, 1)``: every 4th output and every 4th input.

    With ``batch_norm`` the features' batch norms come too; our fc6/fc7 are then followed by fresh batch norms
    and have no bias, so only their weights are given.

    Raises:
        ValueError: the file is not a torchvision VGG16 (a missing or misshapen layer is named).
    """
    rename = torchvision_features_map(batch_norm)
    out: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        prefix, _, leaf = key.rpartition(".")
        if prefix in rename:
            out[f"{rename[prefix]}.{leaf}"] = value
    try:
        fc6_w, fc6_b = state_dict["classifier.0.weight"], state_dict["classifier.0.bias"]
        fc7_w, fc7_b = state_dict["classifier.3.weight"], state_dict["classifier.3.bias"]
    except KeyError as exc:
        raise ValueError(f"{source}: not a torchvision VGG16 state dict (no {exc})") from exc
    convs = sum(k.endswith(".weight") and v.ndim == 4 for k, v in out.items())
    if convs != 13 or tuple(fc6_w.shape) != (4096, 512 * 7 * 7) or tuple(fc7_w.shape) != (4096, 4096):
        kind = "vgg16_bn" if batch_norm else "vgg16"
        raise ValueError(f"{source}: not torchvision's {kind} ({convs} of 13 convolutions, fc6 {tuple(fc6_w.shape)})")
    fc6, fc7 = ("backbone.fc.1", "backbone.fc.4") if batch_norm else ("backbone.fc.1", "backbone.fc.3")
    out[f"{fc6}.weight"] = fc6_w.view(4096, 512, 7, 7)[0::4, :, 0::3, 0::3].contiguous()
    out[f"{fc7}.weight"] = fc7_w[0::4, 0::4].reshape(1024, 1024, 1, 1).contiguous()
    if not batch_norm:
        out[f"{fc6}.bias"] = fc6_b[0::4].contiguous()
        out[f"{fc7}.bias"] = fc7_b[0::4].contiguous()
    return out


def fold_input_normalisation(
    tensors: dict[str, Tensor],
    trained: Normalisation,
    ours: Normalisation,
) -> dict[str, Tensor]:
    """conv1_1 rescaled so that it sees, on our normalisation ``ours = (mean, std)``, what it was trained to see
    on ``trained = (mean, std)`` (both on [0, 1] RGB pixels): per input channel ``x_trained = a x_ours + b`` with
    ``a = std_ours / std_trained`` and ``b = (mean_ours - mean_trained) / std_trained``, so ``W' = a W`` and the
    bias gains ``sum W b``. Exact inside the image; the zero padding at the borders differs by ``b``."""
    key = VGG_BODY["conv1_1"]
    w, bias = tensors[f"{key}.weight"], tensors[f"{key}.bias"]
    a = (torch.tensor(ours[1]) / torch.tensor(trained[1])).view(1, 3, 1, 1)
    b = ((torch.tensor(ours[0]) - torch.tensor(trained[0])) / torch.tensor(trained[1])).view(1, 3, 1, 1)
    return tensors | {f"{key}.weight": (w * a).contiguous(), f"{key}.bias": bias + (w * b).sum(dim=(1, 2, 3))}


def bgr_first_conv(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """Reverse conv1_1's input channels: a network trained on BGR pixels then takes RGB ones (Caffe's models)."""
    key = f"{VGG_BODY['conv1_1']}.weight"
    return tensors | {key: torch.flip(tensors[key], dims=[1]).contiguous()}
