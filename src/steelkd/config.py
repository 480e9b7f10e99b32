"""Typed configuration: plain YAML files in ``configs/`` map one to one onto these dataclasses.

Every field can be overridden from the command line with ``--set section.field=value`` (the value is
parsed as YAML, so ``--set train.lr=3e-4``, ``--set data.crop=[128,128]`` and ``--set distill=null``
work). Unknown keys are errors that name the key, so a typo never silently falls back to a default.

Example:
    >>> from steelkd.config import Config, load_config
    >>> cfg = Config()
    >>> cfg.train.lr
    0.0001
"""

from __future__ import annotations

import math
import types
import typing
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import yaml

from steelkd.io import atomic_write_text

SEVERSTAL_CLASSES: list[str] = ["background", "pitting", "crazing", "scratches", "patches"]
NEU_SEG_CLASSES: list[str] = ["background", "inclusion", "patches", "scratches"]


class ConfigError(ValueError):
    """A configuration file or override that cannot be applied."""


@dataclass
class DataConfig:
    """Where the data is and how it is fed to the model.

    Args:
        kind: ``"severstal"`` (``train.csv`` + ``train_images/``), ``"folder"`` (images plus PNG label maps:
            ``images/<split>`` + ``annotations/<split>`` as NEU-Seg, or flat ``images/`` + ``masks/`` as
            ``steelkd data import`` writes) or ``"synth"`` (synthetic Severstal-layout data generated into
            ``root`` on first use with ``synth_n`` images and ``seed``).
        root: data set root directory.
        class_names: names of the label-map values, background first. Folder data with a
            ``classes.yaml``: left at the default, filled from it; otherwise checked against it.
        split_file: Severstal/synth and flat folders: JSON train/test split; created (deterministically
            from ``seed``) when missing and reused afterwards. Empty: ``<root>/steelkd_split.json``.
        train_split / test_split: split folder layout only: the sub-folder names under ``images/`` and
            ``annotations/``.
        defect_only: Severstal only: keep only images with at least one defect (the paper's choice).
        test_fraction: Severstal and flat folders: share of images in the test split.
        val_fraction: share of the training images held out as the validation split (seeded by ``seed``,
            stratified by the classes each image contains; never the test split). Checkpoint selection,
            early stopping and every recipe choice use it; the test split is scored once per final model.
            ``0``: no validation split, the test split validates (biased; quick checks only).
        crop: training random-crop size ``[height, width]``; empty list: no crop (full image).
        crop_on_defect: share of the training crops placed over a defect: each crop, with this
            probability, contains a pixel drawn at random among the image's non-background pixels (the
            crop is uniform when the image has none); the others are uniform random crops (nnU-Net's
            foreground oversampling). ``0``: every crop uniform.
        scale_jitter: ``[low, high]`` random rescale of each training image by a factor drawn in that range
            before the crop (e.g. ``[0.75, 1.25]``); empty list: off.
        hflip, vflip, brightness_contrast: probabilities of those augmentations in training.
        batch_size: images per batch per device.
        num_workers: DataLoader worker processes.
        cache_images: keep every decoded image in memory (``uint8`` H x W x 3, in each loader process), so
            JPEG decoding leaves the training step after the first epoch. Costs H·W·3 bytes per image and
            process (NEU-Seg: 0.4 GB; the Severstal defect images: 6.6 GB): off by default.
        max_train_images / max_val_images: cap on the number of images (0 = all), for quick runs.
        seed: seed of the split and of synthetic data.
        synth_n: number of images generated for ``kind="synth"``.
    """

    kind: str = "severstal"
    root: str = ""
    class_names: list[str] = field(default_factory=lambda: list(SEVERSTAL_CLASSES))
    split_file: str = ""
    train_split: str = "training"
    test_split: str = "test"
    defect_only: bool = True
    test_fraction: float = 0.2
    val_fraction: float = 0.1
    crop: list[int] = field(default_factory=lambda: [256, 512])
    crop_on_defect: float = 0.0
    scale_jitter: list[float] = field(default_factory=list)
    hflip: float = 0.5
    vflip: float = 0.5
    brightness_contrast: float = 0.5
    batch_size: int = 8
    num_workers: int = 2
    cache_images: bool = False
    max_train_images: int = 0
    max_val_images: int = 0
    seed: int = 0
    synth_n: int = 200

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


@dataclass
class ModelConfig:
    """Which network to build (see ``steelkd models list``).

    Args:
        name: registered model name, e.g. ``resunet_convnext_tiny``.
        pretrained: ImageNet encoder weights through timm (needs a network).
        encoder_weights: local safetensors / state-dict file for the encoder (no network needed).
        kwargs: extra keyword arguments for the model constructor.
    """

    name: str = "resunet_convnext_tiny"
    pretrained: bool = False
    encoder_weights: str = ""
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainConfig:
    """The optimisation recipe and the Lightning Trainer settings.

    Defaults are the paper's recipe: AdamW, lr 1e-4, 80 epochs, batch 8 (``data.batch_size``).

    Args:
        epochs: training epochs.
        min_steps: train at least this many optimizer steps: ``epochs`` is raised to
            ``ceil(min_steps / steps per epoch)`` when that is more (0 = off), so one schedule fits a data
            set of 300 images and one of 3,000 (a small set gives few steps per epoch; docs/training.md).
            Resolved when training starts; the run's saved config holds the epochs it trained.
        max_minutes: stop after this wall-clock time (0 = no limit); the best checkpoint is kept.
        lr: initial learning rate.
        weight_decay: AdamW weight decay.
        scheduler: ``"none"`` (constant, the paper) or ``"cosine"`` (per step, with ``warmup_steps``).
        warmup_steps: linear warm-up steps for the cosine schedule.
        class_weights: weighted CE: ``"median_freq"`` (default), ``"inverse"``, ``"none"`` or a list.
        dice_weight: weight of an optional Dice loss added to the CE (0 = off).
        ema_decay: keep an exponential moving average of the weights with this decay per step (e.g.
            ``0.999``; 0 = off); validation, the best checkpoint and the exported model use the average.
        early_stop_patience: stop after this many validations without a better validation mDice (0 = off).
        precision: Lightning precision: ``"32"``, ``"bf16-mixed"``, ``"16-mixed"``, or ``"auto"``: bf16 only
            where it is measured faster on this machine (see :func:`steelkd.engine.train.resolve_precision`).
        accelerator / devices / num_nodes / strategy: passed to ``lightning.Trainer``.
        channels_last: train (and run the teacher) in channels-last memory format, which oneDNN and cuDNN
            convolutions prefer; a speed setting (see ``benchmarks/train.py``).
        compile: compile the student's forward with ``torch.compile`` (inductor) when training starts; the
            state dict and checkpoints are unchanged. Off by default: on the 2-core CPUs measured it costs a
            minute of compilation and makes the step slower, not faster (docs/speed.md); try it on a GPU.
            Experimental on CPU: in one fresh environment inductor failed on the *eval-mode* forward
            (a stride assertion in mkldnn's fused convolution), which validation would hit.
        seed: global seed (``lightning.seed_everything``).
        deterministic: ask torch for deterministic algorithms.
        val_every: validate every N epochs.
        log_every: log every N steps.
        limit_train_batches / limit_val_batches: Lightning's limits: a float is a fraction (1.0 = all), an
            int a number of batches; for quick runs.
        out_dir: where checkpoints, logs and the exported model go.
    """

    epochs: int = 80
    min_steps: int = 0
    max_minutes: float = 0.0
    lr: float = 1e-4
    weight_decay: float = 0.05
    scheduler: str = "none"
    warmup_steps: int = 0
    class_weights: Any = "median_freq"
    dice_weight: float = 0.0
    ema_decay: float = 0.0
    early_stop_patience: int = 0
    precision: str = "32"
    accelerator: str = "auto"
    devices: Any = 1
    num_nodes: int = 1
    strategy: str = "auto"
    channels_last: bool = False
    compile: bool = False
    seed: int = 0
    deterministic: bool = False
    val_every: int = 1
    log_every: int = 10
    limit_train_batches: Any = 1.0
    limit_val_batches: Any = 1.0
    out_dir: str = "runs/default"


@dataclass
class DistillConfig:
    """Distillation settings: the teacher, the method and its weights.

    Args:
        teacher: path to the trained teacher (exported model directory, ``.safetensors`` or ``.ckpt``).
        method: the distillation loss on the logits: ``"cwd"`` (channel-wise divergence, the paper),
            ``"kd"`` (Hinton et al.: KL over classes per pixel, times τ²) or ``"dist"`` (Huang et al. 2022:
            inter- and intra-class Pearson correlation of the class probabilities).
        tau: temperature (the paper's CWD: 1.0).
        loss_weight: λ in L = L_sup + λ·L_KD.
        inter_weight / intra_weight: ``method="dist"`` only: β (inter-class) and γ (intra-class) terms.
        variant: ``method="cwd"`` only: ``"standard"`` (CWD on raw logits, Shu et al.) or ``"paper_eq5"``
            (class softmax first).
        where: ``"logits"`` (final full-resolution logits, the paper), ``"logits_low"`` (1/4-resolution
            logits before upsampling) or ``"features"`` (decoder features through 1x1 adapters, plus the
            logits).
        feature_weight: weight of each feature-level term when ``where="features"``.
        logit_cache: the teacher-logit cache (``where="logits"`` only): empty (default) runs the teacher
            live in every step; ``"auto"`` keeps the cache in ``<train.out_dir>/teacher_logits``; any other
            value is the cache's folder (share one between runs of the same teacher and training images).
            The teacher's 1/4-resolution logits of every training image are computed once (fp16, full
            un-augmented image) and each step crops and flips them exactly as the student's input, so a
            distillation step costs about a plain student step (see :mod:`steelkd.engine.logit_cache` and
            docs/speed.md for what it changes: the teacher sees the whole image, not the jittered crop).
    """

    teacher: str = ""
    method: str = "cwd"
    tau: float = 1.0
    loss_weight: float = 1.0
    inter_weight: float = 1.0
    intra_weight: float = 1.0
    variant: str = "standard"
    where: str = "logits"
    feature_weight: float = 1.0
    logit_cache: str = ""


@dataclass
class Config:
    """A whole run: data, model, training recipe and (for ``steelkd distill``) distillation."""

    name: str = "run"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    distill: DistillConfig | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _resolve_type(tp: Any) -> tuple[Any, bool]:
    """Return (dataclass type or None, optional?) for a field annotation."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return _resolve_type(args[0])[0], True
    return (tp if is_dataclass(tp) else None), False


def dataclass_from_dict(cls: type, data: Any, where: str = "") -> Any:
    """Build dataclass ``cls`` from a mapping, strictly: the one config parser of steelkd.

    Unknown keys and wrong scalar types raise :class:`ConfigError` naming ``where.key``; nested
    dataclass fields (also ``X | None``) are parsed recursively; ``list``/``dict`` fields must get a list /
    mapping. YAML's readings are accepted where the meaning is plain: an int for a float, ``3e-4`` read as a
    string for a float, a number for a string (``precision: 32``).

    Example:
        >>> dataclass_from_dict(ModelConfig, {"name": "resunet_convnext_atto"}).name
        'resunet_convnext_atto'
        >>> dataclass_from_dict(ModelConfig, {"nme": "x"}, "model")
        Traceback (most recent call last):
        ...
        steelkd.config.ConfigError: unknown key model.nme (known: encoder_weights, kwargs, name, pretrained)
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    unknown = sorted((str(k) for k in set(data) - known), key=str)
    if unknown:
        name = unknown[0] if unknown[0].isprintable() else repr(unknown[0])
        key = f"{where}.{name}" if where else name
        raise ConfigError(f"unknown key {key} (known: {', '.join(sorted(known))})")
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        sub, optional = _resolve_type(hints[name])
        key = f"{where}.{name}" if where else name
        if sub is not None and value is None and not optional:
            raise ConfigError(f"{key}: expected a mapping, got null")
        if sub is not None and value is not None:
            kwargs[name] = dataclass_from_dict(sub, value, key)
        else:
            kwargs[name] = _coerce(value, hints[name], key)
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{where or 'config'}: {exc}") from None


def _coerce(value: Any, tp: Any, key: str) -> Any:
    if tp in (int, float) and isinstance(value, bool):
        raise ConfigError(f"{key}: expected {tp.__name__}, got {value!r}")
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):
        try:
            return float(value)  # YAML 1.1 reads `3e-4` (no dot) as a string
        except ValueError:
            pass
    if tp is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)  # YAML reads `precision: 32` as a number
    if tp in (int, float, str, bool) and not isinstance(value, tp):
        raise ConfigError(f"{key}: expected {tp.__name__}, got {value!r}")
    origin = typing.get_origin(tp)
    if origin is list and not isinstance(value, list):
        raise ConfigError(f"{key}: expected a list, got {value!r}")
    item = (typing.get_args(tp) or (Any,))[0]
    if origin is list and item in (int, str):
        for v in value:
            if not isinstance(v, item) or isinstance(v, bool):
                raise ConfigError(f"{key}: expected a list of {item.__name__}, got {value!r}")
    if origin is dict and not isinstance(value, dict):
        raise ConfigError(f"{key}: expected a mapping, got {value!r}")
    return value


def parse_size(text: str | Sequence[int], *, minimum: int = 1) -> tuple[int, int]:
    """``"256x1600"`` or ``[256, 1600]`` -> ``(height, width)``: the one size parser of steelkd.

    Raises:
        ValueError: not two integers of at least ``minimum``, naming the value.

    Example:
        >>> parse_size("256x1600")
        (256, 1600)
    """
    try:
        if isinstance(text, str):
            h, w = (int(p) for p in text.lower().replace(",", "x").split("x"))
        else:
            h, w = (int(p) for p in text)
    except (ValueError, TypeError):
        raise ValueError(f"size {text!r}: expected HEIGHTxWIDTH, e.g. 256x1600") from None
    if h < minimum or w < minimum:
        what = "positive" if minimum == 1 else f"at least {minimum}"
        raise ValueError(f"size {text!r}: height and width must be {what}")
    return h, w


def config_from_dict(data: dict[str, Any]) -> Config:
    """Build a :class:`Config` from a nested dict, checking every key and scalar type."""
    cfg = dataclass_from_dict(Config, data or {}, "")
    _check_ranges(cfg)
    if cfg.train.scheduler not in ("none", "cosine"):
        raise ConfigError(f"train.scheduler: expected 'none' or 'cosine', got {cfg.train.scheduler!r}")
    if cfg.data.kind not in ("severstal", "folder", "synth"):
        raise ConfigError(f"data.kind: expected severstal, folder or synth, got {cfg.data.kind!r}")
    if cfg.distill is not None:
        if cfg.distill.where not in ("logits", "logits_low", "features"):
            raise ConfigError(
                f"distill.where: expected logits, logits_low or features, got {cfg.distill.where!r}"
            )
        if cfg.distill.method not in ("cwd", "kd", "dist"):
            raise ConfigError(f"distill.method: expected cwd, kd or dist, got {cfg.distill.method!r}")
        if cfg.distill.variant not in ("standard", "paper_eq5"):
            raise ConfigError(f"distill.variant: expected standard or paper_eq5, got {cfg.distill.variant!r}")
        if cfg.distill.logit_cache and cfg.distill.where != "logits":
            raise ConfigError(
                f"distill.logit_cache needs distill.where=logits (got {cfg.distill.where!r}): "
                "only the teacher's logits are cached"
            )
    return cfg


#: ``(section, field, lowest allowed, highest allowed)``: the value ranges config_from_dict checks.
_RANGES: tuple[tuple[str, str, float, float], ...] = (
    ("data", "batch_size", 1, math.inf),
    ("data", "num_workers", 0, math.inf),
    ("data", "test_fraction", 0, 1),
    ("data", "val_fraction", 0, 0.9),
    ("data", "crop_on_defect", 0, 1),
    ("data", "hflip", 0, 1),
    ("data", "vflip", 0, 1),
    ("data", "brightness_contrast", 0, 1),
    ("data", "max_train_images", 0, math.inf),
    ("data", "max_val_images", 0, math.inf),
    ("data", "synth_n", 1, math.inf),
    ("train", "epochs", 1, math.inf),
    ("train", "min_steps", 0, math.inf),
    ("train", "max_minutes", 0, math.inf),
    ("train", "lr", 0, math.inf),
    ("train", "weight_decay", 0, math.inf),
    ("train", "warmup_steps", 0, math.inf),
    ("train", "dice_weight", 0, math.inf),
    ("train", "ema_decay", 0, 0.999999),
    ("train", "early_stop_patience", 0, math.inf),
    ("train", "num_nodes", 1, math.inf),
    ("train", "val_every", 1, math.inf),
    ("train", "log_every", 1, math.inf),
)


def _check_ranges(cfg: Config) -> None:
    """Refuse numbers outside their meaning (NaN, a batch of 0, ...), naming ``section.field``."""
    for section, name, lo, hi in _RANGES:
        value = getattr(getattr(cfg, section), name)
        if not (math.isfinite(value) and lo <= value <= hi):
            span = f">= {lo:g}" if hi == math.inf else f"in {lo:g}..{hi:g}"
            raise ConfigError(f"{section}.{name}: expected a number {span}, got {value!r}")
    if cfg.data.test_fraction in (0, 1):
        raise ConfigError(f"data.test_fraction: expected a number in (0, 1), got {cfg.data.test_fraction}")
    jitter = cfg.data.scale_jitter
    if jitter and (len(jitter) != 2 or not 0 < jitter[0] <= jitter[1]):
        raise ConfigError(
            f"data.scale_jitter: expected [] or [low, high] with 0 < low <= high, got {jitter!r}"
        )
    crop = cfg.data.crop
    if crop and (len(crop) != 2 or min(crop) < 1):
        raise ConfigError(f"data.crop: expected [] or [height, width] of positive integers, got {crop!r}")


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``section.field=value`` overrides (values parsed as YAML) to a nested config dict."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key=value, e.g. train.lr=3e-4")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        node = data
        for p in parts[:-1]:
            if node.get(p) is None:
                node[p] = {}
            node = node[p]
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {p} is not a section")
        try:
            node[parts[-1]] = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            first = str(exc).splitlines()[0]
            raise ConfigError(f"override {item!r}: the value is not valid YAML ({first})") from None
    return data


def read_yaml_mapping(path: str | Path, what: str = "config file") -> dict[str, Any]:
    """Read a YAML file whose top level is a mapping; errors name the file (``ConfigError``)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: {what} not found")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping at the top level")
    return data


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read a YAML config (or start from defaults), apply overrides and validate.

    Raises:
        ConfigError: naming the file and the bad key or value.
    """
    data = read_yaml_mapping(path) if path is not None else {}
    data = apply_overrides(data, list(overrides or []))
    try:
        return config_from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}" if path else str(exc)) from exc


def save_config(cfg: Config, path: str | Path) -> None:
    """Write a config as YAML (atomically)."""
    atomic_write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))
