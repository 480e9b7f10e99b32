"""``steelkd train`` and ``steelkd distill``: a YAML config, overridden by flags."""

from __future__ import annotations

from pathlib import Path

import typer

from steelkd.cli._common import SetOpt, console, user_errors

ConfigOpt = typer.Option(..., "--config", "-c", help="YAML config (configs/*.yaml).", exists=False)


# The Trainer flags shared by `train` and `distill`, each overriding one train.* field.
OutOpt = typer.Option(None, help="Output directory (train.out_dir).")
EpochsOpt = typer.Option(None, help="train.epochs")
PrecisionOpt = typer.Option(None, help="train.precision: 32, bf16-mixed, 16-mixed")
DevicesOpt = typer.Option(None, help="train.devices, e.g. 1, 2 or auto")
AcceleratorOpt = typer.Option(None, help="train.accelerator: cpu, gpu, auto")
StrategyOpt = typer.Option(None, help="train.strategy, e.g. ddp")
NumNodesOpt = typer.Option(None, "--num-nodes", help="train.num_nodes")
ResumeOpt = typer.Option(None, help="Checkpoint to resume from, or 'last'.")


def _overrides(sets: list[str] | None, **flags: object) -> list[str]:
    """``section.field=value`` strings for the flags given (``None`` = not given), then the ``--set`` ones."""
    out = [f"{k}={v}" for k, v in flags.items() if v is not None]
    return out + list(sets or [])


def _train_flags(**values: object) -> dict[str, object]:
    """Map the shared Trainer flags (out, epochs, ...) onto their ``train.*`` fields."""
    return {f"train.{'out_dir' if k == 'out' else k}": v for k, v in values.items()}


def _run(config: Path, sets: list[str], resume: str | None, distill: bool) -> None:
    from steelkd.config import ConfigError, load_config
    from steelkd.engine import fit
    from steelkd.engine.callbacks import check_output_folder
    from steelkd.trivial import unlearned_classes

    with user_errors():
        cfg = load_config(config, sets)
        check_output_folder(Path(cfg.train.out_dir), 0)  # writable at all, before the data is read
        if distill and cfg.distill is None:
            raise ConfigError(f"{config}: distillation needs a 'distill' section (or --teacher PATH)")
        if not distill and cfg.distill is not None:
            raise ConfigError(f"{config}: has a 'distill' section: use `steelkd distill`")
        result = fit(cfg, resume=resume)
    m = result.best_metrics
    if m:
        epochs = load_config(result.out_dir / "config.yaml").train.epochs  # as trained (train.min_steps)
        console.print(
            f"best epoch {int(m['epoch']) + 1} of {epochs} on the validation split: "
            f"mDice {m.get('mdice', float('nan')):.4f}  Kaggle Dice {m.get('kaggle_dice', float('nan')):.4f}"
        )
        if "pixel_counts" in m:
            names = cfg.data.class_names
            for line in unlearned_classes(m["dice"], m["pixel_counts"], m["pred_counts"], names):
                console.print(f"[yellow]warning[/]: not learned (validation split): {line}", highlight=False)
    console.print(
        f"score it once on the test split: steelkd evaluate --model {result.model_dir} --config {config}",
        highlight=False,
    )
    console.print(
        f"model: {result.model_dir}   checkpoints: {result.out_dir / 'checkpoints'}   "
        f"log: {result.metrics_csv}   ({result.seconds / 60:.1f} min)"
    )


def register(app: typer.Typer) -> None:
    """Add ``train`` and ``distill``."""

    @app.command()
    def train(
        config: Path = ConfigOpt,
        out: str = OutOpt,
        epochs: int = EpochsOpt,
        precision: str = PrecisionOpt,
        devices: str = DevicesOpt,
        accelerator: str = AcceleratorOpt,
        strategy: str = StrategyOpt,
        num_nodes: int = NumNodesOpt,
        resume: str = ResumeOpt,
        sets: list[str] = SetOpt,
    ) -> None:
        """Train a segmentation model (teacher or baseline student) with weighted cross-entropy."""
        flags = _train_flags(
            out=out,
            epochs=epochs,
            precision=precision,
            devices=devices,
            accelerator=accelerator,
            strategy=strategy,
            num_nodes=num_nodes,
        )
        _run(config, _overrides(sets, **flags), resume, distill=False)

    @app.command()
    def distill(
        config: Path = ConfigOpt,
        teacher: str = typer.Option(None, help="Trained teacher model (directory, .safetensors or .ckpt)."),
        tau: float = typer.Option(None, help="distill.tau"),
        loss_weight: float = typer.Option(None, "--loss-weight", help="distill.loss_weight (λ)"),
        where: str = typer.Option(None, help="distill.where: logits, logits_low or features"),
        out: str = OutOpt,
        epochs: int = EpochsOpt,
        precision: str = PrecisionOpt,
        devices: str = DevicesOpt,
        accelerator: str = AcceleratorOpt,
        strategy: str = StrategyOpt,
        num_nodes: int = NumNodesOpt,
        resume: str = ResumeOpt,
        sets: list[str] = SetOpt,
    ) -> None:
        """Distil a trained teacher into a student: L = L_wCE + λ·L_CWD; only the student learns."""
        flags = {
            "distill.teacher": teacher,
            "distill.tau": tau,
            "distill.loss_weight": loss_weight,
            "distill.where": where,
            **_train_flags(
                out=out,
                epochs=epochs,
                precision=precision,
                devices=devices,
                accelerator=accelerator,
                strategy=strategy,
                num_nodes=num_nodes,
            ),
        }
        _run(config, _overrides(sets, **flags), resume, distill=True)
