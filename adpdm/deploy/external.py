"""One external weight file shared by several ONNX graphs.

Every graph of an export holds the same int8 weights (only the activation scales differ).
:func:`save_shared` writes each distinct tensor payload once into one file and points the
initializers of every graph at its offset there (ONNX external data), so G graphs cost one
copy of the weights.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import onnx
from onnx import external_data_helper, numpy_helper

ALIGN = 64  # offsets aligned for the runtime's loads


@dataclass
class SharedWeights:
    """Where :func:`save_shared` put the weights.

    Args:
        path: the weight file.
        bytes: its size.
        tensors: distinct tensors written.
        references: external initializers over all graphs (>= ``tensors``).
    """

    path: Path
    bytes: int
    tensors: int
    references: int


def _raw(tensor: onnx.TensorProto) -> bytes:
    if not tensor.HasField("raw_data"):
        tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor), tensor.name))
    return tensor.raw_data


def save_shared(
    models: Sequence[onnx.ModelProto],
    paths: Sequence[Path],
    weights_name: str,
    min_bytes: int = 1024,
    min_shared_bytes: int = 128,
) -> SharedWeights:
    """Save ``models`` to ``paths`` with their larger initializers in one shared file.

    A payload goes to the file ``weights_name`` (written once, next to the graphs; all ``paths``
    must share a folder) when it has ``min_bytes`` or more, or ``min_shared_bytes`` or more and
    several graphs hold it. Smaller ones stay inline: an external reference costs about 70 bytes
    of graph, more than a small tensor that only one graph holds.
    """
    folders = {Path(p).parent for p in paths}
    if len(folders) != 1:
        raise ValueError("the graphs sharing one weight file must be written to one folder")
    weights_path = folders.pop() / weights_name
    holders: dict[bytes, int] = {}
    for model in models:
        for key in {hashlib.sha256(_raw(t)).digest() for t in model.graph.initializer}:
            holders[key] = holders.get(key, 0) + 1
    offsets: dict[bytes, tuple[int, int]] = {}
    chunks: list[bytes] = []
    size = references = 0
    for model in models:
        for tensor in model.graph.initializer:
            raw = _raw(tensor)
            key = hashlib.sha256(raw).digest()
            if len(raw) < min_bytes and (len(raw) < min_shared_bytes or holders[key] < 2):
                continue
            if key not in offsets:
                pad = -size % ALIGN
                chunks.append(b"\0" * pad + raw)
                offsets[key] = (size + pad, len(raw))
                size += pad + len(raw)
            offset, length = offsets[key]
            external_data_helper.set_external_data(tensor, weights_name, offset, length)
            tensor.ClearField("raw_data")
            references += 1
    weights_path.write_bytes(b"".join(chunks))
    for model, path in zip(models, paths, strict=True):
        onnx.save_model(model, str(path))
    return SharedWeights(weights_path, size, len(offsets), references)
