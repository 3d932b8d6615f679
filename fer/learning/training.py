"""The training loop, pure: tensors and config in, history out; no files, no MLflow.

``fit`` calls ``on_epoch_end(record, checkpoint)`` after every epoch; the stage layer writes the
checkpoint and logs the metrics. Everything random (init aside: seed before building the model)
comes from one ``torch.Generator`` and torch's global RNG (dropout), both stored in the
checkpoint, so ``fit(..., start_state=checkpoint)`` continues exactly where a killed run stopped.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from fer.learning.datasets import AugmentSpec, batches, class_weights, to_device_if_fits
from fer.learning.evaluation import accuracy, macro_f1
from fer.learning.preprocess import InputSpec, preprocess
from fer.numerics import pin_cpu_kernels

if TYPE_CHECKING:
    import torch
    from torch import nn

    from fer.config import TrainConfig

EpochCallback = Callable[[dict[str, Any], dict[str, Any]], None]


@dataclass
class FitData:
    """uint8 crops ``(N, H, W, 3)`` and int labels for the train and validation splits.

    ``train_targets`` (optional, ``(N, classes)`` rows summing to 1): soft labels, e.g. FER+'s
    vote distributions; the loss then compares with them, while ``train_y`` (their hard labels)
    still drives class weights, balanced sampling and training accuracy.
    """

    train_x: np.ndarray
    train_y: np.ndarray
    val_x: np.ndarray
    val_y: np.ndarray
    input_spec: InputSpec = field(default_factory=InputSpec)
    num_classes: int = 3
    train_targets: np.ndarray | None = None

    def __post_init__(self) -> None:
        t = self.train_targets
        if t is not None and (t.shape != (len(self.train_y), self.num_classes)):
            raise ValueError(
                f"train_targets must be (n_train, {self.num_classes}), got {tuple(t.shape)}"
            )


@dataclass
class FitResult:
    """History (one dict per epoch, columns of ``history.csv``) and the best weights."""

    history: list[dict[str, Any]]
    best_state: dict[str, Any] | None
    best_epoch: int
    best_val_macro_f1: float
    stopped_early: bool


_POSTFIX_EVERY = 8  # steps between progress-bar postfix updates (each one syncs a GPU)


def resolve_device(requested: str) -> str:
    """``auto`` → ``cuda`` when available, else ``cpu``."""
    import torch

    if requested == "cuda" and not torch.cuda.is_available():
        from fer.errors import ConfigError

        raise ConfigError("train.device: cuda requested but no CUDA device is available")
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


def train_one_epoch(
    model: nn.Module,
    loader: Any,
    optimizer: torch.optim.Optimizer,
    loss_fn: nn.Module,
    *,
    total: int,
    desc: str = "train",
) -> dict[str, float]:
    """One pass over ``loader`` (``(x, y)`` batches); returns loss, accuracy and images/s."""

    from fer.progress import bar

    model.train()
    seen, step = 0, 0
    # Running sums stay on the device: reading them every step would stall a GPU each batch.
    loss_sum: torch.Tensor | float = 0.0
    correct: torch.Tensor | int = 0
    start = time.perf_counter()
    with bar(total=total, desc=desc, unit="img", leave=False) as pbar:
        for x, y in loader:
            optimizer.zero_grad(set_to_none=True)
            logits = model(x)
            loss = loss_fn(logits, y)
            loss.backward()
            optimizer.step()
            n = int(y.shape[0])
            seen += n
            step += 1
            loss_sum = loss_sum + loss.detach() * n
            hard = y.argmax(1) if y.ndim == 2 else y  # soft targets: their most likely class
            correct = correct + (logits.detach().argmax(1) == hard).sum()
            pbar.update(n)
            if step % _POSTFIX_EVERY == 0:
                elapsed = time.perf_counter() - start
                pbar.set_postfix(
                    loss=f"{float(loss_sum) / seen:.3f}", acc=f"{int(correct) / seen:.3f}",
                    ips=f"{seen / max(elapsed, 1e-9):.0f}",
                )  # fmt: skip
    loss_total, correct_total = float(loss_sum), int(correct)  # waits for the device
    elapsed = time.perf_counter() - start
    return {
        "loss": loss_total / max(seen, 1),
        "acc": correct_total / max(seen, 1),
        "images": seen,
        "seconds": elapsed,
        "images_per_s": seen / max(elapsed, 1e-9),
    }


def predict_proba(
    model: nn.Module,
    images: np.ndarray,
    spec: InputSpec,
    *,
    batch_size: int = 256,
    device: str = "cpu",
    flip: bool = False,
    shift: float = 0.0,
) -> np.ndarray:
    """Softmax probabilities ``(N, classes)`` for uint8 crops, in eval mode, no gradients.

    ``flip``, ``shift``: test-time augmentation (:func:`softmax_tta`).
    """
    import torch

    model.eval()
    out: list[np.ndarray] = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            x = preprocess(np.asarray(images[start : start + batch_size]), spec, device=device)
            out.append(softmax_tta(model, x, flip, shift).float().cpu().numpy())
    if not out:
        n_out = getattr(model, "num_classes", 3)
        return np.zeros((0, n_out), dtype=np.float32)
    return np.concatenate(out)


def softmax_tta(model: nn.Module, x: torch.Tensor, flip: bool, shift: float = 0.0) -> torch.Tensor:
    """Class probabilities of a preprocessed batch, averaged over its test-time views: the batch,
    its mirror when ``flip``, and (``shift`` > 0) copies moved by that fraction of the input side
    (:func:`shifted_views`), each mirrored too when ``flip``."""
    import torch

    views = shifted_views(x, shift)
    total = None
    for view in views:
        probs = torch.softmax(model(view), dim=1)
        if flip:
            probs = (probs + torch.softmax(model(torch.flip(view, dims=[3])), dim=1)) / 2
        total = probs if total is None else total + probs
    return total if len(views) == 1 else total / len(views)


def shifted_views(x: torch.Tensor, shift: float) -> list[torch.Tensor]:
    """``[x]``, plus ``x`` moved left, right, up and down by ``round(shift × width)`` pixels when
    that is at least one (the edge pixels repeated into the gap)."""
    import torch.nn.functional as F

    px = round(shift * x.shape[-1])
    if px < 1:
        return [x]
    h, w = x.shape[-2:]
    padded = F.pad(x, (px, px, px, px), mode="replicate")
    moves = ((0, px), (0, -px), (px, 0), (-px, 0))
    return [x] + [padded[..., px + dy : px + dy + h, px + dx : px + dx + w] for dy, dx in moves]


def evaluate_loader(
    model: nn.Module,
    images: np.ndarray,
    labels: np.ndarray,
    spec: InputSpec,
    *,
    batch_size: int = 256,
    device: str = "cpu",
    loss_fn: nn.Module | None = None,
    flip: bool = False,
    shift: float = 0.0,
) -> dict[str, Any]:
    """Loss (unweighted cross-entropy unless ``loss_fn``), accuracy, macro-F1 and probabilities."""
    import torch

    probs = predict_proba(
        model, images, spec, batch_size=batch_size, device=device, flip=flip, shift=shift
    )
    y = np.asarray(labels, dtype=np.int64)
    if len(y) == 0:
        return {"loss": float("nan"), "acc": 0.0, "macro_f1": 0.0, "probs": probs}
    p = torch.from_numpy(probs).clamp_min(1e-12)
    if loss_fn is None:
        loss = float(torch.nn.functional.nll_loss(p.log(), torch.from_numpy(y)))
    else:
        loss = float(loss_fn(p.log().to(device), torch.from_numpy(y).to(device)))
    pred = probs.argmax(axis=1)
    k = probs.shape[1]
    return {
        "loss": loss,
        "acc": accuracy(y, pred),
        "macro_f1": macro_f1(y, pred, k),
        "probs": probs,
    }


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Adam / AdamW / SGD (momentum) per ``train.optimizer``."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]  # frozen layers stay as they are
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
    cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    return cls(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> Any:
    """Per-epoch LR schedule: cosine to 0 over ``epochs``, step ÷10 every third, or none."""
    import torch

    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs)
    if cfg.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=max(1, cfg.epochs // 3))
    return None


@dataclass
class _LoopState:
    """What a checkpoint carries besides the model and optimizer."""

    history: list[dict[str, Any]] = field(default_factory=list)
    best_f1: float = -1.0
    best_epoch: int = 0
    bad_epochs: int = 0
    best_state: dict[str, Any] | None = None
    first_epoch: int = 1


@dataclass
class _Setup:
    """Optimizer, schedule, RNG, loss and augmentation of one ``fit``."""

    optimizer: torch.optim.Optimizer
    scheduler: Any
    gen: torch.Generator
    loss_fn: nn.Module
    sample_weights: np.ndarray | None
    augment: AugmentSpec | None


def fit(
    model: nn.Module,
    data: FitData,
    cfg: TrainConfig,
    *,
    device: str = "cpu",
    on_epoch_end: EpochCallback | None = None,
    start_state: dict[str, Any] | None = None,
) -> FitResult:
    """Train with early stopping on validation macro-F1; restore the best weights at the end.

    Args:
        model: built and seeded by the caller, already on ``device``.
        data: uint8 crops and labels.
        cfg: the ``train`` section (epochs, lr, optimizer, schedule, patience, balance, augment).
        device: ``cpu`` or ``cuda``.
        on_epoch_end: called with the epoch's record (``history.csv`` columns plus
            ``improved`` and ``stop``) and a checkpoint dict (tensors shared with the live
            model: save it before the next epoch, do not keep it).
        start_state: a checkpoint from ``on_epoch_end`` (plus optionally ``best_state``, the
            best weights) to resume from; training continues at the next epoch.

    Returns:
        FitResult; the model holds the best epoch's weights.
    """
    if len(data.train_y) == 0:
        raise ValueError("no training samples")
    pin_cpu_kernels()
    setup = _set_up(model, data, cfg, device)
    if cfg.epochs == 0:
        return _as_is(model, setup, data, cfg, device, on_epoch_end)
    state = _restore(model, setup, start_state, device) if start_state else _LoopState()
    train_x = to_device_if_fits(data.train_x, device)
    patience = cfg.early_stopping_patience
    stopped_early = bool(patience) and state.bad_epochs >= patience
    if stopped_early:
        state.first_epoch = cfg.epochs + 1  # a run that had already stopped resumes to a no-op
    for epoch in range(state.first_epoch, cfg.epochs + 1):
        record = _run_epoch(model, setup, data, train_x, cfg, device, epoch)
        improved = _score(record, data) > state.best_f1
        if improved:
            state.best_f1, state.best_epoch, state.bad_epochs = _score(record, data), epoch, 0
            state.best_state = {n: t.detach().clone() for n, t in model.state_dict().items()}
        else:
            state.bad_epochs += 1
        state.history.append(record)
        stop = bool(patience) and state.bad_epochs >= patience
        if on_epoch_end is not None:
            checkpoint = _checkpoint(model, setup, state, epoch, device)
            on_epoch_end({**record, "improved": improved, "stop": stop}, checkpoint)
        if stop:
            stopped_early = True
            break
    if state.best_state is not None:
        model.load_state_dict(state.best_state)
    return FitResult(
        history=state.history,
        best_state=state.best_state,
        best_epoch=state.best_epoch,
        best_val_macro_f1=max(state.best_f1, 0.0),
        stopped_early=stopped_early,
    )


def _as_is(
    model: nn.Module,
    setup: _Setup,
    data: FitData,
    cfg: TrainConfig,
    device: str,
    on_epoch_end: EpochCallback | None,
) -> FitResult:
    """``epochs: 0``: the starting weights (e.g. a pretrained model, zero-shot), scored on
    validation as "epoch 0" so they are logged and compared like a trained model."""
    ev = evaluate_loader(
        model, data.val_x, data.val_y, data.input_spec,
        batch_size=max(cfg.batch_size, 256), device=device,
        flip=cfg.tta_flip, shift=cfg.tta_shift,
    )  # fmt: skip
    nan = float("nan")
    record = {
        "epoch": 0, "train_loss": nan, "train_acc": nan, "val_loss": ev["loss"],
        "val_acc": ev["acc"], "val_macro_f1": ev["macro_f1"], "lr": 0.0, "images_per_s": 0.0,
    }  # fmt: skip
    state = _LoopState(history=[record], best_f1=ev["macro_f1"], best_epoch=0)
    if on_epoch_end is not None:
        checkpoint = _checkpoint(model, setup, state, 0, device)
        on_epoch_end({**record, "improved": True, "stop": False}, checkpoint)
    best = {n: t.detach().clone() for n, t in model.state_dict().items()}
    return FitResult([record], best, 0, max(ev["macro_f1"], 0.0), stopped_early=False)


def make_loss(
    cfg: TrainConfig, train_y: np.ndarray, num_classes: int, device: str = "cpu"
) -> nn.Module:
    """Cross-entropy with ``train.class_balance: weights`` and ``train.label_smoothing``.

    The same loss takes hard labels (int class per row) and soft targets (a distribution per
    row, e.g. FER+ votes): ``-sum_c w_c t_c log p_c``, averaged over the batch, where smoothing
    mixes ``t`` with the uniform distribution first. For one-hot targets it equals the hard
    loss, weights included (torch's soft-target cross-entropy divides by the batch size, not by
    the summed weights: the two differ by a constant factor per batch under class weights).
    """
    import torch

    weight = None
    if cfg.class_balance == "weights":
        cw = class_weights(train_y, num_classes)
        weight = torch.as_tensor(cw, dtype=torch.float32).to(device)
    return torch.nn.CrossEntropyLoss(weight=weight, label_smoothing=cfg.label_smoothing)


def _set_up(model: nn.Module, data: FitData, cfg: TrainConfig, device: str) -> _Setup:
    import torch

    sample_weights = None
    if cfg.class_balance == "sampler":
        sample_weights = class_weights(data.train_y, data.num_classes)[np.asarray(data.train_y)]
    augment = (
        AugmentSpec(cfg.flip, cfg.rotation_deg, cfg.crop_jitter, cfg.color_jitter)
        if cfg.augment
        else None
    )
    optimizer = make_optimizer(model, cfg)
    return _Setup(
        optimizer=optimizer,
        scheduler=make_scheduler(optimizer, cfg),
        gen=torch.Generator().manual_seed(cfg.seed),
        loss_fn=make_loss(cfg, data.train_y, data.num_classes, device),
        sample_weights=sample_weights,
        augment=augment,
    )


def _restore(model: nn.Module, setup: _Setup, ckpt: dict[str, Any], device: str) -> _LoopState:
    """Load a checkpoint into the model, optimizer, schedule and RNGs; the loop's state."""
    import torch

    model.load_state_dict(ckpt["model"])
    setup.optimizer.load_state_dict(ckpt["optimizer"])
    if setup.scheduler is not None and ckpt.get("scheduler") is not None:
        setup.scheduler.load_state_dict(ckpt["scheduler"])
    setup.gen.set_state(ckpt["generator"])
    torch.set_rng_state(ckpt["torch_rng"])
    if device == "cuda" and ckpt.get("cuda_rng") is not None:
        torch.cuda.set_rng_state_all(ckpt["cuda_rng"])
    return _LoopState(
        history=[dict(r) for r in ckpt["history"]],
        best_f1=float(ckpt["best_val_macro_f1"]),
        best_epoch=int(ckpt["best_epoch"]),
        bad_epochs=int(ckpt["bad_epochs"]),
        best_state=ckpt.get("best_state"),
        first_epoch=int(ckpt["epoch"]) + 1,
    )


def _run_epoch(
    model: nn.Module,
    setup: _Setup,
    data: FitData,
    train_x: Any,
    cfg: TrainConfig,
    device: str,
    epoch: int,
) -> dict[str, Any]:
    """Train one epoch, step the schedule, evaluate on validation; the ``history`` row."""
    lr = setup.optimizer.param_groups[0]["lr"]
    targets = data.train_targets if data.train_targets is not None else data.train_y
    loader = batches(
        train_x, targets, batch_size=cfg.batch_size, input_spec=data.input_spec,
        device=device, gen=setup.gen, shuffle=True, sample_weights=setup.sample_weights,
        augment=setup.augment,
    )  # fmt: skip
    tr = train_one_epoch(
        model, loader, setup.optimizer, setup.loss_fn, total=len(data.train_y),
        desc=f"epoch {epoch}/{cfg.epochs}",
    )  # fmt: skip
    if setup.scheduler is not None:
        setup.scheduler.step()
    ev = evaluate_loader(
        model, data.val_x, data.val_y, data.input_spec,
        batch_size=max(cfg.batch_size, 256), device=device,
        flip=cfg.tta_flip, shift=cfg.tta_shift,
    )  # fmt: skip
    return {
        "epoch": epoch,
        "train_loss": tr["loss"],
        "train_acc": tr["acc"],
        "val_loss": ev["loss"],
        "val_acc": ev["acc"],
        "val_macro_f1": ev["macro_f1"],
        "lr": lr,
        "images_per_s": tr["images_per_s"],
    }


def _score(record: dict[str, Any], data: FitData) -> float:
    """Validation macro-F1; with no validation split, training accuracy is the only signal."""
    return record["val_macro_f1"] if len(data.val_y) else record["train_acc"]


def _checkpoint(
    model: nn.Module, setup: _Setup, state: _LoopState, epoch: int, device: str
) -> dict[str, Any]:
    import torch

    return {
        "epoch": epoch,
        "model": model.state_dict(),
        "optimizer": setup.optimizer.state_dict(),
        "scheduler": setup.scheduler.state_dict() if setup.scheduler is not None else None,
        "generator": setup.gen.get_state(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if device == "cuda" else None,
        "history": copy.deepcopy(state.history),
        "best_val_macro_f1": state.best_f1,
        "best_epoch": state.best_epoch,
        "bad_epochs": state.bad_epochs,
    }
