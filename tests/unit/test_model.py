import torch

from kline.model import LSTMConfig, LSTMRegressor


def test_forward_is_batch_first_and_returns_one_value_per_sample():
    torch.manual_seed(0)
    m = LSTMRegressor(LSTMConfig(n_features=3, hidden=5, layers=2, head=4))
    x = torch.randn(7, 11, 3)  # (batch, window, n_features)
    assert m(x).shape == (7,)


def test_samples_are_independent_no_state_crosses_the_batch():
    torch.manual_seed(0)
    m = LSTMRegressor(LSTMConfig(n_features=2, hidden=6)).eval()
    x = torch.randn(5, 9, 2)
    together = m(x)
    alone = torch.stack([m(x[i : i + 1])[0] for i in range(5)])
    torch.testing.assert_close(together, alone)
    # changing another sample never changes this one's output
    x2 = x.clone()
    x2[0] += 10.0
    torch.testing.assert_close(m(x2)[1:], together[1:])


def test_output_reads_the_whole_window():
    torch.manual_seed(0)
    m = LSTMRegressor(LSTMConfig(n_features=1, hidden=4)).eval()
    x = torch.randn(1, 10, 1)
    x2 = x.clone()
    x2[0, 0, 0] += 5.0  # the oldest session of the window
    assert not torch.equal(m(x), m(x2))


def test_config_round_trips():
    cfg = LSTMConfig(n_features=4, hidden=8, layers=2, dropout=0.1)
    assert LSTMConfig(**cfg.to_dict()) == cfg
