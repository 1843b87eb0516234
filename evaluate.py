"""Step 18: every protection against every attack: how much identity leaks, at what utility.

For none and every release under crafted/<run>/ (common/release.py) each attack of ATTACKS runs on
the released features of the same eval_test images with the same random starts, through the
protection's own Enc and f where it has them. Privacy is the worst case (`worst_attack`, the highest
top-1 over attacks and identity evaluators: the trained oracle and, where installed, dlib's
pretrained descriptor); reconstructions are scored with metrics.py; also eps-PII and mean AUC. A missing input is a
skipped cell naming the command that makes it. Writes results/<run>/{metrics.json, report.md,
reconstructions.png, tradeoff.png, tradeoff.json}:   python evaluate.py --preset demo
"""
import contextlib
import importlib
import json
import math
import sys
import time
from pathlib import Path

import torch

import metrics
from common import adaptive, ckpt, config, io, plots, release, runtime
from Crafter_protection import crafting
from dataset import loader
from Image2ID import evalTrain
from WhiteBoxAttack import attacker


class Missing(Exception):
    """A missing input of an attack: a skipped cell whose message names the command that makes it."""


def a3_feature2id(c):
    """The better of the clean and (where made) the adaptive Feature2ID on the averaged releases."""
    feats, nets = c.averaged(), {'clean': c.trained('f2id')}
    with contextlib.suppress(Missing):
        nets['adaptive'] = c.trained('f2id', adapted=True)
    return c.identify(nets, feats, keep_model=True)


# name: attack(Attacker) -> reconstructions (restarts x N x 3 x S x S) or (IDENTITY_ONLY) top-1/top-5
ATTACKS = {
    'whitebox': lambda c: c.invert(c.feats, amortized=False),          # cfg.restarts random starts
    'whitebox_amortized': lambda c: c.invert(c.feats),                  # started at Amor(F)
    'blackbox': lambda c: c.decode(c.trained('Dec'), c.feats),          # decoder of (Enc(x), x)
    'adaptive_whitebox': lambda c: c.invert(c.feats, adapted=True),     # step 15's G
    'adaptive_blackbox': lambda c: c.decode(c.trained('Dec', adapted=True), c.feats),   # step 16
    'feature2id': lambda c: c.identify({'clean': c.trained('f2id')}, c.feats),
    'adaptive_feature2id': lambda c: c.identify({'adaptive': c.trained('f2id', adapted=True)}, c.feats),
    'whitebox_a2': lambda c: c.invert(c.feats, gan='gan_a2.pt'),        # the independent prior (A2)
    'attribute_linkage': lambda c: c.linkage(),                         # what the utility reveals
    'a3_whitebox_amortized': lambda c: c.invert(c.averaged()),          # A3: mean of a3_k releases
    'a3_blackbox': lambda c: c.decode(c.trained('Dec'), c.averaged()),
    'a3_feature2id': a3_feature2id,
}
IDENTITY_ONLY = ('feature2id', 'adaptive_feature2id', 'attribute_linkage', 'a3_feature2id')  # no images
A3 = tuple(a for a in ATTACKS if a.startswith('a3_'))
# ---- hyperparameters (paper defaults; override with --name value or --preset NAME) ----
HP = dict(
    protections='auto',  # comma-separated names, or auto = none + every crafted run found
    attacks=','.join(ATTACKS),
    steps=attacker.HP['steps'],            # white-box budgets: the attacker's (paper) values
    amor_steps=attacker.HP['amor_steps'],
    lr=attacker.HP['lr'],
    momentum=attacker.HP['momentum'],
    restarts=attacker.HP['restarts'],      # random starts per image, all scored (paper: 3)
    prior_weight=attacker.HP['prior_weight'],
    n_per_id=0,          # eval_test images per identity (the crafter's n_per_id)
    a3_k=8,              # A3: releases of the same image the attacker averages (randomised only)
    eps_steps=200,       # critic steps of the eps-PII estimate (the crafter's critic recipe)
    critic_width=64,     # its width (the crafter's critic_width)
    batch_size=128,
    oracle='auto',       # identity evaluators, comma list: eval (params/eval.pkl) | facenet (optional,
                         # params/facenet.pkl) | dlib (pretrained, optional); auto = eval + dlib if installed
    n_show=8,            # images per row of reconstructions.png
    out='',              # default results/<run>
)
# what needs more than "finite and >= 0" (common/config.py): counts, learning rates, fractions
RANGES = dict(steps='>=1', lr='>0', momentum='[0,1)', restarts='>=1', a3_k='>=1', eps_steps='>=1',
              critic_width='>=1', batch_size='>=1', n_show='>=1')
PRESETS = {
    'tiny': dict(steps=10, amor_steps=5, restarts=1, n_per_id=1, eps_steps=5, critic_width=8, a3_k=4, oracle='eval'),
    'demo': dict(steps=200, amor_steps=40, restarts=1, n_per_id=1, eps_steps=100, critic_width=16, a3_k=8,
                 oracle='eval'),         # synthetic faces: nothing for a real-face recognizer to find
    'celeba-cpu': dict(steps=300, amor_steps=60, restarts=1, n_per_id=2, eps_steps=100, critic_width=32, a3_k=8),
}


def find_protections(cfg):
    if cfg.protections != 'auto':
        return [p.strip() for p in cfg.protections.split(',') if p.strip()]
    found = [p.parent.name for p in release.run_dir(cfg, 'x').parent.glob('*/features_eval_test.pt')]
    return ['none'] + sorted(found, key=release.order_key)


# the attacker's trained models: model: (kind, clean file, adapted file, README step, its script)
TRAINED = {'Dec': ('dec', 'dec.pkl', adaptive.dec_name, 16, 'BlackBoxAttack/adaptiveTrainDecoder.py'),
           'f2id': ('f2id', 'f2id.pt', adaptive.f2id_name, 17, 'Feature2ID/f2id_adaptive.py'),
           'G': ('gan', 'gan.pt', adaptive.g_name, 15, 'WhiteBoxAttack/adaptiveUpdateG.py')}


def batched(fn, feats, batch_size):
    """fn over batches of features, joined along the image axis (axis 1 for restarts x N x ...)."""
    outs = [fn(feats[b]) for b in loader.batches(len(feats), batch_size)]
    return torch.cat(outs, dim=1 if outs[0].dim() == 5 else 0)


class Attacker:
    """The attacker's models (each loaded once; an optional one raises Missing when absent) and,
    after face(protection), that protection's released features of the eval_test images."""

    def __init__(self, cfg, meta, device, test, gen):
        self.cfg, self.meta, self.device, self.test, self.gen = cfg, meta, device, test, gen
        self.base = ckpt.load_target(cfg, meta, device)
        self.G, self.D = ckpt.load_gan(cfg, meta, device)
        self.Amor = ckpt.load_amor(cfg, meta, device, self.G.latent_dim)
        self._train = loader.load(cfg.data_dir, 'eval_train', device, meta)
        self.evaluators = evalTrain.load_evaluators(cfg, meta, device, self._train, test)
        self._loaded, self._profiles = {}, {}

    def need(self, name, load, how=None):
        """load() of checkpoint `name`, cached; Missing naming `how` (default: its stage) if absent."""
        if name not in self._loaded:
            if not ckpt.path(self.cfg, name).exists():
                raise Missing(f'{name} is missing; {how or ckpt.how_to_make(self.cfg, name)}')
            self._loaded[name] = load()
        return self._loaded[name]

    def face(self, protection):
        """Start on a protection: its target net (Enc, f), features and cloud-model scores."""
        cfg, test, self.protection, self._avg = self.cfg, self.test, protection, None
        enc = release.enc_name(protection)
        self.target = self.base if enc == 'enc.pt' else self.need(
            enc, lambda: ckpt.load_target(cfg, self.meta, self.device, enc),
            'make it with: ' + release.make_command(cfg, protection, 'eval_test'))
        file = release.feature_file(cfg, protection, 'eval_test')
        have = release.covered(cfg, protection, test) if protection == 'none' or file.exists() else []
        if len(have) != len(test):
            raise Missing(f'its features cover {len(have)} of the {len(test)} evaluation images; make them '
                          f'with: {release.make_command(cfg, protection, "eval_test")} --n_per_id {cfg.n_per_id}')
        self.feats = release.protected_features(cfg, protection, test, self.target.Enc, self.device)
        with torch.no_grad():
            self.scores = batched(self.target.f, self.feats, cfg.batch_size).float().cpu()
        return self

    def trained(self, model, adapted=False):
        """The attacker's clean Dec or f2id, or the G, Dec or f2id adapted to the protection."""
        kind, clean, adapted_name, step, script = TRAINED[model]
        p, name = self.protection, adapted_name(self.protection) if adapted else clean
        after = f' (after its eval_train features: {release.make_command(self.cfg, p, "eval_train")})'
        how = (f'make it with (README step {step}): python {script} {self.cfg.overrides_for_command()} '
               f'--protection {p}' + (after if model == 'f2id' and p != 'none' else ''))
        return self.need(name, lambda: ckpt.build(ckpt.load(self.cfg, name, kind, self.meta), model,
                                                  self.device), how if adapted else None)

    def amortizer(self, gan, latent_dim):
        """The amortizer of prior `gan` trained for the Enc the protection releases with."""
        name = release.amor_name(self.protection, gan)
        if name == 'amor.pt':
            return self.Amor
        how = None if not release.own_encoder(self.protection) else (   # its stage cannot know --enc
            f'make it with: python WhiteBoxAttack/trainAmor.py {self.cfg.overrides_for_command()} --gan {gan} '
            f'--enc {release.enc_name(self.protection)} --name {name}')
        return self.need(name, lambda: ckpt.load_amor(self.cfg, self.meta, self.device, latent_dim, name), how)

    def averaged(self):
        """A3: the mean of cfg.a3_k releases of every image (the protection's repeat_releases;
        release 0 is the published one)."""
        if self._avg is None:
            obj = ckpt.load_features(release.feature_file(self.cfg, self.protection, 'eval_test'))
            f0 = release.protected_features(self.cfg, 'none', self.test, self.base.Enc, self.device).cpu()
            module = importlib.import_module(release.parse(self.protection)[0]['module'])
            self._avg = module.repeat_releases(obj, f0, self.test.names, self.cfg.a3_k).mean(0).to(self.device)
        return self._avg

    def invert(self, feats, amortized=True, gan='gan.pt', adapted=False):
        """White-box inversion with prior `gan` (G adapted if asked), from Amor(F) or random starts."""
        G, D = (self.G, self.D) if gan == 'gan.pt' else self.need(
            gan, lambda: ckpt.load_gan(self.cfg, self.meta, self.device, gan),
            ckpt.how_to_make(self.cfg, gan).replace(f'--name {gan}', f'--name {gan} --seed 1 --width W'))
        Amor = self.amortizer(gan, G.latent_dim) if amortized else None
        G = self.trained('G', adapted=True) if adapted else G
        return batched(lambda F: attacker.whitebox(self.target.Enc, G, F, self.cfg, Amor, D, self.gen,
                                                   amortized=amortized), feats, self.cfg.batch_size).cpu()

    def decode(self, Dec, feats):
        with torch.no_grad():
            return batched(Dec, feats, self.cfg.batch_size).cpu().unsqueeze(0)

    def identify(self, nets, feats, keep_model=False):
        """Feature2ID's top-1 / top-5, the best of `nets` ({which: net})."""
        from Feature2ID.f2id_test import score
        s, which = max(((score(n, feats, self.test), k) for k, n in nets.items()), key=lambda sk: sk[0]['top1'])
        return {'eval_acc': s['top1'], 'eval_acc_top5': s['top5'], **({'model': which} if keep_model else {})}

    def linkage(self):
        """sigmoid(f(F)) names the identity whose mean sigmoid(f(Enc(x))) over eval_train (its
        profile, per target net) is nearest."""
        key, target = release.enc_name(self.protection), self.target
        if key not in self._profiles:
            from common.train import encode
            feats = encode(target.Enc, self._train, self.device)
            with torch.no_grad():
                probs = batched(target.f, feats, self.cfg.batch_size).sigmoid().cpu()
            self._profiles[key] = metrics.identity_profiles(probs, self._train.labels, self._train.n_ids)
        return metrics.linkage_scores(self.scores.sigmoid(), self._profiles[key], self.test.labels.cpu())


def evaluate_protection(c, attacks):
    """All attacks on one protection. Returns (entry for metrics.json, rows for the picture)."""
    cfg, p, test = c.cfg, c.protection, c.test
    entry = {'attacks': {}, 'skipped': {}, 'not_applicable': {}}
    if c.target is not c.base:
        entry['encoder'] = release.enc_name(p)
    entry['mean_auc'] = metrics.mean_auc(c.scores, test.attrs.cpu()) if test.attr_names else None
    if test.attr_names:
        entry['auc_per_attribute'] = metrics.attribute_aucs(c.scores, test.attrs.cpu(), test.attr_names)
    show, amortized = {}, None
    for attack in attacks:
        if attack in A3 and not release.randomised(p):
            entry['not_applicable'][attack] = 'deterministic release: a repeated query returns the same feature'
            continue
        t0 = time.time()
        try:
            out = ATTACKS[attack](c)
        except Missing as e:
            entry['skipped'][attack] = str(e)
            continue
        if attack in IDENTITY_ONLY:
            s = {**out, 'ssim': None, 'fsim': None, 'psnr': None, 'feature_sim': None, 'evaluator': None}
        else:
            s = evalTrain.score(c.evaluators, out, test)
            show[attack] = out[0, :cfg.n_show]
            amortized = out[0] if attack == 'whitebox_amortized' else amortized   # for eps-PII
        s['seconds'] = round(time.time() - t0, 1)
        entry['attacks'][attack] = s
        line = '  top-1 {eval_acc:.3f}  top-5 {eval_acc_top5:.3f}' + (
            '' if attack in IDENTITY_ONLY else '  SSIM {ssim:.3f}  FSIM {fsim:.3f}  ({seconds} s)')
        print(f'  {p:>18} {attack:>21}:' + line.format(**s), flush=True)
    entry['worst_attack'], entry['eps_pii'] = metrics.worst_case(entry['attacks']), None
    entry['worst_by_evaluator'] = {n: metrics.worst_case({a: s['by_evaluator'][n] if 'by_evaluator' in s else s
                                                          for a, s in entry['attacks'].items()}) for n in c.evaluators}
    if amortized is not None:
        with torch.no_grad():
            prior = c.G(torch.randn(len(amortized), c.G.latent_dim, generator=c.gen).to(c.device))
        entry['eps_pii'] = crafting.eps_pii(amortized.to(c.device), prior, cfg, c.device, cfg.seed)
    run = release.run_dir(cfg, p)
    if (run / 'training_scenario.json').exists():
        ts = json.loads((run / 'training_scenario.json').read_text())
        entry.update(mean_auc_training_scenario=ts['mean_auc_protected'],
                     mean_auc_training_scenario_clean=ts['mean_auc_clean'])
    if (run / 'report_eval_test.json').exists():
        rep = json.loads((run / 'report_eval_test.json').read_text())['summary']
        entry['crafting'] = {k: rep.get(k) for k in ('L_u', 'L_id', 'wall_s', 's_per_outer_step')}
    return entry, show


def matched_utility(prots):
    """For each protected point, the lowest worst-case top-1 of every other defence family among
    its points with equal or higher mean AUC: {point: {family: (value, point name) or None}}."""
    pts = {n: (p['mean_auc'], p['worst_attack']['eval_acc']) for n, p in prots.items()
           if n != 'none' and p.get('mean_auc') is not None and p.get('worst_attack')}
    fams = sorted({release.family(n)[0] for n in pts}, key=lambda f: release.order_key(release.name(f, 0)))
    table = {n: {fam: min([(w, q) for q, (a, w) in pts.items() if release.family(q)[0] == fam
                           and a >= auc - 1e-12], default=None)
                 for fam in fams if fam != release.family(n)[0]} for n, (auc, _) in pts.items()}
    return table, fams


def _f(v):
    return 'n/a' if v is None or (isinstance(v, float) and math.isnan(v)) else f'{v:.3f}'


def _table(head, rows):
    return ['| ' + ' | '.join(head) + ' |', '| ' + ' | '.join('---' for _ in head) + ' |'] + \
        ['| ' + ' | '.join(r) + ' |' for r in rows]


def write_report(result, out):
    prots, reg = result['protections'], release.registry()
    attacks = [a for a in ATTACKS if any(a in p['attacks'] or a in p.get('skipped', {})
                                         or a in p.get('not_applicable', {}) for p in prots.values())]

    def cells(p, fmt, among):
        return [fmt(p['attacks'][a]) if a in p['attacks'] else
                'n/a' if a in p.get('not_applicable', {}) else 'skipped' for a in among]

    def worst(p):
        w = p.get('worst_attack')
        by = f", {w['evaluator']}" if w and w.get('evaluator') and len(evs) > 1 else ''
        return f"**{w['eval_acc']:.3f}** ({w['attack']}{by}) of {len(p['attacks'])}" if w else 'n/a'

    evs = result.get('evaluators', {})
    ev_line = ['Identity evaluators (each names the clean eval_test images first): ' + '; '.join(
        f"{n}: top-1 {e['clean_top1']:.3f}" + (f", faces found {e['faces_found_test']['found']}/"
                                               f"{e['faces_found_test']['n']}" if e.get('faces_found_test') else '')
        for n, e in evs.items()) + '. The worst case takes the stronger evaluator per attack.', ''] if evs else []

    L = [f"# Evaluation: {result['dataset']}", '',
         f"{result['n_images']} eval_test images of {result['n_ids']} private identities; chance "
         f"top-1 = {result['chance']:.4f} (top-5 = {min(1, 5 * result['chance']):.4f}). "
         f"Made by `{result['command']}` on {result['date']}.", '',
         'Privacy of a protection is its worst case: the highest top-1 over every attack that ran '
         '(`worst_attack` in metrics.json; "of N": how many ran, so a point without its adaptive '
         'attacks is a lower bound). n/a: the attack does not apply (A3 needs a randomised '
         'release).', ''] + ev_line + ['## Eval Acc (top-1 / top-5) per protection and attack', '']
    wb = lambda p, n: _f((p.get('worst_by_evaluator', {}).get(n) or {}).get('eval_acc'))  # noqa: E731
    L += _table(['protection', 'mean AUC', 'eps-PII', 'worst case (attack)'] + [f'worst: {n}' for n in evs] + attacks,
                [[n, _f(p.get('mean_auc')), _f(p.get('eps_pii')), worst(p)] + [wb(p, e) for e in evs]
                 + cells(p, lambda s: f"{s['eval_acc']:.3f} / {s['eval_acc_top5']:.3f}", attacks)
                 for n, p in prots.items()])
    img = [a for a in attacks if a not in IDENTITY_ONLY]
    for e in evs:
        L += ['', f'## Evaluator {e}: top-1 / KNN distance (cosine, to the nearest eval_train image of the true '
              'identity)' + (' / reconstructions with no face found' if e == 'dlib' else ''), '']
        L += _table(['protection'] + img, [[n] + cells(p, lambda s: ' / '.join(
            [_f(s['by_evaluator'][e]['eval_acc']), _f(s['by_evaluator'][e]['knn_distance'])]
            + ([str(s['by_evaluator'][e]['no_face'])] if 'no_face' in s['by_evaluator'][e] else [])), img)
            for n, p in prots.items()])
    table, fams = matched_utility(prots)
    if table and len(fams) > 1:
        L += ['', '## At matched utility (worst-case top-1)', '',
              'For each protected point: the lowest worst-case top-1 that every other defence family '
              'reaches at equal or higher mean AUC (– : no point of that family has as much utility).', '']
        L += _table(['protection', 'mean AUC', 'worst case'] + [reg[f]['label'] if f in reg else f for f in fams],
                    [[n, _f(prots[n]['mean_auc']), f"{prots[n]['worst_attack']['eval_acc']:.3f}"]
                     + ['(same family)' if f not in row else f'{row[f][0]:.3f} ({row[f][1]})' if row[f] else '–'
                        for f in fams] for n, row in table.items()])
    sim = [[n] + cells(p, lambda s: ' / '.join(_f(s.get(k)) for k in ('ssim', 'fsim', 'psnr', 'feature_sim')), img)
           for n, p in prots.items()]
    L += ['', '## Image similarity to the originals (SSIM / FSIM / PSNR dB / evaluator-embedding cosine)', '']
    L += _table(['protection'] + img, sim)
    ts = [[n, _f(p['mean_auc_training_scenario']), _f(p['mean_auc_training_scenario_clean'])]
          for n, p in prots.items() if 'mean_auc_training_scenario' in p]
    if ts:
        L += ['', '## Utility in the training scenario (cloud model trained on released features)', '']
        L += _table(['protection', 'mean AUC (protected)', 'mean AUC (clean, same images)'], ts)
    skipped = [(n, a, why) for n, p in prots.items() for a, why in p.get('skipped', {}).items()]
    skipped += [(n, '(whole protection)', why) for n, why in result.get('skipped_protections', {}).items()]
    if skipped:
        L += ['', '## Skipped (missing inputs)', ''] + [f'- {n} / {a}: {why}' for n, a, why in skipped]
    io.write_text(out / 'report.md', '\n'.join(L) + '\n')


def main(argv=None):
    cfg = config.parse(HP, PRESETS, argv, ranges=RANGES, description=__doc__)
    unknown = [a for a in cfg.attacks.split(',') if a and a not in ATTACKS]
    if unknown:
        raise config.ConfigError(f'--attacks: unknown {unknown}; choose from {",".join(ATTACKS)}')
    attacks = [a for a in ATTACKS if a in cfg.attacks.split(',')]
    device, clock = runtime.start(cfg, 'evaluate')
    meta = loader.load_meta(cfg.data_dir)
    test = release.select(loader.load(cfg.data_dir, 'eval_test', device, meta),
                          config.Config(n_per_id=cfg.n_per_id, n_images=0, seed=cfg.seed))
    gen = torch.Generator().manual_seed(cfg.seed)
    att = Attacker(cfg, meta, device, test, gen)
    out = Path(cfg.out) if cfg.out else io.repo_path(cfg.results_dir) / runtime.run_tag(cfg)
    result = {'dataset': io.rel(loader.data_path(cfg.data_dir)), 'n_ids': test.n_ids,
              'chance': 1 / test.n_ids, 'n_images': len(test), 'protections': {},
              'evaluators': {n: {k: v for k, v in e.items() if k in ('clean_top1', 'faces_found', 'faces_found_test')}
                             for n, e in att.evaluators.items()},
              'skipped_protections': {}, 'date': time.strftime('%Y-%m-%d'),
              'command': 'python evaluate.py ' + ' '.join(argv if argv is not None else sys.argv[1:])}
    pictures = {}
    for protection in find_protections(cfg):
        try:
            att.face(protection)
        except Missing as e:
            result['skipped_protections'][protection] = str(e)
            print(f'skipped {protection}: {e}')
            continue
        print(f'protection {protection}:', flush=True)
        torch.manual_seed(cfg.seed)
        gen.manual_seed(cfg.seed)        # every protection faces the same random starts
        result['protections'][protection], pictures[protection] = evaluate_protection(att, attacks)
    io.write_text(out / 'metrics.json', json.dumps(result, indent=1) + '\n')
    write_report(result, out)
    rows, labels, x = [], [], test.x()[:cfg.n_show].cpu()
    for protection, show in pictures.items():
        shown = [a for a in ATTACKS if a in show]
        rows += [x] + [show[a] for a in shown]
        labels += [f'{protection}: original'] + [f'  {a}' for a in shown]
    if rows:
        plots.save_rows(rows, out / 'reconstructions.png', labels)
    plots.tradeoff(result, out)
    cfg.save(out / 'config.json')
    clock.finish('evaluate', protections=len(result['protections']), report=io.rel(out / 'report.md'))
    print((out / 'report.md').read_text())
    return result


if __name__ == '__main__':
    main()
