"""The reliability callbacks of every run: the output folder checked first, finite losses, atomic checkpoints.

:func:`reliability_callbacks` is what :func:`steelkd.engine.train.build_trainer` registers:

* :class:`OutputCheck` (``setup``, before the first step): the output folder must take a file, have room
  for two checkpoints (best and last) and allow a file that large (``ulimit -f``); otherwise one
  :class:`OutputFolderError` naming the folder, what was found and what is needed. The size of a checkpoint
  is estimated by :func:`checkpoint_bytes`, which adds what each trainer callback that keeps more state in
  checkpoints says it adds (:class:`ExtraCheckpointState`, e.g. the EMA copy of ``StudentEMA``).
* :class:`FiniteLoss` (``on_before_backward``): a NaN or infinite training loss stops the run with one
  :class:`NonFiniteLossError` naming the global step, epoch and batch, *before* the optimizer applies it, so
  the checkpoints on disk (the last one written at the end of the previous epoch) stay the last good ones.
* :class:`AtomicCheckpoints` (``setup``): the strategy's checkpoint writer becomes
  :class:`AtomicCheckpointIO`: ``torch.save`` into a temporary file beside the target, ``fsync``, then
  ``os.replace``. Lightning's own writer goes through an fsspec transaction whose temporary file lives in
  the system temp folder, so on another file system its final move is a copy that a kill can cut short
  (and a full output disk is found only then).
"""

from __future__ import annotations

import math
import os
import resource
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import lightning as L
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import Callback

from steelkd.io import atomic_path, atomic_write_bytes

__all__ = [
    "AtomicCheckpointIO",
    "AtomicCheckpoints",
    "ExtraCheckpointState",
    "FiniteLoss",
    "NonFiniteLossError",
    "OutputCheck",
    "OutputFolderError",
    "checkpoint_bytes",
    "reliability_callbacks",
    "tensor_bytes",
]

_MB = 1024 * 1024


class NonFiniteLossError(ValueError):
    """The training loss became NaN or infinite (one line naming the step)."""


class OutputFolderError(OSError):
    """The output folder cannot take the run's files (one line naming the folder)."""


@runtime_checkable
class ExtraCheckpointState(Protocol):
    """A callback that writes more than the trainer's own state into each checkpoint (a copy of weights)."""

    def checkpoint_extra_bytes(self, pl_module: torch.nn.Module) -> int:
        """Bytes this callback adds to a checkpoint of ``pl_module``."""
        ...


def tensor_bytes(tensors: Iterable[torch.Tensor]) -> int:
    """The bytes of ``tensors``' elements."""
    return sum(t.numel() * t.element_size() for t in tensors)


def checkpoint_bytes(module: torch.nn.Module, callbacks: Iterable[object] = ()) -> int:
    """Estimated size of one checkpoint of ``module``: its trainable weights three times (the weights and
    AdamW's two moments), its buffers once, what each of ``callbacks`` that is an
    :class:`ExtraCheckpointState` adds, plus 1 MB of trainer state."""
    params = tensor_bytes(p for p in module.parameters() if p.requires_grad)
    extra = sum(c.checkpoint_extra_bytes(module) for c in callbacks if isinstance(c, ExtraCheckpointState))
    return 3 * params + tensor_bytes(module.buffers()) + extra + _MB


class OutputCheck(Callback):
    """Fail before the first step when the output folder cannot take the run's checkpoints."""

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit" and trainer.is_global_zero:
            need = checkpoint_bytes(pl_module, trainer.callbacks)
            check_output_folder(Path(trainer.default_root_dir), need)


def check_output_folder(out: Path, need: int) -> None:
    """Prove ``out`` writable with a probe file and check room for two checkpoints of ``need`` bytes.

    Raises:
        OutputFolderError: naming ``out`` and the reason (not writable, too little free space, a file size
            limit below one checkpoint).
    """
    probe = out / ".steelkd-write-probe"
    try:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(probe, b"\0" * min(need, _MB))
        probe.unlink()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise OutputFolderError(f"{out}: output folder is not writable ({reason})") from None
    soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    if soft != resource.RLIM_INFINITY and soft < need:
        raise OutputFolderError(
            f"{out}: the file size limit (ulimit -f) is {soft / _MB:.1f} MB but a checkpoint needs about "
            f"{need / _MB:.1f} MB"
        )
    free = shutil.disk_usage(out).free
    if free < 2 * need:
        raise OutputFolderError(
            f"{out}: {free / _MB:.1f} MB free but the best and last checkpoints need about "
            f"{2 * need / _MB:.1f} MB"
        )


class FiniteLoss(Callback):
    """Stop the run on a NaN or infinite training loss, before the optimizer step that would apply it."""

    def on_before_backward(
        self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor
    ) -> None:
        if not bool(torch.isfinite(loss.detach()).all()):
            value = float(loss.detach().float().reshape(-1)[0])
            last = Path(trainer.default_root_dir) / "checkpoints" / "last.ckpt"
            kept = (
                f"the last good checkpoint {last} is kept"
                if last.is_file()
                else "no checkpoint was written yet"
            )
            batch = trainer.fit_loop.epoch_loop.batch_progress.current.ready - 1
            raise NonFiniteLossError(
                f"training loss is {'nan' if math.isnan(value) else value} at step {trainer.global_step} "
                f"(epoch {trainer.current_epoch}, batch {batch}): stopped; {kept}"
            )


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` to a temporary file beside the target, ``fsync``, then ``os.replace``: a kill or a
    full disk during the write leaves the previous checkpoint intact."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO.save_checkpoint takes no storage_options")
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            torch.save(checkpoint, fh)
            fh.flush()
            os.fsync(fh.fileno())


class AtomicCheckpoints(Callback):
    """Make the strategy write checkpoints with :class:`AtomicCheckpointIO`."""

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()


def reliability_callbacks() -> list[Callback]:
    """The callbacks every run gets (see the module docstring)."""
    return [OutputCheck(), FiniteLoss(), AtomicCheckpoints()]
