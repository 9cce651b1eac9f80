"""Rewrites of the exported ONNX graph: int8 weight initializers, int32 biases.

The exporter folds each quantized layer's (already int8-representable) float weight into a
constant. :func:`store_int8_weights` replaces that constant by int8 codes with a per-channel
``DequantizeLinear`` and, where the layer's input comes from a ``DequantizeLinear``, the
float bias by int32 codes of scale ``s_x * s_w`` (ORT's QDQ fusions want every input of a
Conv / Gemm / MatMul to come from a DequantizeLinear).
"""

from __future__ import annotations

import logging

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .export_mode import Int8Weight

logger = logging.getLogger(__name__)

WEIGHT_OPS = ("Conv", "Gemm", "MatMul")


def constant_values(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Values of every initializer and every ``Constant`` node output, by tensor name."""
    values = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return values


def module_of(node: onnx.NodeProto, prefix: str) -> str | None:
    """The torch module path of an exported node: ``/unet/down_blocks.0/conv1/Conv`` -> ``down_blocks.0.conv1``."""
    parts = node.name.split("/")
    if len(parts) < 4 or parts[1] != prefix:
        return None
    # attention projections run inside the processor, which the exporter scopes as a child
    return ".".join(p for p in parts[2:-1] if p != "processor")


def _producers(model: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    return {out: node for node in model.graph.node for out in node.output}


def _weight_layout(node: onnx.NodeProto, value: np.ndarray, w: Int8Weight) -> tuple[np.ndarray, int]:
    """The int8 codes laid out like the exported constant, and the channel axis in that layout."""
    codes = w.codes.numpy()
    if node.op_type == "Gemm":
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        codes, axis = (codes, 0) if trans_b else (codes.T, 1)
    elif node.op_type == "MatMul":
        codes, axis = codes.T, 1
    else:
        axis = 0
    shape = [1] * codes.ndim
    shape[axis] = -1
    zero = w.zero.numpy().astype(np.float32).reshape(shape)
    expected = (codes.astype(np.float32) - zero) * w.scale.numpy().reshape(shape)
    if value.shape != expected.shape or not np.allclose(value, expected, rtol=1e-5, atol=1e-7):
        raise ValueError(f"exported weight of {node.name} does not match the frozen layer's int8 weight")
    return np.ascontiguousarray(codes), axis


def store_int8_weights(model: onnx.ModelProto, weights: dict[str, Int8Weight], prefix: str) -> int:
    """Replace each quantized layer's float weight (and bias) by integer initializers; returns the count."""
    values = constant_values(model)
    producers = _producers(model)
    graph = model.graph
    new_nodes: list[onnx.NodeProto] = []
    count = 0
    for node in graph.node:
        name = module_of(node, prefix) if node.op_type in WEIGHT_OPS else None
        if name not in weights or node.input[1] not in values:
            new_nodes.append(node)
            continue
        w = weights[name]
        codes, axis = _weight_layout(node, values[node.input[1]], w)
        scale = w.scale.numpy().astype(np.float32)
        graph.initializer.extend([
            numpy_helper.from_array(codes, f"{name}.weight_q"),
            numpy_helper.from_array(scale, f"{name}.weight_scale"),
            numpy_helper.from_array(w.zero.numpy(), f"{name}.weight_zero"),
        ])  # fmt: skip
        new_nodes.append(helper.make_node(
            "DequantizeLinear", [f"{name}.weight_q", f"{name}.weight_scale", f"{name}.weight_zero"],
            [f"{name}.weight_dq"], name=f"{name}.weight_dq", axis=axis,
        ))  # fmt: skip
        node.input[1] = f"{name}.weight_dq"
        x_dq = producers.get(node.input[0])
        if len(node.input) > 2 and node.input[2] in values and x_dq is not None and x_dq.op_type == "DequantizeLinear":
            s_x = float(values[x_dq.input[1]])
            bias_scale = (scale * s_x).astype(np.float32)
            bias = np.round(values[node.input[2]] / bias_scale).astype(np.int32)
            graph.initializer.extend([
                numpy_helper.from_array(bias, f"{name}.bias_q"),
                numpy_helper.from_array(bias_scale, f"{name}.bias_scale"),
                numpy_helper.from_array(np.zeros_like(bias), f"{name}.bias_zero"),
            ])  # fmt: skip
            new_nodes.append(helper.make_node(
                "DequantizeLinear", [f"{name}.bias_q", f"{name}.bias_scale", f"{name}.bias_zero"],
                [f"{name}.bias_dq"], name=f"{name}.bias_dq", axis=0,
            ))  # fmt: skip
            node.input[2] = f"{name}.bias_dq"
        new_nodes.append(node)
        count += 1
    del graph.node[:]
    graph.node.extend(new_nodes)
    remove_unused(model)
    return count


def remove_unused(model: onnx.ModelProto) -> None:
    """Drop initializers and ``Constant`` nodes that nothing reads."""
    graph = model.graph
    used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    keep_nodes = [n for n in graph.node if n.op_type != "Constant" or n.output[0] in used]
    del graph.node[:]
    graph.node.extend(keep_nodes)
    keep = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)


def compact_names(model: onnx.ModelProto) -> onnx.ModelProto:
    """Short names for the nodes and intermediate values of ``model`` (in place; returns it).

    The exporter names them by module path, which is most of a graph's bytes (about 0.35 of
    0.47 MB for the embedded UNet). Inputs, outputs and initializers keep their names, so graphs
    still share their weights by name.
    """
    graph = model.graph
    if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for n in graph.node for a in n.attribute):
        logger.info("graph has subgraphs: names left as exported")
        return model
    keep = {v.name for v in graph.input} | {v.name for v in graph.output} | {t.name for t in graph.initializer}
    short: dict[str, str] = {}

    def rename(name: str) -> str:
        if not name or name in keep:
            return name
        return short.setdefault(name, f"v{len(short)}")

    for i, node in enumerate(graph.node):
        node.name = f"n{i}"
        new_inputs, new_outputs = [rename(x) for x in node.input], [rename(x) for x in node.output]
        del node.input[:], node.output[:]
        node.input.extend(new_inputs)
        node.output.extend(new_outputs)
    for info in graph.value_info:
        info.name = rename(info.name)
    return model
