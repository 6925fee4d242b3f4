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

    The output at the last step alone would leave the backward half having seen one step; then
    the first step could only reach the forecast through the forward half. Cut the forward half
    off by zeroing its weights in the last layer: the first step must still change the forecast.
    """
    torch.manual_seed(0)
    net = small_net()
    with torch.no_grad():
        for name, param in net.lstm.named_parameters():
            if name.endswith("_l1"):  # last layer, forward direction
                param.zero_()
    x = torch.randn(2, 9, 3)
    ids = torch.tensor([1, 2])
    changed = x.clone()
    changed[:, 0] += 5.0
    assert not torch.allclose(net(x, ids), net(changed, ids))


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
