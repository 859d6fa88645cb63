import pytest
import torch

from vo_similarity.learn.backbone import build_backbone, feature_dim
from vo_similarity.learn.config import TrainConfig


@pytest.mark.parametrize("stem, side", [("unstrided", 4), ("halved", 2), ("stock", 1)])
def test_stems_keep_one_channel_and_give_features(stem, side):
    net = build_backbone("resnet18", stem, width=8)
    assert net.conv1.in_channels == 1
    feats = net(torch.rand(2, 1, 32, 32))
    assert feats.shape == (2, feature_dim("resnet18", 8)) == (2, 64)
    trunk = torch.nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2,
                                net.layer3, net.layer4)
    assert trunk.eval()(torch.rand(1, 1, 32, 32)).shape[-1] == side


def test_resnet50_width():
    net = build_backbone("resnet50", "stock", width=8)
    assert net(torch.rand(2, 1, 32, 32)).shape == (2, feature_dim("resnet50", 8)) == (2, 256)


def test_bad_names_are_rejected():
    with pytest.raises(ValueError, match="stem"):
        build_backbone("resnet18", "fancy")
    with pytest.raises(ValueError, match="backbone"):
        build_backbone("vgg", "stock")


def test_config_round_trip(tmp_path):
    cfg = TrainConfig(name="m1", category="galaxy").replace(augment={"shear_deg": 3.0}, epochs=7)
    cfg.save(tmp_path / "c.json")
    back = TrainConfig.load(tmp_path / "c.json")
    assert back == cfg and back.augment.shear_deg == 3.0 and back.augment.scale_min == 0.8
    assert back.to_dict()["name"] == "m1" and back.to_dict()["category"] == "galaxy"


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="unknown config keys"):
        TrainConfig.from_dict({"learning_rat": 0.1})
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig(batch_size=1)
    with pytest.raises(ValueError, match="scale_min"):
        TrainConfig().replace(augment={"scale_min": 2.0, "scale_max": 1.0})
