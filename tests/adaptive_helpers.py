"""Shared checks of the adaptive attacks' tests (not collected by pytest)."""


def assert_adapted(res, before, after, unadapted):
    """The script's reported held-out losses match a recomputation, and adapting lowered it."""
    assert abs(before - res['heldout_loss_unadapted']) < 1e-6
    assert abs(after - res['heldout_loss_adapted']) < 1e-6
    assert res['best_epoch'] >= 1, f'no epoch improved on the {unadapted}: it did not adapt'
    assert after < before, (before, after)
