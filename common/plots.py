"""Image grids and curves, written atomically (matplotlib without a display, imported only when
a curve is drawn: it adds about a second to every script's start)."""
import torch
from torchvision.utils import make_grid

from common import io


def pyplot():
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


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
