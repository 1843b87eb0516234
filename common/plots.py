"""Image grids, curves and the privacy-utility figure, written atomically (matplotlib without a
display, imported only when a curve is drawn: it adds about a second to every script's start)."""
import json
import math

import torch

from common import io, release


def pyplot():
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


def make_grid(images, nrow, padding=1, pad_value=1.0):
    """torchvision.utils.make_grid for N x 3 x H x W (torchvision is not imported: it costs every
    script ~2.5 s at start)."""
    n, c, h, w = images.shape
    if n == 1:
        return images[0]            # as torchvision: one image, no border
    cols = min(nrow, n)
    rows = math.ceil(n / cols)
    grid = images.new_full((c, rows * (h + padding) + padding, cols * (w + padding) + padding), pad_value)
    for k in range(n):
        y, x = divmod(k, cols)
        top, left = y * (h + padding) + padding, x * (w + padding) + padding
        grid[:, top:top + h, left:left + w] = images[k]
    return grid


def save_grid(images, path, nrow=8, upscale=1):
    """images: float N x 3 x S x S in [0, 1] (any device) -> PNG grid."""
    from PIL import Image
    grid = make_grid(images.detach().float().cpu().clamp(0, 1), nrow=nrow, padding=1, pad_value=1)
    arr = (grid.permute(1, 2, 0).numpy() * 255 + 0.5).astype('uint8')
    img = Image.fromarray(arr)
    if upscale > 1:
        img = img.resize((img.width * upscale, img.height * upscale), Image.NEAREST)
    with io.atomic_path(path) as tmp:
        img.save(tmp, format='PNG')


def save_rows(rows, path, labels=None, upscale=2):
    """rows: list of N x 3 x S x S tensors of equal N (e.g. originals, then reconstructions);
    labels: one text per row, written in a margin on the left."""
    n = rows[0].shape[0]
    if not labels:
        save_grid(torch.cat([r.detach().float().cpu() for r in rows]), path, nrow=n, upscale=upscale)
        return
    from PIL import Image, ImageDraw
    grid = make_grid(torch.cat([r.detach().float().cpu().clamp(0, 1) for r in rows]), nrow=n,
                     padding=1, pad_value=1)
    arr = (grid.permute(1, 2, 0).numpy() * 255 + 0.5).astype('uint8')
    img = Image.fromarray(arr).resize((grid.shape[2] * upscale, grid.shape[1] * upscale), Image.NEAREST)
    margin = 7 * max(len(t) for t in labels) + 8
    canvas = Image.new('RGB', (img.width + margin, img.height), 'white')
    canvas.paste(img, (margin, 0))
    draw = ImageDraw.Draw(canvas)
    row_h = img.height / len(rows)
    for i, text in enumerate(labels):
        draw.text((4, int(i * row_h + row_h / 2 - 6)), text, fill='black')
    with io.atomic_path(path) as tmp:
        canvas.save(tmp, format='PNG')


def save_curves(curves, path, title='', xlabel='step', logy=False):
    """curves: {label: list of values} or {label: (xs, ys)} -> line plot PNG."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for label, ys in curves.items():
        if isinstance(ys, tuple):
            ax.plot(ys[0], ys[1], label=label)
        else:
            ax.plot(range(1, len(ys) + 1), ys, label=label)
    ax.set_xlabel(xlabel)
    if logy:
        ax.set_yscale('log')
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    io.save_figure(fig, path, dpi=100)
    plt.close(fig)


def tradeoff(result, out):
    """Worst-case top-1 against mean AUC, one curve per defence family, black: no protection;
    the curves' points also go to tradeoff.json ({label: [[AUC, worst case, knob], ...]})."""
    plt, prots, curves = pyplot(), result['protections'], {}
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for fam, spec in sorted(release.registry().items(), key=lambda kv: kv[1]['order']):
        pts = sorted((p['mean_auc'], p['worst_attack']['eval_acc'], release.family(n)[1]) for n, p in prots.items()
                     if release.family(n)[0] == fam and p.get('mean_auc') is not None and p.get('worst_attack'))
        if not pts:
            continue
        ax.plot([a for a, _, _ in pts], [w for _, w, _ in pts], spec['style'], label=spec['label'])
        curves[spec['label']] = [list(p) for p in pts]
        for a, w, v in pts:
            ax.annotate(f'{v:g}', (a, w), textcoords='offset points', xytext=(3, 3), fontsize=6)
    none = prots.get('none', {})
    if none.get('worst_attack') and none.get('mean_auc') is not None:
        ax.scatter([none['mean_auc']], [none['worst_attack']['eval_acc']], c='k', s=50, zorder=3,
                   label='no protection')
    ax.axhline(result['chance'], color='gray', lw=0.8, ls='--', label='chance')
    ax.set(xlabel='mean AUC (utility)', ylabel='worst-case Eval Acc (top-1 over all attacks)',
           title='privacy-utility trade-off (lower right is better)')
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    io.save_figure(fig, out / 'tradeoff.png', dpi=110)
    io.write_text(out / 'tradeoff.json', json.dumps(curves, indent=1) + '\n')
    plt.close(fig)
