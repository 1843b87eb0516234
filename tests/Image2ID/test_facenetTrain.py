"""The optional FaceNet oracle, with random InceptionResnetV1 weights (no download)."""
import pytest
import torch

facenet_pytorch = pytest.importorskip('facenet_pytorch')

from common import ckpt
from dataset import loader
from Image2ID import facenetTrain
from Image2ID.evalTrain import load_oracle


def test_facenet_oracle_retrains_logits_and_loads_for_scoring(tiny, tmp_path):
    tiny.ensure('data')
    torch.manual_seed(0)
    weights = tmp_path / 'random_vggface2.pt'
    net = facenet_pytorch.InceptionResnetV1(pretrained=None, classify=True, num_classes=8631)
    torch.save(net.state_dict(), weights)
    res = facenetTrain.main(tiny.args + ['--weights', str(weights), '--epochs', '1'])
    assert 0.0 <= res['top1'] <= res['top5'] <= 1.0
    meta = loader.load_meta(tiny.data_dir)
    oracle = load_oracle(tiny.cfg(), meta, 'cpu', 'facenet')
    x = torch.rand(2, 3, meta['img_size'], meta['img_size'])
    assert oracle(x).shape == (2, res['n_ids']) and oracle.embed(x).shape == (2, 512)
    assert ckpt.path(tiny.cfg(), 'facenet.pkl').exists()


def test_missing_weight_file_is_a_clear_error(tiny, tmp_path):
    with pytest.raises(SystemExit) as e:
        facenetTrain.main(tiny.args + ['--weights', str(tmp_path / 'nope.pt')])
    assert 'not found' in str(e.value.code) and '--weights' in str(e.value.code)
    with pytest.raises(SystemExit) as e:
        facenetTrain.main(tiny.args)
    assert '--weights PATH is required' in str(e.value.code)
