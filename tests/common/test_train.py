"""The shared training loop: it learns, it skips finished epochs, and a seed fixes it."""
import torch
import torch.nn.functional as F

from common.train import fit, predict


def problem(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(96, 5, generator=g)
    y = (x @ torch.randn(5, 3, generator=g)).argmax(1)     # a linearly separable 3-class task
    torch.manual_seed(seed)
    net = torch.nn.Linear(5, 3)
    return x, y, net, torch.optim.Adam(net.parameters(), lr=0.05)


def run(epochs, seed=0):
    x, y, net, opt = problem(seed)
    hist = {}
    fit(net, opt, x, y, F.cross_entropy, epochs, 16, torch.Generator().manual_seed(seed), 'test',
        hist)
    return net, opt, hist, x, y


def test_fit_lowers_the_loss_and_records_one_value_per_epoch():
    net, _, hist, x, y = run(8)
    assert len(hist['loss']) == 8
    assert hist['loss'][-1] < 0.5 * hist['loss'][0]
    assert (predict(net, x).argmax(1) == y).float().mean() > 0.9
    assert not net.training                      # left in eval mode for scoring


def test_fit_calls_on_epoch_after_every_epoch_and_skips_finished_ones():
    seen = []
    x, y, net, opt = problem()
    fit(net, opt, x, y, F.cross_entropy, 5, 16, torch.Generator().manual_seed(0), 'test', {},
        start=3, on_epoch=seen.append)
    assert seen == [4, 5]


def test_same_seed_same_weights_and_drop_last():
    a, b = run(2)[0], run(2)[0]
    assert torch.equal(a.weight, b.weight)
    c = run(2, seed=1)[0]
    assert not torch.equal(a.weight, c.weight)
    x, y, net, opt = problem()
    calls = []
    fit(net, opt, x[:40], y[:40], lambda out, t: calls.append(len(t)) or F.cross_entropy(out, t),
        1, 16, torch.Generator().manual_seed(0), 'test', {})
    assert calls == [16, 16]                     # the last partial batch is dropped
