"""Six architecture families a user might bring (none of them ecgedge's Net1D), written the way people
write them: plain ResNet-1D with wide kernels, depthwise-separable with squeeze-excite and hardswish,
dilated causal TCN, CRNN (conv front end + bidirectional GRU), inception-style with concatenation, and a
small MLP. Tiny widths: they are trained for a few epochs in tests and in benchmarks/byom_bench.py."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ResBlock(nn.Module):
    def __init__(self, cin, cout, k=9, stride=1):
        super().__init__()
        self.conv1 = nn.Conv1d(cin, cout, k, stride=stride, padding=k // 2, bias=False)
        self.bn1 = nn.BatchNorm1d(cout)
        self.conv2 = nn.Conv1d(cout, cout, k, padding=k // 2, bias=False)
        self.bn2 = nn.BatchNorm1d(cout)
        self.short = None
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(nn.Conv1d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm1d(cout))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (x if self.short is None else self.short(x)))


class ResNet1D(nn.Module):
    """Plain ResNet-1D, wide kernels (15 in the stem, 9 in the blocks)."""

    def __init__(self, n_out=4, w=8):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv1d(1, w, 15, stride=2, padding=7, bias=False), nn.BatchNorm1d(w), nn.ReLU(),
                                  nn.MaxPool1d(3, stride=2, padding=1))
        self.layer1 = ResBlock(w, w, 9, 2)
        self.layer2 = ResBlock(w, 2 * w, 9, 2)
        self.layer3 = ResBlock(2 * w, 2 * w, 9, 2)
        self.pool = nn.AdaptiveAvgPool1d(1)
        self.fc = nn.Linear(2 * w, n_out)

    def forward(self, x):
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


class SqueezeExcite(nn.Module):
    def __init__(self, c, r=4):
        super().__init__()
        self.fc1 = nn.Linear(c, max(4, c // r))
        self.fc2 = nn.Linear(max(4, c // r), c)

    def forward(self, x):
        s = x.mean(dim=2)
        s = F.hardsigmoid(self.fc2(F.relu(self.fc1(s))))
        return x * s.unsqueeze(-1)


class DSBlock(nn.Module):
    def __init__(self, cin, cout, k=9, stride=2):
        super().__init__()
        self.dw = nn.Conv1d(cin, cin, k, stride=stride, padding=k // 2, groups=cin, bias=False)
        self.bn1 = nn.BatchNorm1d(cin)
        self.act = nn.Hardswish()
        self.se = SqueezeExcite(cin)
        self.pw = nn.Conv1d(cin, cout, 1, bias=False)
        self.bn2 = nn.BatchNorm1d(cout)

    def forward(self, x):
        return self.act(self.bn2(self.pw(self.se(self.act(self.bn1(self.dw(x)))))))


class DSSENet(nn.Module):
    """MobileNet-style: depthwise-separable convolutions, squeeze-excite, hardswish."""

    def __init__(self, n_out=4, w=8):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv1d(1, w, 9, stride=4, padding=4, bias=False), nn.BatchNorm1d(w), nn.Hardswish())
        self.blocks = nn.Sequential(DSBlock(w, 2 * w), DSBlock(2 * w, 2 * w), DSBlock(2 * w, 3 * w))
        self.head = nn.Sequential(nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(3 * w, n_out))

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)))


class TemporalBlock(nn.Module):
    def __init__(self, cin, cout, k, dilation):
        super().__init__()
        self.pad = (k - 1) * dilation
        self.conv1 = nn.Conv1d(cin, cout, k, dilation=dilation)
        self.conv2 = nn.Conv1d(cout, cout, k, dilation=dilation)
        self.act = nn.LeakyReLU(0.1)
        self.drop = nn.Dropout(0.1)
        self.down = nn.Conv1d(cin, cout, 1) if cin != cout else None

    def forward(self, x):
        y = self.drop(self.act(self.conv1(F.pad(x, (self.pad, 0)))))    # causal: pad on the left only
        y = self.drop(self.act(self.conv2(F.pad(y, (self.pad, 0)))))
        return self.act(y + (x if self.down is None else self.down(x)))


class TCN(nn.Module):
    """Dilated causal TCN on a strided front end; classifies from the last step."""

    def __init__(self, n_out=4, w=12):
        super().__init__()
        self.front = nn.Sequential(nn.Conv1d(1, w, 8, stride=8), nn.ReLU(), nn.AvgPool1d(4))
        self.tcn = nn.Sequential(*[TemporalBlock(w, w, 3, d) for d in (1, 2, 4, 8)])
        self.fc = nn.Linear(w, n_out)

    def forward(self, x):
        y = self.tcn(self.front(x))
        return self.fc(y[:, :, -1])


class CRNN(nn.Module):
    """Conv front end (x 64 downsampling) + bidirectional GRU; the last step's state feeds the head."""

    def __init__(self, n_out=4, w=8, hidden=12):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv1d(1, w, 7, stride=4, padding=3), nn.BatchNorm1d(w), nn.ReLU(), nn.MaxPool1d(4),
            nn.Conv1d(w, 2 * w, 5, stride=2, padding=2), nn.BatchNorm1d(2 * w), nn.ReLU(), nn.MaxPool1d(2))
        self.gru = nn.GRU(2 * w, hidden, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(2 * hidden, n_out)

    def forward(self, x):
        y, _ = self.gru(self.conv(x).permute(0, 2, 1))
        return self.fc(y[:, -1])


class InceptionModule(nn.Module):
    def __init__(self, cin, branch=4):
        super().__init__()
        self.bottleneck = nn.Conv1d(cin, branch, 1, bias=False)
        self.b1 = nn.Conv1d(branch, branch, 9, padding=4, bias=False)
        self.b2 = nn.Conv1d(branch, branch, 19, padding=9, bias=False)
        self.b3 = nn.Conv1d(branch, branch, 39, padding=19, bias=False)
        self.pool = nn.MaxPool1d(3, stride=1, padding=1)
        self.b4 = nn.Conv1d(cin, branch, 1, bias=False)
        self.bn = nn.BatchNorm1d(4 * branch)

    def forward(self, x):
        z = self.bottleneck(x)
        y = torch.cat([self.b1(z), self.b2(z), self.b3(z), self.b4(self.pool(x))], dim=1)
        return F.relu(self.bn(y))


class InceptionNet(nn.Module):
    """InceptionTime-style: parallel kernels of 9 / 19 / 39 and a pool branch, concatenated."""

    def __init__(self, n_out=4, branch=4):
        super().__init__()
        self.front = nn.Sequential(nn.Conv1d(1, 8, 9, stride=4, padding=4), nn.BatchNorm1d(8), nn.ReLU(),
                                   nn.MaxPool1d(4))
        self.inc1 = InceptionModule(8, branch)
        self.down = nn.MaxPool1d(2)
        self.inc2 = InceptionModule(4 * branch, branch)
        self.gap = nn.AdaptiveAvgPool1d(1)
        self.fc = nn.Linear(4 * branch, n_out)

    def forward(self, x):
        y = self.inc2(self.down(self.inc1(self.front(x))))
        return self.fc(self.gap(y).squeeze(-1))


class MLP(nn.Module):
    """Small MLP over an averaged-down window."""

    def __init__(self, n_out=4, window=3000, pool=10, hidden=48):
        super().__init__()
        self.pool = nn.AvgPool1d(pool)
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(window // pool, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
                                 nn.Dropout(0.2), nn.Linear(hidden, hidden // 2), nn.Tanh(), nn.Linear(hidden // 2, n_out))

    def forward(self, x):
        return self.net(self.pool(x))


FAMILIES = {"resnet1d": ResNet1D, "dsse": DSSENet, "tcn": TCN, "crnn": CRNN, "inception": InceptionNet, "mlp": MLP}


# The contract every family is exported with (PhysioNet/CinC 2017: 300 Hz, 10 s, four classes as logits);
# the tests and benchmarks/byom_bench.py fill in the name.
CONTRACT = """name = "{name}"
task = "multiclass"

[input]
signal = "ecg"
lead = "I"
sampling_rate_hz = 300
window_samples = 3000
units = "uV"
scale_uv = 1000.0

[labels]
reference = "REFERENCE.csv"
classes = ["N", "A", "O", "~"]
""" + "".join(f'\n[[outputs]]\nname = "{c}"\nkind = "logit"\n' for c in ("N", "A", "O", "noisy"))
