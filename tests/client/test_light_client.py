"""The light client works where the training stack cannot be imported.

Each test runs a fresh interpreter whose import system cannot find what the extra `pipeline` brings (torch, torchvision, lightly, optuna, sklearn,
psycopg, scipy, matplotlib, tqdm, onnx), as in a `pip install vo-similarity`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

from vo_similarity.client.embedding import ModelRuntime
from vo_similarity.ingest.stellarium import builtin_sample

REPO = Path(__file__).resolve().parents[2]
BLOCKED = ("torch", "torchvision", "lightly", "optuna", "sklearn", "psycopg", "scipy",
           "matplotlib", "tqdm", "onnx")
PREPROCESS = {"size": 64, "clip": [0.5, 99.9], "stretch": "asinh", "softening": 0.1,
              "preview_size": 256}

#: hides the blocked packages from the import system's path finder, so that to every
#: importer (and importlib.util.find_spec, which astropy uses for optional packages)
#: they are simply not installed
BLOCKER = textwrap.dedent(f"""
    import importlib.machinery, sys
    BLOCKED = {set(BLOCKED)!r}
    assert not [m for m in sys.modules if m.split(".")[0] in BLOCKED]

    class WithoutPipeline(importlib.machinery.PathFinder):
        @classmethod
        def find_spec(cls, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                return None
            return super().find_spec(name, path, target)

    sys.meta_path[:] = [WithoutPipeline if f is importlib.machinery.PathFinder else f
                        for f in sys.meta_path]
    try:
        import torch
    except ModuleNotFoundError:
        pass
    else:
        raise SystemExit("the blocker does not block")
""")


def _light_python(code: str, *args: str) -> subprocess.CompletedProcess:
    script = BLOCKER + textwrap.dedent(code) + textwrap.dedent("""
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
        assert not loaded, loaded
    """)
    return subprocess.run([sys.executable, "-c", script, *args], check=False,
                          capture_output=True, text=True, cwd=REPO, timeout=300)



def test_the_client_embeds_an_image_without_the_training_stack(onnx_model):
    image = builtin_sample()[0].path
    done = _light_python("""
        import json
        import vo_similarity.client
        from vo_similarity.client import Similarity
        from vo_similarity.client.embedding import ModelRuntime
        runtime = ModelRuntime.from_file(sys.argv[1], json.loads(sys.argv[2]), threads=1)
        print(json.dumps(runtime.embed(sys.argv[3]).tolist()))
    """, str(onnx_model), json.dumps(PREPROCESS), str(image))
    assert done.returncode == 0, done.stderr
    light = np.array(json.loads(done.stdout.splitlines()[-1]), dtype=np.float32)
    # the same runtime here, where torch is loaded, computes the same vector
    here = ModelRuntime.from_file(onnx_model, PREPROCESS, threads=1).embed(image)
    assert light.shape == (256,) and np.array_equal(light, here)


def test_the_command_line_in_a_light_install(tmp_path):
    done = _light_python("""
        from vo_similarity.cli import main
        try:
            main(["--help"])
        except SystemExit as exit:
            assert exit.code == 0
        status = main(["ingest", sys.argv[1], "--synthetic", "3", "--no-progress"])
        print("status", status)
    """, str(tmp_path / "work"))
    assert done.returncode == 0, done.stderr
    assert "usage: vo-similarity" in done.stdout and "publish" in done.stdout
    assert done.stdout.splitlines()[-1] == "status 1"
    assert "pip install 'vo-similarity[pipeline]'" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
