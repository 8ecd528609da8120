"""A corrupted checkpoint never loads as wrong weights: every zip member's CRC-32 is checked first."""

import zipfile

import numpy as np
import pytest
import torch

from ecgedge.errors import ModelError
from ecgedge.models.zoo import read_checkpoint


def _same(a, b):
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b


def test_flipped_bit_in_a_weight_is_refused(tmp_path):
    path = tmp_path / "ck.pt"
    torch.save({"state_dict": {"w": torch.arange(4096, dtype=torch.float32)}, "meta": {"demo": True}}, path)
    with zipfile.ZipFile(path) as zf:
        info = next(i for i in zf.infolist() if i.filename.endswith("/data/0"))
    raw = bytearray(path.read_bytes())
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)   # the member's data
    raw[start + 1000] ^= 0x10
    path.write_bytes(bytes(raw))
    with pytest.raises(ModelError, match="CRC-32"):
        read_checkpoint(path)


def test_random_bit_flips_never_load_as_different_weights(tmp_path):
    ref_path = tmp_path / "ref.pt"
    torch.save({"state_dict": {"w": torch.randn(64, 32), "b": torch.randn(64)}, "meta": {"demo": True}}, ref_path)
    ref, src = read_checkpoint(ref_path), ref_path.read_bytes()
    rng = np.random.default_rng(0)
    refused = 0
    for _ in range(150):
        raw = bytearray(src)
        raw[int(rng.integers(len(raw)))] ^= 1 << int(rng.integers(8))
        path = tmp_path / "flipped.pt"
        path.write_bytes(bytes(raw))
        try:
            loaded = read_checkpoint(path)
        except ModelError:
            refused += 1
            continue
        assert _same(loaded, ref)     # only flips in bytes that carry no data (zip padding) may load
    assert refused >= 120     # most bytes are data or CRC-checked headers
