"""Issue 14 leftover : trainAmor, evalTrain, trainDecoder and f2id_train save their data
generator (shuffling, augmentation, latent draws) in the periodic checkpoint and restore it on
--resume. Here f2id_train crashes right after its first periodic checkpoint and is resumed: the
final weights equal an uninterrupted run's bit for bit (without the saved stream the resumed
epochs reshuffle from the seed and differ)."""
import shutil

import pytest
import torch

from common import ckpt
from Feature2ID import f2id_train
from tests.robustness.helpers import stage_args


class Crash(Exception):
    pass


def _weights(params):
    obj = torch.load(params / 'f2id.pt', map_location='cpu', weights_only=True)
    assert obj['done']
    return obj['models']['f2id']['state']


def test_f2id_train_resume_is_bit_identical(tiny, tmp_path, monkeypatch):
    tiny.ensure('enc')
    runs = {}
    for tag in ('ref', 'crashed'):
        params = tmp_path / tag / 'params'
        params.mkdir(parents=True)
        shutil.copy(f'{tiny.params_dir}/enc.pt', params / 'enc.pt')
        runs[tag] = (params, stage_args(tiny, params, tmp=tmp_path / tag) + ['--epochs', '3', '--resume', 'true'])
    f2id_train.main(runs['ref'][1])

    real = ckpt.save

    def save_then_crash(*a, **kw):          # the process dies right after its first checkpoint
        real(*a, **kw)
        if kw.get('done') is False:
            raise Crash
    monkeypatch.setattr(ckpt, 'save', save_then_crash)
    with pytest.raises(Crash):
        f2id_train.main(runs['crashed'][1])
    monkeypatch.setattr(ckpt, 'save', real)
    saved = torch.load(runs['crashed'][0] / 'f2id.pt', map_location='cpu', weights_only=True)
    assert saved['train']['step'] == 1 and 'data' in saved['train']['generators']
    torch.manual_seed(12345)                 # whatever the process did before: the resume restores
    f2id_train.main(runs['crashed'][1])
    ref, got = _weights(runs['ref'][0]), _weights(runs['crashed'][0])
    assert ref.keys() == got.keys()
    for k in ref:
        assert torch.equal(ref[k], got[k]), k
