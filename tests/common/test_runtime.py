"""common/runtime.py: same seed, same CPU result; run tags; the device a stage resolves."""
import pytest
import torch

from common import config, runtime
from models import Generator


def cfg_with(**kw):
    return config.parse({}, {}, [f'--{k}={v}' for k, v in kw.items()])


def test_same_seed_same_result_on_cpu():
    def run(seed):
        runtime.seed_everything(seed)
        G = Generator(16, 32, 8)
        return G(torch.randn(2, 16))
    assert torch.equal(run(3), run(3))
    assert not torch.equal(run(3), run(4))


def test_run_tag():
    assert runtime.run_tag(cfg_with(params_dir='params')) == 'default'
    assert runtime.run_tag(cfg_with(params_dir='params/demo')) == 'demo'


def test_device_auto_cpu_and_a_missing_cuda():
    assert runtime.resolve_device('cpu') == torch.device('cpu')
    assert runtime.resolve_device('auto').type == ('cuda' if torch.cuda.is_available() else 'cpu')
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit, match='--device cpu'):
            runtime.resolve_device('cuda')


def test_the_gpu_switches_are_gone():
    """--amp, --channels_last and --compile were never run on a GPU: no stage takes them."""
    cfg = cfg_with()
    assert not {'amp', 'channels_last', 'compile'} & set(cfg)
    with pytest.raises(config.ConfigError, match='unknown option --amp'):
        config.parse({}, {}, ['--amp', 'true'])
