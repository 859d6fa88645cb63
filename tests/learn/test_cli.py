import numpy as np

from vo_similarity.cli import main


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


def test_bad_input_is_one_line_and_status_2(tiny_workdir, capsys):
    assert main(["train", str(tiny_workdir.root), "--model", "bad", "--width", "2"]) == 2
    assert "width must be >= 4" in capsys.readouterr().err
    assert main(["embed", str(tiny_workdir.root), "--model", "missing"]) == 2
    assert "run `vo-similarity train`" in capsys.readouterr().err
