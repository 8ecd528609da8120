"""Net1D: shapes, SAME padding, the max-pool + channel-pad shortcut, ECGFounder's semantics."""

import torch
import torch.nn.functional as F

from ecgedge.models.net1d import BasicBlock, MyConv1dPadSame, MyMaxPool1dPadSame, Net1D, same_padding


def small_net(n_classes=3, **kw):
    args = dict(in_channels=1, base_filters=8, ratio=1, filter_list=[8, 16, 32], m_blocks_list=[1, 2, 1],
                kernel_size=9, stride=2, groups_width=8, n_classes=n_classes, use_bn=True, use_do=True)
    args.update(kw)
    return Net1D(**args)


def test_output_shape_and_time_reduction():
    torch.manual_seed(0)
    net = small_net().eval()
    x = torch.randn(2, 1, 5000)
    assert net(x).shape == (2, 3)
    assert net.features(x).shape == (2, 32)
    # stem stride 2, then stride 2 in each stage's first block: 5000 -> 2500 -> 1250 -> 625 -> 313
    lengths = []
    hooks = [s.register_forward_hook(lambda m, i, o: lengths.append(o.shape[-1])) for s in net.stage_list]
    net(x)
    for h in hooks:
        h.remove()
    assert lengths == [1250, 625, 313]


def test_same_padding_splits_left_floor_right_rest():
    assert same_padding(5000, 16, 2) == (7, 7)
    assert same_padding(10, 4, 1) == (1, 2)
    assert same_padding(9, 16, 2) == (7, 8)
    assert same_padding(10, 1, 1) == (0, 0)


def test_conv_pad_same_matches_explicit_padding():
    torch.manual_seed(1)
    conv = MyConv1dPadSame(2, 4, kernel_size=4, stride=1)
    x = torch.randn(1, 2, 10)
    ref = F.conv1d(F.pad(x, (1, 2)), conv.conv.weight, conv.conv.bias)
    assert torch.equal(conv(x), ref)
    # a kernel that picks its first tap shows the left pad is one sample: y[i] = x[i - 1], y[0] = 0
    pick = MyConv1dPadSame(1, 1, kernel_size=4, stride=1)
    with torch.no_grad():
        pick.conv.weight.zero_()
        pick.conv.weight[0, 0, 0] = 1.0
        pick.conv.bias.zero_()
    x = torch.arange(1.0, 11.0).view(1, 1, 10)
    assert pick(x).flatten().tolist() == [0.0] + list(range(1, 10))
    strided = MyConv1dPadSame(1, 3, kernel_size=16, stride=2)
    assert strided(torch.randn(1, 1, 4999)).shape[-1] == 2500


def test_max_pool_pads_with_zeros_not_minus_inf():
    pool = MyMaxPool1dPadSame(kernel_size=2)
    x = torch.tensor([[[-1.0, -2.0, -3.0, -4.0, -5.0]]])
    # pad one zero on the right, pool pairs: (-1,-2) (-3,-4) (-5,0)
    assert pool(x).flatten().tolist() == [-1.0, -3.0, 0.0]


def test_shortcut_pools_and_pads_channels_between_halves():
    torch.manual_seed(2)
    block = BasicBlock(in_channels=4, out_channels=9, ratio=1, kernel_size=3, stride=2, groups=1,
                       downsample=True, use_bn=True, use_do=False).eval()
    with torch.no_grad():  # silence the residual branch: conv3 outputs 0, so the block returns its shortcut
        block.conv3.conv.weight.zero_()
        block.conv3.conv.bias.zero_()
    x = torch.randn(1, 4, 11)
    y = block(x)
    pooled = F.max_pool1d(F.pad(x, (0, 1)), 2)
    assert y.shape == (1, 9, 6)
    assert torch.equal(y[:, 2:6], pooled)         # ch1 = (9 - 4) // 2 = 2 zero channels before
    assert torch.count_nonzero(y[:, :2]) == 0
    assert torch.count_nonzero(y[:, 6:]) == 0     # ch2 = 3 after


def test_residual_branch_is_squeeze_excited():
    torch.manual_seed(3)
    block = BasicBlock(in_channels=8, out_channels=8, ratio=1, kernel_size=3, stride=1, groups=2,
                       downsample=False, use_bn=False, use_do=False).eval()
    x = torch.randn(2, 8, 20)
    h = block.conv1(x * torch.sigmoid(x))
    h = block.conv2(h * torch.sigmoid(h))
    h = block.conv3(h * torch.sigmoid(h))
    s = block.se_fc1(h.mean(-1))
    s = torch.sigmoid(block.se_fc2(s * torch.sigmoid(s)))
    assert block.se_fc1.out_features == 4  # reduction 2
    assert torch.allclose(block(x), h * s[:, :, None] + x, atol=1e-6)


def test_groups_follow_groups_width_and_first_block_skips_preactivation():
    net = small_net()
    conv2 = net.stage_list[2].block_list[0].conv2.conv
    assert conv2.groups == 32 // 8 and conv2.weight.shape == (32, 8, 9)
    assert net.stage_list[0].block_list[0].is_first_block
    assert not net.stage_list[1].block_list[0].is_first_block
    assert net.first_conv.conv.stride == (2,)


def test_eval_output_ignores_dropout_and_bn_switch_changes_output():
    torch.manual_seed(4)
    net = small_net().eval()
    x = torch.randn(1, 1, 1000)
    assert torch.equal(net(x), net(x))
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.fill_(0.5)
    no_bn = small_net(use_bn=False).eval()
    no_bn.load_state_dict(net.state_dict())
    assert not torch.allclose(net(x), no_bn(x))
