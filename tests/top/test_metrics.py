"""metrics.py against known values: identical images, shifted images, hand-computed AUCs."""
import math

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

import metrics


def faces(n=4, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(n, 3, size // 4, size // 4, generator=g)
    return torch.nn.functional.interpolate(base, size=size, mode='bilinear', align_corners=False)


def test_identical_images_score_one():
    x = faces()
    assert torch.allclose(metrics.ssim(x, x), torch.ones(4), atol=1e-5)
    assert torch.allclose(metrics.fsim(x, x), torch.ones(4), atol=1e-5)
    assert torch.allclose(metrics.cosine(x, x), torch.ones(4), atol=1e-6)


def test_shifted_and_noisy_images_score_lower():
    x = faces()
    shifted = torch.roll(x, shifts=3, dims=3)
    noisy = (x + 0.2 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    for other in (shifted, noisy):
        assert (metrics.ssim(x, other) < 0.99).all()
        assert (metrics.fsim(x, other) < 0.99).all()
    # more noise, lower similarity
    noisier = (x + 0.5 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    assert metrics.ssim(x, noisier).mean() < metrics.ssim(x, noisy).mean()
    assert metrics.fsim(x, noisier).mean() < metrics.fsim(x, noisy).mean()


def test_ssim_agrees_with_scikit_image():
    """Same Gaussian 11x11 window (sigma 1.5) and constants as skimage's gaussian_weights SSIM."""
    x = faces(2)
    y = (x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(2))).clamp(0, 1)
    ours = metrics.ssim(x, y)
    for i in range(2):
        ref = structural_similarity(x[i].permute(1, 2, 0).numpy(), y[i].permute(1, 2, 0).numpy(),
                                    channel_axis=2, data_range=1.0, gaussian_weights=True,
                                    sigma=1.5, use_sample_covariance=False)
        assert abs(ours[i].item() - ref) < 0.02


def test_auc_hand_computed_cases():
    assert metrics.auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
    assert metrics.auc([1, 2, 3, 4], [0, 0, 1, 1]) == 1.0
    assert metrics.auc([4, 3, 2, 1], [0, 0, 1, 1]) == 0.0
    # ties count one half: pairs (pos, neg) = (0.5, 0.5) tie, (0.5, 0.2) win -> 0.75
    assert metrics.auc([0.5, 0.5, 0.2], [1, 0, 0]) == pytest.approx(0.75)
    assert metrics.auc([0.3, 0.3, 0.3, 0.3], [1, 0, 1, 0]) == pytest.approx(0.5)
    assert math.isnan(metrics.auc([0.1, 0.2], [1, 1]))


def test_auc_matches_a_brute_force_count():
    rng = np.random.default_rng(0)
    s = rng.integers(0, 5, 60).astype(float)      # many ties
    t = rng.integers(0, 2, 60)
    pos, neg = s[t == 1], s[t == 0]
    brute = ((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()) / (
        len(pos) * len(neg))
    assert metrics.auc(s, t) == pytest.approx(brute)


def test_mean_auc_skips_single_class_attributes():
    scores = torch.tensor([[0.9, 0.1], [0.2, 0.5], [0.8, 0.7]])
    targets = torch.tensor([[1, 1], [0, 1], [1, 1]])      # second column: a single class
    assert metrics.mean_auc(scores, targets) == pytest.approx(1.0)
    per = metrics.attribute_aucs(scores, targets, ['a', 'b'])
    assert per['a'] == 1.0 and math.isnan(per['b'])


def test_topk_accuracy():
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.15, 0.05], [0.2, 0.3, 0.5]])
    acc = metrics.topk_accuracy(logits, torch.tensor([1, 1, 0]), (1, 2))
    assert acc[1] == pytest.approx(1 / 3) and acc[2] == pytest.approx(2 / 3)


def test_reconstruction_scores_with_a_perfect_and_a_useless_reconstruction():
    """An oracle that reads the label off the image: originals score 1, flat grey scores chance."""
    class Oracle(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def embed(self, x):
            return x.mean(dim=(2, 3))        # 3 numbers per image

        def logits(self, e):
            return -((e[:, :1] - torch.tensor([[0.1, 0.5, 0.9]])) ** 2)

    x = torch.stack([torch.full((3, 16, 16), v) for v in (0.1, 0.5, 0.9)])
    labels = torch.tensor([0, 1, 2])
    s = metrics.reconstruction_scores(Oracle(), x, x, labels)
    assert s['eval_acc'] == 1.0 and s['feature_sim'] == pytest.approx(1.0)
    grey = torch.full_like(x, 0.5)
    s = metrics.reconstruction_scores(Oracle(), grey, x, labels)
    assert s['eval_acc'] == pytest.approx(1 / 3)


def test_ssim_and_fsim_run_on_the_inputs_device_and_match_piq(monkeypatch):
    """ SSIM/FSIM are computed where the images are (the GPU at paper scale): piq is handed
    tensors on x's device, never a CPU copy; on the CPU the scores equal piq's own."""
    import piq
    x = faces(3)
    y = (x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(3))).clamp(0, 1)
    assert torch.equal(metrics.ssim(x, y), piq.ssim(x, y, data_range=1.0, reduction='none', kernel_size=11))
    assert torch.equal(metrics.fsim(x, y), piq.fsim(x, y, data_range=1.0, reduction='none', chromatic=True))
    seen = []
    for name in ('ssim', 'fsim'):
        monkeypatch.setattr(piq, name, lambda a, b, **kw: seen.append((a.device, b.device)) or torch.zeros(len(a)))
    xm, ym = x.to('meta'), y.to('meta')
    metrics.ssim(xm, ym), metrics.fsim(xm, y)        # y on another device follows x
    assert seen == [(torch.device('meta'), torch.device('meta'))] * 2


def test_psnr_is_inf_for_identical_images_and_falls_with_noise():
    x = faces(3)
    assert torch.isinf(metrics.psnr(x, x)).all() and metrics.psnr(x, x).shape == (3,)
    g = torch.Generator().manual_seed(2)
    n1 = (x + 0.05 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    n2 = (x + 0.3 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    p1, p2 = metrics.psnr(x, n1), metrics.psnr(x, n2)
    assert (p1 > p2).all() and (p2 > 0).all()
    # by hand: a constant offset of 0.1 is MSE 0.01, 20 dB
    assert torch.allclose(metrics.psnr(x * 0 + 0.5, x * 0 + 0.6), torch.full((3,), 20.0), atol=1e-3)


def test_knn_distance_to_nearest_training_image_of_the_true_identity():
    g = torch.Generator().manual_seed(0)
    train = torch.randn(6, 16, generator=g)
    train_labels = torch.tensor([0, 0, 1, 1, 2, 2])
    # a reconstruction that is an eval_train image itself: distance 0 (scale does not matter)
    mean, per = metrics.knn_distance(3 * train[[0, 3]], train, train_labels, torch.tensor([0, 1]))
    assert per.shape == (2,) and torch.allclose(per, torch.zeros(2), atol=1e-6) and mean < 1e-6
    # the nearest of the identity's images counts: image 1 is also identity 0
    _, per = metrics.knn_distance(train[[1]], train, train_labels, torch.tensor([0]))
    assert per.item() < 1e-6
    # another identity's image, claimed as identity 0: the distance grows
    mean_other, per_other = metrics.knn_distance(train[[4]], train, train_labels, torch.tensor([0]))
    assert per_other.item() > 0.1 and mean_other > mean
    expect = 1 - torch.nn.functional.cosine_similarity(train[[4]], train[:2]).max()
    assert per_other.item() == pytest.approx(expect.item(), abs=1e-5)
    # an identity without training images: nan there, skipped by the mean
    mean, per = metrics.knn_distance(train[[0, 0]], train, train_labels, torch.tensor([0, 7]))
    assert torch.isnan(per[1]) and mean == pytest.approx(0.0, abs=1e-6)
