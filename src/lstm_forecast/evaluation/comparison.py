"""The line after training that says, on validation, whether the model beats each baseline and by how
much: a model that loses to ridge or persistence (small data often makes one) is told, not left for
the user to find in ``metrics.json``."""

from __future__ import annotations

from collections.abc import Mapping

from lstm_forecast.evaluation.report import BASELINES

OBJECTIVE = "val/mse_z"


def validation_baseline_key(name: str) -> str:
    """The ``metrics.json`` key of baseline ``name``'s z-normalised validation MSE."""
    return f"val/baseline/{name}/mse_z"


def _versus(name: str, model: float, baseline: float) -> tuple[str, bool]:
    """``("beats persistence by 38 %", False)``: the phrase, and whether the model loses."""
    label = name.replace("_", " ")
    if baseline <= 0:  # a baseline without error (a constant series): only an error-free model ties
        return (
            (f"level with {label} (error 0)", False) if model <= 0 else (f"loses to {label} (error 0)", True)
        )
    percent = round(100 * abs(model - baseline) / baseline)
    if percent == 0:
        return f"level with {label}", False
    if model < baseline:
        return f"beats {label} by {percent} %", False
    return f"loses to {label} by {percent} %", True


def validation_comparison(metrics: Mapping[str, object]) -> tuple[str, bool] | None:
    """``("validation MSE (z) 0.4100: beats persistence by 38 %, ..., loses to ridge by 3 %", loses)``:
    the model's validation MSE against each baseline's on the same windows (as a share of the
    baseline's), and whether it loses to any; None without baselines scored on validation."""
    scored = [name for name in BASELINES if isinstance(metrics.get(validation_baseline_key(name)), float)]
    if not scored or not isinstance(metrics.get(OBJECTIVE), float):
        return None
    model = float(metrics[OBJECTIVE])
    phrases = [_versus(name, model, float(metrics[validation_baseline_key(name)])) for name in scored]
    line = f"validation MSE (z) {model:.4f}: " + ", ".join(phrase for phrase, _ in phrases)
    return line, any(loses for _, loses in phrases)
