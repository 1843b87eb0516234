"""Every network of the project (paper, appendix Tables X-XIII), in one place.

Each model keeps the keyword arguments that built it in `self.arch`; checkpoints store that dict
beside the weights and `build(arch)` makes the model again, so a checkpoint is self-describing.
Images are float tensors in [0, 1], N x 3 x S x S; `Enc` normalises internally so that the
generator's sigmoid output feeds it directly.
"""
import math

import torch
import torch.nn as nn


def _log2(n, what):
    k = int(round(math.log2(n)))
    if 2 ** k != n:
        raise ValueError(f'{what} must be a power of two, got {n}')
    return k


class Normalize(nn.Module):
    """[0, 1] images -> roughly zero-mean inputs (fixed constants, not learned)."""

    def forward(self, x):
        return (x - 0.5) / 0.25


def _conv(c_in, c_out, k, stride=1):
    return nn.Conv2d(c_in, c_out, k, stride, padding=k // 2, bias=False)


class _Block(nn.Module):
    """torchvision's BasicBlock (expansion 1) or Bottleneck (expansion 4): the same submodules in
    the same order, so state_dict keys and the seeded initialisation match torchvision's."""

    def __init__(self, c_in, planes, stride, downsample, bottleneck):
        super().__init__()
        self.bottleneck = bottleneck    # the stride sits on the 3x3 conv: conv2 here, conv1 in a basic block
        self.conv1 = _conv(c_in, planes, 1, 1) if bottleneck else _conv(c_in, planes, 3, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        if not bottleneck:
            self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv(planes, planes, 3, stride if bottleneck else 1)
        self.bn2 = nn.BatchNorm2d(planes)
        if bottleneck:
            self.conv3 = _conv(planes, planes * 4, 1)
            self.bn3 = nn.BatchNorm2d(planes * 4)
            self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.bottleneck:
            out = self.bn3(self.conv3(self.relu(out)))
        out += x if self.downsample is None else self.downsample(x)
        return self.relu(out)


class _ResNet(nn.Module):
    """torchvision.models.resnet{18..152}(weights=None): written out because importing
    torchvision costs every script ~2.5 s of CPU at start (it pulls in torch._dynamo), and the
    project uses only this. tests/top/test_models.py checks weights and outputs against torchvision."""

    LAYERS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}

    def __init__(self, depth, n_out):
        super().__init__()
        bottleneck, expansion, c_in = depth >= 50, 4 if depth >= 50 else 1, 64
        self.conv1 = nn.Conv2d(3, 64, 7, 2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, padding=1)
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), self.LAYERS[depth])):
            stride = 1 if i == 0 else 2
            down = None
            if stride != 1 or c_in != planes * expansion:
                down = nn.Sequential(_conv(c_in, planes * expansion, 1, stride), nn.BatchNorm2d(planes * expansion))
            blocks = [_Block(c_in, planes, stride, down, bottleneck)]
            c_in = planes * expansion
            blocks += [_Block(c_in, planes, 1, None, bottleneck) for _ in range(n - 1)]
            setattr(self, f'layer{i + 1}', nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * expansion, n_out)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)


def _resnet(depth, n_out):
    if depth not in _ResNet.LAYERS:
        raise ValueError(f'ResNet depth must be one of {sorted(_ResNet.LAYERS)}, got {depth}')
    return _ResNet(depth, n_out)   # trained from scratch


def resnet_tail(net):
    """layer2 ... fc of a torchvision ResNet: the cloud part `f` of the split network."""
    return nn.Sequential(net.layer2, net.layer3, net.layer4, net.avgpool, nn.Flatten(1), net.fc)


class TargetNet(nn.Module):
    """ResNet-18 split after layer1: `Enc` on the edge, `f` in the cloud.

    Enc: 3 x S x S -> 64 x S/4 x S/4 (64 x 16 x 16 at 64 px); f: feature -> n_out logits.
    """

    def __init__(self, n_out, img_size, prune_ratio=0.0):
        super().__init__()
        self.arch = dict(name='TargetNet', n_out=n_out, img_size=img_size)
        net = _resnet(18, n_out)
        self.Enc = nn.Sequential(Normalize(), net.conv1, net.bn1, net.relu, net.maxpool, net.layer1)
        if prune_ratio > 0:     # DISCO (Baselines/disco.py): Enc ends in its channel pruner
            self.arch['prune_ratio'] = prune_ratio
            self.Enc.append(ChannelPruner(64, prune_ratio))
        self.f = resnet_tail(net)
        self.feat_shape = (64, img_size // 4, img_size // 4)

    def forward(self, x):
        return self.f(self.Enc(x))


class FeatureClassifier(nn.Module):
    """A fresh cloud network `f` (ResNet-18 layer2 ... fc) on Enc features.

    Used for Feature2ID (features -> identity) and for the training scenario (the cloud model
    trained on crafted features).
    """

    def __init__(self, n_out, feat_shape):
        super().__init__()
        self.arch = dict(name='FeatureClassifier', n_out=n_out, feat_shape=list(feat_shape))
        if feat_shape[0] != 64:
            raise ValueError(f'FeatureClassifier expects 64-channel ResNet-18 features, got {feat_shape}')
        self.f = resnet_tail(_resnet(18, n_out))

    def forward(self, feat):
        return self.f(feat)


def _up_stack(ch):
    """Transposed conv 5x5 s2 per step through channels `ch`; BN+ReLU between, sigmoid last.

    Shared by G and Dec (the paper's Table XI shape); the layer indices inside the Sequential
    are what checkpoints store, so keep the order.
    """
    layers = []
    for i in range(len(ch) - 1):
        last = i == len(ch) - 2
        layers.append(nn.ConvTranspose2d(ch[i], ch[i + 1], 5, 2, padding=2, output_padding=1,
                                         bias=last))
        layers += [nn.Sigmoid()] if last else [nn.BatchNorm2d(ch[i + 1]), nn.ReLU(True)]
    return nn.Sequential(*layers)


class Generator(nn.Module):
    """G1 of the paper: linear -> BN/ReLU -> transposed convs 5x5 s2 -> sigmoid.

    64 px, width 64: d -> 256x8x8 -> 128 -> 64 -> 3 (as the authors' `newGanGenerator`).
    32 px starts at 4x4; 128 px adds one more up-sampling layer.
    """

    def __init__(self, latent_dim, img_size, width=64):
        super().__init__()
        self.arch = dict(name='Generator', latent_dim=latent_dim, img_size=img_size, width=width)
        self.latent_dim = latent_dim
        n_up = 3 if img_size <= 64 else 4
        self.start = img_size // 2 ** n_up
        _log2(img_size, 'img_size')
        ch = [width * 2 ** (n_up - 1 - i) for i in range(n_up)] + [3]   # e.g. 256,128,64,3
        self.top = ch[0]
        self.fc = nn.Sequential(nn.Linear(latent_dim, ch[0] * self.start ** 2, bias=False),
                                nn.BatchNorm1d(ch[0] * self.start ** 2), nn.ReLU(True))
        self.net = _up_stack(ch)

    def forward(self, z):
        h = self.fc(z).view(z.shape[0], self.top, self.start, self.start)
        return self.net(h)


class Critic(nn.Module):
    """WGAN-GP critic D: conv 5x5 s2 (64, 128, 256, 512 at 64 px) -> conv 4x4 -> score.

    Instance norm (affine) on the inner layers stands in for layer norm, since a gradient
    penalty forbids batch statistics.
    """

    def __init__(self, img_size, width=64):
        super().__init__()
        self.arch = dict(name='Critic', img_size=img_size, width=width)
        n_down = _log2(img_size, 'img_size') - 2            # down to 4 x 4
        layers, c_in = [], 3
        for i in range(n_down):
            c_out = width * 2 ** min(i, 3)
            layers.append(nn.Conv2d(c_in, c_out, 5, 2, padding=2))
            if i > 0:
                layers.append(nn.InstanceNorm2d(c_out, affine=True))
            layers.append(nn.LeakyReLU(0.2, True))
            c_in = c_out
        layers.append(nn.Conv2d(c_in, 1, 4))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x).view(x.shape[0])


class Amortizer(nn.Module):
    """Amor: feature -> latent start point for the inversion.

    conv 4x4 s2 (128, 512, 1024 at width 64) down to 2x2, conv 2x2 -> 512, conv 1x1 -> d;
    batch norm + LeakyReLU(0.2) after each but the last.
    """

    def __init__(self, latent_dim, feat_shape, width=64):
        super().__init__()
        self.arch = dict(name='Amortizer', latent_dim=latent_dim, feat_shape=list(feat_shape),
                         width=width)
        c_in, s = feat_shape[0], feat_shape[1]
        n_down = _log2(s, 'feature size') - 1                 # down to 2 x 2
        mult = [2, 8, 16, 16, 16]
        layers = []
        for i in range(n_down):
            c_out = width * mult[min(i, len(mult) - 1)]
            layers += [nn.Conv2d(c_in, c_out, 4, 2, padding=1), nn.BatchNorm2d(c_out),
                       nn.LeakyReLU(0.2, True)]
            c_in = c_out
        layers += [nn.Conv2d(c_in, width * 8, 2), nn.BatchNorm2d(width * 8), nn.LeakyReLU(0.2, True),
                   nn.Conv2d(width * 8, latent_dim, 1), nn.Flatten(1)]
        self.net = nn.Sequential(*layers)

    def forward(self, feat):
        return self.net(feat)


class Decoder(nn.Module):
    """Dec (black-box attack): flatten -> linear -> 8w x 4 x 4 -> transposed convs -> sigmoid."""

    def __init__(self, feat_shape, img_size, width=64):
        super().__init__()
        self.arch = dict(name='Decoder', feat_shape=list(feat_shape), img_size=img_size, width=width)
        n_up = _log2(img_size, 'img_size') - 2
        ch = [width * 2 ** (n_up - 1 - i) for i in range(n_up)] + [3]    # 512,256,128,64,3 at 64 px
        self.top = ch[0]
        self.fc = nn.Sequential(nn.Flatten(1), nn.Linear(math.prod(feat_shape), ch[0] * 16),
                                nn.BatchNorm1d(ch[0] * 16), nn.ReLU(True))
        self.net = _up_stack(ch)

    def forward(self, feat):
        return self.net(self.fc(feat).view(feat.shape[0], self.top, 4, 4))


class Oracle(nn.Module):
    """The identity evaluator: a ResNet trunk (depth 18 ... 152) and an MLP head.

    The authors use ResNet-152 with head 8192 -> 300 -> 200 -> #ids at 64 px. `stem='small'`
    (3x3 stride-1 first conv) keeps more resolution for 32 px inputs on CPU presets.
    `embed` returns the 200-d penultimate vector used for feature similarity.
    """

    def __init__(self, n_ids, img_size, depth=152, stem='imagenet', head=(300, 200)):
        super().__init__()
        self.arch = dict(name='Oracle', n_ids=n_ids, img_size=img_size, depth=depth, stem=stem,
                         head=list(head))
        net = _resnet(depth, 1)
        if stem == 'small':
            net.conv1 = nn.Conv2d(3, 64, 3, 1, padding=1, bias=False)
        elif stem != 'imagenet':
            raise ValueError(f"stem must be 'imagenet' or 'small', got {stem!r}")
        self.trunk = nn.Sequential(Normalize(), net.conv1, net.bn1, net.relu, net.maxpool,
                                   net.layer1, net.layer2, net.layer3, net.layer4, nn.Flatten(1))
        with torch.no_grad():
            n_flat = self.trunk.eval()(torch.zeros(1, 3, img_size, img_size)).shape[1]
        self.trunk.train()
        dims = [n_flat] + list(head)
        mlp = []
        for a, b in zip(dims[:-1], dims[1:]):
            mlp += [nn.Linear(a, b), nn.BatchNorm1d(b), nn.ReLU(True)]
        self.head = nn.Sequential(*mlp)
        self.logits = nn.Linear(dims[-1], n_ids)

    def embed(self, x):
        return self.head(self.trunk(x))

    def forward(self, x):
        return self.logits(self.embed(x))


class FaceNetOracle(nn.Module):
    """The optional FaceNet oracle: facenet-pytorch's InceptionResnetV1 (512-d embedding, frozen)
    and a retrained logits layer. Inputs are resized to FaceNet's 160 px and standardised as
    FaceNet expects. The package is an optional extra (requirements-facenet.txt)."""

    def __init__(self, n_ids, img_size):
        super().__init__()
        self.arch = dict(name='FaceNetOracle', n_ids=n_ids, img_size=img_size)
        try:
            from facenet_pytorch import InceptionResnetV1
        except ImportError as e:
            raise SystemExit(
                f'error: the FaceNet oracle needs facenet-pytorch ({e}); install the optional '
                'extra with: .venv/bin/pip install --no-deps -r requirements-facenet.txt') from None
        self.net = InceptionResnetV1(pretrained=None, classify=False)
        self.logits = nn.Linear(512, n_ids)

    def embed(self, x):
        x = nn.functional.interpolate(x, size=160, mode='bilinear', align_corners=False)
        return self.net((x * 255 - 127.5) / 128.0)

    def forward(self, x):
        return self.logits(self.embed(x))


class ChannelPruner(nn.Module):
    """DISCO's pruning network (Baselines/disco.py): scores the channels of a feature from the
    feature itself and soft-masks them, mask = sigmoid((score - t) / temperature), t the score at
    the `ratio` quantile of each image's scores, so about `ratio` of the channels are switched off."""

    def __init__(self, channels, ratio, temperature=1 / 30):
        super().__init__()
        self.ratio, self.temperature = ratio, temperature
        self.score = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(channels, channels),
                                   nn.ReLU(), nn.Linear(channels, channels))

    def mask(self, z):
        s = self.score(z)
        t = torch.quantile(s, self.ratio, dim=1, keepdim=True)
        return torch.sigmoid((s - t) / self.temperature)

    def forward(self, z):
        return z * self.mask(z)[:, :, None, None]


class NoiseScale(nn.Module):
    """Shredder's learned noise (Baselines/shredder.py): one scale per feature element; a release
    is f0 + exp(log_scale) * eps with eps ~ N(0, 1) drawn per image."""

    def __init__(self, feat_shape, init=0.0):
        super().__init__()
        # init (the starting log scale, from the data) is not architecture: the weights carry it,
        # so a resume on another device is not refused over a last-digit difference
        self.arch = dict(name='NoiseScale', feat_shape=list(feat_shape))
        self.log_scale = nn.Parameter(torch.full(tuple(feat_shape), float(init)))

    def forward(self, f0, eps):
        return f0 + self.log_scale.exp() * eps


MODELS = {c.__name__: c for c in (TargetNet, FeatureClassifier, Generator, Critic, Amortizer,
                                   Decoder, Oracle, FaceNetOracle, NoiseScale)}


def build(arch):
    """Make a model from the `arch` dict stored in a checkpoint."""
    arch = dict(arch)
    name = arch.pop('name')
    if name not in MODELS:
        raise ValueError(f'unknown model {name!r}; known: {sorted(MODELS)}')
    return MODELS[name](**arch)
