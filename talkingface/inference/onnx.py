"""ONNX export of the base generator and an ONNX Runtime renderer with the interface of
`InferenceEngine` (`encode_source`, `render`).

`export_onnx` writes two graphs, both float32 with a dynamic batch dimension:

- OUT.onnx, the per-frame part (what `InferenceEngine.render` computes: warp + refine
  from the source feature pyramid): inputs feature_0..feature_{n-1} (the pyramid, coarse
  to fine), source, source_line, driving_line, driving_subset, mouth_mask, identity;
  output prediction (B x 3 x H x W, -1..1);
- OUT.encoder.onnx, the source encoder (`refine.encode_source`): input source, outputs
  feature_0..feature_{n-1}, named as the render graph's inputs. It runs once per video.

How: spectral norm folded first (exact in eval mode), then the inference rewrites of
`talkingface.inference.fused` (fewer convolutions and element-wise passes), exported with
torch.onnx's torch.export-based exporter (onnxscript), opset 20. Both variants export
without rewriting any op (grid_sample -> GridSample, nearest up-conv -> ConvTranspose,
the fused norms -> Reduce* ops); the legacy TorchScript exporter fails on both
(layer_norm over a traced shape, addcmul with out=). On a 128x128 model of reduced
width, ORT ran the fused graph 3-5% faster than the plain one (0.167-0.168 against
0.174-0.177 s/frame over two runs, batch 4, one thread; convolutions are ~80% of ORT's
time in both), so fused is the default (`fuse=False` exports the plain layers). A graph
fixed to batch 4 ran no faster than the dynamic one there, hence the dynamic batch.

Each file carries talkingface metadata (which graph it is, the encoder's file name, the
resolution, the config) and is checked with onnx.checker and against the torch model on
example inputs before it replaces OUT (written to a temporary file, then renamed).

Needs the `onnx` extra: pip install -e ".[onnx]".
"""
from __future__ import annotations

import contextlib
import copy
import importlib
import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from talkingface.config import Config
from talkingface.errors import CheckpointError, TalkingFaceError
from talkingface.inference.engine import InferenceEngine, RenderGraph
from talkingface.inference.fused import fuse_for_inference
from talkingface.landmarks.scheme import SUBSET_SIZE
from talkingface.models.generator import GeneratorInputs
from talkingface.models.layers import fold_spectral_norm
from talkingface.utils.atomic import atomic_path

__all__ = ["OPSET", "OnnxExport", "OnnxRenderer", "encoder_path", "export_onnx"]

OPSET = 20  # torch 2.13's default; GridSample with reflection padding needs >= 16
INSTALL_HINT = 'pip install -e ".[onnx]"'
RENDER_INPUTS = ("source", "source_line", "driving_line", "driving_subset", "mouth_mask", "identity")
OUTPUT = "prediction"
META = "talkingface."  # prefix of our metadata keys
VERIFY_TOL = 1e-3  # export-time check on random inputs; tests hold real inputs to 1e-4


def require_extra(module: str) -> Any:
    """Import an optional dependency of the ONNX path, or say in one line how to get it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise TalkingFaceError(f"the ONNX path needs {module}, which is not installed: {INSTALL_HINT}") from e


def encoder_path(path: str | Path) -> Path:
    """Where `export_onnx` writes the source encoder for render graph `path`: OUT.encoder.onnx."""
    path = Path(path)
    return path.with_name(f"{path.stem}.encoder.onnx")


def feature_names(count: int) -> list[str]:
    return [f"feature_{i}" for i in range(count)]


# --------------------------------------------------------------------------- export
class _EncoderGraph(nn.Module):
    def __init__(self, generator: nn.Module):
        super().__init__()
        self.refine = generator.refine

    def forward(self, source: torch.Tensor) -> tuple[torch.Tensor, ...]:
        # source: B x 3 x H x W in 0..1 -> the pyramid, coarse to fine
        return tuple(self.refine.encode_source(source))


@dataclass
class OnnxExport:
    render: Path
    encoder: Path
    variant: str  # "fused" or "plain"
    opset: int
    megabytes: float  # both files
    max_abs_diff: float | None  # ORT against torch on the example inputs (None: not verified)


def _fp32_copy(model_or_engine: Any, fuse: bool) -> tuple[nn.Module, str]:
    """A CPU float32 copy ready to trace: spectral norm folded, eval, fused if asked.
    The caller's model (or engine) is left as it is."""
    if isinstance(model_or_engine, InferenceEngine):
        if model_or_engine.precision != "fp32":
            raise ValueError(f"cannot export a {model_or_engine.precision} engine: its convolutions hold rounded "
                             "weights; export the model or an fp32 engine")
        model_or_engine = model_or_engine.model
    model = fold_spectral_norm(copy.deepcopy(model_or_engine)).cpu().float().eval().requires_grad_(False)
    model = model.to(memory_format=torch.contiguous_format)  # the graph has no layout; ORT picks its own
    if fuse:
        fuse_for_inference(model)
    fused = any(type(m).__module__ == "talkingface.inference.fused" for m in model.modules())
    return model, "fused" if fused else "plain"


def example_inputs(cfg: Config, batch: int = 2, seed: int = 0) -> GeneratorInputs:
    """Random inputs of the config's shapes (values in the ranges the data has)."""
    g = torch.Generator().manual_seed(seed)
    h, w = cfg.resolution
    identity = torch.randn(batch, cfg.model.generator.class_dim, generator=g)
    return GeneratorInputs(
        source=torch.rand(batch, 3, h, w, generator=g),
        source_line=torch.rand(batch, 3, h, w, generator=g),
        driving_line=torch.rand(batch, 3, h, w, generator=g),
        driving_subset=torch.rand(batch, SUBSET_SIZE, 2, generator=g) * 1.6 - 0.8,
        mouth_mask=(torch.rand(batch, 1, h, w, generator=g) > 0.5).float(),
        identity=identity / identity.norm(dim=1, keepdim=True))


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporter's known harmless notices (missing torchvision ops, pytree
    deprecations, the shared batch axis name); real errors still raise."""
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    registration.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*LeafSpec.*", category=FutureWarning)
            warnings.filterwarnings("ignore", message=r"# The axis name: .* will not be used", category=UserWarning)
            yield
    finally:
        registration.setLevel(level)


def _metadata(cfg: Config, graph: str, variant: str, encoder: str) -> dict[str, str]:
    h, w = cfg.resolution
    return {f"{META}graph": graph, f"{META}encoder": encoder, f"{META}variant": variant,
            f"{META}resolution": f"{h}x{w}", f"{META}identity_dim": str(cfg.model.generator.class_dim),
            f"{META}landmark_scheme": cfg.model.landmark_scheme, f"{META}config": json.dumps(cfg.to_dict())}


def _check_graph(onnx: Any, path: Path, final: Path) -> None:
    try:
        onnx.checker.check_model(str(path), full_check=True)  # a path: works past protobuf's 2 GB limit
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise RuntimeError(f"{final}: the exported graph fails onnx.checker ({first[:200]})") from e


def export_onnx(model_or_engine: nn.Module | Any, cfg: Config, path: str | Path, batch: int = 2, fuse: bool = True,
                opset: int = OPSET, verify: bool = True) -> OnnxExport:
    """Export the generator's per-frame part to `path` and its source encoder to
    `encoder_path(path)` (see the module docstring), atomically.

    `model_or_engine`: a generator (spectral norm attached or folded) or an fp32
    `InferenceEngine`; neither is modified. `batch`: the example batch traced; the
    graphs accept any batch. `fuse`: export the inference rewrites (default, measured
    faster in ORT) instead of the plain layers. `verify`: run both graphs in ONNX
    Runtime on the example inputs and compare with the torch model (raises past 1e-3).
    """
    onnx = require_extra("onnx")
    require_extra("onnxscript")  # the exporter's translator
    if batch < 2:
        raise ValueError("trace at batch 2 or more: torch.export may specialise a traced size of 1 to a constant")
    render_out = Path(path)
    encoder_out = encoder_path(render_out)
    model, variant = _fp32_copy(model_or_engine, fuse)
    render_graph, encoder_graph = RenderGraph(model).eval(), _EncoderGraph(model).eval()
    x = example_inputs(cfg, batch)
    args = tuple(getattr(x, n) for n in RENDER_INPUTS)
    with torch.no_grad():
        features = encoder_graph(x.source)
        reference = render_graph(list(features), *args)
    names = feature_names(len(features))
    dim = torch.export.Dim("batch", min=1)
    with _quiet_exporter():
        render = torch.onnx.export(
            render_graph, (list(features), *args), input_names=[*names, *RENDER_INPUTS], output_names=[OUTPUT],
            opset_version=opset, dynamo=True, verbose=False,
            dynamic_shapes=([{0: dim}] * len(features), *[{0: dim}] * len(args)))
        encoder = torch.onnx.export(
            encoder_graph, (x.source,), input_names=["source"], output_names=names, opset_version=opset,
            dynamo=True, verbose=False, dynamic_shapes=({0: dim},))
    render.model.metadata_props.update(_metadata(cfg, "render", variant, encoder_out.name))
    encoder.model.metadata_props.update(_metadata(cfg, "encoder", variant, encoder_out.name))
    diff = None
    with atomic_path(render_out) as tmp_render, atomic_path(encoder_out) as tmp_encoder:
        render.save(tmp_render, external_data=False)
        encoder.save(tmp_encoder, external_data=False)
        _check_graph(onnx, tmp_render, render_out)
        _check_graph(onnx, tmp_encoder, encoder_out)
        if verify:
            diff = _verify(tmp_render, tmp_encoder, x, features, reference)
            if not diff <= VERIFY_TOL:
                raise RuntimeError(f"{render_out}: ONNX Runtime's output differs from torch's by {diff:.2e} "
                                   f"(tolerance {VERIFY_TOL:g}); not written")
    megabytes = (render_out.stat().st_size + encoder_out.stat().st_size) / 2 ** 20
    return OnnxExport(render_out, encoder_out, variant, opset, megabytes, diff)


def _verify(render: Path, encoder: Path, x: GeneratorInputs, features: Sequence[torch.Tensor],
            reference: torch.Tensor) -> float:
    """Max abs difference of ORT against torch: the encoder's pyramid and the prediction."""
    renderer = OnnxRenderer(render, encoder=encoder)
    got = renderer.encode_source(x.source)
    diff = max(float((a - b).abs().max()) for a, b in zip(got, features))
    return max(diff, float((renderer.render(x, list(features)) - reference).abs().max()))


# --------------------------------------------------------------------------- runtime
def _ort_errors(ort: Any) -> tuple[type[BaseException], ...]:
    """onnxruntime's load errors (its own exception types, not RuntimeError subclasses)."""
    state = ort.capi.onnxruntime_pybind11_state
    names = ("Fail", "InvalidArgument", "NoSuchFile", "NoModel", "EngineError", "RuntimeException",
             "InvalidProtobuf", "NotImplemented", "InvalidGraph", "EPFail")
    return tuple(getattr(state, n) for n in names if hasattr(state, n))


def _providers(ort: Any, device: torch.device) -> list[str]:
    if device.type == "cpu":
        return ["CPUExecutionProvider"]
    if device.type == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise TalkingFaceError("ONNX Runtime has no CUDA provider here: install onnxruntime-gpu (same version) "
                                   "in place of onnxruntime, or use device cpu")
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    raise ValueError(f"the ONNX path runs on cpu or cuda, not {device}")


def _open_session(ort: Any, path: Path, options: Any, providers: list[str], what: str) -> Any:
    if not path.is_file():
        raise CheckpointError(f"{what} not found", path)
    try:
        return ort.InferenceSession(str(path), options, providers=providers)
    except _ort_errors(ort) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"ONNX Runtime cannot load this {what}; truncated or corrupt? ({first[:200]})",
                              path) from None


def _input_names(session: Any) -> list[str]:
    return [i.name for i in session.get_inputs()]


def _to_numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float32).contiguous().numpy()


class OnnxRenderer:
    """The exported graphs in ONNX Runtime, used like an `InferenceEngine`:
    `encode_source` once per source, then `render` per batch of driving frames.
    Returns float32 CPU tensors (on CUDA too: inputs and outputs pass through numpy).
    fp32 only: the graphs hold the model's float32 weights.

    `device`: "cpu" (default) or "cuda" (needs onnxruntime-gpu). `threads`: ORT's
    intra-op threads (default: torch's). `encoder`: the encoder graph (default: the file
    named in the render graph's metadata, OUT.encoder.onnx beside it)."""

    precision = "fp32"

    def __init__(self, path: str | Path, device: torch.device | str = "cpu", threads: int | None = None,
                 encoder: str | Path | None = None):
        ort = require_extra("onnxruntime")
        self.path = Path(path)
        self.device = torch.device(device)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1  # the graph is one chain; parallelism is inside the ops
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers = _providers(ort, self.device)
        self._session = _open_session(ort, self.path, options, providers, "ONNX model")
        meta = self._session.get_modelmeta().custom_metadata_map
        names = _input_names(self._session)
        count = len(names) - len(RENDER_INPUTS)
        self.feature_names = feature_names(max(count, 0))
        graph = meta.get(f"{META}graph", "render")  # a foreign file without metadata is judged by its inputs
        if count < 1 or names != [*self.feature_names, *RENDER_INPUTS] or graph != "render":
            kind = f" (a talkingface {graph} graph)" if f"{META}graph" in meta else ""
            raise CheckpointError(f"not a talkingface render graph{kind}: its inputs are {', '.join(names) or 'none'}, "
                                  "expected feature_0.., " + ", ".join(RENDER_INPUTS)
                                  + "; pass the OUT.onnx that `talkingface export --onnx OUT.onnx` wrote", self.path)
        encoder = Path(encoder) if encoder is not None else self.path.with_name(
            meta.get(f"{META}encoder", encoder_path(self.path).name))
        self._encoder = _open_session(ort, encoder, options, providers, "ONNX source encoder (written beside the "
                                      "render graph by `talkingface export --onnx`)")
        outputs = [o.name for o in self._encoder.get_outputs()]
        if _input_names(self._encoder) != ["source"] or outputs != self.feature_names:
            raise CheckpointError(f"not the source encoder of {self.path.name}: inputs "
                                  f"{', '.join(_input_names(self._encoder))}, outputs {', '.join(outputs)}", encoder)
        self.metadata = dict(meta)
        self._shapes = {i.name: i.shape for i in self._session.get_inputs()}
        self._repeat_cache: tuple[list[torch.Tensor], int, list[np.ndarray]] | None = None

    @property
    def providers(self) -> list[str]:
        """The execution providers the render session runs on, in ONNX Runtime's order of
        preference (a CUDA provider that failed to load is missing here)."""
        return list(self._session.get_providers())

    def _checked(self, name: str, t: torch.Tensor) -> np.ndarray:
        """`t` as a float32 array, its non-batch dimensions checked against the graph's."""
        want = self._shapes[name]
        if len(t.shape) != len(want) or any(isinstance(w, int) and w != s for w, s in zip(want[1:], t.shape[1:])):
            raise ValueError(f"{name}: the ONNX graph takes {['B', *want[1:]]}, got {list(t.shape)}")
        return _to_numpy(t)

    def encode_source(self, source: torch.Tensor) -> list[torch.Tensor]:
        """Source feature pyramid (coarse to fine) for a B x 3 x H x W source in 0..1."""
        want = self._encoder.get_inputs()[0].shape
        if source.dim() != 4 or any(isinstance(w, int) and w != s for w, s in zip(want[1:], source.shape[1:])):
            raise ValueError(f"source: the ONNX encoder takes {['B', *want[1:]]}, got {list(source.shape)}")
        return [torch.from_numpy(a) for a in self._encoder.run(self.feature_names, {"source": _to_numpy(source)})]

    def render(self, inputs: GeneratorInputs, source_features: list[torch.Tensor]) -> torch.Tensor:
        """Predictions (B x 3 x H x W, float32, -1..1) for a batch of driving frames.

        `source_features` come from `encode_source`: batch B, or 1 to share one source."""
        batch = inputs.source.shape[0]
        if len(source_features) != len(self.feature_names):
            raise ValueError(f"expected {len(self.feature_names)} source feature maps, got {len(source_features)}")
        if batch > 1 and all(f.shape[0] == 1 for f in source_features):
            features = self._repeated(source_features, batch)
        else:
            features = [self._checked(n, f) for n, f in zip(self.feature_names, source_features)]
        feed = dict(zip(self.feature_names, features))
        feed.update({name: self._checked(name, getattr(inputs, name)) for name in RENDER_INPUTS})
        batches = sorted({a.shape[0] for a in feed.values()})
        if batches != [batch]:
            raise ValueError(f"batch of {batch} frames, but the inputs have batches {batches}")
        (prediction,) = self._session.run([OUTPUT], feed)
        return torch.from_numpy(prediction)

    def _repeated(self, features: list[torch.Tensor], batch: int) -> list[np.ndarray]:
        """One source's pyramid repeated to the batch size, kept for the last (pyramid, size)."""
        cached = self._repeat_cache
        if cached is None or cached[0] is not features or cached[1] != batch:
            arrays = [np.ascontiguousarray(np.broadcast_to(self._checked(n, f), (batch, *f.shape[1:])))
                      for n, f in zip(self.feature_names, features)]
            cached = (features, batch, arrays)  # holds `features`: no id reuse
            self._repeat_cache = cached
        return cached[2]
