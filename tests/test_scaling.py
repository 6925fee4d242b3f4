import numpy as np
import pytest

from lstm_forecast.data.scaling import MinMaxScaler


def test_training_range_maps_onto_minus_one_to_one():
    data = np.array([[0.0, -5.0], [10.0, 5.0], [5.0, 0.0]])
    scaled = MinMaxScaler.fit(data).transform(data)
    np.testing.assert_allclose(scaled, [[-1, -1], [1, 1], [0, 0]])


def test_round_trip_is_exact_also_outside_training_range():
    rng = np.random.default_rng(0)
    train = rng.normal(size=(50, 4)) * [1, 10, 100, 1000]
    scaler = MinMaxScaler.fit(train)
    later = rng.normal(size=(20, 4)) * 3000  # far outside the training range: not clipped
    np.testing.assert_allclose(scaler.inverse_transform(scaler.transform(later)), later, rtol=1e-12)


def test_constant_column_maps_to_zero_and_inverts_without_inf_or_nan():
    data = np.array([[3.0, 1.0], [3.0, 2.0], [3.0, 4.0]])
    scaler = MinMaxScaler.fit(data)
    scaled = scaler.transform(data)
    assert np.isfinite(scaled).all()
    np.testing.assert_array_equal(scaled[:, 0], 0.0)
    np.testing.assert_allclose(scaler.inverse_transform(scaled), data)
    # A later, different value in a constant column still stays finite.
    assert np.isfinite(scaler.transform(np.array([[7.0, 1.0]]))).all()


def test_column_index_selects_each_elements_column():
    scaler = MinMaxScaler.fit(np.array([[0.0, 0.0], [2.0, 20.0]]))
    values = np.array([[1.0, 1.0], [10.0, 10.0]])  # row 0 of column 0, row 1 of column 1
    scaled = scaler.transform(values, column_index=np.array([[0], [1]]))
    np.testing.assert_allclose(scaled, [[0.0, 0.0], [0.0, 0.0]])
    np.testing.assert_allclose(scaler.inverse_transform(scaled, column_index=np.array([[0], [1]])), values)


def test_state_dict_round_trip_preserves_parameters():
    scaler = MinMaxScaler.fit(np.array([[1.0, 2.0], [3.0, 2.0]]))
    restored = MinMaxScaler.from_state_dict(scaler.state_dict())
    np.testing.assert_array_equal(restored.data_min, scaler.data_min)
    np.testing.assert_array_equal(restored.data_range, scaler.data_range)


def test_fit_rejects_empty_data():
    with pytest.raises(ValueError):
        MinMaxScaler.fit(np.empty((0, 3)))


def test_standard_scaler_gives_z_scores_of_the_training_rows():
    rng = np.random.default_rng(1)
    train = rng.normal(size=(200, 3)) * [1.0, 10.0, 0.1] + [5.0, -50.0, 0.0]
    scaler = MinMaxScaler.fit(train, "standard")
    np.testing.assert_allclose(scaler.transform(train), (train - train.mean(0)) / train.std(0), atol=1e-12)
    later = rng.normal(size=(10, 3)) * 100
    np.testing.assert_allclose(scaler.inverse_transform(scaler.transform(later)), later, rtol=1e-12)


def test_standard_scaler_maps_a_constant_column_to_zero():
    data = np.array([[3.0, 1.0], [3.0, 2.0], [3.0, 4.0]])
    scaler = MinMaxScaler.fit(data, "standard")
    np.testing.assert_array_equal(scaler.transform(data)[:, 0], 0.0)
    np.testing.assert_allclose(scaler.inverse_transform(scaler.transform(data)), data)


def test_unknown_scaler_method_is_refused():
    with pytest.raises(ValueError, match="minmax"):
        MinMaxScaler.fit(np.ones((3, 1)), "robust")
