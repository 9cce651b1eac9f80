"""Sampling sharded across processes with Hugging Face ``accelerate``, gathered in order.

Sample ``i`` of a run depends only on the seed and ``i`` (common random numbers), so a run can
be cut into shards at batch boundaries, each process drawing its own batches, and the gathered
result is exactly that of one process::

    accelerate launch --multi_gpu --num_processes 8 my_eval.py   # 8 GPUs, or 8 CPU processes without a GPU

    # my_eval.py
    from adpdm.distributed import sample_distributed
    out = sample_distributed(unet, scheduler_config, 50_000, SamplerConfig(batch_size=250))

Calibration data are recorded the same way (:func:`record_distributed`). Every process gets
the whole result (rank 0 usually writes it). On GPUs each process places the
UNet on its own device (``state.device``). On a machine without a GPU the processes talk over
gloo on the CPU (note: ``accelerate launch --cpu`` starts only one process; use ``--multi_gpu``
as above, or ``torchrun --nproc_per_node N``).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import torch

from .calib.data import CalibrationSet, concat, record_trajectories
from .sampling import SampleOutput, SamplerConfig, sample

logger = logging.getLogger(__name__)


def launched_state() -> Any | None:
    """The ``accelerate`` process state when run by ``accelerate launch`` with several processes, else ``None``.

    The command-line tools call this to switch to sharded sampling; one process needs no ``accelerate``.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) < 2:
        return None
    return process_state()


def finish_processes() -> None:
    """Leave the process group, when one was started, once every process is done: a process that exits while
    the others still talk to it can abort in the communication library's threads."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


def process_state() -> Any:
    """``accelerate``'s ``PartialState``, on the CPU (gloo) when there is no GPU."""
    try:
        from accelerate import PartialState
    except ImportError as err:
        raise RuntimeError("several processes need Hugging Face accelerate: pip install 'adpdm[dist]'") from err
    return PartialState(cpu=not torch.cuda.is_available())


def shard(num: int, batch_size: int, rank: int, world: int) -> list[tuple[int, int]]:
    """``(first, count)`` ranges of process ``rank``: contiguous whole batches of a 1-process run."""
    if num < 1 or batch_size < 1 or world < 1 or not 0 <= rank < world:
        raise ValueError(f"bad shard arguments num={num}, batch_size={batch_size}, rank={rank}, world={world}")
    batches = [(s, min(batch_size, num - s)) for s in range(0, num, batch_size)]
    lo, hi = len(batches) * rank // world, len(batches) * (rank + 1) // world
    return batches[lo:hi]


def sample_distributed(
    unet: Any, scheduler_config: dict, num: int, cfg: SamplerConfig, state: Any = None, **kwargs: Any
) -> SampleOutput:
    """:func:`adpdm.sampling.sample` with the batches spread over the ``accelerate`` processes.

    Args:
        unet, scheduler_config, num, cfg: as for :func:`~adpdm.sampling.sample`.
        state: an ``accelerate.PartialState`` (default: the current one; a single process
            without ``accelerate launch``).
        **kwargs: passed to :func:`~adpdm.sampling.sample` (labels, num_classes, null_class, ...).
    """
    state = state or process_state()
    mine = shard(num, cfg.batch_size, state.process_index, state.num_processes)
    kwargs.setdefault("progress", state.is_main_process)
    parts = []
    for first, count in mine:
        out = sample(unet, scheduler_config, count, cfg, first=first, **kwargs)
        parts.append((first, out.images, out.labels))
    logger.info("process %d/%d drew %d samples", state.process_index, state.num_processes, sum(c for _, c in mine))
    gathered = _gather_in_order(state, parts)
    images = torch.cat([p[1] for p in gathered])
    labels = torch.cat([p[2] for p in gathered]) if gathered[0][2] is not None else None
    return SampleOutput(images=images, labels=labels)


def record_distributed(
    unet: Any,
    scheduler_config: dict,
    num_samples: int,
    sampler: SamplerConfig,
    num_classes: int | None = None,
    null_class: int | None = None,
    state: Any = None,
) -> CalibrationSet:
    """:func:`adpdm.calib.data.record_trajectories` with the trajectories spread over processes.

    The gathered set has the rows, in the same order, of a one-process recording.
    """
    state = state or process_state()
    parts = []
    for first, count in shard(num_samples, sampler.batch_size, state.process_index, state.num_processes):
        calib = record_trajectories(unet, scheduler_config, count, sampler, num_classes, null_class,
                                    progress=state.is_main_process, first=first)  # fmt: skip
        parts.append((first, calib))
    return concat([c for _, c in _gather_in_order(state, parts)])


def _gather_in_order(state: Any, parts: list[tuple]) -> list[tuple]:
    """Every process's ``(first, ...)`` parts, on every process, sorted by ``first``."""
    from accelerate.utils import gather_object

    gathered = gather_object(parts) if state.num_processes > 1 else parts
    return sorted(gathered, key=lambda p: p[0])
