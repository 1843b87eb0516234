"""Crafting speed at equal protection: the paper's solver against ours, side by side.

In one process, for each seed, crafts the same batch of eval_test images twice, each for the
largest of `horizons` outer steps, and scores F at every horizon (12 and 100 by default: at 12
the one-off first inner solve weighs more):
  reference  the paper's settings: the inner problem restarted at Amor(F) for 80 steps every outer
             step, H^-1 v by the Neumann series (alpha 0.001, 120 terms);
  ours       the defaults featureCrafter.py ships: warm-started inner solve (a few steps from the
             previous z_star), damped conjugate gradient with a few Hessian-vector products.
Everything else (critic, beta, learning rate, prior faces, batch) is identical. Printed for each
horizon, for each solver and as reference/ours: wall time per batch (up to that horizon) and per
outer step, Enc(G) passes and Hessian-vector products per outer step, peak memory, L_u, and the
quality from the attacker's side: eps-PII and the oracle's top-1 of the amortized white-box attack
on F alone (crafting.attacker_view: Amor(F) plus the attack's steps, nothing the crafter knows),
with the raw features' values for scale. With several seeds it prints the median and the range.
Writes results/<run>/benchmark_crafting.json.

    python benchmarks/crafting.py --preset demo --seeds 0,1,2
"""
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import torch

import metrics
from common import ckpt, config, io, runtime
from Crafter_protection import crafting, featureCrafter
from types import SimpleNamespace
from Image2ID.evalTrain import load_oracle
from dataset import loader
from WhiteBoxAttack import attacker

# ---- hyperparameters ---------------------------------------------------------------------
HP = dict(
    featureCrafter.HP,   # the crafter's settings ("ours" = its defaults)
    seeds='0',           # comma-separated seeds; each crafts the batch twice
    horizons='12,100',   # outer steps at which F is scored (one run to the largest per solver)
    eval_amor_steps=attacker.HP['amor_steps'],   # the amortized attack scoring the result
    out='',
)
HP.update(batch_size=128)
RANGES = featureCrafter.RANGES   # the crafter rules beyond "finite and >= 0"
# the crafter's own preset (beta, feature step, critic), on one batch for a few outer steps
PRESETS = {
    'tiny': {**featureCrafter.PRESETS['tiny'], **dict(horizons='1,2', batch_size=8, eps_steps=5,
                                                      eval_amor_steps=3, neumann_terms=120)},
    'demo': {**featureCrafter.PRESETS['demo'], **dict(batch_size=16, eval_amor_steps=40)},
    'celeba-cpu': {**featureCrafter.PRESETS['celeba-cpu'], **dict(batch_size=16,
                                                                  eval_amor_steps=60)},
}
# -----------------------------------------------------------------------------------------


class PeakRSS:
    """Peak resident memory while a block runs (sampled every 5 ms; CUDA: the allocator's peak)."""

    def __init__(self, device):
        self.device = device

    def __enter__(self):
        self.peak, self.stop = 0, False
        if self.device.type == 'cuda':
            torch.cuda.reset_peak_memory_stats(self.device)
        self.base = self._rss()
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()
        return self

    def _rss(self):
        with open('/proc/self/statm') as f:
            return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')

    def _watch(self):
        while not self.stop:
            self.peak = max(self.peak, self._rss())
            time.sleep(0.005)

    def __exit__(self, *exc):
        self.stop = True
        self.thread.join()
        if self.device.type == 'cuda':
            self.mib = torch.cuda.max_memory_allocated(self.device) / 2 ** 20
        else:   # growth over the resident memory before the run
            self.mib = max(0, self.peak - self.base) / 2 ** 20


def craft_once(cfg, variant, x, f0, m, seed, device, horizons):
    """Crafts to max(horizons) outer steps; returns ({horizon: F}, {horizon: cost row})."""
    run = config.Config({**cfg, **(featureCrafter.REFERENCE if variant == 'reference' else {}),
                         'outer_steps': max(horizons)})
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    m.Enc.passes = 0
    snaps, rows = {}, {}
    with PeakRSS(device) as mem:
        t0 = time.time()

        def on_step(step, F):
            if step in horizons:
                wall = time.time() - t0
                snaps[step] = F.clone()
                rows[step] = {'wall_s_per_batch': wall, 'wall_s_per_outer_step': wall / step,
                              'encg_passes_per_step': m.Enc.passes / step,
                              'L_u': (F - f0).pow(2).flatten(1).mean(1).mean().item()}
        res = featureCrafter.craft_batch(x, f0, m, run, gen, on_step)
    if res is None:
        raise SystemExit(f'{variant}: crafting diverged')
    for r in rows.values():
        r.update(hvp_per_step=res['log']['hvp_per_step'], peak_mem_mib=mem.mib)
    return snaps, rows


def quality(F, x, labels, m, oracle, cfg, device, seed):
    """The attacker's view of released features F: amortized white-box from Amor(F), scored by
    the oracle, and eps-PII of those reconstructions against prior faces."""
    torch.manual_seed(seed)
    attack = config.Config({**cfg, 'attack_steps': cfg.eval_amor_steps})
    recon = crafting.attacker_view(m.Enc.Enc, m.G, m.Amor, F, attack)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        prior = m.G(torch.randn(len(recon), m.G.latent_dim, generator=gen).to(device))
    s = metrics.reconstruction_scores(oracle, recon.cpu(), x.cpu(), labels.cpu())
    return {'eps_pii': crafting.eps_pii(recon, prior, cfg, device, seed), 'whitebox_top1': s['eval_acc']}


def main(argv=None):
    cfg = config.parse(HP, PRESETS, argv, ranges=RANGES, description=__doc__)
    device, clock = runtime.start(cfg, 'benchmark crafting')
    meta = loader.load_meta(cfg.data_dir)
    Enc, G, _, Amor = ckpt.load_attacker(cfg, meta, device)
    oracle = load_oracle(cfg, meta, device)
    m = SimpleNamespace(Enc=crafting.CountingEnc(Enc), G=G, Amor=Amor, img_size=meta['img_size'], Id=None)
    test = loader.load(cfg.data_dir, 'eval_test', device, meta)
    test = test.subset(loader.per_identity(test, 1, 0)[:cfg.batch_size])   # one image per identity
    x = test.x()
    with torch.no_grad():
        f0 = Enc(x)
    seeds = [int(s) for s in cfg.seeds.split(',') if s.strip()]
    horizons = sorted(int(h) for h in cfg.horizons.split(',') if h.strip())
    rows = {h: {'reference': [], 'ours': []} for h in horizons}
    raw = {}
    for seed in seeds:
        raw[seed] = quality(f0, x, test.labels, m, oracle, cfg, device, seed)
        print(f'seed {seed}, raw features: ' + ', '.join(f'{k}={v:.4g}' for k, v in raw[seed].items()))
        for variant in ('reference', 'ours'):
            print(f'seed {seed}, {variant}: crafting {len(x)} images for {max(horizons)} outer steps', flush=True)
            snaps, costs = craft_once(cfg, variant, x, f0, m, seed, device, horizons)
            for h in horizons:
                r = dict(costs[h], **quality(snaps[h], x, test.labels, m, oracle, cfg, device, seed))
                rows[h][variant].append(r)
                print(f'  {variant} @ {h}: ' + ', '.join(f'{k}={v:.4g}' for k, v in r.items()), flush=True)
    table = {h: summarize(rows[h]) for h in horizons}
    for h in horizons:
        print_table(table[h], seeds, h, len(x))
    print('raw features (attacker side): ' + ', '.join(
        f'{k}={statistics.median(r[k] for r in raw.values()):.4g}' for k in raw[seeds[0]]))
    out = Path(cfg.out) if cfg.out else io.repo_path(cfg.results_dir) / runtime.run_tag(cfg)
    report = {'seeds': seeds, 'n_images': len(x), 'horizons': horizons, 'raw': raw,
              'reference_settings': featureCrafter.REFERENCE,
              'ours_settings': {k: cfg[k] for k in featureCrafter.REFERENCE},
              'runs': rows, 'summary': table, 'device': str(device),
              'command': 'python benchmarks/crafting.py ' + ' '.join(argv if argv is not None else sys.argv[1:])}
    io.write_text(out / 'benchmark_crafting.json', json.dumps(report, indent=1) + '\n')
    clock.finish('benchmark', saved=io.rel(out / 'benchmark_crafting.json'))
    return report


def summarize(rows):
    table = {}
    for key in rows['ours'][0]:
        ref = [r[key] for r in rows['reference']]
        ours = [r[key] for r in rows['ours']]
        ratios = [a / b if b else float('nan') for a, b in zip(ref, ours)]
        table[key] = {'reference': (statistics.median(ref), min(ref), max(ref)),
                      'ours': (statistics.median(ours), min(ours), max(ours)),
                      'ratio': statistics.median(ratios)}
    return table


def print_table(table, seeds, steps, n):
    print(f'\ncrafting benchmark: {n} images, {steps} outer steps, seeds {seeds} '
          '(median [min, max])')
    print(f"{'':<24}{'reference':>30}{'ours':>30}{'ref/ours':>10}")
    for key, t in table.items():
        fmt = lambda v: f'{v[0]:.4g} [{v[1]:.4g}, {v[2]:.4g}]'  # noqa: E731
        print(f"{key:<24}{fmt(t['reference']):>30}{fmt(t['ours']):>30}{t['ratio']:>10.3g}")


if __name__ == '__main__':
    main()
