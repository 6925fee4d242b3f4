import pytest
import torch

from lstm_forecast.models.module import ForecastModule
from lstm_forecast.models.net import EmbeddingBiLSTM


def small_net(**overrides) -> EmbeddingBiLSTM:
    options = dict(num_series=4, num_features=3, embedding_dim=2, num_units=5, dense_size=6, dropout=0.0)
    return EmbeddingBiLSTM(**{**options, **overrides}).eval()


@pytest.mark.parametrize("horizon", [1, 3])
def test_output_shape_is_batch_by_horizon(horizon):
    net = small_net(horizon=horizon)
    assert net(torch.randn(7, 9, 3), torch.randint(1, 5, (7,))).shape == (7, horizon)


def test_summary_uses_the_backward_direction_over_the_whole_window():
    """Keras' return_sequences=False: the backward half has read the window down to its first step.

    In a one-layer net, the LSTM output at the last step (``out[:, -1]``, the usual bug) has a
    backward half that has seen the last step only; then the first step could reach the forecast
    only through the forward half. Cut the forward half off by zeroing its weights: the first step
    must still change the forecast. (With two layers this passes even with the bug: the last
    layer's backward output at the last step already saw step 0 through the first layer.)
    """
    torch.manual_seed(0)
    net = small_net(num_lstm_layers=1)
    with torch.no_grad():
        for name, param in net.lstm.named_parameters():
            if not name.endswith("_reverse"):  # the forward direction
                param.zero_()
    x = torch.randn(2, 9, 3)
    ids = torch.tensor([1, 2])
    changed = x.clone()
    changed[:, 0] += 5.0
    assert not torch.allclose(net(x, ids), net(changed, ids))


@pytest.mark.parametrize("num_lstm_layers", [1, 2])
def test_summary_is_the_forward_output_at_the_last_step_and_the_backward_at_the_first(num_lstm_layers):
    """The dense layer gets ``[out[:, -1, :U], out[:, 0, U:]]`` of the last BiLSTM's outputs ``out``."""
    torch.manual_seed(0)
    net = small_net(num_lstm_layers=num_lstm_layers)
    seen = {}
    net.lstm.register_forward_hook(lambda module, inputs, output: seen.update(out=output[0]))
    net.dense.register_forward_hook(lambda module, inputs, output: seen.update(dense_in=inputs[0]))
    with torch.no_grad():
        net(torch.randn(2, 9, 3), torch.tensor([1, 2]))
    out, units = seen["out"], net.lstm.hidden_size  # out: [B, W, 2U]
    expected = torch.cat([out[:, -1, :units], out[:, 0, units:]], dim=-1)
    torch.testing.assert_close(seen["dense_in"][:, : 2 * units], expected)


def test_embedding_distinguishes_series_and_univariate_has_none():
    net = small_net()
    x = torch.randn(1, 9, 3).expand(2, -1, -1)
    out = net(x, torch.tensor([1, 2]))
    assert not torch.allclose(out[0], out[1])
    assert small_net(num_series=1).embedding is None


def test_a_few_optimisation_steps_reduce_the_loss():
    torch.manual_seed(0)
    module = ForecastModule(
        num_series=2,
        num_features=2,
        net=dict(num_units=8, embedding_dim=2, dense_size=8, dropout=0.0),
        lr=0.01,
    )
    optimizer = module.configure_optimizers()
    x = torch.rand(64, 6, 2) * 2 - 1
    batch = {"x": x, "series_id": torch.randint(1, 3, (64,)), "y": x[:, -1, -1:]}  # learnable: the last value
    first = module.model_step(batch)[0].item()
    for _ in range(30):
        optimizer.zero_grad()
        module.model_step(batch)[0].backward()
        optimizer.step()
    assert module.model_step(batch)[0].item() < 0.5 * first


def test_prediction_never_depends_on_the_target():
    module = ForecastModule(num_series=2, num_features=2).eval()
    batch = {"x": torch.randn(4, 6, 2), "series_id": torch.tensor([1, 2, 1, 2]), "y": torch.zeros(4, 1)}
    _, before, _ = module.model_step(batch)
    _, after, _ = module.model_step({**batch, "y": torch.full((4, 1), 9.0)})
    assert torch.equal(before, after)
