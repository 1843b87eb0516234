"""benchmarks/attribute_identity.py: identity from attribute labels, on hand-computed tables."""
import pytest
import torch

from benchmarks.attribute_identity import identify_from_attributes, within_identity_flips


def t(rows):
    return torch.tensor(rows, dtype=torch.float32)


def test_distinct_profiles_are_all_identified():
    ids = [0, 0, 1, 1, 2, 2]
    attrs = t([[1, 0], [1, 0], [0, 1], [0, 1], [1, 1], [1, 1]])
    res = identify_from_attributes(ids, attrs, [0, 1, 2], t([[1, 0], [0, 1], [1, 1]]))
    assert res['top1'] == pytest.approx(1.0)
    assert res['chance'] == pytest.approx(1 / 3)
    assert res['fixed_attribute_index'] == [0, 1]


def test_shared_profile_splits_the_guess_and_noise_misleads():
    # ids 0 and 1 share the profile [1, 0]: a test image of either is named right half the time;
    # id 2's test image carries a flipped label and lands nearer to the wrong profile
    ids = [0, 0, 1, 1, 2, 2]
    attrs = t([[1, 0, 0], [1, 0, 0], [1, 0, 0], [1, 0, 0], [0, 1, 1], [0, 1, 1]])
    test = t([[1, 0, 0], [1, 0, 0], [1, 0, 1]])
    res = identify_from_attributes(ids, attrs, [0, 1, 2], test)
    # 0.5 + 0.5 + 0 (distance 1 to the shared profile, 2 to its own)
    assert res['top1'] == pytest.approx(1 / 3)


def test_majority_profile_and_attributes_that_vary():
    # id 0 has attribute 1 on in one of three images: its profile keeps it off, and it is not fixed
    ids = [0, 0, 0, 1, 1]
    attrs = t([[1, 0], [1, 1], [1, 0], [0, 0], [0, 0]])
    res = identify_from_attributes(ids, attrs, [0, 1], t([[1, 0], [0, 0]]))
    assert res['top1'] == pytest.approx(1.0)
    assert res['fixed_attribute_index'] == [0]


def test_unknown_test_identity_is_refused():
    with pytest.raises(ValueError, match='no fit images'):
        identify_from_attributes([0, 1], t([[1], [0]]), [2], t([[1]]))


def test_within_identity_flip_rates():
    # id 0: attribute 0 on in 1 of 4 images (flip 0.25), id 1: on in 2 of 4 (0.5); attribute 1
    # fixed per identity (on for id 0, off for id 1); flip rate = mean over identities
    ids = [0, 0, 0, 0, 1, 1, 1, 1]
    attrs = t([[1, 1], [0, 1], [0, 1], [0, 1], [1, 0], [1, 0], [0, 0], [0, 0]])
    flips, fixed, pos = within_identity_flips(ids, attrs)
    assert flips.tolist() == pytest.approx([(0.25 + 0.5) / 2, 0.0])
    assert fixed.tolist() == [False, True]
    assert pos.tolist() == pytest.approx([3 / 8, 4 / 8])


def test_main_on_the_tiny_data(tiny, tmp_path):
    """The script end to end on a real dataset folder: labels read, flip rates for every
    attribute, JSON written, a second data dir compared side by side; on the synthetic faces
    identity-linked attributes vary within a person (as in CelebA) yet the labels still carry
    some identity."""
    import json

    from benchmarks import attribute_identity

    tiny.ensure('data')
    out = tmp_path / 'ident.json'
    res = attribute_identity.main(['--data_dir', tiny.data_dir, '--out', str(out),
                                   '--compare', tiny.data_dir])
    saved = json.loads(out.read_text())
    assert saved['top1'] == pytest.approx(res['top1'])
    assert saved['compare']['flip_rate'] == res['flip_rate']
    assert res['n_ids'] == 10 and res['chance'] == pytest.approx(0.1)
    assert set(res['flip_rate']) == set(res['positive_rate'])
    assert len(res['flip_rate']) == res['n_attributes']
    assert res['flip_rate']['Smiling'] > 0.1 and res['flip_rate']['Male'] < 0.05
    assert res['fixed_fraction'] < 0.5 and 'Smiling' not in res['fixed_attributes']
    assert res['chance'] < res['top1'] < 0.9
