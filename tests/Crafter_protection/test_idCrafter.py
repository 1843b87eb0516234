"""Crafter's identity term (featureCrafter.py gamma, Crafter_protection/idCrafter.py): the crafted
F reads less like f0's person to the defender's public-identity model than Crafter's F without
the term does, at the same settings. Fails when the term is dropped or its sign flipped
(tests/mutation_check.py)."""
import pytest
import torch

from common import ckpt, release
from Crafter_protection import crafting, featureCrafter, idCrafter
from dataset import loader

# enough outer steps and step size for F to move on tiny; the same for both runs
SETTINGS = ['--beta', '1', '--outer_steps', '6', '--lr', '0.1', '--n_images', '8']


def _identity_cosine(tiny, run):
    cfg = tiny.cfg()
    meta = loader.load_meta(tiny.data_dir)
    feats = ckpt.load_features(release.run_dir(cfg, run) / 'features_eval_test.pt')
    test = loader.load(tiny.data_dir, 'eval_test', 'cpu', meta)
    idx = torch.tensor([test.names.index(n) for n in feats['names']])
    with torch.no_grad():
        f0 = ckpt.load_target(cfg, meta, 'cpu').Enc(test.x(idx))
        Id = crafting.identity_model(cfg, meta, 'cpu')
        return featureCrafter.identity_loss(Id, feats['features'], f0).item()


def test_identity_term_moves_the_public_identity_embedding_away(tiny):
    tiny.ensure('amor')
    tiny.ensure('f2id_public')
    featureCrafter.main(tiny.args + SETTINGS + ['--run', 'idterm_gamma0'])
    summary = idCrafter.main(tiny.args + SETTINGS + ['--gamma', '10', '--run', 'idterm_gamma10'])
    without, with_term = _identity_cosine(tiny, 'idterm_gamma0'), _identity_cosine(tiny, 'idterm_gamma10')
    assert summary['L_id'] == pytest.approx(with_term, abs=1e-4)     # the crafter's log is this cosine
    assert without > 0.5                                # Crafter alone keeps most of the identity
    print(f"L_id without {without:.3f}, with {with_term:.3f}")
    assert with_term < without - 0.1, (with_term, without)


def test_identity_term_is_off_by_default_and_names_its_release(tiny):
    assert featureCrafter.HP['gamma'] == 0 and idCrafter.HP['gamma'] > 0
    assert release.parse('crafterid_beta0.3')[0]['module'] == 'Crafter_protection.idCrafter'
    assert 'f2id_public' in release.parse('crafterid_beta0.3')[0]['needs']
    cfg = tiny.cfg()
    assert 'f2id_train.py' in ckpt.how_to_make(cfg, 'f2id_public.pt') and '--split public' in \
        ckpt.how_to_make(cfg, 'f2id_public.pt')
