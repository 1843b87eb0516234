"""How much identity do the attribute labels themselves carry?

Crafter's promise is to hide identity while the cloud still predicts the attributes. That is only
possible as far as the attributes do not name the person. This measures it on the true labels:
each private identity's profile is its majority attribute vector over eval_train; every eval_test
image's label vector is matched to the nearest profile (Hamming distance, ties split evenly), and
the top-1 of that match is reported next to chance. A dataset where the labels alone identify most
people cannot show "identity near chance at unchanged AUC", whatever the protection.

It also reports, over all images of the private identities (both splits), how often each
attribute changes within an identity: its within-identity flip rate is the share of an
identity's images that disagree with that identity's majority value, averaged over identities
(0 = fixed per person, 0.5 = a coin flip per image), and the attributes that never change within
any identity. `--compare DIR` prints the same measures for a second dataset beside the first
(attributes matched by name), e.g. the synthetic faces next to CelebA.

    python benchmarks/attribute_identity.py --data_dir dataset/synthetic32
    python benchmarks/attribute_identity.py --data_dir dataset/celeba32
    python benchmarks/attribute_identity.py --preset demo --compare dataset/celeba32
"""
import json
from pathlib import Path

import torch

from common import config, io
from dataset import loader

# ---- hyperparameters ---------------------------------------------------------------------
HP = dict(
    fit_split='eval_train',   # the images that define each identity's attribute profile
    test_split='eval_test',   # the images identified from their attribute labels
    out='',                   # also write the result as JSON here
    compare='',               # a second data dir measured the same way and printed alongside
)
PRESETS = {}
# -----------------------------------------------------------------------------------------


def identify_from_attributes(fit_ids, fit_attrs, test_ids, test_attrs):
    """Expected top-1 of naming each test image's identity from its 0/1 attribute vector by the
    nearest identity profile (majority vote per attribute over the fit images; ties between
    profiles broken uniformly at random, so the expectation is exact). Also returns the
    attributes that never change within any identity of the fit images."""
    fit_ids, test_ids = torch.as_tensor(fit_ids), torch.as_tensor(test_ids)
    id_list = torch.unique(fit_ids)
    onehot = (fit_ids[:, None] == id_list[None]).float()                    # N x K
    mean = onehot.T @ fit_attrs / onehot.sum(0)[:, None]                     # K x A
    profile = (mean > 0.5).float()
    dist = torch.cdist(test_attrs.float(), profile, p=1)                    # Hamming, M x K
    tied = dist == dist.min(1, keepdim=True).values
    true = test_ids[:, None] == id_list[None]
    if not true.any(1).all():
        raise ValueError('a test identity has no fit images; use splits of the same people')
    acc = ((tied & true).float().sum(1) / tied.float().sum(1)).mean().item()
    fixed = ((mean == 0) | (mean == 1)).all(0)
    return {'top1': acc, 'chance': 1 / len(id_list), 'n_ids': len(id_list),
            'n_test': len(test_ids), 'fixed_attribute_index': fixed.nonzero().flatten().tolist()}


def within_identity_flips(ids, attrs):
    """Per attribute: the share of an identity's images that disagree with its majority value,
    averaged over identities (ties count as 0.5), and whether it is the same in all images of
    every identity. Returns (flip rate A, fixed A bool, positive rate A)."""
    ids, attrs = torch.as_tensor(ids), torch.as_tensor(attrs).float()
    id_list = torch.unique(ids)
    onehot = (ids[:, None] == id_list[None]).float()                        # N x K
    mean = onehot.T @ attrs / onehot.sum(0)[:, None]                         # K x A
    flips = torch.minimum(mean, 1 - mean).mean(0)
    fixed = ((mean == 0) | (mean == 1)).all(0)
    return flips, fixed, attrs.mean(0)


def measure(data_dir, fit_split='eval_train', test_split='eval_test'):
    """Labels-alone identification and within-identity flip rates of one prepared dataset."""
    _, fit_ids, fit_attrs, names = loader.load_labels(data_dir, fit_split)
    _, test_ids, test_attrs, _ = loader.load_labels(data_dir, test_split)
    res = identify_from_attributes(fit_ids, fit_attrs, test_ids, test_attrs)
    res.pop('fixed_attribute_index')          # fit split only; the union below is the measure
    flips, fixed, pos = within_identity_flips(fit_ids + test_ids,
                                              torch.cat([fit_attrs, test_attrs]))
    res.update(data_dir=str(data_dir), n_attributes=len(names),
               fixed_attributes=[n for n, f in zip(names, fixed.tolist()) if f],
               fixed_fraction=fixed.float().mean().item(),
               mean_flip_rate=flips.mean().item(),
               flip_rate={n: round(x, 4) for n, x in zip(names, flips.tolist())},
               positive_rate={n: round(x, 4) for n, x in zip(names, pos.tolist())})
    return res


def report(res, test_split='eval_test'):
    names = list(res['flip_rate'])
    return (f"{res['data_dir']}: identity from the attribute labels alone, top-1 {res['top1']:.3f} "
            f"(chance {res['chance']:.3f}; {res['n_ids']} identities, {res['n_test']} "
            f"{test_split} images); {len(res['fixed_attributes'])} of {len(names)} attributes "
            f"({res['fixed_fraction']:.0%}) never change within an identity: "
            f"{', '.join(res['fixed_attributes']) or 'none'}; mean within-identity flip rate "
            f"{res['mean_flip_rate']:.3f}")


def flip_table(runs):
    """Within-identity flip rate (and positive rate) per attribute, one column pair per run."""
    names = list(runs[0]['flip_rate'])
    names += [n for r in runs[1:] for n in r['flip_rate'] if n not in names]
    width = max(len(n) for n in names)
    lines = [f"{'attribute':<{width}}" + ''.join(f'  {Path(r["data_dir"]).name[:14]:>14} flip/pos'
                                                   for r in runs)]
    for n in names:
        cells = [f"  {r['flip_rate'][n]:>14.3f} /{r['positive_rate'][n]:.2f}" if n in r['flip_rate']
                 else f"  {'-':>14}      " for r in runs]
        lines.append(f'{n:<{width}}' + ''.join(cells))
    return '\n'.join(lines)


def main(argv=None):
    cfg = config.parse(HP, PRESETS, argv, description=__doc__)
    res = measure(cfg.data_dir, cfg.fit_split, cfg.test_split)
    runs = [res] + ([measure(cfg.compare, cfg.fit_split, cfg.test_split)] if cfg.compare else [])
    for r in runs:
        print(report(r, cfg.test_split))
    print(flip_table(runs))
    if cfg.compare:
        res['compare'] = runs[1]
    if cfg.out:
        io.write_text(io.repo_path(cfg.out), json.dumps(res, indent=1))
    return res


if __name__ == '__main__':
    main()
