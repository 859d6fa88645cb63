"""The shipped checkpoint: export, install, and the recipe it comes from."""

import numpy as np

from vo_similarity.embed.embed import embed_workdir, load_trained
from vo_similarity.learn.train import train


def test_exported_checkpoint_installs_and_embeds_alike(tiny_workdir, tiny_config, tmp_path):
    from vo_similarity.learn.pretrained import export_shipped, install_shipped

    train(tiny_workdir, tiny_config, tiny_workdir.model("tiny"), progress=False)
    full, _ = embed_workdir(tiny_workdir, "tiny", progress=False)
    export_shipped(tiny_workdir.model("tiny"), tmp_path / "data")
    md = install_shipped(tiny_workdir, "from-shipped", source=tmp_path / "data")
    assert load_trained(md)[0].name == "from-shipped"
    half, _ = embed_workdir(tiny_workdir, "from-shipped", progress=False)
    assert np.abs(half - full).max() < 2e-2


def test_shipped_checkpoint_is_the_default_recipe():
    """The docs promise the shipped checkpoint is TrainConfig() trained on the built-in
    sample: changing a default means retraining it (docs/learning.md, "Shipped checkpoint")."""
    from vo_similarity.learn.config import TrainConfig
    from vo_similarity.learn.pretrained import SHIPPED_CONFIG

    shipped = TrainConfig.load(SHIPPED_CONFIG)
    assert shipped.replace(name="default").to_dict() == TrainConfig().to_dict()
