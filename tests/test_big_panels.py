"""Big panels: sampled training epochs, a fixed validation sample, and scores streamed chunk by chunk.

The sampled epoch and the validation sample are checked on the sampler and the datamodule here, and
over two real DDP processes (the CLI with ``trainer=ddp_cpu``) in the test marked ``ddp``. The streamed
scores are compared with a plain reference that holds every window's forecasts and error terms at once
(what scoring did before it streamed), on the apps-matrix data: wide, long ragged and synthetic.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

import lstm_forecast.evaluation.report as report
import lstm_forecast.memory as memory
from conftest import TINY_MODEL, compose_config, import_script, run_app
from lstm_forecast.data.datamodule import ForecastDataModule
from lstm_forecast.data.loading import WindowBatchSampler, sample_windows, window_loader
from lstm_forecast.data.sources import read_bytes
from lstm_forecast.evaluation.baselines import RidgeBaseline, seasonal_naive
from lstm_forecast.evaluation.intervals import ConformalIntervals
from lstm_forecast.evaluation.metrics import METRIC_NAMES, ForecastErrors
from lstm_forecast.evaluation.report import EvaluationOptions, seasonal_period_of
from lstm_forecast.evaluation.streaming import calibrated_over_time, evaluate_windows
from lstm_forecast.evaluation.window_forecasts import predict_windows
from test_apps_matrix import long_layout, wide_layout


# --------------------------------------------------------------------------------------------- sampling
def drawn(sampler: WindowBatchSampler) -> torch.Tensor:
    return torch.cat(list(sampler))


def test_a_sampled_epoch_draws_that_many_distinct_windows_anew_each_epoch() -> None:
    for num_windows in (1_000_000, 9_000):  # a small share of the windows, and a large one
        sampler = WindowBatchSampler(num_windows, batch_size=64, shuffle=True, seed=3, num_samples=5_000)
        first = drawn(sampler)
        assert len(first) == 5_000 == len(set(first.tolist()))  # distinct
        assert int(first.min()) >= 0 and int(first.max()) < num_windows
        assert len(sampler) == -(-5_000 // 64) == len(list(sampler))
        assert torch.equal(drawn(sampler), first)  # seeded: the same epoch draws the same windows
        sampler.set_epoch(1)
        second = drawn(sampler)
        assert len(set(second.tolist())) == 5_000
        assert len(set(first.tolist()) & set(second.tolist())) < 5_000 * 0.75  # a new draw
        # Uniform: over the windows' range, the draw is spread like a uniform sample.
        counts = np.bincount(np.asarray(first) * 10 // num_windows, minlength=10)
        assert counts.min() > 5_000 / 10 * 0.8


def test_sampled_shards_are_disjoint_equal_and_together_the_draw() -> None:
    shards = [
        drawn(WindowBatchSampler(100_000, 50, True, seed=0, rank=rank, world_size=3, num_samples=3_001))
        for rank in range(3)
    ]
    assert [len(shard) for shard in shards] == [1_000] * 3  # equal: 3,001 // 3 windows each
    assert len(set(torch.cat(shards).tolist())) == 3_000  # disjoint
    whole = drawn(WindowBatchSampler(100_000, 50, True, seed=0, num_samples=3_001))
    assert set(torch.cat(shards).tolist()) <= set(whole.tolist())  # shares of the same draw


def test_the_draw_does_not_index_every_window() -> None:
    # A permutation of 10^12 windows could not be held; a draw of 1,000 of them is instant.
    sample = sample_windows(10**12, 1_000, torch.Generator().manual_seed(0))
    assert len(set(sample.tolist())) == 1_000 and int(sample.max()) < 10**12


def test_without_windows_per_epoch_every_window_is_shuffled_as_before() -> None:
    # The method's epochs: every window once, the permutation of seed + epoch (unchanged).
    sampler = WindowBatchSampler(1_000, 64, shuffle=True, seed=7)
    sampler.set_epoch(2)
    expected = torch.randperm(1_000, generator=torch.Generator().manual_seed(9))
    assert torch.equal(drawn(sampler), expected)


def small_datamodule(**options) -> ForecastDataModule:
    datamodule = ForecastDataModule(
        source={"kind": "synthetic", "num_series": 4, "num_rows": 600}, window_size=12, horizon=3, **options
    )
    datamodule.setup()
    return datamodule


def test_the_validation_sample_is_fixed_spread_and_validated_on() -> None:
    datamodule = small_datamodule(val_windows=100, windows_per_epoch=500)
    sample = datamodule.validation_windows()
    assert len(sample) == 100 < len(datamodule.windows["val"])
    assert torch.equal(small_datamodule(val_windows=100).val_sample, datamodule.val_sample)  # seeded
    assert len(set(datamodule.val_sample.tolist())) == 100
    assert set(sample.series_index().tolist()) == {0, 1, 2, 3}  # every series, over its whole period
    rows = sample.locate(torch.arange(len(sample)))[0].numpy()
    lo, hi = datamodule.bounds["val"]
    assert np.ptp(rows) > 0.5 * (hi - lo).max()
    # The loader serves the sample, in order, every epoch; the training loader the sampled epoch.
    loader = datamodule.val_dataloader()
    targets = [batch["target_row"] for batch in loader]
    assert torch.equal(torch.cat(targets), torch.cat([batch["target_row"] for batch in loader]))
    assert len(torch.cat(targets)) == 100
    assert sum(len(batch["y"]) for batch in datamodule.train_dataloader()) == 500


@pytest.mark.parametrize("key", ["windows_per_epoch", "val_windows"])
def test_sample_sizes_must_be_positive(key) -> None:
    with pytest.raises(Exception, match=rf"data.{key} must be a positive integer or null"):
        ForecastDataModule(source={"kind": "synthetic"}, **{key: 0})


def test_a_loader_refuses_nothing_it_used_to() -> None:
    # Evaluation loaders ignore windows_per_epoch: every window, in order, once.
    datamodule = small_datamodule()
    loader = window_loader(datamodule.windows["val"], 64, "eval_batch_size", False, 0, 0, 1, 10)
    assert sum(len(batch["y"]) for batch in loader) == len(datamodule.windows["val"])


# --------------------------------------------------------------------------------------------- DDP
# Sampled epochs and the validation sample over two real DDP ranks: tests/test_ddp.py's 2-rank run.


# --------------------------------------------------------------------------------------------- streaming
def reference_scores(net, datamodule: ForecastDataModule, options: EvaluationOptions) -> dict:
    """Every test window's forecasts, baselines and error terms held at once, averaged with NumPy."""
    windows = datamodule.windows["test"]
    # Batches of the streamed chunks' size: the same float32 forecasts, bit for bit.
    forecasts = predict_windows(net, windows, batch_size=report.SCORE_CHUNK_WINDOWS)
    train = datamodule.windows["train"]
    batch = train.gather(torch.arange(len(train)))
    series = (batch["series_id"] - 1).numpy()
    change = np.abs(
        datamodule.inverse_values(batch["y"][:, :1].numpy(), series[:, None])
        - datamodule.inverse_values(batch["x"][:, -1:, -1].numpy(), series[:, None])
    )[:, 0]
    scale = np.array([change[series == s].mean() for s in range(datamodule.num_series)])
    horizon = forecasts.prediction.shape[1]
    predictions = {
        "model": forecasts.prediction,
        "persistence": np.repeat(forecasts.last_value[:, None], horizon, axis=1),
        "seasonal_naive": seasonal_naive(
            windows.arrays,
            forecasts.target_row,
            forecasts.series_index,
            horizon,
            seasonal_period_of(datamodule, options),
        ),
        "ridge": RidgeBaseline.fit(train, datamodule.windows["val"]).predict(windows),
    }
    out = {}
    for name, prediction in predictions.items():
        terms = ForecastErrors.compute(
            prediction,
            forecasts.target,
            forecasts.series_index,
            datamodule.inverse_values,
            datamodule.z_normalise,
            scale,
        ).terms
        key = "test" if name == "model" else f"baseline/{name}"
        for metric, term in terms.items():
            root = np.sqrt if metric == "rmse_orig" else (lambda v: v)
            out[f"{key}/{metric}"] = float(root(np.mean(term)))
            out[f"{key}/{metric}@steps"] = root(term.mean(axis=0))
            out[f"{key}/{metric}@series"] = np.array(
                [root(term[forecasts.series_index == s].mean()) for s in range(datamodule.num_series)]
            )
    val = predict_windows(net, datamodule.windows["val"])
    split = ConformalIntervals.calibrate(
        val, options.interval_levels, options.intervals_per_series, datamodule.num_series
    )
    # Rolling calibration across every window at once (one chunk).
    intervals = calibrated_over_time(split, val, options).apply(forecasts)
    series = forecasts.series_index[:, None]
    target = datamodule.inverse_values(forecasts.target, series)
    for level, (lo, hi) in intervals.intervals.items():
        lower, upper = datamodule.inverse_values(lo, series), datamodule.inverse_values(hi, series)
        out[f"test/coverage@{round(level * 100)}"] = float(np.mean((lower <= target) & (target <= upper)))
        out[f"test/width@{round(level * 100)}"] = float(np.mean(upper - lower))
    out["forecasts"] = intervals
    return out


def layout_datamodule(name: str, folder: Path) -> tuple[ForecastDataModule, torch.nn.Module]:
    overrides = {
        "synthetic": ["data.source.num_series=3", "data.source.num_rows=240"],
        "wide": wide_layout(folder).overrides if name == "wide" else [],
        "long": long_layout(folder).overrides if name == "long" else [],
    }[name]
    cfg = compose_config("train", folder, [*TINY_MODEL, *overrides, "model.horizon=3"])
    datamodule: ForecastDataModule = instantiate(cfg.data)
    datamodule.setup()
    torch.manual_seed(0)
    module = instantiate(
        cfg.model,
        num_series=datamodule.num_series,
        num_features=datamodule.num_features,
        static_cardinalities=datamodule.static_cardinalities,
        num_future_features=len(datamodule.future_feature_names),
        window_size=datamodule.window_size,
    )
    return datamodule, module.eval()


CALIBRATIONS = {
    "pooled split": {"intervals_per_series": False, "calibration": "split", "adaptive_step": 0.0},
    "per-series split": {"calibration": "split", "adaptive_step": 0.0},
    "rolling adaptive": {"calibration": "rolling", "calibration_windows": 10, "adaptive_step": 0.05},
}


@pytest.mark.parametrize("layout", ["wide", "long", "synthetic"])
@pytest.mark.parametrize("calibration", list(CALIBRATIONS))
def test_streamed_scores_equal_the_scores_of_every_window_at_once(tmp_path, monkeypatch, layout, calibration):
    datamodule, net = layout_datamodule(layout, tmp_path)
    options = EvaluationOptions(**CALIBRATIONS[calibration])
    count = len(datamodule.windows["test"])
    chunk = next(size for size in (7, 11, 13) if count % size)
    assert count > 3 * chunk
    monkeypatch.setattr(report, "SCORE_CHUNK_WINDOWS", chunk)  # many chunks, the last one short
    expected = reference_scores(net, datamodule, options)
    scores, forecasts, _ = evaluate_windows(
        net, datamodule, datamodule.windows["test"], "test", options=options
    )
    for key, value in expected.items():
        if key == "forecasts":
            continue
        if key.endswith("@steps") or key.endswith("@series"):
            name, metric, kind = key.rsplit("/", 1)[0], *key.rsplit("/", 1)[1].split("@")
            table = scores.per_step if kind == "steps" else scores.per_series
            model = "model" if name == "test" else name.split("/")[1]
            ours = table.loc[table["model"] == model, metric].to_numpy()
            np.testing.assert_allclose(ours, value, rtol=1e-9, err_msg=key)
        else:
            assert scores.metrics[key] == pytest.approx(value, rel=1e-9), key
    assert set(scores.per_series.columns) >= set(METRIC_NAMES)
    # The kept forecasts (every window by default) are the whole split's, intervals included.
    reference = expected["forecasts"]
    np.testing.assert_array_equal(forecasts.prediction, reference.prediction)
    for level, (lo, hi) in reference.intervals.items():
        np.testing.assert_array_equal(forecasts.intervals[level][0], lo)
        np.testing.assert_array_equal(forecasts.intervals[level][1], hi)


# --------------------------------------------------------------------------------------------- benchmark
@pytest.mark.slow
def test_the_scale_benchmark_runs_every_phase_and_records_its_figures(tmp_path, monkeypatch) -> None:
    """``scripts/bench_scale.py`` at a thousandth of M5, its three phases (train, evaluate, predict) run
    in this process (each in a process of its own would pay ~7 s of imports: the test below launches
    one); their wall times, the run's epoch time and the windows scored are recorded."""
    bench_scale = import_script("bench_scale")
    phases = []

    def phase_here(app: str, args: list[str], log: Path) -> dict:
        started = time.perf_counter()
        result = run_app(app, *args)
        log.write_text(result.stdout + result.stderr)
        assert result.returncode == 0, result.stderr[-3000:]
        phases.append(app)
        return {"wall_s": time.perf_counter() - started, "peak_rss_bytes": 1}

    monkeypatch.setattr(bench_scale, "run_phase", phase_here)
    out = tmp_path / "bench_scale.json"
    arguments = ["--sizes", "0.001", "--windows-per-epoch", "512", "--val-windows", "64", "--threads", "1"]
    monkeypatch.setattr(sys, "argv", ["bench_scale.py", *arguments, "--out", str(out)])
    bench_scale.main()
    assert phases == ["train", "evaluate", "predict"]
    report = json.loads(out.read_text())
    assert report["command"] == "scripts/bench_scale.py " + " ".join([*arguments, "--out", str(out)])
    (size,) = report["sizes"]
    assert size["num_series"] == 30 and report["load_before"]
    assert all(size[phase]["wall_s"] > 0 for phase in phases)
    assert 0 < size["train"]["epoch_s"] < size["train"]["wall_s"]
    assert size["evaluate"]["test_windows"] == size["train"]["test_windows_scored"] == 30 * (84 - 28 + 1)


@pytest.mark.launches
def test_a_benchmark_phase_is_a_process_of_its_own_that_reports_its_peak_memory(tmp_path) -> None:
    """``run_phase`` starts the app in a fresh process (here ``lstm-train --help``: no torch) that
    records its own high-water mark, and stops the benchmark with the log's end when the app fails."""
    bench_scale = import_script("bench_scale")
    figures = bench_scale.run_phase("train", ["--help"], tmp_path / "help.log")
    assert "Powered by Hydra" in (tmp_path / "help.log").read_text()
    assert figures["wall_s"] > 0 and 10 * 2**20 < figures["peak_rss_bytes"] < 2**30
    with pytest.raises(SystemExit, match=r"(?s)lstm-train failed \(exit 2\).*data\.windw_size"):
        bench_scale.run_phase("train", ["data.windw_size=3"], tmp_path / "typo.log")


# --------------------------------------------------------------------------------------------- memory
@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_file_too_big_for_the_memory_is_refused_before_it_is_read(tmp_path, monkeypatch, suffix) -> None:
    table = long_layout(tmp_path).truth
    path = tmp_path / f"panel{suffix}"
    table.to_csv(path, index=False) if suffix == ".csv" else table.to_parquet(path, index=False)
    needed = read_bytes(path, ["series", "timestamp", "value"])
    assert needed > 0
    monkeypatch.setattr(memory, "available_bytes", lambda: needed - 1)
    args = ["data=long_csv", f"data.source.path={path}", *TINY_MODEL]
    result = run_app("train", *args, cwd=tmp_path)
    assert result.returncode != 0
    message = result.stderr.strip().splitlines()[-1]
    assert f"reading {path} needs about" in message and "split the series over several runs" in message
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.rglob("metrics.json")) and not list(tmp_path.rglob("*.ckpt"))
    monkeypatch.setattr(memory, "available_bytes", lambda: needed)  # just enough: the run goes on
    assert run_app("train", *args, "trainer.max_epochs=1", cwd=tmp_path).returncode == 0
