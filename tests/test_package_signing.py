"""Model packages: every artefact hash checked, Ed25519 signatures required with --trust, keys from edge-keygen."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from ecgedge.contract.package import generate_keypair, load_package, sign_package
from ecgedge.errors import PackageError

_spec = importlib.util.spec_from_file_location("runtime_support", Path(__file__).with_name("runtime_support.py"))
support = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(support)


@pytest.fixture
def pkg(tmp_path):
    return support.copy_package(tmp_path / "pkg")


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    return generate_keypair(d / "a"), generate_keypair(d / "b")


def test_intact_package_loads_and_exposes_contract(pkg):
    p = load_package(pkg)
    assert p.window_samples == 5000 and p.sampling_rate == 500 and [o.name for o in p.outputs] == \
        ["p_k_gt_5_5", "p_k_ge_6_0", "k_mmol"]
    assert p.demo and "not for clinical use" in p.notice and not p.signed


def test_signed_package_verifies_with_its_key(pkg, keys):
    (priv_a, pub_a), _ = keys
    sign_package(pkg, priv_a)
    assert len((pkg / "manifest.sig").read_bytes()) == 64
    assert load_package(pkg, trust=pub_a, allow_unsigned=False).signed


@pytest.mark.parametrize("victim", ["model_int8.tflite", "manifest.json"])
def test_one_flipped_byte_is_refused(pkg, keys, victim):
    (priv_a, pub_a), _ = keys
    sign_package(pkg, priv_a)
    path = pkg / victim
    b = bytearray(path.read_bytes())
    b[len(b) // 2] ^= 1
    path.write_bytes(bytes(b))
    with pytest.raises(PackageError):
        load_package(pkg, trust=pub_a, allow_unsigned=False)
    if victim == "model_int8.tflite":  # the hash check alone catches it too
        with pytest.raises(PackageError, match="model_int8.tflite: sha256"):
            load_package(pkg)


def test_truncated_missing_and_extra_files_refused(pkg):
    tfl = pkg / "model_int8.tflite"
    data = tfl.read_bytes()
    tfl.write_bytes(data[:-10])
    with pytest.raises(PackageError, match="tampered or truncated"):
        load_package(pkg)
    tfl.unlink()
    with pytest.raises(PackageError, match="missing"):
        load_package(pkg)
    tfl.write_bytes(data)
    (pkg / "evil.bin").write_bytes(b"x")
    with pytest.raises(PackageError, match="not in the manifest: evil.bin"):
        load_package(pkg)
    (pkg / "evil.bin").unlink()
    (pkg / "manifest.json").write_text((pkg / "manifest.json").read_text()[:100])
    with pytest.raises(PackageError, match="not valid JSON"):
        load_package(pkg)


def test_other_key_and_unsigned_refused(pkg, keys):
    (priv_a, pub_a), (priv_b, pub_b) = keys
    with pytest.raises(PackageError, match="unsigned"):
        load_package(pkg, trust=pub_a, allow_unsigned=False)
    assert not load_package(pkg, trust=pub_a, allow_unsigned=True).signed
    sign_package(pkg, priv_b)
    with pytest.raises(PackageError, match="does not verify"):
        load_package(pkg, trust=pub_a, allow_unsigned=False)
    with pytest.raises(PackageError, match="not a PEM public key"):
        load_package(pkg, trust=priv_a, allow_unsigned=False)


def test_edge_keygen_cli_writes_pem_pair(tmp_path):
    r = subprocess.run([support.venv_bin("edge-keygen"), "--out", str(tmp_path / "k")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "k").read_text().startswith("-----BEGIN PRIVATE KEY-----")
    assert (tmp_path / "k.pub").read_text().startswith("-----BEGIN PUBLIC KEY-----")
    assert (tmp_path / "k").stat().st_mode & 0o077 == 0
    r = subprocess.run([support.venv_bin("edge-keygen"), "--out", str(tmp_path / "k")], capture_output=True, text=True)
    assert r.returncode == 2 and "exists" in r.stderr


def test_edge_run_refuses_before_streaming(pkg, keys, tmp_path):
    (priv_a, pub_a), (priv_b, _) = keys
    sign_package(pkg, priv_b)
    r = subprocess.run([support.venv_bin("edge-run"), "--model", str(pkg), "--trust", str(pub_a),
                        "--source", "sim://pocket_k?speed=50", "--duration", "20", "--out", str(tmp_path / "s")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "does not verify" in r.stderr
    assert not (tmp_path / "s" / "raw.i16").exists()


def test_one_rule_for_hashed_files_writer_and_reader(pkg):
    """The manifest writer and the verifier use the same list: POSIX paths (sub-folders too), hidden
    files left out (a tool's `.head` stamp does not break a package), manifest.json/.sig not listed."""
    from ecgedge.contract.package import hashed_files, write_manifest

    (pkg / "firmware" / "gen").mkdir(parents=True)
    (pkg / "firmware" / "gen" / "model.c").write_text("/* generated */\n")
    manifest = json.loads((pkg / "manifest.json").read_text())
    write_manifest(pkg, manifest)
    listed = json.loads((pkg / "manifest.json").read_text())["artifacts"]
    assert "firmware/gen/model.c" in listed and "manifest.json" not in listed
    assert listed == hashed_files(pkg)
    (pkg / ".head").write_text("abc\n")                     # hidden: neither listed nor refused
    (pkg / ".cache").mkdir()
    (pkg / ".cache" / "x").write_text("y")
    assert load_package(pkg).manifest["artifacts"] == listed
    (pkg / "firmware" / "gen" / "model.c").write_text("/* changed */\n")
    with pytest.raises(PackageError, match="firmware/gen/model.c: sha256"):
        load_package(pkg)


def test_trust_folder_rotates_keys_and_refuses_revoked_ones(pkg, keys, tmp_path):
    """--trust may be a folder of *.pub keys (rotation); its `revoked` file of fingerprints refuses a key."""
    from ecgedge.contract.package import key_fingerprint

    (priv_a, pub_a), (priv_b, pub_b) = keys
    trust = tmp_path / "trust"
    trust.mkdir()
    (trust / "old.pub").write_bytes(pub_a.read_bytes())
    (trust / "new.pub").write_bytes(pub_b.read_bytes())
    sign_package(pkg, priv_a)
    assert load_package(pkg, trust=trust, allow_unsigned=False).signer == key_fingerprint(pub_a)
    sign_package(pkg, priv_b)
    assert load_package(pkg, trust=trust, allow_unsigned=False).signer == key_fingerprint(pub_b)
    (trust / "revoked").write_text(f"# leaked 2026-11-30\n{key_fingerprint(pub_a)}  # old laptop key\n")
    assert load_package(pkg, trust=trust, allow_unsigned=False).signed          # b is still trusted
    sign_package(pkg, priv_a)
    with pytest.raises(PackageError, match=f"signed by key {key_fingerprint(pub_a)[:16]}.*revoke"):
        load_package(pkg, trust=trust, allow_unsigned=False)
    (trust / "revoked").write_text("not-a-fingerprint\n")
    with pytest.raises(PackageError, match="line 1.*not a key fingerprint"):
        load_package(pkg, trust=trust, allow_unsigned=False)
    (trust / "revoked").unlink()
    (trust / "old.pub").unlink()
    with pytest.raises(PackageError, match="does not verify with any of the 1 keys"):
        load_package(pkg, trust=trust, allow_unsigned=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(PackageError, match="holds no \\*.pub"):
        load_package(pkg, trust=empty, allow_unsigned=False)


def test_edge_run_refuses_a_revoked_key_in_one_line(pkg, keys, tmp_path):
    from ecgedge.contract.package import key_fingerprint

    (priv_a, pub_a), _ = keys
    trust = tmp_path / "trust"
    trust.mkdir()
    (trust / "a.pub").write_bytes(pub_a.read_bytes())
    (trust / "revoked").write_text(key_fingerprint(pub_a) + "\n")
    sign_package(pkg, priv_a)
    r = subprocess.run([support.venv_bin("edge-run"), "--model", str(pkg), "--trust", str(trust),
                        "--source", "sim://pocket_k?speed=50", "--duration", "5", "--out", str(tmp_path / "s")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "revoke" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "s" / "raw.i16").exists()
