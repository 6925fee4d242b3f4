from lstm_forecast.run import train


def test_train_writes_metrics(compose_train_cfg, tmp_path):
    cfg = compose_train_cfg("trainer.max_epochs=1")
    metrics, _ = train(cfg)
    assert (tmp_path / "metrics.json").is_file()
    assert metrics["test/mse_z"] > 0
