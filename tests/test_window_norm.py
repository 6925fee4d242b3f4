"""``window_norm=standard`` over a window's real steps (not its warm-up padding), with a floor on the
scale, and RevIN's learned gain kept positive (and loaded from checkpoints that stored the gain)."""

from __future__ import annotations

import pytest
import torch

from lstm_forecast.errors import UserError
from lstm_forecast.models.net import WINDOW_SCALE_FLOOR, EmbeddingBiLSTM, real_steps, window_reference
from lstm_forecast.models.segment_net import SegmentBiLSTM

NUM_SERIES, NUM_FEATURES, WINDOW, HORIZON, PADDING = 3, 2, 12, 4, 5


def padded_windows() -> tuple[torch.Tensor, torch.Tensor]:
    """``x [6, W, F]`` whose first ``PADDING`` steps are warm-up padding (every feature 0, as the
    datamodule writes them), the rest random in [-1, 1]; series ids ``[6]``."""
    generator = torch.Generator().manual_seed(3)
    x = torch.rand(6, WINDOW, NUM_FEATURES, generator=generator) * 2 - 1  # [B, W, F]
    x[:, :PADDING] = 0.0
    return x, torch.randint(1, NUM_SERIES + 1, (6,), generator=generator)


def nets(**options) -> list[torch.nn.Module]:
    torch.manual_seed(0)
    bilstm = EmbeddingBiLSTM(NUM_SERIES, NUM_FEATURES, num_units=6, dense_size=5, horizon=HORIZON, **options)
    torch.manual_seed(0)
    segment = SegmentBiLSTM(
        NUM_SERIES, NUM_FEATURES, WINDOW, HORIZON, seg_len=4, segment_dim=5, num_units=3, **options
    )
    return [bilstm.eval(), segment.eval()]


def test_the_statistics_are_those_of_the_real_steps():
    x, _ = padded_windows()
    values = x[..., -1]  # [B, W]
    assert real_steps(values).sum().item() == 6 * (WINDOW - PADDING)
    offset, scale = window_reference(values, "standard")
    real = values[:, PADDING:]
    torch.testing.assert_close(offset, real.mean(dim=1, keepdim=True))
    torch.testing.assert_close(scale, real.std(dim=1, unbiased=False, keepdim=True))


@pytest.mark.parametrize("net_index", [0, 1], ids=["bilstm", "seg_bilstm"])
def test_a_padded_windows_forecast_follows_its_real_values_only(net_index):
    """Moving and stretching the real steps (the padding stays 0, as it would in the data) moves and
    stretches the forecast alike: the padding neither enters the statistics nor reaches the network
    as anything but 0."""
    net, (x, ids) = nets(window_norm="standard")[net_index], padded_windows()
    changed = x.clone()
    changed[:, PADDING:, -1] = x[:, PADDING:, -1] * 3.0 - 0.5
    with torch.no_grad():
        torch.testing.assert_close(net(changed, ids), net(x, ids) * 3.0 - 0.5, rtol=1e-4, atol=1e-4)


def test_a_flat_window_is_scaled_by_the_floor_not_blown_up():
    """An intermittent series' run of zeros (scaled to -1 by minmax) and a window of padding alone:
    referenced at their value, with the scale floored at 1% of the scaled range."""
    flat = torch.full((1, WINDOW), -1.0)
    offset, scale = window_reference(flat, "standard")
    assert offset.item() == -1.0 and scale.item() == pytest.approx(WINDOW_SCALE_FLOOR) == 0.02
    spike = flat.clone()
    spike[0, -1] = -0.999  # a tiny blip: its std (3e-4) is under the floor
    assert window_reference(spike, "standard")[1].item() == pytest.approx(WINDOW_SCALE_FLOOR)
    offset, scale = window_reference(torch.zeros(1, WINDOW), "standard")
    assert offset.item() == 0.0 and scale.item() == pytest.approx(WINDOW_SCALE_FLOOR)


def segment_net(window_affine: str = "per_series") -> SegmentBiLSTM:
    torch.manual_seed(0)
    net = SegmentBiLSTM(
        NUM_SERIES,
        NUM_FEATURES,
        WINDOW,
        HORIZON,
        seg_len=4,
        segment_dim=5,
        num_units=3,
        window_norm="standard",
        window_affine=window_affine,
    )
    return net.eval()


def test_the_learned_gain_stays_positive_whatever_its_parameter():
    net, (x, ids) = segment_net(), padded_windows()
    with torch.no_grad():
        net.affine_log_gain.fill_(-60.0)  # the gain's parameter driven far down: exp(-60) > 0
        gain, _ = net.window_affine(ids, x[..., -1])
        assert (gain > 0).all()
        assert torch.isfinite(net(x, ids)).all()


@pytest.mark.parametrize("window_affine", ["shared", "per_series"])
def test_a_checkpoint_that_stored_the_gain_loads_with_the_same_forecasts(window_affine):
    trained, (x, ids) = segment_net(window_affine), padded_windows()
    with torch.no_grad():
        trained.affine_log_gain.uniform_(-1.0, 1.0)
        trained.affine_shift.uniform_(-1.0, 1.0)
        expected = trained(x, ids)
    old = dict(trained.state_dict())
    old["affine_gain"] = torch.exp(old.pop("affine_log_gain"))  # the old layout: the gain itself
    loaded = segment_net(window_affine)
    loaded.load_state_dict(old)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, ids), expected)


def test_a_checkpoint_with_a_gain_trained_below_zero_is_refused_in_one_line():
    old = dict(segment_net().state_dict())
    old["affine_gain"] = torch.tensor([1.0, 0.5, -0.2, 1.0])
    del old["affine_log_gain"]
    with pytest.raises(UserError, match=r"affine_gain\) is not positive .*retrain"):
        segment_net().load_state_dict(old)
