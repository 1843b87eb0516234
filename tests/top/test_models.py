"""models.py's ResNet and common/plots.make_grid are torchvision's, written out so that no script
imports torchvision (~2.5 s of CPU at every start): same weights from the same seed, same outputs,
same grids, and no stage script pulls torchvision in."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import models
from common.plots import make_grid

torchvision = pytest.importorskip('torchvision')
ROOT = Path(__file__).resolve().parents[2]


def trunk(net, x):
    for m in (net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3,
              net.layer4, net.avgpool):
        x = m(x)
    return net.fc(torch.flatten(x, 1))


@pytest.mark.parametrize('depth', [18, 50])
def test_resnet_is_torchvisions_weight_for_weight(depth):
    torch.manual_seed(3)
    ref = getattr(torchvision.models, f'resnet{depth}')(weights=None, num_classes=7)
    torch.manual_seed(3)
    ours = models._resnet(depth, 7)
    a, b = ref.state_dict(), ours.state_dict()
    assert list(a) == list(b)
    assert all(torch.equal(a[k], b[k]) for k in a)
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(ref(x), trunk(ours, x))


def test_make_grid_is_torchvisions():
    for n, nrow in ((5, 3), (8, 8), (3, 8), (1, 1)):
        im = torch.rand(n, 3, 6, 5)
        assert torch.equal(make_grid(im, nrow), torchvision.utils.make_grid(im, nrow=nrow, padding=1, pad_value=1))


def test_no_stage_imports_torchvision():
    code = ('import sys, runpy; sys.argv = ["x", "--help"]\n'
            'for s in ["Crafter_protection/featureCrafter.py", "evaluate.py", "Image2ID/evalTrain.py"]:\n'
            '    try: runpy.run_path(s, run_name="__main__")\n'
            '    except SystemExit: pass\n'
            'print("torchvision" in sys.modules)')
    out = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == 'False'
