"""Small fake CelebA and LFW downloads in the official file formats, for the preparer tests."""
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

CELEBA_ATTRS = (
    '5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose '
    'Black_Hair Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee '
    'Gray_Hair Heavy_Makeup High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard '
    'Oval_Face Pale_Skin Pointy_Nose Receding_Hairline Rosy_Cheeks Sideburns Smiling Straight_Hair '
    'Wavy_Hair Wearing_Earrings Wearing_Hat Wearing_Lipstick Wearing_Necklace Wearing_Necktie Young'
).split()

# identity -> image count. Top 3: 10 (6 images), then 3 and 7 (5 each; 12 also has 5 but a larger
# number), so --n_private 3 must pick {10, 3, 7}.
CELEBA_COUNTS = {10: 6, 3: 5, 7: 5, 12: 5, 1: 4, 2: 3, 4: 3, 5: 2, 6: 2, 8: 2, 9: 1, 11: 2}
CELEBA_TOP3 = {10, 3, 7}
ODD_SIZES = [(50, 61), (70, 40), (64, 64), (33, 47)]

LFW_ATTRS = (
    'Male\tAsian\tWhite\tBlack\tBaby\tChild\tYouth\tMiddle Aged\tSenior\tBlack Hair\tBlond Hair\t'
    'Brown Hair\tBald\tNo Eyewear\tEyeglasses\tSunglasses\tMustache\tSmiling\tFrowning\tChubby\t'
    'Blurry\tHarsh Lighting\tFlash\tSoft Lighting\tOutdoor\tCurly Hair\tWavy Hair\tStraight Hair\t'
    'Receding Hairline\tBangs\tSideburns\tFully Visible Forehead\tPartially Visible Forehead\t'
    'Obstructed Forehead\tBushy Eyebrows\tArched Eyebrows\tNarrow Eyes\tEyes Open\tBig Nose\t'
    'Pointy Nose\tBig Lips\tMouth Closed\tMouth Slightly Open\tMouth Wide Open\tTeeth Not Visible\t'
    'No Beard\tGoatee\tRound Jaw\tDouble Chin\tWearing Hat\tOval Face\tSquare Face\tRound Face\t'
    'Color Photo\tPosed Photo\tAttractive Man\tAttractive Woman\tIndian\tGray Hair\tBags Under Eyes\t'
    'Heavy Makeup\tRosy Cheeks\tShiny Skin\tPale Skin\t5 o\' Clock Shadow\tStrong Nose-Mouth Lines\t'
    'Wearing Lipstick\tFlushed Face\tHigh Cheekbones\tBrown Eyes\tWearing Earrings\tWearing Necktie\t'
    'Wearing Necklace'
).split('\t')
# person -> image count. Among the people with attribute rows the top 3 are Alice (4 rows: her
# 5th image has none), then Bob and Carol (4 each; Dora also has 4 but sorts later), so
# --n_private 3 must pick Alice, Bob, Carol. Abe has the most images (6) but no attribute row at
# all, Hal neither: both are public (the private people need attributes).
LFW_COUNTS = {'Abe_Ace': 6, 'Alice_Adams': 5, 'Bob_Brown': 4, 'Carol_Cruz': 4, 'Dora_Dee': 4,
              'Ed_Ek': 1, 'Fay_Fox': 3, 'Gus_Gold': 2, 'Hal_Hu': 2}
LFW_TOP3 = {'Alice_Adams', 'Bob_Brown', 'Carol_Cruz'}
LFW_NO_ATTR_PEOPLE = {'Abe_Ace', 'Hal_Hu'}            # no row in the attribute file (as in LFW)
LFW_NO_ATTR_ROWS = {('Fay_Fox', 3), ('Alice_Adams', 5)}   # single images the file does not cover
LFW_PRIVATE_NO_ATTR = ('Alice_Adams', 5)             # private, no row: dropped


def lfw_has_row(person, num):
    return person not in LFW_NO_ATTR_PEOPLE and (person, num) not in LFW_NO_ATTR_ROWS


def _image(size, seed):
    rng = np.random.default_rng(seed)
    w, h = size
    base = rng.integers(0, 255, 3)
    arr = np.clip(base + rng.integers(-20, 20, (h, w, 3)), 0, 255).astype(np.uint8)
    return Image.fromarray(arr)


def celeba_attr_value(index, j):
    """The +1/-1 of attribute j of the image numbered index."""
    return 1 if (index * 7 + j * 3) % 5 < 2 else -1


def make_celeba(root, img_folder='img_align_celeba', crlf=True, unlabelled=1, png=False, anno=False):
    """A fake official CelebA download under root. Returns {file name: identity} of labelled images.

    Quirks on purpose: CRLF line ends (crlf), runs of spaces, trailing spaces, an attribute-name
    line starting with a blank, images of odd sizes, `unlabelled` extra images without labels.
    anno=True puts the label files in Anno/ and Eval/ as in the official download.
    """
    root = Path(root)
    img_dir = root / img_folder
    img_dir.mkdir(parents=True)
    ids = {}
    k = 0
    for pid, n in CELEBA_COUNTS.items():
        for _ in range(n):
            k += 1
            ids[f'{k:06d}.jpg'] = pid
    for i, name in enumerate(ids):
        img = _image(ODD_SIZES[i % len(ODD_SIZES)], i)
        if png:
            img.save(img_dir / name.replace('.jpg', '.png'))
        else:
            img.save(img_dir / name, quality=92)
    for j in range(unlabelled):
        _image((40, 40), 1000 + j).save(img_dir / f'{900000 + j:06d}.jpg')
    nl = '\r\n' if crlf else '\n'
    anno_dir = root / 'Anno' if anno else root
    eval_dir = root / 'Eval' if anno else root
    anno_dir.mkdir(exist_ok=True)
    eval_dir.mkdir(exist_ok=True)
    (anno_dir / 'identity_CelebA.txt').write_bytes(
        nl.join(f'{n} {p}' for n, p in ids.items()).encode() + nl.encode())
    lines = [f'{len(ids)} ', '  ' + '  '.join(CELEBA_ATTRS) + ' ']
    for i, n in enumerate(ids, 1):
        vals = ' '.join(f'{celeba_attr_value(i, j):2d}' for j in range(len(CELEBA_ATTRS)))
        lines.append(f'{n} {vals}  ')
    (anno_dir / 'list_attr_celeba.txt').write_bytes((nl.join(lines) + nl).encode())
    (eval_dir / 'list_eval_partition.txt').write_text(
        ''.join(f'{n} {i % 3}\n' for i, n in enumerate(ids)))
    return ids


def lfw_score(person, num, j):
    """The score of attribute j of an LFW image (positive = has it)."""
    return ((len(person) * 13 + num * 7 + j * 5) % 11) / 2.0 - 2.6


def make_lfw(root, people_folder='lfw-deepfunneled', with_attr_file=True):
    """A fake LFW download under root: 250x250 images whose central 150x150 is red and the rest
    blue, and lfw_attributes.txt (rows missing as lfw_has_row says -- two people and two single
    images -- and one row for an image that does not exist). Returns {(person, number): path}."""
    root = Path(root)
    people = root / people_folder
    out = {}
    for person, n in LFW_COUNTS.items():
        (people / person).mkdir(parents=True)
        for num in range(1, n + 1):
            arr = np.zeros((250, 250, 3), np.uint8)
            arr[..., 2] = 255
            arr[50:200, 50:200] = (255, 0, 0)
            p = people / person / f'{person}_{num:04d}.jpg'
            Image.fromarray(arr).save(p, quality=95)
            out[(person, num)] = p
    (people / 'Alice_Adams' / 'Thumbs.db').write_bytes(b'junk')   # not an LFW image name
    if with_attr_file:
        lines = ['# Kumar et al. attribute scores (fake)',
                 '#\tperson\timagenum\t' + '\t'.join(LFW_ATTRS)]
        keys = [k for k in out if lfw_has_row(*k)] + [('Zed_Zero', 1)]
        for person, num in keys:
            scores = '\t'.join(f'{lfw_score(person, num, j):.4f}' for j in range(len(LFW_ATTRS)))
            lines.append(f'{person.replace("_", " ")}\t{num}\t{scores}')
        (root / 'lfw_attributes.txt').write_text('\n'.join(lines) + '\n')
    return out


def prepared_celeba(tmp_path, size=16, n_private=3):
    """Run prepare_celeba on a fake CelebA; returns the output folder."""
    from dataset import prepare_celeba
    src = Path(tmp_path) / 'celeba_src'
    make_celeba(src)
    out = Path(tmp_path) / 'prepared'
    prepare_celeba.main(['--src', str(src), '--out', str(out), '--img_size', str(size),
                         '--n_private', str(n_private), '--workers', '1'])
    return out


def copy_dataset(src, dst):
    shutil.copytree(src, dst)
    return Path(dst)
