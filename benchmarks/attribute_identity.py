"""How much identity do the attribute labels themselves carry?

Crafter's promise is to hide identity while the cloud still predicts the attributes. That is only
possible as far as the attributes do not name the person. This measures it on the true labels:
each private identity's profile is its majority attribute vector over eval_train; every eval_test
image's label vector is matched to the nearest profile (Hamming distance, ties split evenly), and
the top-1 of that match is reported next to chance. A dataset where the labels alone identify most
people cannot show "identity near chance at unchanged AUC", whatever the protection.

    python benchmarks/attribute_identity.py --data_dir dataset/synthetic32
    python benchmarks/attribute_identity.py --data_dir dataset/celeba32
"""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from common import config, io  # noqa: E402
from dataset import loader  # noqa: E402

# ---- hyperparameters ---------------------------------------------------------------------
HP = dict(
    fit_split='eval_train',   # the images that define each identity's attribute profile
    test_split='eval_test',   # the images identified from their attribute labels
    out='',                   # also write the result as JSON here
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


def main(argv=None):
    cfg = config.parse(HP, PRESETS, argv, description=__doc__)
    _, fit_ids, fit_attrs, names = loader.load_labels(cfg.data_dir, cfg.fit_split)
    _, test_ids, test_attrs, _ = loader.load_labels(cfg.data_dir, cfg.test_split)
    res = identify_from_attributes(fit_ids, fit_attrs, test_ids, test_attrs)
    res['fixed_attributes'] = [names[i] for i in res.pop('fixed_attribute_index')]
    res.update(data_dir=str(cfg.data_dir), n_attributes=len(names))
    print(f"{cfg.data_dir}: identity from the attribute labels alone, top-1 {res['top1']:.3f} "
          f"(chance {res['chance']:.3f}; {res['n_ids']} identities, {res['n_test']} "
          f"{cfg.test_split} images); {len(res['fixed_attributes'])} of {len(names)} attributes "
          f"never change within an identity: {', '.join(res['fixed_attributes']) or 'none'}")
    if cfg.out:
        io.write_text(io.repo_path(cfg.out), json.dumps(res, indent=1))
    return res


if __name__ == '__main__':
    main()
