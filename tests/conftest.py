
import pytest


class TinyRun:
    """A tiny synthetic dataset and the stages run on it once per test session.

    `ensure(stage)` runs a stage's main() (and what it needs) at the tiny preset, once;
    tests then check that its outputs exist and are usable by the next stage.
    """

    ORDER = {
        'data': [], 'enc': ['data'], 'eval': ['data'], 'gan': ['data'], 'amor': ['enc', 'gan'],
        'attack': ['amor', 'eval'], 'dec': ['enc', 'eval'], 'f2id': ['enc'],
        'attacker_id': ['data'], 'f2id_public': ['enc'],
    }

    def __init__(self, root):
        self.root = root
        self.data_dir = str(root / 'data')
        self.params_dir = str(root / 'params')
        self.args = ['--preset', 'tiny', '--data_dir', self.data_dir, '--params_dir', self.params_dir,
                     '--results_dir', str(root / 'results'), '--crafted_dir', str(root / 'crafted')]
        self.done = {}

    def ensure(self, stage):
        if stage in self.done:
            return self.done[stage]
        for dep in self.ORDER[stage]:
            self.ensure(dep)
        self.done[stage] = self._run(stage)
        return self.done[stage]

    def _run(self, stage):
        if stage == 'data':
            from dataset import make_synthetic
            return make_synthetic.main(['--preset', 'tiny', '--out', self.data_dir])
        if stage == 'enc':
            from Crafter_protection import trainTargetNet as s
        elif stage == 'eval':
            from Image2ID import evalTrain as s
        elif stage == 'attacker_id':
            from Image2ID import evalTrain as s
            return s.main(self.args + ['--split', 'public', '--name', 'attacker_id.pkl'])
        elif stage == 'gan':
            from WhiteBoxAttack import train_gan as s
        elif stage == 'amor':
            from WhiteBoxAttack import trainAmor as s
        elif stage == 'attack':
            from WhiteBoxAttack import attacker as s
        elif stage == 'dec':
            from BlackBoxAttack import trainDecoder as s
        elif stage == 'f2id':
            from Feature2ID import f2id_train as s
        elif stage == 'f2id_public':
            from Feature2ID import f2id_train as s
            return s.main(self.args + ['--split', 'public'])
        return s.main(self.args)

    def cfg(self, **extra):
        """A config as the stages see it (for loading checkpoints in tests)."""
        from common import config
        return config.parse({k: v for k, v in extra.items()}, {}, self.args)


@pytest.fixture(scope='session')
def tiny(tmp_path_factory):
    return TinyRun(tmp_path_factory.mktemp('tiny'))
