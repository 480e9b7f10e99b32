"""Typed YAML configs and command-line overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from steelkd.config import ConfigError, load_config, save_config


def test_yaml_round_trip_and_overrides(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("model: {name: resunet_convnext_atto}\ntrain: {epochs: 3, precision: 32}\n")
    cfg = load_config(p, ["train.lr=3e-4", "data.crop=[64,64]", "distill.tau=2"])
    assert cfg.model.name == "resunet_convnext_atto" and cfg.train.epochs == 3
    assert cfg.train.precision == "32" and cfg.train.lr == pytest.approx(3e-4)
    assert cfg.data.crop == [64, 64] and cfg.distill is not None and cfg.distill.tau == 2.0
    save_config(cfg, tmp_path / "out.yaml")
    assert load_config(tmp_path / "out.yaml") == cfg


@pytest.mark.parametrize(
    ("text", "overrides", "message"),
    [
        ("train: {epoch: 3}\n", [], r"unknown key train\.epoch"),
        ("train: {epochs: three}\n", [], r"train\.epochs: expected int"),
        ("", ["train.lr"], "expected key=value"),
        ("", ["distill.where=middle"], "distill.where: expected logits"),
        ("- 1\n", [], "expected a mapping"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, text: str, overrides: list[str], message: str) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(p, overrides)


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml: config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_cli_trainer_flags_map_onto_train_fields() -> None:
    from steelkd.cli.train import _overrides, _train_flags

    flags = _train_flags(
        out="runs/x", epochs=3, precision=None, devices="2", accelerator=None, strategy="ddp", num_nodes=None
    )
    sets = _overrides(["train.lr=1e-3"], **flags)
    assert sets == [
        "train.out_dir=runs/x",
        "train.epochs=3",
        "train.devices=2",
        "train.strategy=ddp",
        "train.lr=1e-3",
    ]
    cfg = load_config(None, sets)
    assert (cfg.train.out_dir, cfg.train.epochs, cfg.train.devices, cfg.train.strategy) == (
        "runs/x",
        3,
        2,
        "ddp",
    )


RUN_CONFIGS = sorted(
    p
    for p in (Path(__file__).resolve().parents[1] / "configs").rglob("*.yaml")
    if p.parent.name not in ("experiments", "studies")
)


@pytest.mark.parametrize("path", RUN_CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_run_config_in_configs_loads(path: Path) -> None:
    cfg = load_config(path)  # the strict parser: an unknown key or a bad value is an error
    assert cfg.model.name and cfg.train.epochs >= 1
