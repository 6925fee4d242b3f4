"""The network's optional value references: change from the last value, per-window norm, skip."""

from __future__ import annotations

import pytest
import torch

from lstm_forecast.errors import UserError
from lstm_forecast.models.net import EmbeddingBiLSTM

NUM_SERIES, NUM_FEATURES, WINDOW, HORIZON = 3, 2, 10, 4


def make_net(**options) -> EmbeddingBiLSTM:
    torch.manual_seed(0)
    net = EmbeddingBiLSTM(NUM_SERIES, NUM_FEATURES, num_units=6, dense_size=5, horizon=HORIZON, **options)
    return net.eval()


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    x = torch.rand(8, WINDOW, NUM_FEATURES, generator=generator) * 2 - 1  # [B, W, F]
    return x, torch.randint(1, NUM_SERIES + 1, (8,), generator=generator)


def shift_values(x: torch.Tensor, scale: float, offset: float) -> torch.Tensor:
    """Apply ``value * scale + offset`` to the value feature (the last) only."""
    shifted = x.clone()
    shifted[..., -1] = x[..., -1] * scale + offset
    return shifted


def test_change_from_last_value_moves_forecasts_with_the_level():
    net, (x, ids) = make_net(window_norm="last"), batch()
    with torch.no_grad():
        torch.testing.assert_close(net(shift_values(x, 1.0, 0.7), ids), net(x, ids) + 0.7)


def test_window_standardisation_makes_forecasts_affine_in_the_values():
    net, (x, ids) = make_net(window_norm="standard"), batch()
    with torch.no_grad():
        torch.testing.assert_close(
            net(shift_values(x, 3.0, -0.5), ids), net(x, ids) * 3.0 - 0.5, atol=1e-3, rtol=1e-3
        )


def test_the_methods_network_is_not_shift_equivariant():
    net, (x, ids) = make_net(), batch()
    with torch.no_grad():
        assert not torch.allclose(net(shift_values(x, 1.0, 0.7), ids), net(x, ids) + 0.7, atol=1e-3)


def zero_head(net: EmbeddingBiLSTM) -> EmbeddingBiLSTM:
    with torch.no_grad():
        net.head.weight.zero_()
        net.head.bias.zero_()
    return net


def test_last_value_skip_adds_persistence_to_the_network_output():
    (x, ids) = batch()
    with torch.no_grad():
        skip = zero_head(make_net(last_value_skip=True))(x, ids)
        level = zero_head(make_net())(x, ids)
    torch.testing.assert_close(skip, x[:, -1:, -1].expand(-1, HORIZON))
    torch.testing.assert_close(level, torch.zeros_like(level))


def test_flat_and_zero_windows_stay_finite_under_standardisation():
    net = make_net(window_norm="standard")
    x = torch.zeros(2, WINDOW, NUM_FEATURES)
    with torch.no_grad():
        assert torch.isfinite(net(x, torch.tensor([1, 2]))).all()


def test_options_are_validated():
    with pytest.raises(UserError, match="window_norm"):
        make_net(window_norm="minmax")
    with pytest.raises(UserError, match="last_value_skip"):
        make_net(window_norm="last", last_value_skip=True)


def test_highway_adds_a_linear_map_of_the_last_values():
    (x, ids) = batch()
    net = zero_head(make_net(highway_window=3))
    with torch.no_grad():
        expected = x[:, -3:, -1] @ net.highway.weight[0] + net.highway.bias[0]
        torch.testing.assert_close(net(x, ids), expected)


def test_highway_works_on_the_referenced_values():
    (x, ids) = batch()
    net = zero_head(make_net(highway_window=WINDOW, window_norm="last"))
    with torch.no_grad():
        last = x[:, -1:, -1]
        expected = (x[..., -1] - last) @ net.highway.weight[0] + net.highway.bias[0] + last
        torch.testing.assert_close(net(x, ids), expected)


def test_per_series_highway_applies_each_series_own_map():
    (x, ids) = batch()
    net = zero_head(make_net(highway_window=3, highway_per_series=True))
    assert net.highway.weight.shape == (NUM_SERIES + 1, 3, HORIZON)
    with torch.no_grad():
        for i in range(len(ids)):
            expected = x[i, -3:, -1] @ net.highway.weight[ids[i]] + net.highway.bias[ids[i]]
            torch.testing.assert_close(net(x, ids)[i], expected)


def test_without_highway_the_network_has_the_methods_parameters():
    assert set(make_net().state_dict()) == set(make_net(highway_window=0).state_dict())
    assert {"highway.weight", "highway.bias"} <= set(make_net(highway_window=2).state_dict())


def test_highway_options_are_validated():
    with pytest.raises(UserError, match="highway_window"):
        make_net(highway_window=-1)
    with pytest.raises(ValueError, match="highway_window"):
        make_net(highway_window=WINDOW + 1)(*batch())


@pytest.mark.parametrize(
    ("options", "key", "bad"),
    [
        (dict(num_series=0), "num_series", 0),
        (dict(num_features=0), "num_features", 0),
        (dict(num_features=2.5), "num_features", 2.5),
        (dict(embedding_dim=0), "model.net.embedding_dim", 0),
        (dict(embedding_dim=-3), "model.net.embedding_dim", -3),
        (dict(num_units=0), "model.net.num_units", 0),
        (dict(num_units=8.0), "model.net.num_units", 8.0),
        (dict(num_units="64"), "model.net.num_units", "64"),
        (dict(num_units=True), "model.net.num_units", True),
        (dict(num_lstm_layers=0), "model.net.num_lstm_layers", 0),
        (dict(dense_size=0), "model.net.dense_size", 0),
        (dict(horizon=0), "model.horizon", 0),
        (dict(static_embedding_dim=0, static_cardinalities=[3]), "model.net.static_embedding_dim", 0),
        (dict(static_cardinalities=[3, 0]), "static_cardinalities", 0),
        (dict(dropout=1.0), "model.net.dropout", 1.0),
        (dict(dropout=-0.1), "model.net.dropout", -0.1),
        (dict(dropout="0.2"), "model.net.dropout", "0.2"),
        (dict(window_norm="minmax"), "model.net.window_norm", "minmax"),
        (dict(window_norm=None), "model.net.window_norm", None),
        (dict(last_value_skip="yes"), "model.net.last_value_skip", "yes"),
        (dict(highway_window=-1), "model.net.highway_window", -1),
        (dict(highway_window=2.0), "model.net.highway_window", 2.0),
        (dict(highway_per_series=1), "model.net.highway_per_series", 1),
    ],
)
def test_every_bad_size_or_option_is_a_one_line_user_error(options, key, bad):
    kwargs = dict(num_series=NUM_SERIES, num_features=NUM_FEATURES, num_units=6, dense_size=5) | options
    with pytest.raises(UserError) as raised:
        EmbeddingBiLSTM(**kwargs)
    message = str(raised.value)
    assert message.startswith(key) and "\n" not in message
    assert message.endswith(f"got {bad!r}")


def test_good_sizes_build_a_net():
    net = EmbeddingBiLSTM(1, 1, embedding_dim=1, num_units=1, num_lstm_layers=1, dense_size=1, dropout=0)
    assert net.embedding is None and net.lstm.hidden_size == 1
