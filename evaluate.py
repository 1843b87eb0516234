"""Step 13: every protection against every attack: how much identity leaks, at what utility.

For each protection present (none, crafter_beta<b>, zcrafter_beta<b>) it takes the released
features of the same eval_test images and runs: white-box inversion from random starts, the
amortized white-box attack, the black-box decoder, the adaptive white-box (adapted G) and
adaptive black-box (adapted Dec) attacks, and Feature2ID. Every reconstruction is scored with
metrics.py: the oracle's top-1 / top-5 identity accuracy (Eval Acc), SSIM, FSIM and the cosine
similarity of oracle embeddings to the originals. Also eps-PII (a fresh critic's distance between
amortized reconstructions and prior faces) and utility: the target net's mean AUC on the
released features (inference scenario) and trainClassifier's (training scenario).
Attack budgets follow the paper, scaled only by the preset, equally for every protection.
A missing input becomes a skipped row naming the command that makes it.

Writes results/<run>/metrics.json, report.md, reconstructions.png, tradeoff.png.

    python evaluate.py --preset demo
"""
import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

import metrics  # noqa: E402
from common import ckpt, config, io, plots, runtime  # noqa: E402
from Crafter_protection import crafting  # noqa: E402
from dataset import loader  # noqa: E402
from WhiteBoxAttack import attacker  # noqa: E402

ATTACKS = ('whitebox', 'whitebox_amortized', 'blackbox', 'adaptive_whitebox', 'adaptive_blackbox',
           'feature2id')

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
    eps_steps=200,       # critic steps of the eps-PII estimate (the crafter's critic recipe)
    critic_width=64,     # its width (the crafter's critic_width)
    batch_size=128,
    oracle='eval',       # eval (params/eval.pkl) | facenet (params/facenet.pkl, optional)
    n_show=8,            # images per row of reconstructions.png
    out='',              # default results/<run>
)
PRESETS = {
    'tiny': dict(steps=10, amor_steps=5, restarts=1, n_per_id=1, eps_steps=5, critic_width=8),
    'demo': dict(steps=200, amor_steps=40, restarts=1, n_per_id=1, eps_steps=100, critic_width=16),
    'celeba-cpu': dict(steps=300, amor_steps=60, restarts=1, n_per_id=2, eps_steps=100,
                       critic_width=32),
}
# -----------------------------------------------------------------------------------------


def find_protections(cfg):
    if cfg.protections != 'auto':
        return [p.strip() for p in cfg.protections.split(',') if p.strip()]
    root = crafting.run_dir(cfg, 'x').parent
    found = sorted(p.name for p in root.glob('*') if (p / 'features_eval_test.pt').exists()) \
        if root.exists() else []
    order = lambda n: (n.split('_beta')[0], float(n.split('_beta')[1]) if '_beta' in n else 0.0)  # noqa: E731
    return ['none'] + sorted(found, key=order)


class Models:
    """Everything the evaluation loads, once; optional pieces are None with the reason."""

    def __init__(self, cfg, meta, device):
        self.target = ckpt.load_target(cfg, meta, device)
        self.Enc = self.target.Enc
        self.G, self.D = ckpt.load_gan(cfg, meta, device)
        self.Amor = ckpt.load_amor(cfg, meta, device, self.G.latent_dim)
        from Image2ID.evalTrain import load_oracle
        self.oracle = load_oracle(cfg, meta, device, cfg.oracle)
        self.missing = {}
        ck = ckpt.load(cfg, 'dec.pkl', 'dec', meta, required=False)
        self.Dec = ckpt.build(ck, 'Dec', device) if ck else None
        if ck is None:
            self.missing['blackbox'] = ckpt.how_to_make(cfg, 'dec.pkl')
        ck = ckpt.load(cfg, 'f2id.pt', 'f2id', meta, required=False)
        self.f2id = ckpt.build(ck, 'f2id', device) if ck else None
        if ck is None:
            self.missing['feature2id'] = ckpt.how_to_make(cfg, 'f2id.pt')


def adapted(cfg, meta, device, protection, kind):
    """The attacker's adapted G or Dec for a protection, or (None, command that makes it)."""
    from BlackBoxAttack.adaptiveTrainDecoder import adaptive_name as dec_name
    from WhiteBoxAttack.adaptiveUpdateG import adaptive_name as g_name
    if kind == 'G':
        name, script, step, ck_kind = g_name(protection), 'WhiteBoxAttack/adaptiveUpdateG.py', 11, 'gan'
    else:
        name, script, step, ck_kind = dec_name(protection), 'BlackBoxAttack/adaptiveTrainDecoder.py', 12, 'dec'
    ck = ckpt.load(cfg, name, ck_kind, meta, required=False)
    if ck is None:
        return None, (f'make it with step {step} of the README: python {script} '
                      f'{cfg.overrides_for_command()} --protection {protection}')
    return ckpt.build(ck, 'G' if kind == 'G' else 'Dec', device), None


def batched(fn, feats, batch_size):
    """fn over batches of features, joined along the image axis (axis 1 for restarts x N x ...)."""
    outs = [fn(feats[b]) for b in loader.batches(len(feats), batch_size)]
    return torch.cat(outs, dim=1 if outs[0].dim() == 5 else 0)


def evaluate_protection(cfg, meta, device, m, test, protection, attacks, gen):
    """All attacks on one protection. Returns (entry for metrics.json, rows for the picture)."""
    entry = {'attacks': {}, 'skipped': {}}
    feats = crafting.protected_features(cfg, protection, test, m.Enc, device)
    x = test.x().cpu()
    labels = test.labels.cpu()
    show = {}
    with torch.no_grad():
        scores = batched(m.target.f, feats, cfg.batch_size).float().cpu()
    if test.attr_names:
        entry['mean_auc'] = metrics.mean_auc(scores, test.attrs.cpu())
        entry['auc_per_attribute'] = metrics.attribute_aucs(scores, test.attrs.cpu(), test.attr_names)
    else:
        entry['mean_auc'] = None
    amortized_recon = None
    for attack in attacks:
        t0 = time.time()
        recon = None
        if attack == 'whitebox':
            recon = batched(lambda F: attacker.whitebox(m.Enc, m.G, F, cfg, m.Amor, m.D, gen),
                            feats, cfg.batch_size).cpu()
        elif attack == 'whitebox_amortized':
            recon = batched(lambda F: attacker.whitebox(m.Enc, m.G, F, cfg, m.Amor, m.D, gen,
                                                        amortized=True), feats, cfg.batch_size).cpu()
            amortized_recon = recon[0]
        elif attack == 'blackbox':
            if m.Dec is None:
                entry['skipped'][attack] = m.missing['blackbox']
                continue
            with torch.no_grad():
                recon = batched(m.Dec, feats, cfg.batch_size).cpu().unsqueeze(0)
        elif attack == 'adaptive_whitebox':
            G_a, why = adapted(cfg, meta, device, protection, 'G')
            if G_a is None:
                entry['skipped'][attack] = why
                continue
            recon = batched(lambda F: attacker.whitebox(m.Enc, G_a, F, cfg, m.Amor, m.D, gen,
                                                        amortized=True), feats, cfg.batch_size).cpu()
        elif attack == 'adaptive_blackbox':
            Dec_a, why = adapted(cfg, meta, device, protection, 'Dec')
            if Dec_a is None:
                entry['skipped'][attack] = why
                continue
            with torch.no_grad():
                recon = batched(Dec_a, feats, cfg.batch_size).cpu().unsqueeze(0)
        elif attack == 'feature2id':
            if m.f2id is None:
                entry['skipped'][attack] = m.missing['feature2id']
                continue
            from Feature2ID.f2id_test import score
            s = score(m.f2id, feats, test)
            entry['attacks'][attack] = {'eval_acc': s['top1'], 'eval_acc_top5': s['top5'],
                                        'ssim': None, 'fsim': None, 'feature_sim': None,
                                        'seconds': round(time.time() - t0, 1)}
            continue
        r = recon.shape[0]                     # restarts x N x 3 x S x S: every restart scored
        s = metrics.reconstruction_scores(m.oracle, recon.flatten(0, 1), x.repeat(r, 1, 1, 1),
                                          labels.repeat(r))
        s['seconds'] = round(time.time() - t0, 1)
        entry['attacks'][attack] = s
        show[attack] = recon[0, :cfg.n_show]
        print(f'  {protection:>18} {attack:>19}: top-1 {s["eval_acc"]:.3f}  top-5 '
              f'{s["eval_acc_top5"]:.3f}  SSIM {s["ssim"]:.3f}  FSIM {s["fsim"]:.3f}  '
              f'({s["seconds"]} s)', flush=True)
    entry['eps_pii'] = None
    if amortized_recon is not None:
        with torch.no_grad():
            prior = m.G(torch.randn(len(amortized_recon), m.G.latent_dim, generator=gen).to(device))
        entry['eps_pii'] = crafting.eps_pii(amortized_recon.to(device), prior, cfg, device, cfg.seed)
    run = crafting.run_dir(cfg, protection)
    if (run / 'training_scenario.json').exists():
        ts = json.loads((run / 'training_scenario.json').read_text())
        entry['mean_auc_training_scenario'] = ts['mean_auc_protected']
        entry['mean_auc_training_scenario_clean'] = ts['mean_auc_clean']
    if (run / 'report_eval_test.json').exists():
        rep = json.loads((run / 'report_eval_test.json').read_text())['summary']
        entry['crafting'] = {k: rep.get(k) for k in ('L_u', 'wall_s', 's_per_outer_step')}
    return entry, show


def targets(result):
    """The issue's targets, checked on the measured numbers (reported, never tuned for)."""
    prots = result['protections']
    none = prots.get('none', {}).get('attacks', {})
    chance = result['chance']
    lines = []

    def acc(p, a):
        return prots.get(p, {}).get('attacks', {}).get(a, {}).get('eval_acc')

    for a in ('whitebox', 'blackbox'):
        v = none.get(a, {}).get('eval_acc')
        if v is not None:
            lines.append((f'no protection, {a} top-1 >= 10x chance ({10 * chance:.3f})', v, v >= 10 * chance))
    wb = none.get('whitebox', {}).get('eval_acc')
    for p in prots:
        if p == 'none' or wb is None:
            continue
        for a in ('whitebox', 'whitebox_amortized', 'blackbox', 'adaptive_whitebox', 'adaptive_blackbox'):
            v = acc(p, a)
            if v is not None:
                lines.append((f'{p}: {a} top-1 <= 30% of unprotected white-box ({0.3 * wb:.3f})', v,
                              v <= 0.3 * wb))
        auc_p, auc_n = prots[p].get('mean_auc'), prots.get('none', {}).get('mean_auc')
        if auc_p is not None and auc_n is not None:
            lines.append((f'{p}: mean AUC within 0.08 of no protection ({auc_n - 0.08:.3f})', auc_p,
                          auc_p >= auc_n - 0.08))
        for a, base in (('adaptive_whitebox', 'whitebox_amortized'), ('adaptive_blackbox', 'blackbox')):
            v, b = acc(p, a), acc(p, base)
            if v is not None and b is not None:
                lines.append((f'{p}: {a} top-1 <= 1.5x {base} ({1.5 * b:.3f})', v,
                              v <= 1.5 * b + 1e-12))
    return lines


def write_report(result, out):
    prots = result['protections']
    attacks = [a for a in ATTACKS if any(a in p['attacks'] or a in p.get('skipped', {})
                                         for p in prots.values())]
    L = [f"# Evaluation: {result['dataset']}", '',
         f"{result['n_images']} eval_test images of {result['n_ids']} private identities; chance "
         f"top-1 = {result['chance']:.4f} (top-5 = {min(1, 5 * result['chance']):.4f}). "
         f"Made by `{result['command']}` on {result['date']}.", '',
         '## Eval Acc (oracle top-1 / top-5) per protection and attack', '',
         '| protection | mean AUC | eps-PII | ' + ' | '.join(attacks) + ' |',
         '| --- | --- | --- | ' + ' | '.join('---' for _ in attacks) + ' |']
    for name, p in prots.items():
        cells = []
        for a in attacks:
            s = p['attacks'].get(a)
            cells.append(f"{s['eval_acc']:.3f} / {s['eval_acc_top5']:.3f}" if s else 'skipped')
        L.append(f"| {name} | {_f(p.get('mean_auc'))} | {_f(p.get('eps_pii'))} | " + ' | '.join(cells) + ' |')
    L += ['', '## Image similarity to the originals (SSIM / FSIM / oracle-embedding cosine)', '',
          '| protection | ' + ' | '.join(a for a in attacks if a != 'feature2id') + ' |',
          '| --- | ' + ' | '.join('---' for a in attacks if a != 'feature2id') + ' |']
    for name, p in prots.items():
        cells = []
        for a in attacks:
            if a == 'feature2id':
                continue
            s = p['attacks'].get(a)
            cells.append(f"{s['ssim']:.3f} / {s['fsim']:.3f} / {s['feature_sim']:.3f}" if s else 'skipped')
        L.append(f'| {name} | ' + ' | '.join(cells) + ' |')
    ts = [(n, p) for n, p in prots.items() if 'mean_auc_training_scenario' in p]
    if ts:
        L += ['', '## Utility in the training scenario (cloud model trained on released features)', '',
              '| protection | mean AUC (protected) | mean AUC (clean, same images) |', '| --- | --- | --- |']
        L += [f"| {n} | {_f(p['mean_auc_training_scenario'])} | {_f(p['mean_auc_training_scenario_clean'])} |"
              for n, p in ts]
    skipped = [(n, a, why) for n, p in prots.items() for a, why in p.get('skipped', {}).items()]
    if skipped:
        L += ['', '## Skipped (missing inputs)', '']
        L += [f'- {n} / {a}: {why}' for n, a, why in skipped]
    L += ['', '## Targets', '']
    L += [f"- [{'x' if ok else ' '}] {what}: measured {v:.3f}" for what, v, ok in result['targets']]
    io.write_text(out / 'report.md', '\n'.join(L) + '\n')


def _f(v):
    return 'n/a' if v is None or (isinstance(v, float) and math.isnan(v)) else f'{v:.3f}'


def tradeoff_plot(result, out):
    plt = plots.pyplot()
    prots = result['protections']
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    markers = dict(zip(ATTACKS, 'osD^v*'))
    for a in ATTACKS:
        for family, style in (('crafter', '-'), ('zcrafter', ':')):
            pts = [(p['mean_auc'], p['attacks'][a]['eval_acc']) for n, p in prots.items()
                   if n.startswith(family + '_beta') and a in p['attacks'] and p.get('mean_auc') is not None]
            if pts:
                pts.sort()
                ax.plot(*zip(*pts), style, marker=markers[a], label=f'{family} {a}')
        none = prots.get('none', {})
        if a in none.get('attacks', {}) and none.get('mean_auc') is not None:
            ax.scatter([none['mean_auc']], [none['attacks'][a]['eval_acc']], marker=markers[a],
                       c='k', s=50, zorder=3)
    ax.axhline(result['chance'], color='gray', lw=0.8, ls='--', label='chance')
    ax.set_xlabel('mean AUC (utility)')
    ax.set_ylabel('Eval Acc (top-1)')
    ax.set_title('privacy-utility trade-off over beta (black: no protection)')
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    io.save_figure(fig, out / 'tradeoff.png', dpi=110)
    plt.close(fig)


def main(argv=None):
    cfg = config.parse(HP, PRESETS, argv, description=__doc__)
    unknown = [a for a in cfg.attacks.split(',') if a and a not in ATTACKS]
    if unknown:
        raise config.ConfigError(f'--attacks: unknown {unknown}; choose from {",".join(ATTACKS)}')
    attacks = [a for a in ATTACKS if a in cfg.attacks.split(',')]
    device, clock = runtime.start(cfg, 'evaluate')
    meta = loader.load_meta(cfg.data_dir)
    m = Models(cfg, meta, device)
    test = crafting.select(loader.load(cfg.data_dir, 'eval_test', device, meta),
                           config.Config(n_per_id=cfg.n_per_id, n_images=0, seed=cfg.seed))
    out = Path(cfg.out) if cfg.out else io.repo_path(cfg.results_dir) / runtime.run_tag(cfg)
    result = {'dataset': io.rel(loader.data_path(cfg.data_dir)), 'n_ids': test.n_ids,
              'chance': 1 / test.n_ids, 'n_images': len(test), 'protections': {},
              'skipped_protections': {}, 'date': time.strftime('%Y-%m-%d'),
              'command': 'python evaluate.py ' + ' '.join(argv if argv is not None else sys.argv[1:])}
    gen = torch.Generator().manual_seed(cfg.seed)
    pictures = {}
    for protection in find_protections(cfg):
        if protection != 'none':
            file = crafting.feature_file(cfg, protection, 'eval_test')
            have = crafting.covered(cfg, protection, test) if file.exists() else []
            if len(have) != len(test):
                why = (f'its features cover {len(have)} of the {len(test)} evaluation images; make them '
                       f'with: {crafting.craft_command(cfg, protection, "eval_test")} --n_per_id {cfg.n_per_id}')
                result['skipped_protections'][protection] = why
                print(f'skipped {protection}: {why}')
                continue
        print(f'protection {protection}:', flush=True)
        torch.manual_seed(cfg.seed)
        gen.manual_seed(cfg.seed)        # every protection faces the same random starts
        entry, show = evaluate_protection(cfg, meta, device, m, test, protection, attacks, gen)
        result['protections'][protection] = entry
        pictures[protection] = show
    result['targets'] = targets(result)
    io.write_text(out / 'metrics.json', json.dumps(result, indent=1) + '\n')
    write_report(result, out)
    x = test.x()[:cfg.n_show].cpu()
    rows, labels = [], []
    for protection, show in pictures.items():
        shown = [a for a in ATTACKS if a in show]
        rows += [x] + [show[a] for a in shown]
        labels += [f'{protection}: original'] + [f'  {a}' for a in shown]
    if rows:
        plots.save_rows(rows, out / 'reconstructions.png', labels)
    tradeoff_plot(result, out)
    cfg.save(out / 'config.json')
    clock.finish('evaluate', protections=len(result['protections']), report=io.rel(out / 'report.md'))
    print((out / 'report.md').read_text())
    return result


if __name__ == '__main__':
    main()
