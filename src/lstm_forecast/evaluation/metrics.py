"""Forecast metrics in scaled units, original units and z-normalised units (the published convention)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

ToOriginal = Callable[[np.ndarray, np.ndarray], np.ndarray]


def forecast_metrics(
    prediction: np.ndarray,
    target: np.ndarray,
    series_index: np.ndarray,
    to_original: ToOriginal,
    to_z: ToOriginal,
) -> dict[str, float]:
    """Average errors over every window and horizon step.

    Parameters
    ----------
    prediction, target : ndarray
        ``[N, H]`` scaled values.
    series_index : ndarray
        ``[N]`` series of each window, from 0.
    to_original : callable
        ``(scaled [N, H], series [N, 1]) -> original units``.
    to_z : callable
        ``(original [N, H], series [N, 1]) -> z-normalised with training mean and std``.

    Returns
    -------
    dict
        ``mse``, ``mae`` (scaled), ``mse_z``, ``mae_z``, ``mae_orig``, ``rmse_orig``.
    """
    series = np.asarray(series_index)[:, None]  # [N, 1] broadcasts over the horizon
    error = prediction.astype(np.float64) - target
    pred_orig, target_orig = to_original(prediction, series), to_original(target, series)
    error_orig = pred_orig - target_orig
    error_z = to_z(pred_orig, series) - to_z(target_orig, series)
    return {
        "mse": float(np.mean(error**2)),
        "mae": float(np.mean(np.abs(error))),
        "mse_z": float(np.mean(error_z**2)),
        "mae_z": float(np.mean(np.abs(error_z))),
        "mae_orig": float(np.mean(np.abs(error_orig))),
        "rmse_orig": float(np.sqrt(np.mean(error_orig**2))),
    }
