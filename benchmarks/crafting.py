"""Crafting speed at equal protection: the paper's solver against ours, side by side.

In one process, for each seed, crafts the same batch of eval_test images with the same number of
outer steps twice:
  reference  the paper's settings: the inner problem restarted at Amor(F) for 80 steps every outer
             step, H^-1 v by the Neumann series (alpha 0.001, 120 terms);
  ours       the defaults featureCrafter.py ships: warm-started inner solve (a few steps from the
             previous z_star), damped conjugate gradient with a few Hessian-vector products.
Everything else (critic, beta, learning rate, prior faces, batch) is identical. Printed for each
and as reference/ours: wall time per outer step and per batch, Enc(G) passes and Hessian-vector
products per outer step, peak memory, and the quality at the end: eps-PII, L_u, and the oracle's
top-1 on amortized white-box reconstructions of the crafted features. With several seeds it
prints the median and the range. Writes results/<run>/benchmark_crafting.json.

    python benchmarks/crafting.py --preset demo --seeds 0,1,2
"""
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import metrics  # noqa: E402
from common import ckpt, config, io, runtime  # noqa: E402
from Crafter_protection import crafting, featureCrafter  # noqa: E402
from types import SimpleNamespace  # noqa: E402
from Image2ID.evalTrain import load_oracle  # noqa: E402
from dataset import loader  # noqa: E402
from WhiteBoxAttack import attacker  # noqa: E402

# ---- hyperparameters ---------------------------------------------------------------------
HP = dict(
    featureCrafter.HP,   # the crafter's settings ("ours" = its defaults)
    seeds='0',           # comma-separated seeds; each crafts the batch twice
    eval_amor_steps=attacker.HP['amor_steps'],   # the amortized attack scoring the result
    out='',
)
HP.update(outer_steps=450, batch_size=128)
# the crafter's own preset (beta, feature step, critic), on one batch for a few outer steps
PRESETS = {
    'tiny': {**featureCrafter.PRESETS['tiny'], **dict(outer_steps=2, batch_size=8, eps_steps=5,
                                                      eval_amor_steps=3, neumann_terms=120)},
    'demo': {**featureCrafter.PRESETS['demo'], **dict(outer_steps=12, batch_size=64,
                                                      eval_amor_steps=40)},
    'celeba-cpu': {**featureCrafter.PRESETS['celeba-cpu'], **dict(outer_steps=12, batch_size=64,
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


def craft_once(cfg, variant, x, f0, m, seed, device):
    run = config.Config({**cfg, **(featureCrafter.REFERENCE if variant == 'reference' else {})})
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    m.Enc.passes = 0
    with PeakRSS(device) as mem:
        t0 = time.time()
        res = featureCrafter.craft_batch(x, f0, m, run, gen)
        wall = time.time() - t0
    if res is None:
        raise SystemExit(f'{variant}: crafting diverged')
    return res, {'wall_s_per_batch': wall, 'wall_s_per_outer_step': wall / run.outer_steps,
                 'encg_passes_per_step': m.Enc.passes / run.outer_steps,
                 'hvp_per_step': res['log']['hvp_per_step'], 'peak_mem_mib': mem.mib,
                 'L_u': res['log']['L_u']}


def quality(res, x, labels, m, oracle, cfg, device, seed):
    """The attacker's view of the crafted features: amortized white-box, scored by the oracle."""
    eval_cfg = config.Config(amor_steps=cfg.eval_amor_steps, lr=attacker.HP['lr'],
                             momentum=attacker.HP['momentum'], prior_weight=0.0, restarts=1)
    torch.manual_seed(seed)
    recon = attacker.whitebox(m.Enc, m.G, res['F'], eval_cfg, m.Amor, amortized=True)[0]
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        prior = m.G(torch.randn(len(recon), m.G.latent_dim, generator=gen).to(device))
    s = metrics.reconstruction_scores(oracle, recon.cpu(), x.cpu(), labels.cpu())
    return {'eps_pii': crafting.eps_pii(recon, prior, cfg, device, seed), 'whitebox_top1': s['eval_acc']}


def main(argv=None):
    cfg = config.parse(HP, PRESETS, argv, description=__doc__)
    device, clock = runtime.start(cfg, 'benchmark crafting')
    meta = loader.load_meta(cfg.data_dir)
    Enc, G, _, Amor = ckpt.load_attacker(cfg, meta, device)
    oracle = load_oracle(cfg, meta, device)
    m = SimpleNamespace(Enc=crafting.CountingEnc(Enc), G=G, Amor=Amor, img_size=meta['img_size'])
    test = loader.load(cfg.data_dir, 'eval_test', device, meta)
    test = test.subset(loader.per_identity(test, 1, 0)[:cfg.batch_size])   # one image per identity
    x = test.x()
    with torch.no_grad():
        f0 = Enc(x)
    seeds = [int(s) for s in cfg.seeds.split(',') if s.strip()]
    rows = {'reference': [], 'ours': []}
    for seed in seeds:
        for variant in ('reference', 'ours'):
            print(f'seed {seed}, {variant}: crafting {len(x)} images for {cfg.outer_steps} outer steps', flush=True)
            res, r = craft_once(cfg, variant, x, f0, m, seed, device)
            r.update(quality(res, x, test.labels, m, oracle, cfg, device, seed))
            rows[variant].append(r)
            print(f'  {variant}: ' + ', '.join(f'{k}={v:.4g}' for k, v in r.items()), flush=True)
    table = summarize(rows)
    print_table(table, seeds, cfg, len(x))
    out = Path(cfg.out) if cfg.out else io.repo_path(cfg.results_dir) / runtime.run_tag(cfg)
    report = {'seeds': seeds, 'n_images': len(x), 'outer_steps': cfg.outer_steps,
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


def print_table(table, seeds, cfg, n):
    print(f'\ncrafting benchmark: {n} images, {cfg.outer_steps} outer steps, seeds {seeds} '
          '(median [min, max])')
    print(f"{'':<24}{'reference':>30}{'ours':>30}{'ref/ours':>10}")
    for key, t in table.items():
        fmt = lambda v: f'{v[0]:.4g} [{v[1]:.4g}, {v[2]:.4g}]'  # noqa: E731
        print(f"{key:<24}{fmt(t['reference']):>30}{fmt(t['ours']):>30}{t['ratio']:>10.3g}")


if __name__ == '__main__':
    main()
