"""ResNet backbones from torchvision with one input channel, a chosen stem and width.

The stock ResNet stem (7x7 stride-2 convolution and a max-pool) divides the image
side by four before the first residual stage; for small astronomical cut-outs the
"CIFAR" stem of He et al. (2016, arXiv:1512.03385, §4.2) keeps the detail: a 3x3
stride-1 convolution and no max-pool. It costs 16x the compute of the stock stem,
so ``halved`` (3x3 stride-2, no max-pool) sits in between.
"""

from __future__ import annotations

from torch import nn
from torchvision.models import resnet

__all__ = ["build_backbone", "feature_dim"]

_BLOCKS = {
    "resnet18": (resnet.BasicBlock, [2, 2, 2, 2]),
    "resnet50": (resnet.Bottleneck, [3, 4, 6, 3]),
}


def feature_dim(backbone: str, width: int) -> int:
    """Size of the pooled feature vector of ``build_backbone(backbone, width=width)``."""
    block, _ = _BLOCKS[backbone]
    return 8 * width * block.expansion


def build_backbone(backbone: str = "resnet18", stem: str = "unstrided", width: int = 64) -> nn.Module:
    """Build a torchvision ResNet that maps ``[B, 1, H, W]`` to ``[B, feature_dim]``.

    Args:
        backbone: ``resnet18`` or ``resnet50``.
        stem: ``unstrided``, ``halved`` or ``stock`` (see the module docstring).
        width: channels of the first stage; the stages have width x (1, 2, 4, 8).

    Returns:
        The network, with the classifier replaced by ``nn.Identity``.
    """
    if backbone not in _BLOCKS:
        raise ValueError(f"unknown backbone {backbone!r}; choose from {sorted(_BLOCKS)}")
    block, layers = _BLOCKS[backbone]
    net = resnet.ResNet(block, layers)
    # Rebuild the stages at the requested width (torchvision fixes 64 in __init__).
    net.inplanes = width
    if stem == "unstrided":
        net.conv1 = nn.Conv2d(1, width, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    elif stem == "halved":
        net.conv1 = nn.Conv2d(1, width, kernel_size=3, stride=2, padding=1, bias=False)
        net.maxpool = nn.Identity()
    elif stem == "stock":
        net.conv1 = nn.Conv2d(1, width, kernel_size=7, stride=2, padding=3, bias=False)
    else:
        raise ValueError(f"unknown stem {stem!r}; choose unstrided, halved or stock")
    net.bn1 = nn.BatchNorm2d(width)
    net.layer1 = net._make_layer(block, width, layers[0])
    net.layer2 = net._make_layer(block, 2 * width, layers[1], stride=2)
    net.layer3 = net._make_layer(block, 4 * width, layers[2], stride=2)
    net.layer4 = net._make_layer(block, 8 * width, layers[3], stride=2)
    net.fc = nn.Identity()
    _init_like_torchvision(net)
    return net


def _init_like_torchvision(net: nn.Module) -> None:
    """Re-apply torchvision's ResNet initialisation to the rebuilt modules."""
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)

