"""Fine-tuning of a pruned student by knowledge distillation from the float reference (teacher).

Loss per batch (output kinds from the spec):
- logits: BCE of the student's logits / T against the teacher's sigmoid(logits / T), times T^2 (soft
  targets), plus ground-truth BCE when labels are known;
- regression outputs: MSE to the teacher's value, plus MSE to the ground truth when known.
Labels: for pocket_k they come from K+ (y0 = K+ > 5.5, y1 = K+ >= 6.0, y2 = K+); other specs are
distilled from the teacher alone unless the windows carry a "y" array in output order.

CPU, 2 threads, deterministic for a seed: teacher outputs are computed once, batches are drawn with a
seeded generator, AdamW with a one-cycle schedule. The epoch with the best validation score wins
(the least validation distillation loss, against the teacher on all outputs; AUROC and MAE against
the labels are reported per epoch).
"""

from __future__ import annotations

import copy
import math
import time

import numpy as np

from ecgedge.contract.metrics import auroc
from ecgedge.errors import ConfigError, DataError

TEMPERATURE = 2.0
SOFT_WEIGHT = 1.0
HARD_WEIGHT = 0.5
REGRESSION_SCALE = 1.0   # mmol/L: errors are O(1) already


def _windows_and_labels(windows, spec, what: str):
    """(x float32 [N, 1, W], y float32 [N, n_outputs] or None) from an array, a dict or a Split."""
    if isinstance(windows, dict):
        x, k, y = windows.get("x"), windows.get("k"), windows.get("y")
    elif hasattr(windows, "x"):
        x, k, y = windows.x, getattr(windows, "k", None), getattr(windows, "y", None)
    else:
        x, k, y = windows, None, None
    if x is None:
        raise DataError(f"{what}: no windows ('x') given")
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 2:
        x = x[:, None, :]
    window = int(spec.input.window_samples)
    if x.ndim != 3 or x.shape[1] != 1 or x.shape[2] != window or x.shape[0] == 0:
        raise DataError(f"{what}: windows of shape {x.shape}, expected [N, 1, {window}] (model units)")
    if y is None and k is not None and spec.name == "pocket_k":
        k = np.asarray(k, dtype=np.float32).ravel()
        y = np.stack([k > 5.5, k >= 6.0, k], axis=1).astype(np.float32)
    if y is not None:
        y = np.asarray(y, dtype=np.float32)
        if y.shape != (x.shape[0], len(spec.outputs)):
            raise DataError(f"{what}: labels of shape {y.shape}, expected ({x.shape[0]}, {len(spec.outputs)})")
    return x, y


def _predict(model, x: np.ndarray, batch_size: int) -> np.ndarray:
    import torch

    model.eval()
    with torch.no_grad():
        return np.concatenate([model(torch.from_numpy(x[i:i + batch_size])).numpy()
                               for i in range(0, len(x), batch_size)], axis=0)


def _same_module(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(sa[k].shape == sb[k].shape and bool((sa[k] == sb[k]).all()) for k in sa)


def frozen_prefix_stages(student, teacher) -> int | None:
    """How many leading stages pruning left untouched (stem included), or None if the stem changed.

    Those stages are frozen during fine-tuning and their output is computed once, for student and
    teacher alike: on a 10 s window they run at the longest lengths and cost most of the time.
    """
    for name in ("first_conv", "first_bn"):
        if not _same_module(getattr(student, name), getattr(teacher, name)):
            return None
    n = 0
    for s_stage, t_stage in zip(student.stage_list, teacher.stage_list):
        if not _same_module(s_stage, t_stage):
            break
        n += 1
    return min(n, len(student.stage_list) - 1)


def _prefix(model, x, n_stages: int):
    """Net1D's forward up to the end of stage `n_stages - 1` (the stem only when 0)."""
    out = model.first_conv(x)
    if model.use_bn:
        out = model.first_bn(out)
    out = model.first_activation(out)
    for stage in model.stage_list[:n_stages]:
        out = stage(out)
    return out


def _suffix(model, h, n_stages: int):
    """The rest of Net1D's forward from the output of `_prefix(model, x, n_stages)`."""
    for stage in model.stage_list[n_stages:]:
        h = stage(h)
    return model.dense(h.mean(-1))


def _features(model, x: np.ndarray, n_stages: int, batch_size: int) -> np.ndarray:
    import torch

    model.eval()
    with torch.no_grad():
        return np.concatenate([_prefix(model, torch.from_numpy(x[i:i + batch_size]), n_stages).numpy()
                               for i in range(0, len(x), batch_size)], axis=0)


def _predict_suffix(model, h: np.ndarray, n_stages: int, batch_size: int) -> np.ndarray:
    import torch

    model.eval()
    with torch.no_grad():
        return np.concatenate([_suffix(model, torch.from_numpy(h[i:i + batch_size]), n_stages).numpy()
                               for i in range(0, len(h), batch_size)], axis=0)


def training_mode(student, frozen: int | None, freeze_bn: bool = False) -> None:
    """The student in training mode, except what keeps its BatchNorm statistics: the frozen prefix
    stages, and every BatchNorm when `freeze_bn`."""
    import torch

    student.train()
    if frozen is not None:
        for module in (student.first_conv, student.first_bn, *student.stage_list[:frozen]):
            module.eval()
    if freeze_bn:
        for module in student.modules():
            if isinstance(module, torch.nn.BatchNorm1d):
                module.eval()


def distillation_loss(student_out, teacher_out, labels, logit_idx, reg_idx, temperature=TEMPERATURE,
                      multiclass: bool = False):
    """Soft-target loss (+ labels where known). `multiclass`: the logits are one softmax (KL divergence of
    the tempered softmaxes, cross-entropy to the labels' class distribution), not independent sigmoids."""
    import torch.nn.functional as F

    loss = 0.0
    if logit_idx and multiclass:
        s, t = student_out[:, logit_idx], teacher_out[:, logit_idx]
        soft = F.kl_div(F.log_softmax(s / temperature, dim=1), F.softmax(t / temperature, dim=1), reduction="batchmean")
        loss = loss + SOFT_WEIGHT * soft * temperature ** 2
        if labels is not None:
            y = labels[:, logit_idx]
            loss = loss + HARD_WEIGHT * -(y * F.log_softmax(s, dim=1)).sum(dim=1).mean()
    elif logit_idx:
        s, t = student_out[:, logit_idx], teacher_out[:, logit_idx]
        soft = F.binary_cross_entropy_with_logits(s / temperature, (t / temperature).sigmoid())
        loss = loss + SOFT_WEIGHT * soft * temperature ** 2
        if labels is not None:
            loss = loss + HARD_WEIGHT * F.binary_cross_entropy_with_logits(s, labels[:, logit_idx])
    if reg_idx:
        s, t = student_out[:, reg_idx], teacher_out[:, reg_idx]
        loss = loss + F.mse_loss(s / REGRESSION_SCALE, t / REGRESSION_SCALE)
        if labels is not None:
            loss = loss + HARD_WEIGHT * F.mse_loss(s / REGRESSION_SCALE, labels[:, reg_idx] / REGRESSION_SCALE)
    return loss


def _score(val_out, val_teacher, y_val, logit_idx, reg_idx, multiclass: bool = False):
    """(score to maximise, metrics dict) on validation outputs."""
    import torch

    metrics = {}
    vloss = float(distillation_loss(torch.from_numpy(val_out), torch.from_numpy(val_teacher),
                                    None if y_val is None else torch.from_numpy(y_val), logit_idx, reg_idx,
                                    multiclass=multiclass))
    metrics["val_loss"] = vloss
    if y_val is not None:
        for i in logit_idx:
            metrics[f"val_auroc_{i}"] = auroc(y_val[:, i], val_out[:, i])
        for i in reg_idx:
            metrics[f"val_mae_{i}"] = float(np.mean(np.abs(val_out[:, i] - y_val[:, i])))
    # the distillation loss (all outputs, teacher-matched) picks the epoch: AUROC on a few hundred
    # windows is too coarse and ignores the regression output
    return -vloss, metrics


def finetune_distill(student, teacher, train_windows, val_windows, spec, *, epochs: int = 6,
                     batch_size: int = 32, lr: float = 2e-3, seed: int = 0, progress: bool = True,
                     time_budget_s: float | None = 90.0, weight_decay: float = 1e-4, threads: int = 2,
                     qat_epochs: int = 0, qat_lr: float | None = None, freeze_prefix: bool = True,
                     input_range: tuple[float, float] | None = None, qat_freeze_bn: bool = False):
    """Distil `teacher` into `student` (a deep copy is trained); returns (best student, history dict).

    train_windows / val_windows: arrays [N, 1, W] in model units, or dicts / objects with "x" and
    optionally "k" (pocket_k) or "y" (labels in output order). Stops early when `time_budget_s` runs out
    (at the end of the batch that crosses it); the best validation epoch is returned.
    `qat_epochs` > 0 adds a quantisation-aware phase (ecgedge.quantize.qat) after the float epochs,
    starting from the best float epoch; its best epoch (validation loss with fake INT8) is returned, with
    the weights left on their per-channel int8 grid. `epochs` may be 0 when `qat_epochs` > 0 (a model
    already inside its budget: the QAT phase alone, end to end with `freeze_prefix=False`).
    `input_range`: the model input's int8 (min, max) chosen by the export; the QAT phase quantises the
    input with it when the whole model trains (else the input is a frozen prefix's output, observed).
    `qat_freeze_bn`: BatchNorm layers keep their running statistics during the QAT phase (a trained model
    that is its own teacher: batch statistics of 32 windows pulled it away from itself, the held-out
    fake-INT8 loss rose every epoch on af_lead1; a just-pruned student still adapts them).
    """
    import torch

    if epochs < 0 or epochs + qat_epochs < 1 or batch_size < 1 or lr <= 0 or qat_epochs < 0:
        raise ConfigError(f"epochs={epochs}, batch_size={batch_size}, lr={lr}, qat_epochs={qat_epochs}: "
                          "expected positive values (epochs or qat_epochs may be 0, not both)")
    x_tr, y_tr = _windows_and_labels(train_windows, spec, "training windows")
    x_val, y_val = _windows_and_labels(val_windows, spec, "validation windows")
    logit_idx = [i for i, o in enumerate(spec.outputs) if o.kind == "logit"]
    reg_idx = [i for i, o in enumerate(spec.outputs) if o.kind == "regression"]

    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    start, cpu_start = time.monotonic(), time.process_time()
    try:
        torch.manual_seed(seed)
        student = copy.deepcopy(student)
        teacher = copy.deepcopy(teacher).eval()
        frozen = frozen_prefix_stages(student, teacher) if freeze_prefix else None
        if frozen is None:  # the stem was pruned: train end to end
            h_tr, h_val = x_tr, x_val
            t_tr, t_val = _predict(teacher, x_tr, 64), _predict(teacher, x_val, 64)
            forward = student
            predict_student = lambda m, h: _predict(m, h, 64)  # noqa: E731
            trained_modules = [student]
        else:
            h_tr, h_val = _features(teacher, x_tr, frozen, 64), _features(teacher, x_val, frozen, 64)
            t_tr, t_val = _predict_suffix(teacher, h_tr, frozen, 64), _predict_suffix(teacher, h_val, frozen, 64)
            forward = lambda h: _suffix(student, h, frozen)  # noqa: E731
            predict_student = lambda m, h: _predict_suffix(m, h, frozen, 64)  # noqa: E731
            trained_modules = [*student.stage_list[frozen:], student.dense]
        multiclass = getattr(spec, "task", None) == "multiclass"
        teacher_metrics = _score(t_val, t_val, y_val, logit_idx, reg_idx, multiclass)[1]
        history = {"teacher": teacher_metrics, "epochs": [], "best_epoch": 0, "stopped_early": False,
                   "temperature": TEMPERATURE, "frozen_stages": frozen}
        rng = np.random.default_rng(seed)
        steps_per_epoch = math.ceil(len(h_tr) / batch_size)
        trained_ids = set(id(p) for m in trained_modules for p in m.parameters())
        data = {"x": torch.from_numpy(h_tr), "t": torch.from_numpy(t_tr),
                "y": None if y_tr is None else torch.from_numpy(y_tr)}

        def evaluate():
            return _score(predict_student(student, h_val), t_val, y_val, logit_idx, reg_idx, multiclass)

        def run_phase(name: str, n_epochs: int, peak_lr: float, first_epoch: int, bar, task):
            """Train n_epochs, keep the best state of this phase (its starting point included) in the
            student, and return that epoch's number."""
            best_score, metrics = evaluate()
            best_state, best_epoch = copy.deepcopy(student.state_dict()), first_epoch - 1
            history["epochs"].append({"epoch": first_epoch - 1, "phase": name, **metrics,
                                      "seconds": round(time.monotonic() - start, 2)})
            if n_epochs == 0:
                return best_epoch
            params = [p for p in student.parameters() if id(p) in trained_ids]
            opt = torch.optim.AdamW(params, lr=peak_lr, weight_decay=weight_decay)
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=peak_lr, total_steps=n_epochs * steps_per_epoch,
                                                        pct_start=0.15)
            for epoch in range(first_epoch, first_epoch + n_epochs):
                training_mode(student, frozen, freeze_bn=name == "qat" and qat_freeze_bn)
                order = torch.from_numpy(rng.permutation(len(h_tr)))
                total, seen = 0.0, 0
                for s in range(steps_per_epoch):
                    idx = order[s * batch_size:(s + 1) * batch_size]
                    out = forward(data["x"][idx])
                    loss = distillation_loss(out, data["t"][idx], None if data["y"] is None else data["y"][idx],
                                             logit_idx, reg_idx, multiclass=multiclass)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    sched.step()
                    total += float(loss.detach()) * len(idx)
                    seen += len(idx)
                    bar.update(task, advance=1, info=f"{name} epoch {epoch} loss {total / seen:.4f}")
                    if time_budget_s is not None and time.monotonic() - start > time_budget_s:
                        history["stopped_early"] = True
                        break
                score, metrics = evaluate()
                history["epochs"].append({"epoch": epoch, "phase": name, "train_loss": total / max(seen, 1),
                                          **metrics, "seconds": round(time.monotonic() - start, 2)})
                if score > best_score:
                    best_score, best_state, best_epoch = score, copy.deepcopy(student.state_dict()), epoch
                if history["stopped_early"]:
                    break
            student.load_state_dict(best_state)
            return best_epoch

        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
        bar = Progress(TextColumn("[bold]distillation"), BarColumn(), MofNCompleteColumn(),
                       TextColumn("{task.fields[info]}"), TimeElapsedColumn(), disable=not progress)
        with bar:
            task = bar.add_task("distil", total=(epochs + qat_epochs) * steps_per_epoch, info="")
            history["best_epoch"] = run_phase("float", epochs, lr, 1, bar, task)
            if qat_epochs and not history["stopped_early"]:
                from ecgedge.quantize.qat import QuantSim
                # the INT8 tensor the trained part starts from: a frozen prefix's output, or the model input
                first = student.stage_list[frozen] if frozen is not None else student.first_conv
                sim = QuantSim(student, trained_modules, inputs_of=[first],
                               input_ranges={first: input_range} if input_range and frozen is None else None)
                with torch.no_grad():   # observers start from the float model's ranges
                    sim.calibrate(lambda: [forward(data["x"][i:i + 64]) for i in range(0, min(len(h_tr), 256), 64)])
                history["quant_aware"] = {"epochs": qat_epochs, "points": sim.n_points,
                                          "weights": len(sim.weight_modules)}
                history["best_epoch"] = run_phase("qat", qat_epochs, qat_lr or lr / 5, epochs + 1, bar, task)
                history["quant_aware"]["ranges"] = sim.ranges()
                sim.remove()
        student.eval()
        history["best"] = next(e for e in reversed(history["epochs"]) if e["epoch"] == history["best_epoch"])
        history["seconds"] = round(time.monotonic() - start, 2)
        history["cpu_seconds"] = round(time.process_time() - cpu_start, 2)
        return student, history
    finally:
        torch.set_num_threads(old_threads)
