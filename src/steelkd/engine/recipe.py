"""The training-recipe callbacks of issue 11: EMA of the student's weights, early stopping, elapsed time.

:func:`recipe_callbacks` turns ``cfg.train`` into Lightning callbacks for
:func:`steelkd.engine.train.build_trainer`:

* :class:`StudentEMA` (``train.ema_decay > 0``): Lightning's :class:`EMAWeightAveraging` restricted to the
  network being trained (``module.model``): a distiller's teacher and its loss adapters are not copied or
  averaged. The averaged weights are swapped in for each validation (so ``val/mdice``, the best checkpoint
  and the exported model are the EMA's) and written as the checkpoint's ``state_dict``; the raw weights
  travel in ``current_model_state`` and are restored on resume.
* ``EarlyStopping`` on ``val/mdice`` (``train.early_stop_patience > 0``): stop after that many
  validations without a better mDice.
* :class:`ElapsedTime` (always): the run's clock, wall and CPU seconds; logs ``time/elapsed_s``, the
  wall-clock seconds of the run so far, at each validation; both counts are kept in the checkpoint, so a
  resumed run continues them (:class:`steelkd.engine.TrainResult` reports the totals).

Example:
    >>> from steelkd.config import Config
    >>> cfg = Config()
    >>> cfg.train.ema_decay, cfg.train.early_stop_patience = 0.999, 5
    >>> [type(c).__name__ for c in recipe_callbacks(cfg)]
    ['StudentEMA', 'EarlyStopping', 'ElapsedTime']
"""

from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path
from typing import Any, NamedTuple

import lightning as L
from lightning.pytorch.callbacks import Callback, EarlyStopping, EMAWeightAveraging
from lightning.pytorch.utilities.rank_zero import rank_zero_warn
from torch import nn
from torch.optim.swa_utils import AveragedModel

from steelkd.config import Config
from steelkd.engine.callbacks import tensor_bytes

__all__ = [
    "ELAPSED_KEY",
    "ClockReading",
    "ElapsedTime",
    "StudentEMA",
    "process_cpu_seconds",
    "recipe_callbacks",
]

#: The logged name of the run's wall-clock seconds so far (one value per validation).
ELAPSED_KEY = "time/elapsed_s"


def _student(pl_module: L.LightningModule) -> nn.Module:
    """The network a module trains: ``module.model`` (segmenter and distiller alike), else the module."""
    net = getattr(pl_module, "model", None)
    return net if isinstance(net, nn.Module) else pl_module


class StudentEMA(EMAWeightAveraging):
    """An exponential moving average of the student's weights (``module.model``) only.

    Lightning's :class:`EMAWeightAveraging` averages the whole LightningModule; here the average is kept
    of ``module.model`` alone, so a distiller's frozen teacher is neither copied nor averaged (nor swapped
    at each validation) and the loss's adapters keep their raw weights. After each optimizer step
    ``ema = decay * ema + (1 - decay) * weights`` (parameters and float buffers; the first step copies).
    The average lives on the device the strategy trains on.

    Checkpoints: ``state_dict`` holds the module's state with the student's entries replaced by the
    average (what validation scored, what :func:`steelkd.engine.fit` exports from ``best.ckpt``);
    ``current_model_state`` the raw state and ``averaging_state`` the average's step count, from which a
    resumed run restores both. A checkpoint without them (a run without EMA) starts the average from its
    weights.

    Args:
        decay: the EMA decay per optimizer step, in (0, 1).

    Example:
        >>> ema = StudentEMA(decay=0.999)
        >>> trainer = L.Trainer(callbacks=[ema])  # doctest: +SKIP
    """

    def __init__(self, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        super().__init__(decay=decay, use_buffers=True)
        self.decay = float(decay)
        self._prefix = "model."

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        net = _student(pl_module)
        names = [name for name, child in pl_module.named_children() if child is net]
        self._prefix = f"{names[0]}." if names else ""
        device = self._device or trainer.strategy.root_device
        self._average_model = AveragedModel(net, device=device, use_buffers=self._use_buffers, **self._kwargs)

    # The hooks below are Lightning's, applied to the student instead of the whole module: the base class
    # uses its pl_module argument only as an nn.Module (update, swap, copy).
    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        super().on_train_batch_end(trainer, _student(pl_module), outputs, batch, batch_idx)  # type: ignore[arg-type]

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_end(trainer, _student(pl_module))  # type: ignore[arg-type]

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_end(trainer, _student(pl_module))  # type: ignore[arg-type]

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_validation_epoch_start(trainer, _student(pl_module))  # type: ignore[arg-type]

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_validation_epoch_end(trainer, _student(pl_module))  # type: ignore[arg-type]

    def checkpoint_extra_bytes(self, pl_module: nn.Module) -> int:
        """The average's copy of the student's weights and buffers, written beside the raw state (see
        :class:`steelkd.engine.callbacks.ExtraCheckpointState`; known before ``setup``)."""
        return tensor_bytes(_student(pl_module).state_dict().values())

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if self._average_model is None:  # outside fit: the module already holds the average
            return
        state = checkpoint["state_dict"]
        average = self._average_model.module.state_dict()
        missing = [k for k in average if self._prefix + k not in state]
        if missing:
            raise RuntimeError(f"StudentEMA: the checkpoint has no entry {self._prefix + missing[0]}")
        n = len(self._prefix)
        checkpoint["current_model_state"] = state
        checkpoint["state_dict"] = type(state)(
            (k, average.get(k[n:], v) if k.startswith(self._prefix) else v) for k, v in state.items()
        )
        checkpoint["averaging_state"] = {
            k: v for k, v in self._average_model.state_dict().items() if not k.startswith("module.")
        }

    def on_load_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if self._average_model is None:
            return
        n = len(self._prefix)
        average = {k[n:]: v for k, v in checkpoint["state_dict"].items() if k.startswith(self._prefix)}
        if "current_model_state" in checkpoint and "averaging_state" in checkpoint:
            self._average_model.load_state_dict(
                {**{f"module.{k}": v for k, v in average.items()}, **checkpoint["averaging_state"]}
            )
            # Lightning has loaded "state_dict" (the average) into the module: put the raw weights back.
            pl_module.load_state_dict(checkpoint["current_model_state"])
        else:
            rank_zero_warn("StudentEMA: the checkpoint holds no EMA; the average starts from its weights")
            self._average_model.module.load_state_dict(average)
            self._average_model.n_averaged.fill_(1)


def process_cpu_seconds() -> float:
    """User + system CPU seconds of this process and its children: the reaped ones (``os.times``) and, on
    Linux, the live ``multiprocessing`` ones (DataLoader workers, from ``/proc/<pid>/stat``).

    A worker is counted live until it is reaped, then in the reaped children's times. Without ``/proc``
    live children count once they are reaped (a persistent worker: when its loader shuts down).
    """
    live = [p.pid for p in multiprocessing.active_children()]  # also reaps the children that ended
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system + sum(map(_live_cpu_seconds, live))


def _live_cpu_seconds(pid: int | None) -> float:
    """utime + stime of a live process from ``/proc/<pid>/stat``; 0 where there is none (ended, not Linux)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


class ClockReading(NamedTuple):
    """A moment of the run's clock: monotonic wall seconds and :func:`process_cpu_seconds`."""

    wall: float
    cpu: float

    @classmethod
    def now(cls) -> ClockReading:
        """The clock read now."""
        return cls(time.monotonic(), process_cpu_seconds())


class ElapsedTime(Callback):
    """The run's clock: wall and CPU seconds over all its parts; logs ``time/elapsed_s`` at each validation.

    A part (one call of ``fit``) is counted from :meth:`start`: :func:`steelkd.engine.fit` starts it with
    the reading taken when it was called (so building the data and a teacher-logit cache count), else
    ``setup`` of ``fit`` does. Both totals are saved in each checkpoint (this callback's state), and a run
    resumed from one adds its own part to them, so the logged values keep growing across a kill and resume
    and :class:`steelkd.engine.TrainResult` reports the whole run (the time between the checkpoint and the
    kill, redone after the resume, is not counted twice). CPU seconds: :func:`process_cpu_seconds`; a
    checkpoint from before they were kept makes them unknown (``None``).

    Example:
        >>> clock = ElapsedTime()
        >>> clock.elapsed_s(), clock.cpu_s()
        (0.0, 0.0)
    """

    def __init__(self) -> None:
        self._wall0 = 0.0  # the earlier parts' totals (from the checkpoint)
        self._cpu0: float | None = 0.0  # None: unknown
        self._start: ClockReading | None = None

    def start(self, at: ClockReading | None = None) -> None:
        """Count this part from ``at`` (default: now); a part already started keeps its start."""
        if self._start is None:
            self._start = at or ClockReading.now()

    def elapsed_s(self) -> float:
        """Wall seconds of the run so far: the checkpointed seconds plus this part's."""
        now = 0.0 if self._start is None else time.monotonic() - self._start.wall
        return self._wall0 + now

    def cpu_s(self) -> float | None:
        """CPU seconds of the run so far, as :meth:`elapsed_s`; None when an earlier part's are unknown."""
        if self._cpu0 is None:
            return None
        now = 0.0 if self._start is None else process_cpu_seconds() - self._start.cpu
        return self._cpu0 + now

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":
            self.start()

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or self._start is None:
            return
        pl_module.log(ELAPSED_KEY, self.elapsed_s(), sync_dist=True, reduce_fx="max")

    def state_dict(self) -> dict[str, Any]:
        return {"elapsed_s": self.elapsed_s(), "cpu_s": self.cpu_s()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        cpu = state_dict.get("cpu_s")
        self._wall0 = float(state_dict.get("elapsed_s", 0.0))
        self._cpu0 = None if cpu is None else float(cpu)


def recipe_callbacks(cfg: Config) -> list[Callback]:
    """The recipe callbacks ``cfg.train`` asks for (see the module docstring).

    Args:
        cfg: the run config; reads ``train.ema_decay`` (0 = no EMA) and ``train.early_stop_patience``
            (0 = no early stopping).

    Returns:
        ``[StudentEMA?, EarlyStopping?, ElapsedTime]``: the optional ones only when set.

    Example:
        >>> from steelkd.config import Config
        >>> [type(c).__name__ for c in recipe_callbacks(Config())]
        ['ElapsedTime']
    """
    t = cfg.train
    out: list[Callback] = []
    if t.ema_decay > 0:
        out.append(StudentEMA(decay=t.ema_decay))
    if t.early_stop_patience > 0:
        out.append(EarlyStopping(monitor="val/mdice", mode="max", patience=int(t.early_stop_patience)))
    out.append(ElapsedTime())
    return out
