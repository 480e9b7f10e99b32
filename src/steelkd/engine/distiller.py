"""LightningModule that distils a frozen teacher into a student by channel-wise distillation (CWD)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from steelkd.checkpoint import load_model
from steelkd.engine.segmenter import SegmenterModule
from steelkd.losses import ChannelWiseDivergence, CWDFeatureAdapter


class DistillerModule(SegmenterModule):
    """Train a student with ``L = L_wCE + λ·L_CWD`` against a frozen teacher.

    The teacher is loaded from its saved model (``cfg["distill"]["teacher"]``), frozen
    (``requires_grad=False``), kept in eval mode even while the module trains (its BatchNorm statistics
    never move) and run under ``torch.inference_mode``. Only the student's parameters (and, for
    ``where="features"``, the 1x1 adapters on the student side) are given to the optimizer.

    Args:
        cfg: the run's config as a plain dict, with a ``distill`` section.
        steps_per_epoch: optimizer steps per epoch, for the cosine schedule.
    """

    def __init__(self, cfg: dict[str, Any], steps_per_epoch: int = 1) -> None:
        super().__init__(cfg, steps_per_epoch)
        d = self.cfg.distill
        if d is None or not d.teacher:
            raise ValueError("distillation needs distill.teacher: the path of a trained teacher model")
        teacher, card = load_model(d.teacher)
        if list(card["class_names"]) != list(self.cfg.data.class_names):
            raise ValueError(
                f"{d.teacher}: teacher classes {card['class_names']} differ from the data's "
                f"{self.cfg.data.class_names}"
            )
        self.teacher = teacher.eval().requires_grad_(False)
        self.cwd = ChannelWiseDivergence(tau=d.tau, loss_weight=d.loss_weight, variant=d.variant)
        self.adapter = (
            CWDFeatureAdapter(
                list(self.model.decoder_channels),
                list(self.teacher.decoder_channels),
                tau=d.tau,
                loss_weight=d.feature_weight * d.loss_weight,
            )
            if d.where == "features"
            else None
        )

    def train(self, mode: bool = True) -> DistillerModule:
        super().train(mode)
        # Lightning calls .train() on the whole module each epoch: keep the teacher frozen.
        self.teacher.eval()
        return self

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        where = self.cfg.distill.where  # type: ignore[union-attr]
        with torch.inference_mode():
            t_out = self.teacher(x, return_features=True)
        # Inference tensors cannot be saved for backward: clone them into ordinary (constant) tensors.
        t_out = {k: ([f.clone() for f in v] if isinstance(v, list) else v.clone()) for k, v in t_out.items()}
        s_out = self.model(x, return_features=True)
        loss_ce = self.supervised_loss(s_out["logits"], y)
        if where == "logits_low":
            s_low, t_low = s_out["logits_low"], t_out["logits_low"]
            if s_low.shape[-2:] != t_low.shape[-2:]:
                s_low = F.interpolate(s_low, size=t_low.shape[-2:], mode="bilinear", align_corners=False)
            loss_kd = self.cwd(s_low, t_low)
        else:
            loss_kd = self.cwd(s_out["logits"], t_out["logits"])
            if self.adapter is not None:
                loss_kd = loss_kd + self.adapter(s_out["features"], t_out["features"])
        loss = loss_ce + loss_kd
        self.log_losses(loss, loss_ce=loss_ce, loss_kd=loss_kd, batch_size=x.shape[0])
        return loss

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        params = super().trainable_parameters()
        if self.adapter is not None:
            params += list(self.adapter.parameters())
        return params

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """The student (and adapters) only: the teacher is reloaded from its own file, never re-saved."""
        state = super().state_dict(*args, **kwargs)
        prefix = kwargs.get("prefix", args[1] if len(args) > 1 else "")
        return type(state)((k, v) for k, v in state.items() if not k.startswith(prefix + "teacher."))

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        teacher = {f"teacher.{k}": v for k, v in self.teacher.state_dict().items()}
        return super().load_state_dict({**state_dict, **teacher}, strict=strict, assign=assign)
