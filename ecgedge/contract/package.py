"""Model packages (dist folders): the format, the one manifest writer, the one list of hashed files,
read with every check, Ed25519 signatures and trust.

A package is a folder holding manifest.json and the artefacts it lists. manifest.json's "artifacts"
maps every file of the folder (POSIX paths relative to it; manifest.json, manifest.sig and hidden
files or folders — a name starting with "." — excepted) to its SHA-256; `hashed_files` makes that
list for the writer and for the reader alike. manifest.sig is the raw 64-byte Ed25519 signature of
manifest.json's bytes.

Trust (`--trust`) is a PEM public key file, or a folder of them (every `*.pub`: keys in rotation).
A folder may hold a file named `revoked`: one key fingerprint per line (64 hex digits, the SHA-256
of the raw 32-byte Ed25519 public key, as `key_fingerprint` and `edge-keygen` print it; text after
`#` is a comment). A package signed by a revoked key is refused, as is one no trusted key verifies.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ecgedge.errors import PackageError

FORMAT = "ecgedge-package/1"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
MODEL_INT8 = "model_int8.tflite"
REVOKED = "revoked"
REQUIRED_KEYS = ("model_sha256", "artifacts", "input", "outputs")
_NOT_HASHED = {MANIFEST, SIGNATURE}


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def hashed_files(package_dir: str | Path) -> dict[str, str]:
    """{POSIX path relative to the package: SHA-256} of every file the manifest must list: all files
    but manifest.json and manifest.sig at the top, and hidden ones (any part starting with ".")."""
    root = Path(package_dir)
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if not p.is_file() or rel.as_posix() in _NOT_HASHED or any(part.startswith(".") for part in rel.parts):
            continue
        out[rel.as_posix()] = sha256_file(p)
    return out


def json_default(o):
    """json.dumps(default=...) for the numpy values and paths in manifests and reports."""
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"{type(o).__name__} is not JSON-serialisable")


def write_manifest(package_dir: str | Path, manifest: dict) -> Path:
    """Write manifest.json: `manifest` with "format", "artifacts" (`hashed_files`) and "model_sha256"
    (of model_int8.tflite, when there is one) filled in from the folder as it is now. Returns its path."""
    root = Path(package_dir)
    manifest = {**manifest, "format": FORMAT}
    manifest["artifacts"] = hashed_files(root)
    if MODEL_INT8 in manifest["artifacts"]:
        manifest["model_sha256"] = manifest["artifacts"][MODEL_INT8]
    path = root / MANIFEST
    path.write_text(json.dumps(manifest, indent=2, default=json_default) + "\n")
    return path


def _manifest_bytes(root: Path) -> bytes:
    if not root.is_dir():
        raise PackageError(f"package folder {root} does not exist")
    if not (root / MANIFEST).is_file():
        raise PackageError(f"{root} has no {MANIFEST}: not a model package")
    return (root / MANIFEST).read_bytes()


def _parse_manifest(mpath: Path, raw: bytes) -> dict:
    try:
        manifest = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PackageError(f"{mpath} is not valid JSON ({e}); truncated or tampered?") from None
    if not isinstance(manifest, dict):
        raise PackageError(f"{mpath} holds a {type(manifest).__name__}, expected a JSON object")
    fmt = manifest.get("format")
    if fmt != FORMAT:
        raise PackageError(f"{mpath}: format {fmt!r}, expected {FORMAT!r}")
    for key in REQUIRED_KEYS:
        if key not in manifest:
            raise PackageError(f"{mpath} lacks {key!r}")
    return manifest


def read_manifest(package_dir: str | Path) -> tuple[bytes, dict]:
    """(manifest.json's bytes, its object) after the format checks; no artefact is read."""
    root = Path(package_dir)
    raw = _manifest_bytes(root)
    return raw, _parse_manifest(root / MANIFEST, raw)


def read_model(path: str | Path) -> tuple[bytes, dict]:
    """(model_int8.tflite bytes, manifest) of a package folder, the model checked against the manifest's
    model_sha256; a bare .tflite file gives (its bytes, {}). For tools that need the model only (the
    firmware build): `load_package` is the full check."""
    p = Path(path)
    if p.is_file() and p.suffix == ".tflite":
        return p.read_bytes(), {}
    _, manifest = read_manifest(p)
    tfl = p / MODEL_INT8
    if not tfl.is_file():
        raise PackageError(f"{p} has no {MODEL_INT8} (an INT8 model package is expected)")
    data = tfl.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    if sha != manifest["model_sha256"]:
        raise PackageError(f"{tfl}: sha256 {sha[:16]}... differs from the manifest's model_sha256 "
                           f"{str(manifest['model_sha256'])[:16]}...")
    return data, manifest


@dataclass
class OutputInfo:
    name: str
    kind: str  # "logit" | "regression"
    index: int
    threshold: float | None = None
    unit: str | None = None
    tflite_scale: float | None = None
    tflite_zero_point: int | None = None

    @classmethod
    def from_manifest(cls, o: dict, position: int) -> "OutputInfo":
        return cls(name=o["name"], kind=o.get("kind", "regression"), index=int(o.get("index", position)),
                   threshold=o.get("threshold"), unit=o.get("unit"), tflite_scale=o.get("tflite_scale"),
                   tflite_zero_point=o.get("tflite_zero_point"))


@dataclass
class Package:
    path: Path
    manifest: dict
    signed: bool
    unsigned_allowed: bool
    outputs: list[OutputInfo] = field(default_factory=list)
    signer: str | None = None  # fingerprint of the key whose signature verified

    @property
    def model(self) -> str:
        return self.manifest.get("model", "?")

    @property
    def target(self) -> str:
        return self.manifest.get("target", "?")

    @property
    def task(self) -> str | None:
        return self.manifest.get("task")

    @property
    def demo(self) -> bool:
        return bool(self.manifest.get("demo", False))

    @property
    def notice(self) -> str | None:
        """What the weights are and that they are not for clinical use (ecgedge.labels), or None when the
        manifest says nothing (an old package of real-data weights)."""
        from ecgedge.labels import notice_of
        return notice_of(self.manifest)

    @property
    def label(self) -> str | None:
        from ecgedge.labels import from_manifest
        lab = from_manifest(self.manifest)
        return lab.kind if lab else None

    @property
    def model_sha256(self) -> str:
        return self.manifest["model_sha256"]

    @property
    def input(self) -> dict:
        return self.manifest["input"]

    @property
    def sampling_rate(self) -> float:
        return float(self.input["sampling_rate_hz"])

    @property
    def window_samples(self) -> int:
        return int(self.input["window_samples"])

    @property
    def scale_uv(self) -> float:
        from ecgedge.contract.quantization import scale_uv
        return scale_uv(self.input)

    @property
    def preprocessing(self) -> dict | None:
        return self.input.get("preprocessing")

    def file(self, name: str) -> Path:
        return self.path / name

    def has(self, name: str) -> bool:
        return name in self.manifest.get("artifacts", {}) and (self.path / name).is_file()


# ------------------------------------------------------------------------------------------------ keys

def _load_public_key(path: str | Path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        key = serialization.load_pem_public_key(Path(path).read_bytes())
    except FileNotFoundError:
        raise PackageError(f"trust key {path} does not exist") from None
    except ValueError as e:
        raise PackageError(f"trust key {path} is not a PEM public key: {e}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise PackageError(f"trust key {path} is a {type(key).__name__}, expected an Ed25519 public key")
    return key


def _load_private_key(path: str | Path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except FileNotFoundError:
        raise PackageError(f"signing key {path} does not exist") from None
    except (ValueError, TypeError) as e:
        raise PackageError(f"signing key {path} is not an unencrypted PKCS8 PEM private key: {e}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise PackageError(f"signing key {path} is a {type(key).__name__}, expected Ed25519")
    return key


def key_fingerprint(key) -> str:
    """SHA-256 (hex) of an Ed25519 public key's raw 32 bytes; `key` is a key object or a PEM file path."""
    from cryptography.hazmat.primitives import serialization

    if isinstance(key, (str, Path)):
        key = _load_public_key(key)
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def _revoked(folder: Path) -> set[str]:
    path = folder / REVOKED
    if not path.exists():
        return set()
    out = set()
    for n, line in enumerate(path.read_text().splitlines(), 1):
        fp = line.split("#", 1)[0].strip().lower()
        if not fp:
            continue
        if len(fp) != 64 or any(c not in "0123456789abcdef" for c in fp):
            raise PackageError(f"{path} line {n}: {fp[:20]!r} is not a key fingerprint (64 hex digits)")
        out.add(fp)
    return out


def trusted_keys(trust: str | Path) -> tuple[list[tuple[str, object]], set[str]]:
    """([(fingerprint, public key)] trusted, revoked fingerprints) of a key file or a folder of *.pub."""
    t = Path(trust)
    if t.is_dir():
        files = sorted(t.glob("*.pub"))
        if not files:
            raise PackageError(f"trust folder {t} holds no *.pub public key")
        keys = [(key_fingerprint(k), k) for k in map(_load_public_key, files)]
        return keys, _revoked(t)
    key = _load_public_key(t)
    return [(key_fingerprint(key), key)], set()


def verify_signature(package_dir: str | Path, trust: str | Path, manifest_bytes: bytes | None = None) -> str:
    """Fingerprint of the trusted, unrevoked key whose signature manifest.sig is; PackageError otherwise."""
    from cryptography.exceptions import InvalidSignature

    root = Path(package_dir)
    sig_path = root / SIGNATURE
    raw = manifest_bytes if manifest_bytes is not None else (root / MANIFEST).read_bytes()
    sig = sig_path.read_bytes()
    keys, revoked = trusted_keys(trust)
    for fp, key in keys:
        try:
            key.verify(sig, raw)
        except InvalidSignature:
            continue
        if fp in revoked:
            raise PackageError(f"{sig_path}: signed by key {fp[:16]}..., which {Path(trust) / REVOKED} revokes")
        return fp
    what = f"{trust}" if len(keys) == 1 and not Path(trust).is_dir() else f"any of the {len(keys)} keys in {trust}"
    raise PackageError(f"{sig_path}: signature does not verify with {what} "
                       "(manifest tampered or signed by another key)")


def load_package(package_dir: str | Path, trust: str | Path | None = None, allow_unsigned: bool = True) -> Package:
    """Open a package after checking it.

    Every artefact listed in the manifest must exist with the listed SHA-256, and no unlisted file may
    be present (`hashed_files`). With `trust` (a public key file or a folder of them) manifest.sig must
    be a valid Ed25519 signature by a trusted, unrevoked key, unless `allow_unsigned` and the package
    carries no signature at all. Without `trust`, a package is accepted unsigned only if `allow_unsigned`.
    """
    root = Path(package_dir)
    raw = _manifest_bytes(root)
    mpath = root / MANIFEST
    signed, signer = False, None
    if (root / SIGNATURE).exists():
        if trust is None and not allow_unsigned:
            raise PackageError(f"{root} is signed but no --trust public key was given to verify it")
        if trust is not None:  # the signature covers the bytes: checked before they are parsed
            signer = verify_signature(root, trust, raw)
            signed = True
    elif not allow_unsigned:
        raise PackageError(f"{root} is unsigned (no {SIGNATURE}); pass --allow-unsigned to run it anyway")
    manifest = _parse_manifest(mpath, raw)

    listed = manifest["artifacts"]
    if not isinstance(listed, dict) or not listed:
        raise PackageError(f"{mpath}: 'artifacts' must be a non-empty object of file -> sha256")
    present = hashed_files(root)
    for name, want in listed.items():
        if name not in present:
            raise PackageError(f"artefact {name} listed in the manifest is missing from {root}")
        if present[name] != want:
            raise PackageError(f"artefact {name}: sha256 {present[name][:16]}... != manifest {str(want)[:16]}... "
                               "(tampered or truncated)")
    extra = sorted(set(present) - set(listed))
    if extra:
        raise PackageError(f"{root} holds files not in the manifest: {', '.join(extra[:5])}")
    if MODEL_INT8 in present and present[MODEL_INT8] != manifest["model_sha256"]:
        raise PackageError(f"model_sha256 {manifest['model_sha256'][:16]}... does not match {MODEL_INT8}")
    if not isinstance(manifest["outputs"], list) or not manifest["outputs"]:
        raise PackageError(f"{mpath}: 'outputs' must be a non-empty list")
    for i, o in enumerate(manifest["outputs"]):  # a fuzzed manifest: an output without a name was a KeyError
        if not isinstance(o, dict) or not isinstance(o.get("name"), str) or \
                not isinstance(o.get("index", i), int) or isinstance(o.get("index", i), bool):
            raise PackageError(f"{mpath}: output {i} must be an object with a name and an integer index, "
                               f"got {str(o)[:80]}")
    outs = [OutputInfo.from_manifest(o, i) for i, o in enumerate(manifest["outputs"])]
    return Package(root, manifest, signed=signed, unsigned_allowed=not signed, outputs=outs, signer=signer)


def sign_package(package_dir: str | Path, private_key_path: str | Path) -> Path:
    """Write manifest.sig (raw Ed25519 signature of manifest.json's bytes). Returns its path."""
    root = Path(package_dir)
    mpath = root / MANIFEST
    if not mpath.is_file():
        raise PackageError(f"{root} has no {MANIFEST} to sign")
    key = _load_private_key(private_key_path)
    out = root / SIGNATURE
    out.write_bytes(key.sign(mpath.read_bytes()))
    return out


def generate_keypair(out_path: str | Path) -> tuple[Path, Path]:
    """Write an Ed25519 key pair: PKCS8 PEM private key at out_path (mode 0600), public PEM at out_path.pub."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    priv_path = Path(out_path)
    pub_path = priv_path.with_name(priv_path.name + ".pub")
    priv_path.parent.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(priv_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    pub_path.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                        serialization.PublicFormat.SubjectPublicKeyInfo))
    return priv_path, pub_path
