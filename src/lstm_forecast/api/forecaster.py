"""The Python API: fit, predict, evaluate, save and load from a notebook, on pandas DataFrames.

A :class:`Forecaster` is the command-line apps driven from Python: ``fit`` composes
``conf/train.yaml`` with the same overrides ``lstm-train`` takes and calls its ``train``;
``predict`` and ``evaluate`` compose ``conf/predict.yaml`` and ``conf/evaluate.yaml`` and call
``lstm-predict``'s and ``lstm-evaluate``'s functions on the best checkpoint, which applies the
training run's own settings (``evaluation``) but for those overridden in the call. The DataFrame is read
by the data sources' own code, as a file of its layout would be; a checkpoint records the column
roles, not the data, so the CLI apps reload it with a file of that layout.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from lstm_forecast.api.checkpoint_calls import (
    api_intervals,
    blank_future_table,
    export_checkpoint,
    interval_levels,
    interval_names,
)
from lstm_forecast.api.cross_validation import cross_validation
from lstm_forecast.api.tables import check_frame, table_layout
from lstm_forecast.api.vocabulary import api_words, in_input_names
from lstm_forecast.cli.app import (
    compose_config,
    compose_run_config,
    discard_failed_run,
    hydra_state_kept,
    one_line_errors,
    user_error_of,
)
from lstm_forecast.errors import UserError
from lstm_forecast.files import write_atomic
from lstm_forecast.inference.evaluate import score_checkpoint
from lstm_forecast.inference.predict import future_forecast, load_for_prediction, prediction_memory
from lstm_forecast.memory import check_memory
from lstm_forecast.models.checkpoint import read_checkpoint
from lstm_forecast.training.distributed import (
    refuse_several_processes_in_python,
    refuse_unsupported_precision,
)
from lstm_forecast.training.run import torch_threads, train
from lstm_forecast.training.run_folder import (
    DEFAULT_MIN_FREE_MB,
    check_output_dir,
    override_key,
    write_run_info,
)

PREDICTION_COLUMNS = ["series", "timestamp", "prediction"]


@contextlib.contextmanager
def process_state_kept() -> Iterator[None]:
    """What a call changes for the whole process is put back when it returns: torch's CPU threads
    (``num_threads``) and Hydra's state, so the API can be called inside the caller's own Hydra app."""
    threads = torch.get_num_threads()
    try:
        with hydra_state_kept():
            yield
    finally:
        torch.set_num_threads(threads)


class Forecaster:
    """One embedding + BiLSTM network over many series, trained and used on pandas DataFrames.

    Parameters
    ----------
    overrides : sequence of str
        Any ``lstm-train`` override of ``conf/train.yaml`` (``"data.window_size=48"``,
        ``"model.horizon=24"``, ``"trainer.max_epochs=20"``, ``"logger=none"``...). The ``data``
        group is chosen from the DataFrame's layout unless one is given (``"data=etth1"``).
    layout : {"long", "wide"} or None
        Long: one row per (series, timestamp) with a value and optional feature columns. Wide: a
        timestamp column and one column per series. None detects it (long when the table has a
        series and a value column).
    columns : dict, optional
        Column names of the roles ``series``, ``timestamp``, ``value`` when they are not
        ``series, timestamp, value`` or Nixtla's ``unique_id, ds, y`` (both recognised), e.g.
        ``{"series": "store", "timestamp": "day", "value": "sales"}``. A wide table's timestamp
        column is found as ``date``, ``timestamp`` or ``ds`` unless named here.
    extra_columns : list of str, optional
        Numeric per-step feature columns (scaled on the training rows, fed to the network).
    static_columns : list of str, optional
        Long tables: per-series category columns, each feeding an embedding.
    run_dir : str or Path, optional
        Folder of the training run; default ``outputs/runs/train/<time>`` as ``lstm-train``.

    Attributes
    ----------
    checkpoint : Path or None
        The best checkpoint, after :meth:`fit` or :meth:`load`.
    run_dir : Path or None
        The training run's folder (``metrics.json``, ``checkpoints/``, ``tensorboard/``).
    metrics : dict or None
        What the training run wrote to ``metrics.json``.

    Examples
    --------
    >>> from lstm_forecast import Forecaster
    >>> from lstm_forecast.data.long_source import synthetic_long_table
    >>> df = synthetic_long_table(num_series=4, min_length=200, max_length=300)
    >>> df = df.rename(columns={"series": "unique_id", "timestamp": "ds", "value": "y"})
    >>> quiet = ["trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]
    >>> f = Forecaster(["data.window_size=24", "trainer.max_epochs=2", *quiet])
    >>> f = f.fit(df)  # writes outputs/runs/train/<time>/
    >>> forecast = f.predict(df, horizon=12)  # unique_id, ds, prediction: the input's names
    >>> forecast.shape
    (48, 3)
    >>> f.evaluate(df)["test/mse_z"] > 0
    True
    >>> f.save("model.ckpt").name
    'model.ckpt'
    >>> Forecaster.load("model.ckpt").predict(df, horizon=12).equals(forecast)
    True
    """

    def __init__(
        self,
        overrides: Sequence[str] = (),
        *,
        layout: str | None = None,
        columns: dict[str, str] | None = None,
        extra_columns: list[str] | None = None,
        static_columns: list[str] | None = None,
        run_dir: str | Path | None = None,
    ) -> None:
        if isinstance(overrides, str):
            raise UserError(f"overrides is a list of strings, got the string {overrides!r}; wrap it in [...]")
        self.overrides = [str(override) for override in overrides]
        self.layout = layout
        self.columns = dict(columns or {})
        self.extra_columns = None if extra_columns is None else list(extra_columns)
        self.static_columns = None if static_columns is None else list(static_columns)
        self.run_dir: Path | None = None if run_dir is None else Path(run_dir)
        self.checkpoint: Path | None = None
        self.metrics: dict[str, Any] | None = None

    # ----------------------------------------------------------------------------- training
    def fit(self, data: pd.DataFrame, run_dir: str | Path | None = None) -> Forecaster:
        """Train on ``data`` as ``lstm-train`` would on a file holding it; return ``self``.

        Writes the run folder of ``lstm-train`` (``run_info.json``, ``checkpoints/``,
        ``tensorboard/``, ``metrics.json`` and the metric tables) into ``run_dir`` (default: the
        constructor's, else ``outputs/runs/train/<time>``). Bad data or config is a one-line
        :class:`~lstm_forecast.errors.UserError`, and leaves no run folder behind.
        """
        with api_words(), process_state_kept(), one_line_errors():
            table = check_frame(data)
            chosen_dir = run_dir if run_dir is not None else self.run_dir
            cfg = self._train_config(table, chosen_dir)
            output_dir = Path(cfg.paths.output_dir)
            min_free_mb = OmegaConf.select(cfg, "paths.min_free_mb", default=DEFAULT_MIN_FREE_MB)
            try:
                check_output_dir(output_dir, resuming=False, min_free_mb=float(min_free_mb))
            except UserError:
                if chosen_dir is None:  # the empty folder made for this fit
                    output_dir.rmdir()
                raise
            try:
                refuse_unsupported_precision(cfg.trainer)
                torch_threads(cfg)
                write_run_info(output_dir, cfg)
                metrics, _ = train(cfg, table)
            except Exception as error:
                user_error = user_error_of(error)
                if user_error is not None:
                    discard_failed_run(user_error, output_dir)
                raise
        if not metrics.get("best_checkpoint"):
            raise UserError(
                "the run wrote no checkpoint (callbacks.model_checkpoint is off); keep the default callbacks"
            )
        self.run_dir, self.metrics = output_dir, metrics
        self.checkpoint = Path(metrics["best_checkpoint"])
        return self

    def _train_config(self, table: pd.DataFrame, run_dir: str | Path | None) -> DictConfig:
        """``conf/train.yaml`` with the overrides, the data group of the table's layout and its
        column roles, for a run into ``run_dir``."""
        layout = table_layout(table, self.layout, self.columns, self.extra_columns, self.static_columns)
        chose_data = any(override_key(o) == "data" for o in self.overrides)
        overrides = self.overrides if chose_data else [f"data={layout.data_group}", *self.overrides]
        # The checks first: the default run folder is created by the composition (a new one per fit).
        checked = compose_config("train", overrides)
        kind = OmegaConf.select(checked, "data.source.kind")
        if kind != layout.kind:
            raise UserError(
                f"the data group reads data.source.kind={kind} but the DataFrame is {layout.layout} "
                f"({layout.kind}); drop the data= override or choose one of that layout"
            )
        refuse_several_processes_in_python(checked.trainer)
        cfg = compose_run_config("train", overrides, run_dir, new_folder=True)
        # Set on the composed config, not as overrides: column names need no quoting this way.
        with open_dict(cfg):
            cfg.data.source.update(layout.source)
        return cfg

    # ----------------------------------------------------------------------------- using the model
    def predict(
        self,
        data: pd.DataFrame,
        horizon: int | None = None,
        future: pd.DataFrame | None = None,
        level: Sequence[float] | None = None,
    ) -> pd.DataFrame:
        """Forecast the ``horizon`` steps after each series' last row of ``data``, in its units.

        Parameters
        ----------
        data : pandas.DataFrame
            The series' history, in the layout and column names the model was trained on; it
            needs at least one window (``data.window_size`` rows) per series forecast.
        horizon : int, optional
            Steps to forecast; default the model's own (``model.horizon``). Longer horizons feed
            forecasts back as context, as ``lstm-predict horizon=H`` does.
        future : pandas.DataFrame, optional
            The values after the data of the model's own extra columns, as a future file holds them
            (:mod:`~lstm_forecast.inference.future_values`): wide (the timestamp column, one row per
            timestamp) or long (the series and timestamp columns, one row per series and timestamp).
            Needed for the steps fed back as context, and at every forecast step for the model's
            future-known columns (``data.future_columns``). :meth:`future_frame` builds it, blank.
        level : list of float, optional
            Coverage levels in percent, e.g. ``[80, 95]``: conformal intervals as ``lstm-predict
            'intervals=[0.8,0.95]'`` calibrates them, on the validation split of ``data``.

        Returns
        -------
        pandas.DataFrame
            Columns ``series``, ``timestamp``, ``prediction`` (and ``lo-80, hi-80, lo-95, hi-95``
            with ``level=[80, 95]``): one row per series and step, the rows of ``lstm-predict``'s
            ``forecast.csv``; the series and timestamp columns named as in ``data`` (``unique_id, ds``
            for Nixtla's names; a wide table's timestamp column). Never the window table of
            ``predictions.csv`` (``lstm-predict window_predictions=true`` writes that): the forecast
            reads each series' last ``data.window_size`` rows only, and a forecast that would not
            fit in the memory available is refused before it starts.
        """
        checkpoint = self._fitted("predict")
        with api_words(), process_state_kept(), one_line_errors():
            table = check_frame(data)
            future_table = None if future is None else check_frame(future)
            levels = interval_levels(level)
            cfg = compose_config("predict", [])
            with open_dict(cfg):
                cfg.ckpt_path = str(checkpoint)
            loaded = load_for_prediction(cfg, table)
            steps = loaded.module.net.horizon if horizon is None else horizon
            if isinstance(steps, int) and not isinstance(steps, bool) and steps > 0:
                check_memory("Forecaster.predict", prediction_memory(loaded, steps, False, len(levels)))
            forecast = future_forecast(cfg, loaded, steps, future_table, api_intervals(loaded, levels))
        columns = PREDICTION_COLUMNS + interval_names(levels)
        return in_input_names(forecast[columns], loaded.datamodule.load_frame())

    def future_frame(self, data: pd.DataFrame, horizon: int | None = None) -> pd.DataFrame:
        """The ``future`` table of :meth:`predict` for ``horizon`` steps after ``data``, to fill in.

        Rows: every series forecast and step (a wide table: every step), keyed by the data's series
        and timestamp columns; columns: the model's extra columns the forecast reads there, NaN
        (none when it reads none: calendar features are computed from the timestamps). Fill them,
        then ``predict(data, horizon, future=frame)``.
        """
        return blank_future_table(self._fitted("build a future frame for"), data, horizon)

    def export(self, path: str | Path, format: str | None = None) -> Path:
        """``lstm-export``: write the model, scalers folded in, into the folder ``path`` as
        ``model.onnx`` (``format="onnx"``, the default; needs ``pip install '.[export]'``) or
        ``model.pt`` (``"torchscript"``), with ``model.json`` describing its inputs
        (docs/export.md). Returns the model file."""
        return export_checkpoint(self._fitted("export"), path, format)

    def evaluate(
        self, data: pd.DataFrame, split: str = "test", overrides: Sequence[str] = ()
    ) -> dict[str, Any]:
        """The metrics ``lstm-evaluate`` writes to ``metrics.json`` for ``split`` of ``data``.

        The data is split as in training (``data.split``), scaled with the training scalers and
        scored beside the baselines with the training run's ``evaluation`` settings (stored in the
        checkpoint), so the metrics of the training data equal the run's own ``metrics.json``;
        ``test/mse_z``, ``test/mae_orig``... and ``checkpoint``.

        ``overrides``: ``lstm-evaluate`` overrides of those settings, e.g.
        ``["evaluation.calibration=split", "evaluation.seasonal_period=168"]``.
        """
        checkpoint = self._fitted("evaluate")
        if isinstance(overrides, str):
            raise UserError(f"overrides is a list of strings, got the string {overrides!r}; wrap it in [...]")
        with api_words(), process_state_kept(), one_line_errors():
            table = check_frame(data)
            cfg = compose_config("evaluate", [str(override) for override in overrides])
            with open_dict(cfg):
                cfg.ckpt_path, cfg.split = str(checkpoint), split
            metrics, *_ = score_checkpoint(cfg, table)
        return metrics

    def cross_validation(
        self,
        data: pd.DataFrame,
        horizon: int | None = None,
        n_windows: int = 1,
        step: int | None = None,
        refit_every: int | None = None,
    ) -> pd.DataFrame:
        """Forecasts from each series' last ``n_windows`` cut-offs, ``step`` steps apart, beside the actuals.

        ``lstm-backtest``'s code (:mod:`lstm_forecast.api.cross_validation`): ``horizon`` (default and
        only value: the model's own), ``step`` and ``refit_every`` (0: never refit; k: a model trained
        anew, with the run's settings, before every k windows of a series) default to
        ``conf/backtest.yaml``'s ``stride`` and ``refit_every``. Returns one row per series, cut-off and
        forecast step: ``series, cutoff, timestamp, prediction, actual`` (and the run's interval columns),
        the series and timestamp columns named as in ``data`` (as :meth:`predict` names them).
        """
        checkpoint = self._fitted("cross-validate")
        with api_words(), process_state_kept(), one_line_errors():
            return cross_validation(checkpoint, data, horizon, n_windows, step, refit_every)

    # ----------------------------------------------------------------------------- checkpoints
    def save(self, path: str | Path) -> Path:
        """Copy the best checkpoint to ``path`` (``lstm-predict ckpt_path=`` reads it too)."""
        checkpoint = self._fitted("save")
        return write_atomic(path, lambda tmp: shutil.copyfile(checkpoint, tmp))

    @classmethod
    def load(cls, path: str | Path) -> Forecaster:
        """A Forecaster predicting with the checkpoint at ``path`` (from :meth:`save` or ``lstm-train``).

        Column roles, scalers and the network all come from the checkpoint.
        """
        with one_line_errors():
            read_checkpoint(path)  # a one-line error now for a file that is no checkpoint
        forecaster = cls()
        forecaster.checkpoint = Path(path)
        return forecaster

    def _fitted(self, action: str) -> Path:
        if self.checkpoint is None:
            raise UserError(f"nothing to {action} yet; call fit(df) first, or Forecaster.load(path)")
        return self.checkpoint
