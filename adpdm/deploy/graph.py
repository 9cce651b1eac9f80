"""Rewrites of the exported ONNX graph: int8 weight initializers, int32 biases, a slimmer graph.

The exporter folds each quantized layer's (already int8-representable) float weight into a
constant. :func:`store_int8_weights` replaces that constant by int8 codes with a per-channel
``DequantizeLinear`` and, where the layer's input comes from a ``DequantizeLinear``, the
float bias by int32 codes of scale ``s_x * s_w`` (ORT's QDQ fusions want every input of a
Conv / Gemm / MatMul to come from a DequantizeLinear). :func:`slim` then removes what the
exporter spends bytes on without changing the function: constants as nodes, duplicate
constants, shape arithmetic on static dimensions, long names.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import ml_dtypes
import numpy as np
import onnx
from onnx import helper, numpy_helper, version_converter
from onnx.reference import ReferenceEvaluator

from .export_mode import Int8Weight

logger = logging.getLogger(__name__)

WEIGHT_OPS = ("Conv", "Gemm", "MatMul")
SHAPE_SIZED = 64  # elements: the largest constant the shape passes of `slim` read or fold


def constant_values(model: onnx.ModelProto, max_elements: int | None = None) -> dict[str, np.ndarray]:
    """Values of every initializer and every ``Constant`` node output, by tensor name.

    ``max_elements``: only tensors that small (shape-sized values), so the shape passes of
    :func:`slim` never convert the weights.
    """

    def small(t: onnx.TensorProto) -> bool:
        return max_elements is None or (
            t.data_location != onnx.TensorProto.EXTERNAL and int(np.prod(t.dims)) <= max_elements
        )

    values = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer if small(t)}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            if small(node.attribute[0].t):
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


@dataclass
class _Layout:
    """A weight's codes, scale and zero point laid out like the exported constant."""

    codes: np.ndarray
    scale: np.ndarray
    zero: np.ndarray
    axis: int  # the channel axis (per channel) or the block axis (blocked)


def _weight_layout(node: onnx.NodeProto, value: np.ndarray, w: Int8Weight) -> _Layout:
    """The integer codes laid out like the exported constant, with their scale and zero point.

    Gemm with ``transB=0`` and MatMul hold the transposed weight (I, O): per-channel qparams sit on
    axis 1 there, blocked ones (on the input axis) on axis 0.
    """
    codes, scale, zero = w.codes.numpy(), w.scale.numpy().astype(np.float32), w.zero.numpy()
    transposed = node.op_type == "MatMul" or (
        node.op_type == "Gemm" and not next((a.i for a in node.attribute if a.name == "transB"), 0)
    )
    if transposed:
        codes = codes.T
        if w.block_size is not None:
            scale, zero = scale.T, zero.T
    blocked = w.block_size is not None
    axis = (0 if transposed else 1) if blocked else (1 if transposed else 0)
    if blocked:
        s_full = np.repeat(scale, w.block_size, axis=axis).take(range(codes.shape[axis]), axis=axis)
        z_full = np.repeat(zero.astype(np.float32), w.block_size, axis=axis).take(range(codes.shape[axis]), axis=axis)
    else:
        shape = [1] * codes.ndim
        shape[axis] = -1
        s_full, z_full = scale.reshape(shape), zero.astype(np.float32).reshape(shape)
    expected = (codes.astype(np.float32) - z_full) * s_full
    if value.shape != expected.shape or not np.allclose(value, expected, rtol=1e-5, atol=1e-7):
        raise ValueError(f"exported weight of {node.name} does not match the frozen layer's integer weight")
    return _Layout(np.ascontiguousarray(codes), np.ascontiguousarray(scale), np.ascontiguousarray(zero), axis)


def _int_tensor(values: np.ndarray, name: str, bits: int) -> onnx.TensorProto:
    """An integer initializer; 4 bits: ONNX uint4 (two codes per byte)."""
    if bits == 4:
        values = values.astype(ml_dtypes.uint4)
    return numpy_helper.from_array(values, name)


def needs_opset(model: onnx.ModelProto) -> int:
    """The lowest opset that runs the weight nodes of ``model``: 21 for blocked or 4-bit
    ``DequantizeLinear``, else 13."""
    four_bit = {t.name for t in model.graph.initializer if t.data_type in _FOUR_BIT}
    for node in model.graph.node:
        if node.op_type == "DequantizeLinear":
            if any(a.name == "block_size" for a in node.attribute) or node.input[0] in four_bit:
                return 21
    return 13


_FOUR_BIT = (onnx.TensorProto.UINT4, onnx.TensorProto.INT4)


def opset_of(model: onnx.ModelProto) -> int:
    """The default-domain opset ``model`` imports."""
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)


def upgrade_opset(model: onnx.ModelProto, opset: int) -> onnx.ModelProto:
    """``model`` converted to ``opset`` (ONNX's version converter): the exporter writes opset 17, and
    blocked or 4-bit ``DequantizeLinear`` needs 21."""
    weight_dq = [n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.name.endswith(".weight_dq")]
    # the converter knows no block_size before 21: convert without it, then put it back
    blocks = {}
    for node in weight_dq:
        for a in list(node.attribute):
            if a.name == "block_size":
                blocks[node.name] = a.i
                node.attribute.remove(a)
    converted = version_converter.convert_version(model, opset)
    del converted.graph.value_info[:]  # the converter's shape inference: bytes the runtime does not need
    for node in converted.graph.node:
        if node.name in blocks:
            node.attribute.append(helper.make_attribute("block_size", blocks[node.name]))
    return converted


def store_int8_weights(model: onnx.ModelProto, weights: dict[str, Int8Weight], prefix: str) -> int:
    """Replace each quantized layer's float weight (and bias) by integer initializers; returns the count.

    Per-channel weights get an ``axis`` DequantizeLinear and, where the layer's input comes from a
    DequantizeLinear and the codes are stored in 8 bits, an int32 bias; grouped weights a blocked one
    (``block_size``, opset 21). Weights of ``storage_bits`` 4 are stored as uint4, with a float bias.
    """
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
        lay = _weight_layout(node, values[node.input[1]], w)
        graph.initializer.extend([
            _int_tensor(lay.codes, f"{name}.weight_q", w.storage_bits),
            numpy_helper.from_array(lay.scale, f"{name}.weight_scale"),
            _int_tensor(lay.zero, f"{name}.weight_zero", w.storage_bits),
        ])  # fmt: skip
        block = {} if w.block_size is None else {"block_size": w.block_size}
        new_nodes.append(helper.make_node(
            "DequantizeLinear", [f"{name}.weight_q", f"{name}.weight_scale", f"{name}.weight_zero"],
            [f"{name}.weight_dq"], name=f"{name}.weight_dq", axis=lay.axis, **block,
        ))  # fmt: skip
        node.input[1] = f"{name}.weight_dq"
        x_dq = producers.get(node.input[0])
        # an int32 bias serves the int8 kernels' fusion only: 4-bit weights are dequantized to float anyway, and
        # a float bias stays one copy for every timestep group (an int32 one has the group's input scale)
        per_channel_dq = (w.block_size is None and w.storage_bits == 8 and x_dq is not None
                          and x_dq.op_type == "DequantizeLinear")  # fmt: skip
        if len(node.input) > 2 and node.input[2] in values and per_channel_dq:
            s_x = float(values[x_dq.input[1]])
            bias_scale = (lay.scale * s_x).astype(np.float32)
            bias = np.round(values[node.input[2]] / bias_scale).astype(np.int32)
            graph.initializer.extend([
                numpy_helper.from_array(bias, f"{name}.bias_q"),
                numpy_helper.from_array(bias_scale, f"{name}.bias_scale"),
            ])  # fmt: skip
            new_nodes.append(helper.make_node(  # zero point omitted: 0 of the int32 codes
                "DequantizeLinear", [f"{name}.bias_q", f"{name}.bias_scale"], [f"{name}.bias_dq"],
                name=f"{name}.bias_dq", axis=0,
            ))  # fmt: skip
            node.input[2] = f"{name}.bias_dq"
        new_nodes.append(node)
        count += 1
    del graph.node[:]
    graph.node.extend(new_nodes)
    remove_unused(model)
    return count


def remove_unused(model: onnx.ModelProto) -> None:
    """Drop nodes whose outputs nothing reads (last to first), then initializers that nothing reads."""
    graph = model.graph
    used = {o.name for o in graph.output}
    keep_nodes = []
    for node in reversed(graph.node):
        if any(o in used for o in node.output):
            keep_nodes.append(node)
            used.update(x for x in node.input if x)
            used.update(_subgraph_reads(node))
    del graph.node[:]
    graph.node.extend(reversed(keep_nodes))
    keep = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)


def _has_subgraphs(graph: onnx.GraphProto) -> bool:
    kinds = (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
    return any(a.type in kinds for n in graph.node for a in n.attribute)


def _subgraph_reads(node: onnx.NodeProto) -> set[str]:
    """Every name the subgraphs of ``node`` (an ``If`` branch, a ``Loop`` body) read, outer values included."""
    reads: set[str] = set()
    for a in node.attribute:
        for sub in [a.g] if a.type == onnx.AttributeProto.GRAPH else a.graphs:
            reads.update(o.name for o in sub.output)
            for inner in sub.node:
                reads.update(x for x in inner.input if x)
                reads |= _subgraph_reads(inner)
    return reads


def _rename_inputs(graph: onnx.GraphProto, names: dict[str, str]) -> None:
    for node in graph.node:
        for i, x in enumerate(node.input):
            if x in names:
                node.input[i] = names[x]


def compact_names(model: onnx.ModelProto, initializers: bool = False) -> onnx.ModelProto:
    """Short names for the nodes and intermediate values of ``model`` (in place; returns it).

    The exporter names them by module path, which is most of a graph's bytes (about 0.35 of
    0.47 MB for the embedded UNet). Inputs and outputs keep their names; initializers too unless
    ``initializers`` (graphs share their weight payloads by content, not by name).
    """
    graph = model.graph
    if _has_subgraphs(graph):
        logger.info("graph has subgraphs: names left as exported")
        return model
    keep = {v.name for v in graph.input} | {v.name for v in graph.output}
    if initializers:
        names = {t.name: f"c{i}" for i, t in enumerate(graph.initializer)}
        for t in graph.initializer:
            t.name = names[t.name]
        _rename_inputs(graph, names)
    keep |= {t.name for t in graph.initializer}
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


def constants_to_initializers(model: onnx.ModelProto) -> int:
    """Turn ``Constant`` nodes holding a tensor into initializers; returns how many."""
    graph = model.graph
    keep, moved = [], 0
    for node in graph.node:
        if node.op_type == "Constant" and len(node.attribute) == 1 and node.attribute[0].name == "value":
            tensor = onnx.TensorProto()
            tensor.CopyFrom(node.attribute[0].t)
            tensor.name = node.output[0]
            graph.initializer.append(tensor)
            moved += 1
        else:
            keep.append(node)
    del graph.node[:]
    graph.node.extend(keep)
    return moved


def dedupe_initializers(model: onnx.ModelProto) -> int:
    """Keep one of several identical initializers (type, shape and bytes); returns how many were dropped."""
    graph = model.graph
    first: dict[tuple, str] = {}
    alias: dict[str, str] = {}
    keep = []
    for t in graph.initializer:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            keep.append(t)
            continue
        key = (t.data_type, tuple(t.dims), numpy_helper.to_array(t).tobytes())
        if key in first:
            alias[t.name] = first[key]
        else:
            first[key] = t.name
            keep.append(t)
    del graph.initializer[:]
    graph.initializer.extend(keep)
    _rename_inputs(graph, alias)
    return len(alias)


def _static_tail(info: onnx.ValueInfoProto) -> list[int] | None:
    """Dims 1.. of a value whose only non-static dimension is the first (the batch), else None."""
    dims = info.type.tensor_type.shape.dim
    if len(dims) < 2 or any(not d.HasField("dim_value") for d in dims[1:]):
        return None
    return [d.dim_value for d in dims[1:]]


def _inferred(model: onnx.ModelProto) -> dict[str, onnx.ValueInfoProto]:
    graph = onnx.shape_inference.infer_shapes(model, data_prop=True).graph
    return {v.name: v for v in [*graph.value_info, *graph.input, *graph.output]}


def _batch_symbol(infos: dict[str, onnx.ValueInfoProto], name: str) -> str | None:
    """The symbolic first dimension of value ``name`` (the dynamic batch), if shape inference named one."""
    info = infos.get(name)
    if info is None or not info.type.tensor_type.shape.dim:
        return None
    d0 = info.type.tensor_type.shape.dim[0]
    return d0.dim_param if d0.HasField("dim_param") else None


def _consumers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    out: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for x in node.input:
            out.setdefault(x, []).append(node)
    return out


def _allows_zero(node: onnx.NodeProto) -> bool:
    return any(a.name == "allowzero" and a.i for a in node.attribute)


def fold_static_shapes(model: onnx.ModelProto) -> int:
    """Replace shapes read from tensors whose only dynamic dimension is the batch by constants; returns how many.

    A ``Shape(x)`` read only as a ``Reshape`` target becomes ``[0, d1, d2, ...]`` (0 copies the
    batch dimension of the reshaped tensor, which must be the batch too); ``Gather(Shape(x), i)``
    of a static dimension ``i`` becomes that number. The exporter writes GroupNorm this way.
    """
    graph = model.graph
    infos, consumers, values = _inferred(model), _consumers(graph), constant_values(model, SHAPE_SIZED)
    in_subgraphs = set().union(*(_subgraph_reads(n) for n in graph.node))  # read there: keep the shape itself
    drop, folded = set(), 0
    for node in graph.node:
        if node.op_type != "Shape" or node.attribute or node.input[0] not in infos:
            continue
        tail = _static_tail(infos[node.input[0]])
        if tail is None:
            continue
        dims = np.array([0, *tail], dtype=np.int64)
        users = consumers.get(node.output[0], [])
        for g in users:
            index = values.get(g.input[1]) if g.op_type == "Gather" and len(g.input) > 1 else None
            if index is None or (g.attribute and g.attribute[0].i):
                continue
            index = np.where(index < 0, index + len(dims), index)
            if index.size and int(index.min()) >= 1 and int(index.max()) < len(dims):
                graph.initializer.append(numpy_helper.from_array(dims[index], g.output[0]))
                drop.add(id(g))
                folded += 1
        rest = [u for u in users if id(u) not in drop]
        batch = _batch_symbol(infos, node.input[0])
        if rest and batch is not None and node.output[0] not in in_subgraphs and all(
            u.op_type == "Reshape" and u.input[1] == node.output[0] and not _allows_zero(u)
            and _batch_symbol(infos, u.input[0]) == batch for u in rest
        ):  # fmt: skip
            graph.initializer.append(numpy_helper.from_array(dims, node.output[0]))
            drop.add(id(node))
            folded += 1
    _drop_nodes(graph, drop)
    return folded


def _drop_nodes(graph: onnx.GraphProto, drop: set[int]) -> None:
    keep = [n for n in graph.node if id(n) not in drop]
    del graph.node[:]
    graph.node.extend(keep)


def _batch_of(name: str, producers: dict[str, onnx.NodeProto], values: dict[str, np.ndarray]) -> str | None:
    """``x`` when ``name`` is ``Unsqueeze(Gather(Shape(x), 0), [0])``, the batch size of ``x`` as a 1-vector."""
    unsq = producers.get(name)
    if unsq is None or unsq.op_type != "Unsqueeze" or len(unsq.input) < 2 or values.get(unsq.input[1]) is None:
        return None
    gather = producers.get(unsq.input[0])
    if gather is None or gather.op_type != "Gather" or gather.attribute and gather.attribute[0].i:
        return None
    index, shape = values.get(gather.input[1]), producers.get(gather.input[0])
    if index is None or index.ndim or int(index) != 0 or list(values[unsq.input[1]].reshape(-1)) != [0]:
        return None
    if shape is None or shape.op_type != "Shape" or shape.attribute:
        return None
    return shape.input[0]


def fold_batch_reshapes(model: onnx.ModelProto) -> int:
    """``Reshape(x, Concat(batch of y, constants))`` -> ``Reshape(x, [0, constants])`` where x and y share the batch.

    The exporter computes attention's head reshapes from the runtime batch size; with the other
    dimensions constant (after :func:`fold_constants`), 0 (copy the input's first dimension) says
    the same. Returns how many were folded; the dead shape arithmetic goes with :func:`remove_unused`.
    """
    graph = model.graph
    if _has_subgraphs(graph):
        return 0
    infos, values, producers = _inferred(model), constant_values(model, SHAPE_SIZED), _producers(model)
    folded = 0
    for node in graph.node:
        if node.op_type != "Reshape" or _allows_zero(node) or node.input[1] in values:
            continue
        concat = producers.get(node.input[1])
        if concat is None or concat.op_type != "Concat" or not all(x in values for x in concat.input[1:]):
            continue
        source = _batch_of(concat.input[0], producers, values)
        batch = _batch_symbol(infos, node.input[0])
        if source is None or batch is None or _batch_symbol(infos, source) != batch:
            continue
        rest = [values[x].reshape(-1).astype(np.int64) for x in concat.input[1:]]
        target = np.concatenate([np.zeros(1, dtype=np.int64), *rest])
        name = f"{node.output[0]}_shape"
        graph.initializer.append(numpy_helper.from_array(target, name))
        node.input[1] = name
        folded += 1
    return folded


FOLDABLE = frozenset({"Add", "Cast", "Ceil", "Concat", "Div", "Equal", "Floor", "Gather", "Identity", "Mul",
                      "Range", "Reshape", "Slice", "Sqrt", "Squeeze", "Sub", "Unsqueeze"})  # fmt: skip


def _evaluate(node: onnx.NodeProto, values: dict[str, np.ndarray], opset: int) -> list[np.ndarray]:
    inputs = [numpy_helper.from_array(values[x], x) for x in node.input if x]
    graph = helper.make_graph([node], "fold", [], [helper.make_tensor_value_info(o, 0, None) for o in node.output],
                              initializer=inputs)  # fmt: skip
    one = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    return list(ReferenceEvaluator(one).run(None, {}))


def fold_constants(model: onnx.ModelProto, max_elements: int = SHAPE_SIZED) -> int:
    """Evaluate shape-sized nodes (``FOLDABLE`` ops) whose inputs are all constants; returns how many."""
    graph = model.graph
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 17)
    values = constant_values(model, max_elements)
    keep, folded = [], 0
    for node in graph.node:
        standard = node.op_type in FOLDABLE and node.domain in ("", "ai.onnx")
        if standard and all(not x or x in values for x in node.input):
            outs = _evaluate(node, values, opset)
            if all(o.size <= max_elements for o in outs):
                for name, value in zip(node.output, outs, strict=True):
                    value = np.asarray(value)
                    values[name] = value
                    graph.initializer.append(numpy_helper.from_array(value, name))
                folded += 1
                continue
        keep.append(node)
    del graph.node[:]
    graph.node.extend(keep)
    return folded


def inline_constant_ifs(model: onnx.ModelProto) -> int:
    """Replace every ``If`` whose condition is a constant by the nodes of the branch it takes; returns how many.

    The exporter writes ``squeeze(dim)`` of a dimension it cannot size as an ``If`` on that dimension
    being 1 (PixArt's output projection). Once the static shapes are folded the condition is a constant,
    and the branch that never runs has to go: ONNX Runtime rejects the graph for a ``Squeeze`` of a
    dimension it knows is not 1, even in that branch.
    """
    graph = model.graph
    values = constant_values(model, SHAPE_SIZED)
    nodes, inlined = [], 0
    for node in graph.node:
        cond = values.get(node.input[0]) if node.op_type == "If" else None
        if cond is None:
            nodes.append(node)
            continue
        taken = "then_branch" if bool(np.asarray(cond).reshape(-1)[0]) else "else_branch"
        branch = next(a.g for a in node.attribute if a.name == taken)
        graph.initializer.extend(branch.initializer)
        nodes += list(branch.node)
        nodes += [helper.make_node("Identity", [b.name], [o]) for b, o in zip(branch.output, node.output, strict=True)]
        inlined += 1
    del graph.node[:]
    graph.node.extend(nodes)
    return inlined


def slim(model: onnx.ModelProto) -> onnx.ModelProto:
    """A smaller graph computing the same function (in place; returns it).

    Constants become initializers, identical ones are kept once, static shapes are folded, and
    every node, intermediate value and initializer gets a short name. For the embedded UNet this
    halves a W8 graph's nodes (1,898 to 889) and its bytes without the small tensors, which
    :func:`adpdm.deploy.external.save_shared` now keeps inline.
    """
    constants_to_initializers(model)
    folds = (fold_static_shapes, fold_constants, inline_constant_ifs, fold_batch_reshapes)
    for _ in range(8):  # each fold lets shape inference see more static shapes: repeat to a fixed point
        if not sum(fold(model) for fold in folds):
            break
        remove_unused(model)
    dedupe_initializers(model)
    remove_unused(model)
    return compact_names(model, initializers=True)


@dataclass
class SharedGraphs:
    """One graph for every timestep group: the graph of group 0 with each constant that differs between
    the groups in an initializer of its own, and per group the values of those initializers
    (``values[g][name]``), which ONNX Runtime takes in place of the graph's (``add_initializer``)."""

    model: onnx.ModelProto
    values: list[dict[str, np.ndarray]]


def _initializer_inputs(model: onnx.ModelProto) -> list[tuple[int, int, str]]:
    """(node index, input index, initializer name) of every node input that is an initializer."""
    names = {t.name for t in model.graph.initializer}
    return [(k, j, x) for k, node in enumerate(model.graph.node) for j, x in enumerate(node.input) if x in names]


def _structure(model: onnx.ModelProto) -> list[tuple]:
    names = {t.name for t in model.graph.initializer}
    return [(n.op_type, tuple("" if x in names else x for x in n.input), tuple(n.output),
             tuple(a.SerializeToString() for a in n.attribute)) for n in model.graph.node]  # fmt: skip


def share_graphs(models: list[onnx.ModelProto]) -> SharedGraphs | None:
    """:class:`SharedGraphs` of the per-group ``models`` (slimmed, before saving), or None when they differ
    in more than the values of their constants (in their nodes, or in a constant's type or shape): then each
    group keeps its own graph. The values that differ are the activation quantizers' scales and zero points
    and, for 8-bit weights, the int32 biases (their scale holds the input's)."""
    if len(models) < 2 or any(_structure(m) != _structure(models[0]) for m in models[1:]):
        return None
    tables = [{t.name: t for t in m.graph.initializer} for m in models]
    positions = _initializer_inputs(models[0])
    per_position = []
    for k, j, _ in positions:
        tensors = [tables[g][m.graph.node[k].input[j]] for g, m in enumerate(models)]
        if any(t.data_location == onnx.TensorProto.EXTERNAL for t in tensors):
            if len({t.SerializeToString() for t in tensors}) > 1:
                return None  # external weights differ between groups
            per_position.append(None)
            continue
        arrays = [numpy_helper.to_array(t) for t in tensors]
        same = all(a.dtype == arrays[0].dtype and a.shape == arrays[0].shape and np.array_equal(a, arrays[0])
                   for a in arrays[1:])  # fmt: skip
        if same:
            per_position.append(None)
        elif any(a.shape != arrays[0].shape or a.dtype != arrays[0].dtype for a in arrays):
            return None
        else:
            per_position.append(arrays)
    shared = onnx.ModelProto()
    shared.CopyFrom(models[0])
    named: dict[bytes, str] = {}  # one initializer per distinct sequence of per-group values
    values: list[dict[str, np.ndarray]] = [{} for _ in models]
    for (k, j, _), arrays in zip(positions, per_position, strict=True):
        if arrays is None:
            continue
        key = arrays[0].dtype.str.encode() + b"".join(a.tobytes() for a in arrays)
        if key not in named:
            named[key] = f"g{len(named)}"
            shared.graph.initializer.append(numpy_helper.from_array(arrays[0], named[key]))
            for g, a in enumerate(arrays):
                values[g][named[key]] = a
        shared.graph.node[k].input[j] = named[key]
    remove_unused(shared)
    return SharedGraphs(shared, values)
