"""The ONNX export of the embedding: what the file is, and that ONNX Runtime computes
torch's embedding within a rounding tolerance derived below."""

from __future__ import annotations

import copy
import math
import os
import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch.overrides import TorchFunctionMode

from vo_similarity.embed.onnx_export import INPUT_NAME, OPSET, OUTPUT_NAME, export_onnx
from vo_similarity.learn.config import TrainConfig
from vo_similarity.learn.model import build_model, embed_tensor
from vo_similarity.resources import shipped_model_files
from vo_similarity.workdir import ModelDir

#: unit roundoff of float32
U = 2.0 ** -24
#: the tolerance is Z standard deviations of the modelled difference of two float32 evaluations
Z = 6.0
#: Monte Carlo runs of the rounding model per image
RUNS = 6

#: results without rounding error: data movement, selection, comparisons, sign
EXACT = {"view", "reshape", "flatten", "squeeze", "unsqueeze", "__getitem__", "repeat",
         "repeat_interleave", "cat", "stack", "where", "sort", "gather", "clamp", "clamp_min",
         "clamp_max", "relu", "max_pool2d", "pad", "neg", "abs", "zeros_like", "ones_like",
         "full_like", "zeros", "ones", "full", "to", "float", "double", "max", "min", "meshgrid",
         "contiguous", "clone", "expand", "permute", "transpose", "__get__", "dim", "empty"}
_BATCH_NORM = ("input", "running_mean", "running_var", "weight", "bias", "training",
               "momentum", "eps")


def _f64(value):
    return torch.float64 if value is torch.float32 else value


class Float64Rounding(TorchFunctionMode):
    """Run torch code in float64: every float32 the code asks for (``.float()``,
    ``dtype=torch.float32``, the default dtype) becomes float64.

    With a generator, each operation's result also gets a random error drawn from the
    float32 rounding model of the docstring of
    :func:`test_onnx_runtime_computes_torchs_embedding_within_the_rounding_tolerance`
    (Monte Carlo arithmetic, Parker 1997).
    """

    def __init__(self, gen: torch.Generator | None = None):
        super().__init__()
        self.gen = gen
        self.names: set[str] = set()

    def _noise(self, like: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        return torch.randn(like.shape, generator=self.gen, dtype=like.dtype) * std

    def __torch_function__(self, func, types, args=(), kwargs=None):
        args = tuple(_f64(a) for a in args)
        kwargs = {k: _f64(v) for k, v in (kwargs or {}).items()}
        if func is torch.Tensor.float:
            return args[0].double()
        name = getattr(func, "__name__", "")
        if self.gen is not None and name == "grid_sample":
            # unnormalising ix = ((x + 1) W - 1) / 2 rounds relative to |x| + 1
            grid = args[1]
            args = (args[0], grid + self._noise(grid, U * (grid.abs() + 1)), *args[2:])
        out = func(*args, **kwargs)
        if isinstance(out, torch.Tensor) and out.dtype == torch.float32:
            raise AssertionError(f"{name} computed in float32 in the float64 evaluation")
        if (self.gen is None or not isinstance(out, torch.Tensor) or not out.is_floating_point()
                or name in EXACT):
            return out
        self.names.add(name)
        magnitude, n = self._accumulation(func, name, args, kwargs, out)
        return out + self._noise(out, U * math.sqrt(n / 3) * magnitude)

    @staticmethod
    def _accumulation(func, name, args, kwargs, out) -> tuple[torch.Tensor, int]:
        """``(sum of |terms|, number of terms)`` of each result of the operation."""
        if name == "conv2d":
            x, w = args[0], args[1]
            b = args[2] if len(args) > 2 else kwargs.get("bias")
            rest = {k: v for k, v in kwargs.items() if k != "bias"}
            return (func(x.abs(), w.abs(), None if b is None else b.abs(), *args[3:], **rest),
                    w[0].numel() + (b is not None))
        if name in ("matmul", "__matmul__", "mm", "bmm"):
            return func(args[0].abs(), args[1].abs()), args[0].shape[-1]
        if name == "linear":
            return func(args[0].abs(), args[1].abs(), *(a.abs() for a in args[2:3])), \
                args[1].shape[-1]
        if name in ("sum", "mean", "adaptive_avg_pool2d", "avg_pool2d"):
            return func(args[0].abs(), *args[1:], **kwargs), args[0].numel() // max(1, out.numel())
        if name == "cumsum":
            dim = args[1] if len(args) > 1 else kwargs["dim"]
            return func(args[0].abs(), *args[1:], **kwargs), args[0].shape[dim]
        if name == "affine_grid":  # base grid coordinates within [-1, 1], times theta
            return args[0].abs().sum(-1)[:, None, None, :], 3
        if name == "grid_sample":  # four pixels, bilinear weights
            return func(args[0].abs(), *args[1:], **kwargs), 4
        if name == "batch_norm":  # (x - mean) / sqrt(var + eps) * weight + bias: 4 roundings
            p = {**dict(zip(_BATCH_NORM, args)), **kwargs}
            shape = (1, -1) + (1,) * (p["input"].dim() - 2)
            scale = (p["weight"].abs() / (p["running_var"] + p.get("eps", 1e-5)).sqrt()).view(shape)
            return ((p["input"].abs() + p["running_mean"].abs().view(shape)) * scale
                    + p["bias"].abs().view(shape)), 4
        if name == "interpolate":  # antialiased: a triangle filter widened by the shrink
            size = out.shape[2:]
            n = math.prod(2 * math.ceil(i / o) + 1 for i, o in zip(args[0].shape[2:], size))
            return func(args[0].abs(), *args[1:], **kwargs), n
        if name == "normalize":  # the norm sums the squares of the D features
            return out.abs(), out.shape[1]
        return out.abs(), 1  # one rounding (libm's functions: within an ulp or so)


def float64_embedding(model, images, cfg, gen=None) -> torch.Tensor:
    """``embed_tensor`` evaluated in float64 (with ``gen``: plus modelled float32 rounding)."""
    model64 = copy.deepcopy(model).double()
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        with torch.no_grad(), Float64Rounding(gen):
            out = embed_tensor(model64, images, cfg)
    finally:
        torch.set_default_dtype(default)
    assert out.dtype == torch.float64
    return out


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    """The shipped model as a trained model directory, and its config at fp32."""
    model_dir = ModelDir(tmp_path_factory.mktemp("model") / "builtin").ensure()
    weights, config = shipped_model_files()
    shutil.copy(weights, model_dir.weights)
    shutil.copy(config, model_dir.config)
    from vo_similarity.embed.embed import load_trained

    cfg, model = load_trained(model_dir)
    return model_dir, cfg.replace(precision="fp32"), model


def _session(path, threads: int = 1) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _test_images(side: int) -> list[torch.Tensor]:
    """A real image of the built-in sample, a source on a pedestal inside a primary beam
    (exact zeros outside), and masked noise."""
    from vo_similarity.client.embedding import image_pixels
    from vo_similarity.ingest.stellarium import builtin_sample

    pre = {"size": side}
    real = torch.from_numpy(image_pixels(builtin_sample()[0].path, pre))[None, None]
    y, x = (np.mgrid[:side, :side] + 0.5) / (side / 2) - 1
    blob = 0.05 + 0.8 * np.exp(-((x - 0.2) ** 2 / 0.05 + (y + 0.1) ** 2 / 0.2))
    blob[np.hypot(x, y) > 0.95] = 0
    rng = np.random.default_rng(1)
    noise = rng.random((side, side)) * (rng.random((side, side)) > 0.3)
    return [real] + [torch.from_numpy(a.astype(np.float32))[None, None] for a in (blob, noise)]


def test_export_is_a_fixed_shape_opset_20_graph_that_says_what_it_is(shipped, tmp_path):
    model_dir = shipped[0]
    out = export_onnx(model_dir, tmp_path / "sub" / "builtin.onnx", input_size=96)
    assert out == tmp_path / "sub" / "builtin.onnx"
    assert [p.name for p in out.parent.iterdir()] == ["builtin.onnx"]  # no temporary left
    proto = onnx.load(out)
    assert {o.domain or "ai.onnx": o.version for o in proto.opset_import}["ai.onnx"] == OPSET
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["vo_similarity.model"] == "builtin" and meta["torch_version"] == torch.__version__
    assert (meta["vo_similarity.dim"], meta["vo_similarity.input_size"]) == ("256", "96")
    session = _session(out)
    (inp,), (outp,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, inp.shape, inp.type) == (INPUT_NAME, [1, 1, 96, 96], "tensor(float)")
    assert (outp.name, outp.shape) == (OUTPUT_NAME, [1, 256])
    vector = session.run(None, {INPUT_NAME: np.random.default_rng(0).random(
        (1, 1, 96, 96), dtype=np.float32)})[0]
    assert abs(float(np.linalg.norm(vector)) - 1) < 1e-5


def test_export_refuses_an_untrained_model_and_keeps_the_previous_file(tmp_path):
    out = tmp_path / "model.onnx"
    out.write_bytes(b"previous")
    with pytest.raises(FileNotFoundError, match="vo-similarity train"):
        export_onnx(ModelDir(tmp_path / "none"), out, input_size=64)
    assert out.read_bytes() == b"previous"


@pytest.mark.slow
def test_onnx_runtime_computes_torchs_embedding_within_the_rounding_tolerance(shipped, tmp_path):
    """ONNX Runtime and torch both evaluate the same graph in float32 (the test refuses
    to run if torch was told to use a lower precision): they differ only by rounding
    errors, in different summation orders, blockings, vector widths (AVX2 on AMD,
    AVX-512 on Intel; AMX has no float32 arithmetic and neither library turns float32
    into bfloat16 unless asked), FMA use, BatchNorm folded into the convolutions
    (ONNX Runtime) or not (torch), and threads.

    **Rounding model.** Each evaluation ŷ = f(x) + e has a rounding error e. In the
    standard model (Higham 2002, §2.2) an operation rounds its result v to
    v(1 + δ), |δ| ≤ u = 2⁻²⁴, and a sum of n terms t_i, accumulated in any order,
    adds at most n - 1 such errors, each relative to a partial sum, itself at most
    Σ|t_i|. Treating the δ as independent, mean-zero and uniform (variance u²/3; the
    probabilistic rounding-error analysis of Higham & Mary 2019, SIAM J. Sci. Comput.
    41(5), A2815), an accumulation adds an error of standard deviation at most
    u·sqrt((n-1)/3)·Σ|t_i| whatever its order: sequential summation is the worst case
    of that model, pairwise or blocked sums and FMAs give less. So the model bounds
    any CPU's float32 evaluation of the graph, not only the order used here.

    **Propagation.** The errors are propagated through the rest of the computation
    by Monte Carlo arithmetic (Parker 1997): ``Float64Rounding`` evaluates torch's own
    code for the embedding in float64 (a reference r with error ~1e-16, negligible) and
    adds to every operation's result a Gaussian error of the model's standard
    deviation u·sqrt(n/3)·Σ|t_i| (n = 1 and Σ|t_i| = |v| for an elementwise operation;
    exact operations -- selection, sorting, data movement -- get none). Over RUNS
    runs, σ_k = the RMS deviation of component k from r estimates the standard
    deviation of component k of one float32 evaluation's error.

    **Tolerance.** The two evaluations' errors are independent, so ONNX Runtime - torch
    has standard deviation ≤ sqrt(2)·σ_k per component; the test asserts

        max_k |onnx_k - torch_k| ≤ Z·sqrt(2)·max_k σ_k,  Z = 6,

    per image: for near-Gaussian errors (sums of many roundings) a component passes
    6 σ with probability 2e-9, so 256 components of 2 images fail by chance with
    probability < 1e-6, and max_k σ_k (rather than each σ_k) covers the scatter of
    an estimate from RUNS = 6 runs. For the shipped model at S = 64 this gives about
    2e-6 (max σ_k ~2.5e-7) on a real and a synthetic image; measured |onnx - torch| is
    ~6e-8 (AMD EPYC, AVX2). Each evaluation alone is also checked against r with
    Z·max σ_k, which shows the model does not underestimate the real rounding errors
    here (|torch - r| ~8e-8 against σ_k ~2.5e-7: Σ|t_i| bounds every partial sum).

    The model is linear in the errors: it does not hold where a rounding error flips
    a discrete choice (a pixel exactly on the 0 boundary of "nonzero", a centroid
    exactly on a clamp); such flips would show as a large σ_k. Ranks follow: two
    unit vectors within ε give cosines within ε to any unit query.
    """
    assert torch.get_float32_matmul_precision() == "highest"
    assert not os.environ.get("ONEDNN_DEFAULT_FPMATH_MODE")
    model_dir, cfg, model = shipped
    side = 64
    session = _session(export_onnx(model_dir, tmp_path / "m.onnx", input_size=side))
    images = _test_images(side)[:2]
    worst = 0.0
    for image in images:
        with torch.no_grad():
            ours = embed_tensor(model, image, cfg)[0].double()
        theirs = torch.from_numpy(session.run(None, {INPUT_NAME: image.numpy()})[0][0]).double()
        reference = float64_embedding(model, image, cfg)[0]
        runs = torch.stack([float64_embedding(model, image, cfg, torch.Generator().manual_seed(k))[0]
                            for k in range(RUNS)])
        sigma = float((runs - reference).pow(2).mean(0).sqrt().max())
        tolerance = Z * math.sqrt(2) * sigma
        assert 1e-8 < sigma < 1e-5  # the model sees the float32 rounding, of plausible size
        assert float((ours - reference).abs().max()) <= Z * sigma
        assert float((theirs - reference).abs().max()) <= Z * sigma
        assert float((theirs - ours).abs().max()) <= tolerance
        worst = max(worst, float((theirs - ours).abs().max()) / tolerance)
        print(f"sigma {sigma:.2e}, tolerance {tolerance:.2e}, |onnx - torch| "
              f"{float((theirs - ours).abs().max()):.2e}, |torch - float64| "
              f"{float((ours - reference).abs().max()):.2e}")
        # the check can fail: a different input (shifted by one pixel) ...
        shifted = torch.roll(image, 1, dims=3)
        other = torch.from_numpy(session.run(None, {INPUT_NAME: shifted.numpy()})[0][0]).double()
        assert float((other - ours).abs().max()) > tolerance
    # ... or a slightly different model (one convolution's weights 0.1 % larger)
    changed = copy.deepcopy(model)
    with torch.no_grad():
        next(m for m in changed.backbone.modules() if isinstance(m, torch.nn.Conv2d)).weight *= 1.001
    with torch.no_grad():
        moved = embed_tensor(changed, images[0], cfg)[0].double()
    first = torch.from_numpy(session.run(None, {INPUT_NAME: images[0].numpy()})[0][0]).double()
    assert float((first - moved).abs().max()) > tolerance
    print(f"largest |onnx - torch| / tolerance: {worst:.3f}")


@pytest.mark.parametrize("variant", [
    {"canonical": {"enabled": False}, "pool_rotations": 0},  # resize to image_size, no frame
    {"canonical": {"enabled": True}, "pool_rotations": 1},   # the frame, no pooling
    {"canonical": {"enabled": True, "radius": "flux", "background_pixels": "unpadded"},
     "pool_rotations": 2},
])
def test_every_branch_of_embed_tensor_exports(tmp_path, variant):
    """The graph follows embed_tensor's branches; tolerance as derived above."""
    cfg = TrainConfig(width=4, image_size=16, projection_dim=16, precision="fp32", **variant)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    model_dir = ModelDir(tmp_path / "tiny").ensure()
    cfg.save(model_dir.config)
    torch.save(model.state_dict(), model_dir.weights)
    session = _session(export_onnx(model_dir, tmp_path / "tiny.onnx", input_size=24))
    for image in _test_images(24)[1:]:
        with torch.no_grad():
            ours = embed_tensor(model, image, cfg)[0].double()
        theirs = torch.from_numpy(session.run(None, {INPUT_NAME: image.numpy()})[0][0]).double()
        reference = float64_embedding(model, image, cfg)
        runs = torch.stack([float64_embedding(model, image, cfg, torch.Generator().manual_seed(k))
                            for k in range(RUNS)])
        sigma = float((runs - reference).pow(2).mean(0).sqrt().max())
        assert float((theirs - ours).abs().max()) <= Z * math.sqrt(2) * sigma
