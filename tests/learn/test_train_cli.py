"""train, embed and evaluate through the command, as a user runs them."""

import numpy as np

from vo_similarity.cli import main
from vo_similarity.cli_common import EXIT_FAILURE, EXIT_USAGE


def test_train_embed_evaluate_through_the_command(tiny_workdir, capsys):
    root = str(tiny_workdir.root)
    tiny = ["--width", "4", "--image-size", "16", "--batch-size", "16", "--epochs", "1",
            "--pool-rotations", "2", "--precision", "fp32", "--no-progress", "--threads", "1"]
    assert main(["train", root, "--model", "cli", *tiny]) == 0
    assert main(["embed", root, "--model", "cli", "--threads", "1"]) == 0
    assert main(["evaluate", root, "--model", "cli", "--no-grid", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "pixels_pca" in out and "untrained_network" in out
    assert np.load(tiny_workdir.model("cli").embeddings).shape == (48, 32)


def test_a_refused_value_is_a_usage_error_a_missing_model_a_failure(tiny_workdir, capsys):
    assert main(["train", str(tiny_workdir.root), "--model", "bad", "--width", "2"]) \
        == EXIT_USAGE
    assert "width must be >= 4" in capsys.readouterr().err
    assert main(["embed", str(tiny_workdir.root), "--model", "missing"]) == EXIT_FAILURE
    assert "run `vo-similarity train " in capsys.readouterr().err
