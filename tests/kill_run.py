"""Driver of ``tests/test_kill_resume.py``: one training run in this process, killed by SIGKILL at a point.

``python tests/kill_run.py CONFIG EVENT EPOCH RESUME`` trains ``CONFIG`` (``fit``); ``RESUME`` is ``last`` or
``-``. ``EVENT`` is where the process sends itself SIGKILL in epoch ``EPOCH`` (``none``: never):

* ``step``: inside a training step, after backward, before the optimizer applies it;
* ``validation``: at the first validation batch;
* ``checkpoint``: half-way through writing ``last.ckpt`` (half the bytes written to the temporary file
  beside it and synced to disk, the rename not yet done).

SIGKILL cannot be caught: nothing of the process's own clean-up runs, as with ``kill -9`` or the OOM killer.
"""

from __future__ import annotations

import io
import os
import signal
import sys
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import Callback

from steelkd.config import load_config
from steelkd.engine import fit
from steelkd.engine.callbacks import AtomicCheckpointIO
from steelkd.io import atomic_path


def _die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


class _KillWhileWriting(AtomicCheckpointIO):
    """Writes half of ``last.ckpt``'s bytes into the temporary file, syncs them, then dies."""

    def __init__(self, epoch: int, trainer: Any) -> None:
        super().__init__()
        self.epoch, self.trainer = epoch, trainer

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if Path(path).name == "last.ckpt" and self.trainer.current_epoch == self.epoch:
            import torch

            buf = io.BytesIO()
            torch.save(checkpoint, buf)
            data = buf.getvalue()
            with atomic_path(path) as tmp, open(tmp, "wb") as fh:
                fh.write(data[: len(data) // 2])
                fh.flush()
                os.fsync(fh.fileno())
                _die()
        super().save_checkpoint(checkpoint, path, storage_options)


class KillAt(Callback):
    """Send this process SIGKILL at ``event`` of epoch ``epoch``."""

    def __init__(self, event: str, epoch: int) -> None:
        self.event, self.epoch = event, epoch

    def setup(self, trainer, pl_module, stage) -> None:  # type: ignore[no-untyped-def]
        if self.event == "checkpoint":  # after AtomicCheckpoints (registered before the caller's callbacks)
            trainer.strategy.checkpoint_io = _KillWhileWriting(self.epoch, trainer)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:  # type: ignore[no-untyped-def]
        if self.event == "step" and trainer.current_epoch == self.epoch:
            _die()

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:  # type: ignore[no-untyped-def]
        if self.event == "validation" and trainer.current_epoch == self.epoch:
            _die()


if __name__ == "__main__":
    config, event, epoch, resume = sys.argv[1:5]
    fit(
        load_config(config),
        progress=False,
        resume=None if resume == "-" else resume,
        callbacks=[KillAt(event, int(epoch))],
    )
    print("finished")
