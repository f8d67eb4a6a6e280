"""The per-row activation quantizer (runtime.int8_graph): its one-pass form (blocked
QuantizeLinear, opset 21) against its four-op form and numpy, and the opset move it needs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from guardcli.runtime.int8_graph import BLOCKED_OPSET, _per_row_nodes  # noqa: E402

WIDTH = 16


def _quantizer(width: int | None, opset: int):
    """A session computing (q, scale) of `_per_row_nodes` on x [rows, WIDTH]."""
    nodes = _per_row_nodes(onnx, "x", "q", "scale", "zp", "p", opset, width)
    graph = helper.make_graph(
        nodes,
        "quantizer",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["rows", WIDTH])],
        [
            helper.make_tensor_value_info("q", TensorProto.UINT8, None),
            helper.make_tensor_value_info("scale", TensorProto.FLOAT, None),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 10
    ops = {n.op_type for n in model.graph.node}
    assert ("QuantizeLinear" in ops) == (width is not None and opset >= BLOCKED_OPSET)
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


ONE_PASS = _quantizer(WIDTH, BLOCKED_OPSET)
FOUR_OPS = _quantizer(None, 17)

finite = st.floats(-1e6, 1e6, allow_nan=False, width=32)


@settings(max_examples=200, deadline=None)
@given(hnp.arrays(np.float32, st.tuples(st.integers(1, 6), st.just(WIDTH)), elements=finite))
def test_one_pass_quantizer_equals_the_four_ops_and_numpy(x: np.ndarray) -> None:
    q1, s1 = ONE_PASS.run(None, {"x": x})
    q4, s4 = FOUR_OPS.run(None, {"x": x})
    np.testing.assert_array_equal(s1, s4)
    np.testing.assert_array_equal(q1, q4)
    # numpy: q = round-half-even(x / s) + 128, s = max(max|x|, eps) / 127 per row
    s = np.maximum(np.abs(x).max(axis=-1, keepdims=True), np.float32(1e-12)) / np.float32(127)
    np.testing.assert_array_equal(q1, (np.rint(x / s) + 128).astype(np.uint8))


def test_ties_round_to_even() -> None:
    """A row whose scale is exactly 1: halves round to the even neighbour, as numpy's rint."""
    x = np.zeros((1, WIDTH), dtype=np.float32)
    x[0, :6] = [127.0, 2.5, -3.5, 0.5, -0.5, 1.5]
    q, s = ONE_PASS.run(None, {"x": x})
    assert float(s[0, 0]) == 1.0
    assert (q[0, :6].astype(int) - 128).tolist() == [127, 2, -4, 0, 0, 2]


def test_an_opset_17_graph_moves_to_21_and_keeps_its_reductions(tmp_path: Path) -> None:
    """RMS-normalised input (ReduceMean with its axes as an attribute, opset 17) into a MatMul:
    after the INT8 recipe the graph is at opset 21 with the axes as an input, quantizes in one
    pass, and equals the same graph's numpy reference."""
    from guardcli.runtime.onnx_recipes import to_int8_dynamic

    rng = np.random.default_rng(0)
    w = rng.normal(size=(WIDTH, 8)).astype(np.float32)
    nodes = [
        helper.make_node("Mul", ["x", "x"], ["sq"]),
        helper.make_node("ReduceMean", ["sq"], ["ms"], axes=[-1], keepdims=1),
        helper.make_node("Sqrt", ["ms"], ["rms"]),
        helper.make_node("Div", ["x", "rms"], ["n"]),
        helper.make_node("MatMul", ["n", "w"], ["y"], name="proj/MatMul"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", WIDTH])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", 8])],
        [numpy_helper.from_array(w, "w")],
    )
    fp32, int8 = tmp_path / "g.onnx", tmp_path / "g_int8.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), fp32)
    to_int8_dynamic(fp32, int8, keep_float=())
    model = onnx.load(str(int8))
    assert next(o.version for o in model.opset_import if o.domain == "") == BLOCKED_OPSET
    mean = next(n for n in model.graph.node if n.op_type == "ReduceMean")
    assert len(mean.input) == 2 and not any(a.name == "axes" for a in mean.attribute)
    assert {"QuantizeLinear"} <= {n.op_type for n in model.graph.node}
    assert "Round" not in {n.op_type for n in model.graph.node}

    x = rng.normal(size=(4, WIDTH)).astype(np.float32)
    session = ort.InferenceSession(str(int8), providers=["CPUExecutionProvider"])
    got = session.run(None, {"x": x})[0]
    n = x / np.sqrt((x * x).mean(axis=-1, keepdims=True))
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    wq = next(v for v in inits.values() if v.dtype == np.int8 and v.ndim == 2).astype(np.int64)
    ws = next(v for k, v in inits.items() if k.endswith("_scale") and v.size == 8)
    s = np.abs(n).max(axis=-1, keepdims=True) / np.float32(127)
    expected = (np.rint(n / s).astype(np.int64) @ wq).astype(np.float32) * ws * s
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_graphs_that_cannot_move_to_opset_21_keep_the_four_ops() -> None:
    """Below opset 13 (axes as attributes of more operators), with subgraphs (If, Loop) or with
    an operator whose meaning changed by 21, the graph stays where it is and its quantizers keep
    Div, Round, Add and Cast."""
    from guardcli.runtime.int8_graph import to_per_row_activations
    from guardcli.runtime.onnx_opset import can_raise_opset

    def per_tensor(opset: int, *extra):
        w = numpy_helper.from_array(np.ones((WIDTH, 4), dtype=np.int8), "w")
        ws = numpy_helper.from_array(np.float32(0.5), "ws")
        nodes = [
            helper.make_node("DynamicQuantizeLinear", ["x"], ["q", "s", "zp"], name="dq"),
            helper.make_node("MatMulInteger", ["q", "w", "zp"], ["i"], name="mm"),
            helper.make_node("Cast", ["i"], ["f"], to=TensorProto.FLOAT),
            helper.make_node("Mul", ["s", "ws"], ["sw"]),
            helper.make_node("Mul", ["f", "sw"], ["y"]),
            *extra,
        ]
        graph = helper.make_graph(
            nodes,
            "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", WIDTH])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", 4])],
            [w, ws],
        )
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])

    branch = helper.make_graph(
        [helper.make_node("Identity", ["ws"], ["o"])],
        "b",
        [],
        [helper.make_tensor_value_info("o", TensorProto.FLOAT, [])],
    )
    cond = helper.make_node(
        "Constant", [], ["c"], value=helper.make_tensor("c", TensorProto.BOOL, [], [True])
    )
    with_if = helper.make_node("If", ["c"], ["z"], then_branch=branch, else_branch=branch)
    # GroupNormalization's scale and bias are per group at 18, per channel at 21
    group_norm = helper.make_node("GroupNormalization", ["x", "ws", "ws"], ["g"], num_groups=1)
    for model, movable in (
        (per_tensor(17), True),
        (per_tensor(12), False),
        (per_tensor(17, cond, with_if), False),
        (per_tensor(18, group_norm), False),
    ):
        opset = model.opset_import[0].version
        assert can_raise_opset(model, opset) is movable
        assert to_per_row_activations(model) == 1
        ops = {n.op_type for n in model.graph.node}
        assert ("QuantizeLinear" in ops) is movable and ("Round" in ops) is not movable
        assert model.opset_import[0].version == (BLOCKED_OPSET if movable else opset)


def test_an_equal_split_gets_num_outputs_and_a_newer_opset_stays(tmp_path: Path) -> None:
    """A Split without sizes (opset 13-17) needs `num_outputs` from 18 on: the move adds it, and
    the graph runs as before. A graph above 21 is never lowered."""
    from guardcli.runtime.onnx_opset import raise_opset

    nodes = [
        helper.make_node("Split", ["x"], ["a", "b"], axis=-1),
        helper.make_node("Sub", ["a", "b"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = np.arange(16, dtype=np.float32).reshape(2, 8)
    before = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    want = before.run(None, {"x": x})[0]
    raise_opset(onnx, model, 17)
    assert model.opset_import[0].version == BLOCKED_OPSET
    split = model.graph.node[0]
    assert [a.i for a in split.attribute if a.name == "num_outputs"] == [2]
    after = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(after.run(None, {"x": x})[0], want)
    model.opset_import[0].version = 23
    raise_opset(onnx, model, 23)
    assert model.opset_import[0].version == 23
