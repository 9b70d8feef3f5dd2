"""The ONNX export and the ONNX Runtime renderer (talkingface.inference.onnx) against the
torch generator, and their errors. Tiny config; exporting takes ~20 s (mostly
torch.export's tracing), so the graphs are exported once, through the CLI, and every
test reads them.

Needs the `onnx` extra: under CI=true a missing package fails, elsewhere it skips.
"""
from __future__ import annotations

import contextlib
import copy
import importlib.util
import io
import shutil
import sys

import pytest
import torch

from talkingface.checkpoints.official import load_generator
from talkingface.cli import main
from talkingface.config import load_config
from talkingface.data.official import open_dataset
from talkingface.errors import CheckpointError, TalkingFaceError
from talkingface.inference.engine import InferenceEngine
from talkingface.inference.onnx import OnnxRenderer, encoder_path, export_onnx
from talkingface.models.generator import GeneratorInputs, batch_inputs
from talkingface.models.layers import fold_spectral_norm
from talkingface.utils.images import to_uint8_truncate

from helpers import make_tiny_checkpoint, make_tiny_dataset, missing_requirement, TINY_CONFIG

pytestmark = pytest.mark.slow  # full-size or subprocess-heavy: left out of the fast subset (-m "not slow")

# ORT and torch both compute in float32, with other conv algorithms (MLAS's blocked
# kernels) and, in the fused graph, another order of the norms' sums: the outputs differ
# by rounding only (about 1e-5 here). 1e-4 is the engine tests' fp32 tolerance, 1/78 of
# one grey level (2/255 of the -1..1 output).
TOL = 1e-4


def require_onnx_extra() -> None:
    missing = [m for m in ("onnx", "onnxscript", "onnxruntime") if importlib.util.find_spec(m) is None]
    if missing:
        missing_requirement(f"{', '.join(missing)} not installed (pip install -e \".[onnx]\")")


@pytest.fixture(autouse=True)
def onnx_extra():
    require_onnx_extra()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny checkpoint, its config and model (spectral norm attached, as loaded), and data:
    2 identities with 3 and 2 frames."""
    folder = tmp_path_factory.mktemp("onnx")
    ckpt = make_tiny_checkpoint(folder / "tiny.pth.tar")
    cfg = load_config(TINY_CONFIG)
    model = load_generator(ckpt, cfg).model.eval()
    dataset = open_dataset(cfg, make_tiny_dataset(folder / "data", frames_per_identity=(3, 2)))
    return folder, ckpt, cfg, model, dataset


@pytest.fixture(scope="module")
def exported(tiny):
    """`talkingface export --ckpt tiny.pth.tar --onnx tiny.onnx`: (render graph, exit code, stdout)."""
    folder, ckpt = tiny[:2]
    out = folder / "graphs" / "tiny.onnx"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(["export", "--ckpt", str(ckpt), "--onnx", str(out)])
    return out, code, stdout.getvalue()


@pytest.fixture(scope="module")
def renderer(exported):
    return OnnxRenderer(exported[0])


def frames(dataset, indices) -> GeneratorInputs:
    return batch_inputs(torch.utils.data.default_collate([dataset[i] for i in indices]), torch.device("cpu"))


def reference(model, x: GeneratorInputs) -> torch.Tensor:
    """The straightforward torch path: the whole model, spectral norm at run time."""
    with torch.inference_mode():
        return model(x)["prediction"]


# --------------------------------------------------------------------------- export
def test_cli_export_writes_two_checked_graphs(exported):
    import onnx

    out, code, stdout = exported
    assert code == 0
    assert "ONNX Runtime matches torch" in stdout and "any batch" in stdout
    encoder = encoder_path(out)
    assert encoder.name == "tiny.encoder.onnx" and encoder.is_file()
    assert sorted(p.name for p in out.parent.iterdir()) == ["tiny.encoder.onnx", "tiny.onnx"]  # no temp files left
    for path, graph in ((out, "render"), (encoder, "encoder")):
        onnx.checker.check_model(str(path), full_check=True)
        proto = onnx.load(str(path), load_external_data=False)
        meta = {p.key: p.value for p in proto.metadata_props}
        assert meta["talkingface.graph"] == graph and meta["talkingface.variant"] == "fused"
        assert meta["talkingface.resolution"] == "64x64"
        batch = proto.graph.input[0].type.tensor_type.shape.dim[0]
        assert batch.dim_param and not batch.dim_value  # a named, dynamic batch dimension


def test_onnx_runtime_matches_the_torch_generator(tiny, renderer):
    _, _, _, model, dataset = tiny
    x = frames(dataset, [0, 1, 2])  # one identity: its source is encoded once, batch 1
    want = reference(model, x)
    features = renderer.encode_source(x.source[:1])
    with torch.inference_mode():
        torch_features = fold_spectral_norm(copy.deepcopy(model)).refine.encode_source(x.source[:1])
    feature_diff = max(float((a - b).abs().max()) for a, b in zip(features, torch_features))
    assert feature_diff < TOL, f"source features differ by {feature_diff:.2e}"
    got = renderer.render(x, features)
    assert got.dtype == torch.float32 and got.shape == want.shape == (3, 3, 64, 64)
    diff = float((got - want).abs().max())
    assert diff < TOL, f"ONNX Runtime against torch: max abs diff {diff:.2e}"
    assert int(abs(to_uint8_truncate(got).astype(int) - to_uint8_truncate(want).astype(int)).max()) <= 1


def test_batch_dimension_is_dynamic(tiny, renderer):
    """Exported at batch 2: batch 1, and batch 2 with one source per frame (two identities)."""
    _, _, _, model, dataset = tiny
    one = frames(dataset, [4])
    assert float((renderer.render(one, renderer.encode_source(one.source)) - reference(model, one)).abs().max()) < TOL
    two = frames(dataset, [0, 3])
    assert not torch.equal(two.source[0], two.source[1])
    got = renderer.render(two, renderer.encode_source(two.source))
    assert float((got - reference(model, two)).abs().max()) < TOL


# --------------------------------------------------------------------------- errors
def save_relu_graph(path) -> None:
    """A valid ONNX model that is not ours: y = relu(x)."""
    from onnx import TensorProto, helper, save

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu", [x], [y])
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)]), str(path))


def test_missing_corrupt_and_wrong_files(exported, tmp_path):
    out = exported[0]
    with pytest.raises(CheckpointError, match="ONNX model not found"):
        OnnxRenderer(tmp_path / "absent.onnx")
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(out.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        OnnxRenderer(truncated)
    with pytest.raises(CheckpointError, match=r"not a talkingface render graph \(a talkingface encoder graph\)"):
        OnnxRenderer(encoder_path(out))  # the wrong one of the two files
    foreign = tmp_path / "foreign.onnx"
    save_relu_graph(foreign)
    with pytest.raises(CheckpointError, match="not a talkingface render graph: its inputs are x, expected feature_0"):
        OnnxRenderer(foreign)
    alone = tmp_path / "alone" / "tiny.onnx"
    alone.parent.mkdir()
    shutil.copy(out, alone)
    with pytest.raises(CheckpointError, match="source encoder .* not found") as caught:
        OnnxRenderer(alone)
    assert str(alone.with_name("tiny.encoder.onnx")) in str(caught.value) and "\n" not in str(caught.value)


def test_wrong_input_shapes_say_which(exported, renderer, tiny):
    x = frames(tiny[4], [0])
    with pytest.raises(ValueError, match=r"source: the ONNX encoder takes \['B', 3, 64, 64\], got \[1, 3, 32, 32\]"):
        renderer.encode_source(x.source[:, :, :32, :32])
    features = renderer.encode_source(x.source)
    with pytest.raises(ValueError, match="identity: the ONNX graph takes"):
        renderer.render(GeneratorInputs(**{**vars(x), "identity": x.identity[:, :8]}), features)


def test_without_the_onnx_extra_says_how_to_install(tiny, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    with pytest.raises(TalkingFaceError, match=r'pip install -e "\.\[onnx\]"'):
        OnnxRenderer(tmp_path / "any.onnx")
    code = main(["export", "--ckpt", str(tiny[1]), "--onnx", str(tmp_path / "x.onnx")])
    err = capsys.readouterr().err
    assert code == 2 and 'pip install -e ".[onnx]"' in err and err.count("\n") == 1
    assert not list(tmp_path.iterdir())  # nothing written


def test_cli_export_errors_are_one_line(tiny, tmp_path, capsys):
    ckpt = tiny[1]
    for args, message in (([], "nothing to write"), (["--onnx", str(tmp_path / "x.pt")], "names a .onnx file"),
                          (["--onnx", str(tmp_path / "x.onnx"), "--ckpt", str(tmp_path / "absent.pth.tar")],
                           "checkpoint file not found")):
        code = main(["export", "--ckpt", str(ckpt), *args])
        err = capsys.readouterr().err
        assert code == 2 and message in err and err.count("\n") == 1, err


def test_low_precision_engine_is_refused(tiny, tmp_path):
    _, _, cfg, model, _ = tiny
    engine = InferenceEngine.prepare(copy.deepcopy(model), "cpu", "bf16", keep_freed_memory=False)
    with pytest.raises(ValueError, match="cannot export a bf16 engine"):
        export_onnx(engine, cfg, tmp_path / "x.onnx")
