"""Build the built-in synthetic face dataset: procedurally drawn cartoon faces, no download.

    python dataset/make_synthetic.py                          # dataset/synthetic32: 500 ids x 20-25
    python dataset/make_synthetic.py --preset tiny            # dataset/tiny, a few seconds
    python dataset/make_synthetic.py --img_size 64 --out dataset/synthetic64

Every identity has fixed geometry and colours: head and jaw shape, skin tone, ears, eye spacing,
size, height and iris colour, eyebrow thickness, angle, arch and colour, nose size, mouth width,
height and lip colour, hair colour and usual style (short, bob, long, bald; bangs; wavy), a part,
and for some men a beard or moustache. Skin tones and hair colours come from short palettes, so
identity lies in the combination of many moderate cues.

Every image adds nuisance (shift, scale and rotation of the head, gaze, background, clothes,
lighting, gaussian noise, JPEG compression) and, as in a person's photos in CelebA, its own
appearance drawn from per-person propensities: hair style (bangs, waves), lighting that shifts the
hair into a neighbouring colour class, facial hair (shaved or grown), makeup (lipstick, rouge,
eyeliner), glasses, hats, earrings, a necklace, expression (smile, open mouth, raised brows).

The 26 attribute labels (CelebA names) are what an annotator would say about the drawn image:
Smiling=1 exactly when the mouth is drawn smiling, Black_Hair when the hair as lit reads black,
Big_Nose / Narrow_Eyes / Bushy_Eyebrows / Arched_Eyebrows / Pale_Skin a judgement of the drawn
size or tone with some spread, hair colour left blank in some images, and a little label noise.
So identity-linked attributes change within a person about as often as CelebA's do (measured by
benchmarks/attribute_identity.py: on the demo data no attribute is fixed within every identity
and the labels alone name the person about 31 % of the time, against 28 % on celeba32).

Faces are drawn with soft-edged signed-distance shapes at `supersample` times img_size, batched
in numpy, then area-downsampled. Identity i draws from np.random.default_rng([seed, 0, i]) and
its image k from np.random.default_rng([seed, 1, i, k]), so images and tables are byte-identical
for the same seed and settings, whatever the order. `attribute_table` gives the labels alone,
without drawing (fast; tests and benchmarks).

Output (dataset/layout.py): public/ and private/ NNNNNN.jpg (running numbers over both folders),
the CSV tables, dataset.json and grid.png (a 256-colour preview, one row per identity). Public
identities are 0..n_public-1, private ones n_public..n_public+n_private-1. --out is relative to
the repository root; the folder is built under a temporary name, checked, and only then renamed
into place. The default 10,500 images take about 40-50 s at 32 px on 2 shared CPU cores.
"""

import colorsys
import time
from io import BytesIO

import numpy as np
from PIL import Image
from tqdm import tqdm

from common import config, io
from dataset import layout
from dataset.validate import check, summary

HP = dict(
    out='dataset/synthetic32',   # output folder (relative to the repository root)
    img_size=32,                 # side of the saved square images, px
    n_public=400,                # public identities: ids 0..n_public-1
    n_private=100,               # private identities: ids n_public..n_public+n_private-1
    images_per_id=20,            # images of every public identity
    private_images_per_id=25,    # images of every private identity (0 = images_per_id); more
                                 #   images let the identity oracle learn them well
    seed=0,                      # same seed + settings -> byte-identical files
    overwrite=False,             # replace an existing --out folder
    supersample=2,               # draw at this multiple of img_size, then area-downsample
    nuisance=0.4,                # scales pose, lighting, colour cast and noise (0 = none); at 1.0
                                 #   no oracle we could train on CPU reached 90 % top-1; 0.4 keeps
                                 #   the demo oracle >= 0.8 now that looks vary per photo
    batch=200,                   # images drawn together (memory vs. speed; not the output)
    grid_ids=8,                  # grid.png: this many identities (rows) ...
    grid_images=8,               # ... times this many images (columns)
)
# what needs more than "finite and >= 0" (common/config.py): counts, learning rates, fractions
RANGES = dict(img_size='>=1', n_public='>=1', n_private='>=1', images_per_id='>=1',
              supersample='>=1', batch='>=1', grid_ids='>=1', grid_images='>=1')
PRESETS = {
    'tiny': dict(out='dataset/tiny', n_public=24, n_private=10, images_per_id=8,
                 private_images_per_id=8, img_size=32),
    'demo': dict(out='dataset/synthetic32', img_size=32),
}
JPEG_QUALITY = 95

ATTRS = ['Male', 'Black_Hair', 'Brown_Hair', 'Blond_Hair', 'Gray_Hair', 'Bald', 'Bangs',
         'Wavy_Hair', 'Pale_Skin', 'Big_Nose', 'Narrow_Eyes', 'Bushy_Eyebrows', 'Mustache',
         'No_Beard', 'Wearing_Lipstick', 'Eyeglasses', 'Smiling', 'Mouth_Slightly_Open',
         'Wearing_Hat', 'Arched_Eyebrows', 'High_Cheekbones', 'Rosy_Cheeks', 'Heavy_Makeup',
         'Straight_Hair', 'Wearing_Earrings', 'Wearing_Necklace']

# --------------------------------------------------------------------------- palettes (sRGB 0..1)
SKIN = [(0.99, 0.88, 0.80), (0.97, 0.84, 0.75),                       # pale (Pale_Skin)
        (0.94, 0.78, 0.66), (0.90, 0.73, 0.60), (0.85, 0.66, 0.52),
        (0.77, 0.58, 0.43), (0.67, 0.49, 0.35), (0.56, 0.39, 0.27),
        (0.45, 0.31, 0.21), (0.35, 0.24, 0.17)]
SKIN_P = [0.10, 0.10, 0.13, 0.13, 0.12, 0.11, 0.09, 0.08, 0.07, 0.07]
N_PALE = 2
HAIR = {
    'black': [(0.07, 0.06, 0.06), (0.13, 0.10, 0.09)],
    'brown': [(0.27, 0.17, 0.10), (0.36, 0.23, 0.13), (0.46, 0.31, 0.18)],
    'blond': [(0.90, 0.78, 0.52), (0.80, 0.65, 0.38), (0.95, 0.88, 0.66)],
    'gray': [(0.72, 0.72, 0.72), (0.56, 0.56, 0.57), (0.88, 0.88, 0.87)],
    'red': [(0.62, 0.27, 0.13), (0.76, 0.40, 0.19)],
}
HAIR_NAMES = list(HAIR)
HAIR_P = [0.33, 0.37, 0.18, 0.07, 0.05]
STYLES = ['short', 'bob', 'long', 'bald']
STYLE_P = {True: [0.62, 0.15, 0.08, 0.15], False: [0.17, 0.35, 0.48, 0.0]}   # by Male
BEARDS = ['none', 'full', 'goatee', 'moustache', 'chinstrap']
BEARD_P = [0.52, 0.18, 0.10, 0.12, 0.08]                                        # men only
IRIS = [(0.32, 0.18, 0.09), (0.14, 0.09, 0.06), (0.28, 0.48, 0.74), (0.30, 0.52, 0.32),
        (0.50, 0.38, 0.18)]
# annotator's thresholds on the continuous sizes (labels: size + annotator noise > threshold)
BIG_NOSE, NARROW, BUSHY, PALE_LUM = 1.3, 0.47, 0.8, 0.875
ANNOTATOR_SD = dict(nose=0.2, eye=0.09, brow=0.18)   # spread of the annotator's call, per image
LABEL_NOISE = 0.012          # any label flipped at random in an image (CelebA's label noise) ...
MALE_NOISE = 0.002           # ... except Male, which CelebA's annotators almost never disagree on
HAIR_UNLABELLED = 0.15       # an image whose hair colour the annotator left blank
LIPSTICK = [(0.80, 0.08, 0.18), (0.68, 0.12, 0.30), (0.90, 0.35, 0.45), (0.55, 0.04, 0.12)]


def _u(r, lo, hi):
    return float(r.uniform(lo, hi))


def make_identity(seed, ident):
    """The fixed look of identity `ident`: a dict of shape/colour numbers (with 'q', the person's
    propensities that make_image draws each photo's appearance from) and the person's usual
    attributes (each image's labels come from make_image)."""
    r = np.random.default_rng([seed, 0, ident])
    male = bool(r.random() < 0.5)
    tone = int(r.choice(len(SKIN), p=SKIN_P))
    skin = np.array(SKIN[tone])
    hname = str(r.choice(HAIR_NAMES, p=HAIR_P))
    hair = np.array(HAIR[hname][r.integers(len(HAIR[hname]))])
    style = str(r.choice(STYLES, p=STYLE_P[male]))
    bangs = style != 'bald' and r.random() < 0.22
    wavy = (style in ('bob', 'long') and r.random() < 0.45) or (style == 'short' and r.random() < 0.2)
    beard = str(r.choice(BEARDS, p=BEARD_P)) if male else 'none'
    lipstick = (not male) and r.random() < 0.85
    # continuous sizes; the labels are an annotator's call on them, image by image (see make_image)
    nose_s = _u(r, 0.8, 1.75) if r.random() < (0.42 if male else 0.3) else _u(r, 0.8, 1.2)
    eye_open = _u(r, 0.45, 1.0)                         # eye height / its maximum
    brow_s = _u(r, 0.0, 1.0) ** (0.8 if male else 1.6)  # 0 thin .. 1 bushy

    p = {}
    p['a'] = _u(r, 0.44, 0.52) + 0.025 * male          # face half-width
    p['b'] = _u(r, 0.60, 0.70)                          # face half-height
    p['jaw'] = _u(r, 0.10, 0.30) if male else _u(r, 0.22, 0.42)   # narrowing towards the chin
    p['skin'] = skin
    p['blush'] = 0.0 if male else _u(r, 0.0, 0.25)
    p['ear_h'] = _u(r, 0.075, 0.11)
    p['ear_w'] = _u(r, 0.05, 0.07)
    p['eye_dx'] = _u(r, 0.17, 0.245)
    p['eye_y'] = _u(r, -0.13, -0.03)
    p['eye_w'] = _u(r, 0.075, 0.10)
    p['eye_h'] = 0.062 * eye_open
    p['iris'] = np.array(IRIS[r.integers(len(IRIS))])
    p['lash'] = 0.028 if not male else 0.014
    p['brow_gap'] = _u(r, 0.045, 0.085)
    p['brow_len'] = _u(r, 0.12, 0.17)
    p['brow_t'] = 0.018 + 0.047 * brow_s
    p['brow_ang'] = _u(r, -0.25, 0.35)
    p['brow_arch'] = _u(r, 0.0, 0.035)
    if hname == 'blond':
        brow = 0.55 * hair + 0.45 * np.array([0.35, 0.24, 0.14])
    else:
        brow = 0.72 * hair
    p['brow_col'] = brow
    ns = nose_s
    p['nose_len'] = 0.12 * ns
    p['nose_w'] = 0.052 * ns
    p['mw'] = _u(r, 0.13, 0.19)
    p['lip_t'] = _u(r, 0.018, 0.03)
    nose_tip = p['eye_y'] + 0.03 + p['nose_len']
    p['my'] = max(_u(r, 0.26, 0.36) * p['b'] / 0.65, nose_tip + p['lip_t'] + 0.07)
    p['lip_nat'] = skin * np.array([0.86, 0.58, 0.56]) * _u(r, 0.9, 1.05)
    p['lip_stick'] = np.array(LIPSTICK[r.integers(len(LIPSTICK))])
    p['lip_col'] = p['lip_nat']
    p['hair'] = hair
    p['hair_vol'] = _u(r, 1.06, 1.16)                  # hair outline / head size
    p['hairline'] = _u(r, -0.56, -0.42) * p['b'] / 0.65
    p['part'] = _u(r, -0.25, 0.25)                     # tilt of the hairline (side part)
    p['long'] = {'long': 1.0, 'bob': 0.5}.get(style, 0.0)
    p['back_len'] = {'long': _u(r, 0.75, 1.3), 'bob': _u(r, 0.25, 0.45)}.get(style, 0.0)
    p['side_k'] = {'long': _u(r, 2.2, 3.0), 'bob': _u(r, 1.8, 2.6)}.get(style, _u(r, 0.9, 1.4))
    p['bald'] = float(style == 'bald')
    p['bangs'] = float(bangs)
    p['bangs_y'] = _u(r, 0.02, 0.06)                   # bangs edge above the brows
    p['wavy'] = float(wavy)
    p['wave_f'] = _u(r, 14.0, 20.0)
    p['wave_ph'] = _u(r, 0, 2 * np.pi)
    p['beard'] = float(beard in ('full', 'chinstrap'))
    p['beard_w'] = 0.80 if beard == 'full' else 0.90   # inner clear ellipse: smaller = fuller
    p['goatee'] = float(beard == 'goatee')
    p['moustache'] = float(beard in ('full', 'goatee', 'moustache'))
    p['beard_col'] = (0.8 * hair) if hname != 'blond' else (0.75 * hair)
    p['beard_kind'] = BEARDS.index(beard)

    # How the look varies from photo to photo (CelebA-like within-identity flip rates, measured
    # by benchmarks/attribute_identity.py): each image draws its hair style, facial hair, makeup,
    # glasses, hat and expression from these per-person propensities; lighting can shift the hair
    # into a neighbouring colour class (dark brown reads black in dim light, light brown blond).
    q = {}
    q['bangs'] = (0.75 if bangs else 0.1) if style != 'bald' else 0.0
    q['wavy'] = {'long': _u(r, 0.15, 0.9), 'bob': _u(r, 0.1, 0.8),
                 'short': _u(r, 0.0, 0.35)}.get(style, 0.0)
    if wavy:
        q['wavy'] = max(q['wavy'], _u(r, 0.6, 0.95))
    q['beard'] = (_u(r, 0.6, 1.0) if beard != 'none' else _u(r, 0.0, 0.08)) if male else 0.0
    q['lipstick'] = _u(r, 0.6, 1.0) if lipstick else (_u(r, 0.0, 0.2) if not male else 0.0)
    q['glasses'] = _u(r, 0.55, 1.0) if r.random() < 0.07 else 0.01
    q['hat'] = _u(r, 0.2, 0.6) if r.random() < 0.08 else 0.012
    q['blush'] = _u(r, 0.0, 0.45) if not male else 0.02
    q['liner'] = _u(r, 0.1, 0.7) if lipstick else 0.0
    q['straight'] = _u(r, 0.1, 0.7) if style in ('long', 'bob') else _u(r, 0.0, 0.3)
    q['earrings'] = _u(r, 0.05, 0.9) if not male else (0.03 if r.random() < 0.8 else 0.4)
    q['necklace'] = _u(r, 0.0, 0.6) if not male else 0.03
    q['smile'] = float(r.beta(2.0, 2.0))
    q['open'] = float(r.beta(1.8, 2.4))
    alt = {'black': 'brown', 'brown': str(r.choice(['black', 'blond'], p=[0.6, 0.4])),
           'blond': 'brown', 'gray': 'gray', 'red': 'brown'}[hname]
    q['hair_alt'] = alt
    q['hair_shift'] = {'black': _u(r, 0.0, 0.6), 'brown': _u(r, 0.0, 0.6), 'blond': _u(r, 0.0, 0.4),
                       'gray': 0.0, 'red': _u(r, 0.0, 0.15)}[hname] * (r.random() < 0.85)
    p['hair_alt'] = np.array(HAIR[alt][r.integers(len(HAIR[alt]))])
    p['q'] = q

    attrs = dict(
        Male=male, Black_Hair=hname == 'black', Brown_Hair=hname == 'brown',
        Blond_Hair=hname == 'blond', Gray_Hair=hname == 'gray', Bald=style == 'bald',
        Bangs=bangs, Wavy_Hair=wavy, Pale_Skin=tone < N_PALE, Big_Nose=nose_s > BIG_NOSE,
        Narrow_Eyes=eye_open < NARROW, Bushy_Eyebrows=brow_s > BUSHY,
        Mustache=beard in ('full', 'goatee', 'moustache'),
        No_Beard=beard in ('none', 'moustache'), Wearing_Lipstick=lipstick)
    p['hair_name'], p['tone'] = hname, tone
    return p, attrs


def _rand_colour(r, s_lo, s_hi, v_lo, v_hi):
    return np.array(colorsys.hsv_to_rgb(r.random(), _u(r, s_lo, s_hi), _u(r, v_lo, v_hi)))


def make_image(seed, ident, k, idp, size, nuisance=1.0):
    """Nuisance and expression of image k of identity `ident`: flat dict of numbers, attributes."""
    r = np.random.default_rng([seed, 1, ident, k])
    n = nuisance
    p = dict(idp)
    q, hname, kind = p.pop('q'), p.pop('hair_name'), p.pop('beard_kind')
    p.pop('tone')
    # small within-identity variation of the fixed look
    for key, sd in (('a', 0.02), ('b', 0.015), ('eye_dx', 0.02), ('mw', 0.03), ('hair_vol', 0.015)):
        p[key] = idp[key] * (1 + float(r.normal(0, sd)))
    p['brow_raise'] = float(r.normal(0, 0.012))
    # pose
    p['cx'] = float(np.clip(r.normal(0, 0.06 * n), -0.16, 0.16))
    p['cy'] = 0.1 + float(np.clip(r.normal(0, 0.05 * n), -0.14, 0.14))
    p['s'] = 1.15 * float(np.exp(np.clip(r.normal(0, 0.07 * n), -0.18, 0.18)))
    rot = float(np.clip(r.normal(0, 0.11 * n), -0.3, 0.3))
    p['cos'], p['sin'] = np.cos(rot), np.sin(rot)
    # this photo's hair style, colour under its light, facial hair and makeup
    bangs = bool(r.random() < q['bangs'])
    p['bangs'] = float(bangs)
    wavy = bool(r.random() < q['wavy'])
    p['wavy'] = float(wavy)
    if r.random() < q['hair_shift']:
        p['hair'] = 0.5 * idp['hair'] + 0.5 * idp['hair_alt']     # halfway: reads as either
        hname = q['hair_alt']
    grow = r.random() < q['beard']                     # keeps his beard / grows one this time
    beard = (kind if kind else int(r.integers(1, len(BEARDS)))) if grow else 0
    bname = BEARDS[beard]
    p['beard'] = float(bname in ('full', 'chinstrap'))
    p['beard_w'] = 0.80 if bname == 'full' else 0.90
    p['goatee'] = float(bname == 'goatee')
    p['moustache'] = float(bname in ('full', 'goatee', 'moustache'))
    lipstick = bool(r.random() < q['lipstick'])
    p['lip_col'] = idp['lip_stick'] if lipstick else idp['lip_nat']
    rosy = bool(r.random() < q['blush'])                # rouge on the cheeks
    p['blush'] = idp['blush'] + 0.3 * rosy
    heavy = lipstick and (rosy or bool(r.random() < q['liner']))
    p['lash'] = 0.042 if heavy else idp['lash']         # eyeliner: thicker lid line
    earrings = bool(r.random() < q['earrings'])
    p['earring'] = float(earrings)
    p['earring_col'] = np.array([(0.85, 0.7, 0.25), (0.8, 0.8, 0.82)][r.integers(2)])
    necklace = bool(r.random() < q['necklace'])
    p['necklace'] = float(necklace)
    p['neck_col'] = np.array([(0.85, 0.7, 0.25), (0.92, 0.92, 0.9),
                              (0.75, 0.1, 0.2)][r.integers(3)])
    # expression and gaze
    smiling = bool(r.random() < q['smile'])
    p['mw'] *= 1.1 if smiling else 1.0                 # a smile widens the mouth ...
    p['lift'] = (_u(r, 0.45, 0.7) if smiling else _u(r, -0.12, 0.10)) * p['mw']   # ... lifts corners
    open_ = bool(r.random() < q['open'])
    p['eye_h'] = idp['eye_h'] * (0.82 if smiling else 1.0) * float(np.exp(r.normal(0, 0.05)))
    p['open'] = _u(r, 0.045, 0.075) if open_ else 0.0
    p['gx'], p['gy'] = float(r.uniform(-0.45, 0.45)), float(r.uniform(-0.3, 0.3))
    # accessories
    glasses = bool(r.random() < q['glasses'])
    p['glasses'] = float(glasses)
    p['frame'] = np.array([(0.05, 0.05, 0.05), (0.25, 0.15, 0.08), (0.55, 0.1, 0.1),
                           (0.6, 0.6, 0.62)][r.integers(4)])
    p['frame_t'] = _u(r, 0.03, 0.045)
    p['lens_a'] = _u(r, 0.82, 0.95) if r.random() < 0.3 else _u(r, 0.0, 0.15)
    p['lens_r'] = _u(r, 0.075, 0.095)
    hat = bool(r.random() < q['hat'])
    p['hat'] = float(hat)
    p['hat_col'] = _rand_colour(r, 0.2, 0.8, 0.15, 0.9)
    p['hat_y'] = idp['hairline'] + _u(r, 0.04, 0.12)
    p['brim'] = float(r.random() < 0.5)
    # scene
    p['bg1'] = _rand_colour(r, 0.05, 0.6, 0.25, 0.97)
    p['bg2'] = np.clip(p['bg1'] + r.normal(0, 0.2, 3), 0, 1)
    g = r.uniform(0, 2 * np.pi)
    p['bg_c'], p['bg_s'] = np.cos(g), np.sin(g)
    p['cloth'] = _rand_colour(r, 0.0, 0.8, 0.1, 0.95)
    p['bright'] = float(np.exp(np.clip(r.normal(0, 0.14 * n), -0.35, 0.3)))
    g = r.uniform(0, 2 * np.pi)
    p['l_c'], p['l_s'] = np.cos(g) * _u(r, 0, 0.35) * n, np.sin(g) * _u(r, 0, 0.35) * n
    p['cast'] = 1 + np.clip(r.normal(0, 0.04 * n, 3), -0.1, 0.1)
    p['jpeg_q'] = int(r.integers(50, 91)) if r.random() < 0.5 * min(n, 1) else 0
    # the annotator's labels: what is drawn, judged with some spread, plus a little noise
    sd = ANNOTATOR_SD
    skin_lum = float(np.dot(idp['skin'], (0.299, 0.587, 0.114))) * p['bright']
    hair_seen = hname if r.random() >= HAIR_UNLABELLED else 'none'
    attrs = dict(
        Male=idp['lash'] < 0.02, Black_Hair=hair_seen == 'black', Brown_Hair=hair_seen == 'brown',
        Blond_Hair=hair_seen == 'blond', Gray_Hair=hair_seen == 'gray', Bald=idp['bald'] > 0,
        Bangs=bangs, Wavy_Hair=wavy, Pale_Skin=skin_lum > PALE_LUM,
        Big_Nose=idp['nose_len'] / 0.12 + r.normal(0, sd['nose']) > BIG_NOSE,
        Narrow_Eyes=p['eye_h'] / 0.062 + r.normal(0, sd['eye']) < NARROW,
        Bushy_Eyebrows=(idp['brow_t'] - 0.018) / 0.047 + r.normal(0, sd['brow']) > BUSHY,
        Mustache=p['moustache'] > 0, No_Beard=p['beard'] == 0 and p['goatee'] == 0,
        Wearing_Lipstick=lipstick, Eyeglasses=glasses, Smiling=smiling,
        Mouth_Slightly_Open=open_, Wearing_Hat=hat,
        Arched_Eyebrows=idp['brow_arch'] / 0.035 + 8 * p['brow_raise'] + r.normal(0, 0.25) > 0.5,
        High_Cheekbones=r.random() < (0.85 if smiling else 0.15),   # a smile lifts the cheeks
        Rosy_Cheeks=rosy, Heavy_Makeup=heavy,
        Wearing_Earrings=earrings, Wearing_Necklace=necklace,
        Straight_Hair=(not wavy) and idp['bald'] == 0 and r.random() < q['straight'])
    flip = r.random(len(ATTRS)) < np.where(np.array(ATTRS) == 'Male', MALE_NOISE, LABEL_NOISE)
    attrs = {a: bool(attrs[a]) != bool(f) for a, f in zip(ATTRS, flip)}
    sigma = np.float32(_u(r, 0.008, 0.03) * n)
    p['noise'] = r.standard_normal((size, size, 3), dtype=np.float32) * sigma   # drawn last
    return p, attrs


def attribute_table(seed, ids, per, nuisance=HP['nuisance']):
    """The labels of images 0..per-1 of identities `ids`, without drawing them (fast):
    (ids N, attrs N x len(ATTRS) 0/1 array), in make_synthetic's order."""
    out_ids, rows = [], []
    for i in ids:
        idp, _ = make_identity(seed, i)
        for k in range(per):
            _, a = make_image(seed, i, k, idp, 1, nuisance)
            out_ids.append(i)
            rows.append([int(a[n]) for n in ATTRS])
    return np.array(out_ids), np.array(rows, np.float32)


# ------------------------------------------------------------------------------------ drawing

def ellipse(u, v, cu, cv, a, b):
    """Approximate signed distance to an axis-aligned ellipse (negative inside)."""
    X = (u - cu) / a
    Y = (v - cv) / b
    r2 = X * X + Y * Y
    g2 = (X / a) ** 2 + (Y / b) ** 2
    return (np.sqrt(r2) - 1) * np.sqrt((r2 + 1e-6) / (g2 + 1e-6 / (a * b)))


def segment(u, v, u0, v0, u1, v1):
    """Distance to the segment (u0,v0)-(u1,v1) and the position t in 0..1 along it."""
    du, dv = u1 - u0, v1 - v0
    t = np.clip(((u - u0) * du + (v - v0) * dv) / (du * du + dv * dv), 0, 1)
    return np.sqrt((u - u0 - t * du) ** 2 + (v - v0 - t * dv) ** 2), t


class Canvas:
    """A batch of images being drawn; coordinates u, v are each image's face frame."""

    def __init__(self, P, H):
        self.P, self.H = P, H
        g = (np.arange(H, dtype=np.float32) + 0.5) / H * 2 - 1
        self.X, self.Y = g[None, None, :], g[None, :, None]
        dx, dy = self.X - P['cx'], self.Y - P['cy']
        self.u = (P['cos'] * dx + P['sin'] * dy) / P['s']
        self.v = (P['cos'] * dy - P['sin'] * dx) / P['s']
        self.px = np.float32(2.0 / H) / P['s']            # face units per drawn pixel
        self.img = np.empty((len(P['cx']), H, H, 3), np.float32)

    def region(self, u0, u1, v0, v1, who=None):
        """A View of the pixels covering face-frame box [u0,u1]x[v0,v1] in the images `who`."""
        P, B = self.P, self.img.shape[0]
        idx = None if who is None else np.flatnonzero(np.ravel(who) > 0)
        if idx is not None and len(idx) == 0:
            return None
        c = [np.broadcast_to(np.ravel(x), (B,)) for x in (u0, u1, v0, v1)]
        cu = np.stack([c[0], c[1], c[0], c[1]], 1)
        cv = np.stack([c[2], c[2], c[3], c[3]], 1)
        s, co, si = (np.ravel(P[k])[:, None] for k in ('s', 'cos', 'sin'))
        x = np.ravel(P['cx'])[:, None] + s * (co * cu - si * cv)
        y = np.ravel(P['cy'])[:, None] + s * (si * cu + co * cv)
        if idx is not None:
            x, y = x[idx], y[idx]
        x, y = (x + 1) * self.H / 2, (y + 1) * self.H / 2
        xs = slice(max(0, int(x.min()) - 2), min(self.H, int(np.ceil(x.max())) + 2))
        ys = slice(max(0, int(y.min()) - 2), min(self.H, int(np.ceil(y.max())) + 2))
        if xs.start >= xs.stop or ys.start >= ys.stop:
            return None
        return View(self, idx, ys, xs)


class View:
    """Part of a Canvas: some images, a rectangle of pixels; u, v and parameters restricted."""

    def __init__(self, cv, idx, ys, xs):
        self.cv, self.idx, self.ys, self.xs = cv, idx, ys, xs
        sel = slice(None) if idx is None else idx
        self.u, self.v = cv.u[sel, ys, xs], cv.v[sel, ys, xs]
        self.px = cv.px if idx is None else cv.px[idx]

    def __getitem__(self, key):
        x = self.cv.P[key]
        return x if self.idx is None else x[self.idx]

    def paint(self, d, col, alpha=None):
        """Cover the pixels with d < 0 by colour col (soft edge one drawn pixel wide)."""
        a = d / self.px
        np.subtract(0.5, a, out=a)
        np.clip(a, 0, 1, out=a)
        if alpha is not None:
            a *= alpha
        img, ys, xs = self.cv.img, self.ys, self.xs
        sub = img[:, ys, xs] if self.idx is None else img[self.idx, ys, xs]
        step = col - sub
        step *= a[..., None]
        sub += step
        if self.idx is not None:
            img[self.idx, ys, xs] = sub


def _stack(params):
    """List of per-image dicts -> dict of float32 arrays shaped (B,1,1) or (B,1,1,3)."""
    out = {}
    for key in params[0]:
        if key in ('noise', 'jpeg_q'):
            continue
        arr = np.asarray([p[key] for p in params], np.float32)
        out[key] = arr.reshape(len(params), 1, 1, *arr.shape[1:])
    return out


def render(params, size, ss):
    """Draw a batch of images (list of make_image dicts) -> uint8 array (B, size, size, 3)."""
    P = _stack(params)
    H = size * ss
    cv = Canvas(P, H)

    a, b = P['a'], P['b']

    # background gradient
    t = (cv.X * P['bg_c'] + cv.Y * P['bg_s']) * 0.35 + 0.5
    cv.img[:] = (P['bg1'] + (P['bg2'] - P['bg1']) * t[..., None])

    # hair behind the head (bob / long)
    w = cv.region(-1.6, 1.6, -1.2, 1.6, P['long'])
    if w is not None:
        ha, hv, bl = w['a'], w['hair_vol'], w['back_len']
        wide = ha * (1.08 + 0.14 * w['long'] + 0.25 * w['long'] * np.clip(w.v, 0, 2))
        wave = w['wavy'] * 0.05 * np.sin(w['wave_f'] * w.v + w['wave_ph'])
        box = np.maximum(np.abs(w.u) - wide - wave, w.v - bl - 0.03 * np.sin(w['wave_f'] * w.u))
        d = np.minimum(ellipse(w.u, w.v, 0, -0.07, ha * hv * 1.03, w['b'] * 1.1), np.maximum(box, -w.v))
        w.paint(d, w['hair'] * 0.8)

    # neck and clothes
    w = cv.region(-1.7, 1.7, 0.1, 2.2)
    if w is not None:
        w.paint(np.maximum(np.abs(w.u) - w['a'] * 0.5, -w.v + 0.2), w['skin'] * 0.8)
        sh = ellipse(w.u, w.v, 0, w['b'] + 0.72, 1.05, 0.5)
        hole = ellipse(w.u, w.v, 0, w['b'] + 0.24, w['a'] * 0.5, 0.2)
        w.paint(np.maximum(sh, -hole), w['cloth'])
    w = cv.region(-0.6, 0.6, b.min() - 0.3, b.max() + 0.3, P['necklace'])
    if w is not None:                  # a chain around the neck, seen below the chin (face on top)
        ring = np.abs(ellipse(w.u, w.v, 0, w['b'] - 0.1, w['a'] * 0.5, 0.15)) - 0.022
        w.paint(np.maximum(ring, w['b'] - 0.1 - w.v), w['neck_col'])

    # ears
    for side in (-1, 1):
        w = cv.region(side * a * 0.8, side * a * 1.25, P['eye_y'] - 0.1, P['eye_y'] + 0.25)
        eu, ev = side * w['a'] * 1.01, w['eye_y'] + 0.1
        w.paint(ellipse(w.u, w.v, eu, ev, w['ear_w'], w['ear_h']), w['skin'] * 0.88)
        w.paint(ellipse(w.u, w.v, eu + side * 0.012, ev, w['ear_w'] * 0.45, w['ear_h'] * 0.6),
                w['skin'] * 0.72, 0.8)
        w.paint(ellipse(w.u, w.v, eu, ev + w['ear_h'] * 0.95, 0.03, 0.03), w['earring_col'],
                w['earring'])

    # skull and face (jaw narrows towards the chin), with a little shading
    w = cv.region(-a * 1.1, a * 1.1, -b * 1.2, b * 1.05)
    fa = w['a'] * (1 - w['jaw'] * np.clip(w.v / w['b'], 0, 1) ** 2)
    face = ellipse(w.u, w.v, 0, 0, fa, w['b'])
    skull = ellipse(w.u, w.v, 0, -0.07, w['a'], w['b'] * 1.04)
    r2 = (w.u / w['a']) ** 2 + (w.v / w['b']) ** 2
    shade = (1.0 - 0.16 * r2)[..., None]
    w.paint(np.minimum(face, skull), w['skin'] * shade)
    cheek = np.minimum(ellipse(w.u, w.v, -w['eye_dx'], w['my'] - 0.12, 0.09, 0.06),
                       ellipse(w.u, w.v, w['eye_dx'], w['my'] - 0.12, 0.09, 0.06))
    w.paint(cheek, np.array([0.92, 0.45, 0.45], np.float32), w['blush'])

    # beards (full / chinstrap: the face minus an inner ellipse; goatee: the chin)
    w = cv.region(-a * 1.1, a * 1.1, P['eye_y'], b * 1.05, P['beard'])
    if w is not None:
        fa = w['a'] * (1 - w['jaw'] * np.clip(w.v / w['b'], 0, 1) ** 2)
        face = ellipse(w.u, w.v, 0, 0, fa, w['b'])
        clear = ellipse(w.u, w.v, 0, w['eye_y'], w['a'] * w['beard_w'], w['my'] - w['eye_y'] + 0.03)
        w.paint(np.maximum(np.maximum(face, -clear), w['eye_y'] + 0.1 - w.v), w['beard_col'], 0.95)
    w = cv.region(-0.3, 0.3, P['my'], b * 1.05, P['goatee'])
    if w is not None:
        fa = w['a'] * (1 - w['jaw'] * np.clip(w.v / w['b'], 0, 1) ** 2)
        d = np.maximum(ellipse(w.u, w.v, 0, w['my'] + 0.12, w['mw'] * 0.75, 0.14),
                       ellipse(w.u, w.v, 0, 0, fa, w['b']))
        w.paint(d, w['beard_col'], 0.95)

    # nose: side shadow, tip, nostrils
    top = P['eye_y'] + 0.03
    tip = top + P['nose_len']
    w = cv.region(-0.15, 0.15, top - 0.02, tip + 0.06)
    wtop = w['eye_y'] + 0.03
    wtip = wtop + w['nose_len']
    dl, _ = segment(w.u, w.v, w['nose_w'] * 0.45, wtop + 0.02, w['nose_w'] * 0.8, wtip - 0.01)
    w.paint(dl - 0.012, w['skin'] * 0.8, 0.6)
    w.paint(ellipse(w.u, w.v, 0, wtip, w['nose_w'], w['nose_len'] * 0.3), w['skin'] * 0.86, 0.8)
    for side in (-1, 1):
        w.paint(ellipse(w.u, w.v, side * w['nose_w'] * 0.55, wtip + 0.012, w['nose_w'] * 0.32,
                        0.014), w['skin'] * 0.45, 0.9)

    # mouth: lips between two curves, dark opening with teeth, moustache above
    w = cv.region(-0.3, 0.3, P['my'] - 0.15, P['my'] + 0.15)
    mw, lt = w['mw'], w['lip_t']
    t = w.u / mw
    wt = np.sqrt(np.clip(1 - t * t, 0, 1))
    top = w['my'] - w['lift'] * t * t             # centre line; corners rise when smiling
    low = top + w['open'] * wt
    side = np.abs(w.u) - mw
    w.paint(np.maximum(np.maximum(top - lt * wt - w.v, w.v - low - lt * 1.2 * wt), side), w['lip_col'])
    hole = np.maximum(np.maximum(top + 0.2 * lt * wt - w.v, w.v - low + 0.2 * lt * wt), side + 0.01)
    w.paint(hole, np.array([0.28, 0.06, 0.07], np.float32), (w['open'] > 0).astype(np.float32))
    teeth = np.maximum(np.maximum(top - w.v, w.v - top - 0.4 * w['open'] * wt), side + 0.03)
    w.paint(teeth, np.array([0.93, 0.92, 0.86], np.float32), (w['open'] > 0) * np.float32(0.9))
    line = np.maximum(np.abs(w.v - top) - 0.006, side + 0.005)
    w.paint(line, w['lip_col'] * 0.35, (w['open'] <= 0) * np.float32(0.9))
    mo = ellipse(w.u, w.v, 0, w['my'] - lt - 0.035, mw * 1.1, 0.032)
    w.paint(mo, w['beard_col'], w['moustache'] * 0.95)

    # eyes: white, iris (gaze), pupil, upper lid line
    for side in (-1, 1):
        w = cv.region(side * P['eye_dx'] - 0.14, side * P['eye_dx'] + 0.14,
                      P['eye_y'] - 0.1, P['eye_y'] + 0.1)
        eu, ev, ew, eh = side * w['eye_dx'], w['eye_y'], w['eye_w'], w['eye_h']
        sclera = ellipse(w.u, w.v, eu, ev, ew, eh)
        w.paint(sclera, np.array([0.95, 0.95, 0.93], np.float32))
        ir = np.minimum(ew * 0.55, 0.05)
        iu, iv = eu + w['gx'] * ew * 0.45, ev + w['gy'] * eh * 0.4
        w.paint(np.maximum(ellipse(w.u, w.v, iu, iv, ir, ir), sclera), w['iris'])
        w.paint(np.maximum(ellipse(w.u, w.v, iu, iv, ir * 0.5, ir * 0.5), sclera),
                np.array([0.03, 0.03, 0.03], np.float32))
        lid = np.maximum(np.abs(sclera + w['lash'] * 0.3) - w['lash'] * 0.5, w.v - ev + 0.1 * eh)
        w.paint(lid, np.array([0.08, 0.06, 0.06], np.float32), 0.9)

    # eyebrows: tapered arched strokes
    for side in (-1, 1):
        by = P['eye_y'] - P['eye_h'] - P['brow_gap']
        w = cv.region(side * P['eye_dx'] - 0.2, side * P['eye_dx'] + 0.2, by - 0.15, by + 0.08)
        by = w['eye_y'] - w['eye_h'] - w['brow_gap'] + w['brow_raise']
        ln, ang = w['brow_len'], w['brow_ang']
        u0, u1 = side * (w['eye_dx'] - 0.45 * ln), side * (w['eye_dx'] + 0.55 * ln)
        v0, v1 = by + 0.3 * ln * np.sin(ang), by - 0.7 * ln * np.sin(ang)
        vv = w.v
        # arch: shift the point down by the arch at its place along the stroke
        _, t = segment(w.u, vv, u0, v0, u1, v1)
        d, t = segment(w.u, vv + w['brow_arch'] * 4 * t * (1 - t), u0, v0, u1, v1)
        w.paint(d - w['brow_t'] * 0.5 * (1 - 0.45 * t), w['brow_col'])

    # hair on the head: inside the outline, above the hairline; bald: a fringe at the sides
    w = cv.region(-a * 1.35, a * 1.35, -b * 1.4, 0.5)
    hv = w['hair_vol']
    oa, ob = w['a'] * hv, w['b'] * (hv + 0.02)
    bump = w['wavy'] * 0.045 * np.sin(w['wave_f'] * w.u + w['wave_ph']) * np.sin(w['wave_f'] * w.v)
    outline = ellipse(w.u, w.v, 0, -0.07, oa, ob) + bump
    hl = w['hairline'] + w['part'] * w.u + w['side_k'] * w.u * w.u
    brow_top = w['eye_y'] - w['eye_h'] - w['brow_gap'] - w['bangs_y']
    fringe = brow_top + 0.012 * np.sin(60 * w.u)
    hl = np.where(w['bangs'] > 0, np.maximum(hl, np.minimum(fringe, brow_top + 0.5 * w.u * w.u)), hl)
    hl = np.minimum(hl, np.where(w['long'] > 0, 0.05 + 0.3 * w['long'], w['eye_y'] + 0.02))
    cap = np.maximum(outline, w.v - hl)
    side_fringe = np.maximum(outline, ellipse(np.abs(w.u), w.v, w['a'] * 1.02, w['eye_y'] - 0.05,
                                              0.06, 0.2))
    d = np.where(w['bald'] > 0, side_fringe, cap)
    strands = 1 + 0.1 * np.sin(70 * w.u + w['wavy'] * 3 * np.sin(25 * w.v))
    sheen = 1 + 0.12 * np.clip(1 - ((w.u + 0.15) ** 2 + (w.v + 0.55) ** 2) * 12, 0, 1)
    w.paint(d, w['hair'] * (strands * sheen)[..., None])

    # glasses: lenses (tinted or dark), rims, bridge, arms
    w = cv.region(-a * 1.05, a * 1.05, P['eye_y'] - 0.15, P['eye_y'] + 0.15, P['glasses'])
    if w is not None:
        lr, ft = w['lens_r'], w['frame_t']
        ev = w['eye_y'] + 0.005
        lw = w['eye_w'] + 0.035
        lenses = np.minimum(ellipse(w.u, w.v, -w['eye_dx'], ev, lw, lr),
                            ellipse(w.u, w.v, w['eye_dx'], ev, lw, lr))
        w.paint(lenses, np.array([0.05, 0.05, 0.07], np.float32), w['lens_a'])
        rims = np.abs(lenses) - ft * 0.5
        inner = w['eye_dx'] - lw
        br, _ = segment(w.u, w.v, -inner, ev - lr * 0.3, inner, ev - lr * 0.3)
        arm_l, _ = segment(w.u, w.v, -w['eye_dx'] - lw, ev - lr * 0.3, -w['a'] * 1.0, ev - 0.02)
        arm_r, _ = segment(w.u, w.v, w['eye_dx'] + lw, ev - lr * 0.3, w['a'] * 1.0, ev - 0.02)
        w.paint(np.minimum(np.minimum(rims, br - ft * 0.4), np.minimum(arm_l, arm_r) - ft * 0.4),
                w['frame'])

    # hats: a crown above the hat line, a band, sometimes a brim
    w = cv.region(-a * 1.6, a * 1.6, -b * 1.6, P['hat_y'] + 0.12, P['hat'])
    if w is not None:
        hy = w['hat_y']
        crown = np.maximum(ellipse(w.u, w.v, 0, hy + 0.02, w['a'] * w['hair_vol'] * 1.1, 0.45),
                           w.v - hy)
        w.paint(crown, w['hat_col'])
        band = np.maximum(crown, hy - 0.07 - w.v)
        w.paint(band, w['hat_col'] * 0.6)
        brim = ellipse(w.u, w.v, 0, hy, w['a'] * 1.5, 0.05)
        w.paint(brim, w['hat_col'] * 0.8, w['brim'])

    # lighting: exposure, directional gradient, colour cast; then downsample, noise
    light = P['bright'] * (1 + cv.X * P['l_c'] + cv.Y * P['l_s'])
    img = cv.img
    img *= light[..., None]
    img *= P['cast']
    B = img.shape[0]
    img = img.reshape(B, size, ss, size, ss, 3).mean((2, 4))
    img += np.stack([p['noise'] for p in params])
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def jpeg_roundtrip(arr, quality):
    """Compress and decode in memory (a nuisance; the saved file is quality JPEG_QUALITY)."""
    buf = BytesIO()
    Image.fromarray(arr).save(buf, format='JPEG', quality=quality)
    buf.seek(0)
    return np.asarray(Image.open(buf).convert('RGB'))


def make_grid(images, rows, cols, pad=2):
    """images[r][c] uint8 HxWx3 -> one PIL image, rows x cols with a white gap."""
    s = images[0][0].shape[0]
    grid = np.full((rows * (s + pad) + pad, cols * (s + pad) + pad, 3), 255, np.uint8)
    for i in range(rows):
        for j in range(cols):
            y, x = pad + i * (s + pad), pad + j * (s + pad)
            grid[y:y + s, x:x + s] = images[i][j]
    return Image.fromarray(grid)


def main(argv=None):
    cfg = config.parse(HP, PRESETS, argv=argv, stage=False, ranges=RANGES, description=__doc__)
    cfg.show('make_synthetic')
    for key in ('img_size', 'n_public', 'n_private', 'images_per_id', 'supersample', 'batch'):
        if cfg[key] < 1:
            raise config.ConfigError(f'--{key} {cfg[key]}: expected a positive integer')
    per_private = cfg.private_images_per_id or cfg.images_per_id
    if per_private < 2:
        raise config.ConfigError('--private_images_per_id must be at least 2 (every private '
                                 'identity needs images in both eval_train and eval_test)')
    out = io.repo_path(cfg.out)
    if out.exists() and not cfg.overwrite:
        raise config.ConfigError(f'{io.rel(out)} already exists; pass --overwrite true to replace it '
                                 'or choose another --out')
    t0 = time.time()
    n_ids = cfg.n_public + cfg.n_private
    per = cfg.images_per_id
    identities = [make_identity(cfg.seed, i) for i in range(n_ids)]
    jobs = [(i, k) for i in range(n_ids)                         # running number = position
            for k in range(per if i < cfg.n_public else per_private)]
    rows = {'public': [], 'private': []}
    gr, gc = min(cfg.grid_ids, cfg.n_public), min(cfg.grid_images, per)
    grid = [[None] * gc for _ in range(gr)]
    with io.atomic_dir(out, overwrite=cfg.overwrite) as tmp:
        for folder in rows:
            (tmp / folder).mkdir()
        bar = tqdm(total=len(jobs), desc='drawing faces', unit='img', mininterval=0.5)
        for start in range(0, len(jobs), cfg.batch):
            chunk = jobs[start:start + cfg.batch]
            numbers = range(start, start + len(chunk))
            made = [make_image(cfg.seed, i, k, identities[i][0], cfg.img_size, cfg.nuisance)
                    for i, k in chunk]
            pixels = render([m[0] for m in made], cfg.img_size, cfg.supersample)
            for number, (i, k), (p, img_attrs), arr in zip(numbers, chunk, made, pixels):
                if p['jpeg_q']:
                    arr = jpeg_roundtrip(arr, p['jpeg_q'])
                folder = 'public' if i < cfg.n_public else 'private'
                name = f'{number:06d}.jpg'
                layout.save_jpeg(arr, tmp / folder / name, quality=JPEG_QUALITY)
                attrs = {**identities[i][1], **img_attrs}
                rows[folder].append((name, i, [int(bool(attrs[a])) for a in ATTRS]))
                if i < gr and k < gc:
                    grid[i][k] = arr
            bar.update(len(chunk))
        bar.close()
        if gr and gc:
            make_grid(grid, gr, gc).quantize(256).save(tmp / 'grid.png', optimize=True)
        settings = {k: cfg[k] for k in ('n_public', 'n_private', 'images_per_id',
                                        'private_images_per_id', 'supersample', 'nuisance')}
        settings.update(jpeg_quality=JPEG_QUALITY, script='dataset/make_synthetic.py')
        layout.write_tables(tmp, rows['public'], rows['private'], ATTRS, img_size=cfg.img_size,
                            source='synthetic', seed=cfg.seed, extra={'generator': settings})
        meta = check(tmp, deep=False)
    dt = time.time() - t0
    every = rows['public'] + rows['private']
    rates = np.mean([r[2] for r in every], 0)
    print('attribute positive rates: ' + ', '.join(f'{a} {x:.2f}' for a, x in zip(ATTRS, rates)))
    print(summary(out, meta))
    print(f'made {len(every)} images of {n_ids} identities ({cfg.n_public} public, '
          f'{cfg.n_private} private) at {cfg.img_size}px in {dt:.1f} s -> {io.rel(out)} '
          f'(grid: {io.rel(out / "grid.png")})')
    return out


if __name__ == '__main__':
    main()
