"""Model packages (dist folders): load with hash and Ed25519 signature checks, sign, make keys.

A package's manifest.json holds the SHA-256 of every artefact; manifest.sig is the raw 64-byte
Ed25519 signature of manifest.json's bytes. Anything that does not verify raises PackageError
before a single sample is streamed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from ecgedge.errors import PackageError

MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
FORMAT = "ecgedge-package/1"
_NOT_HASHED = {MANIFEST, SIGNATURE}


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def artifact_hashes(package_dir: str | Path) -> dict[str, str]:
    """SHA-256 of every file in the package except manifest.json / manifest.sig (relative posix keys)."""
    root = Path(package_dir)
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and rel not in _NOT_HASHED and not rel.startswith(".") and "/." not in rel:
            out[rel] = sha256_file(p)
    return out


@dataclass
class OutputInfo:
    name: str
    kind: str  # "logit" | "regression"
    index: int
    threshold: float | None = None
    unit: str | None = None
    tflite_scale: float | None = None
    tflite_zero_point: int | None = None


@dataclass
class Package:
    path: Path
    manifest: dict
    signed: bool
    unsigned_allowed: bool
    outputs: list[OutputInfo] = field(default_factory=list)

    @property
    def model(self) -> str:
        return self.manifest.get("model", "?")

    @property
    def target(self) -> str:
        return self.manifest.get("target", "?")

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
        return float(self.input.get("scale_uv", 1000.0))

    @property
    def preprocessing(self) -> dict | None:
        return self.input.get("preprocessing")

    def file(self, name: str) -> Path:
        return self.path / name

    def has(self, name: str) -> bool:
        return name in self.manifest.get("artifacts", {}) and (self.path / name).is_file()


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


def load_package(package_dir: str | Path, trust: str | Path | None = None, allow_unsigned: bool = True) -> Package:
    """Open a package after checking it.

    Every artefact listed in the manifest must exist with the listed SHA-256, and no unlisted file may
    be present. With `trust` (a public key path) manifest.sig must be a valid Ed25519 signature by that
    key, unless `allow_unsigned` and the package carries no signature at all. Without `trust`, a package
    is accepted unsigned only if `allow_unsigned`.
    """
    root = Path(package_dir)
    mpath = root / MANIFEST
    if not root.is_dir():
        raise PackageError(f"package folder {root} does not exist")
    if not mpath.is_file():
        raise PackageError(f"{root} has no {MANIFEST}: not a model package")
    raw = mpath.read_bytes()
    try:
        manifest = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PackageError(f"{mpath} is not valid JSON ({e}); truncated or tampered?") from None
    if not isinstance(manifest, dict):
        raise PackageError(f"{mpath} holds a {type(manifest).__name__}, expected a JSON object")
    fmt = manifest.get("format")
    if fmt != FORMAT:
        raise PackageError(f"{mpath}: format {fmt!r}, expected {FORMAT!r}")
    for key in ("model_sha256", "artifacts", "input", "outputs"):
        if key not in manifest:
            raise PackageError(f"{mpath} lacks {key!r}")

    sig_path = root / SIGNATURE
    signed = False
    if sig_path.exists():
        if trust is None and not allow_unsigned:
            raise PackageError(f"{root} is signed but no --trust public key was given to verify it")
        if trust is not None:
            from cryptography.exceptions import InvalidSignature

            key = _load_public_key(trust)
            try:
                key.verify(sig_path.read_bytes(), raw)
            except InvalidSignature:
                raise PackageError(f"{sig_path}: signature does not verify with {trust} "
                                   "(manifest tampered or signed by another key)") from None
            signed = True
    elif not allow_unsigned:
        raise PackageError(f"{root} is unsigned (no {SIGNATURE}); pass --allow-unsigned to run it anyway")

    listed = manifest["artifacts"]
    if not isinstance(listed, dict) or not listed:
        raise PackageError(f"{mpath}: 'artifacts' must be a non-empty object of file -> sha256")
    present = artifact_hashes(root)
    for name, want in listed.items():
        if name not in present:
            raise PackageError(f"artefact {name} listed in the manifest is missing from {root}")
        if present[name] != want:
            raise PackageError(f"artefact {name}: sha256 {present[name][:16]}... != manifest {str(want)[:16]}... "
                               "(tampered or truncated)")
    extra = sorted(set(present) - set(listed))
    if extra:
        raise PackageError(f"{root} holds files not in the manifest: {', '.join(extra[:5])}")
    tfl = root / "model_int8.tflite"
    if tfl.is_file() and present.get("model_int8.tflite") != manifest["model_sha256"]:
        raise PackageError(f"model_sha256 {manifest['model_sha256'][:16]}... does not match model_int8.tflite")

    outs = []
    for i, o in enumerate(manifest["outputs"]):
        outs.append(OutputInfo(name=o["name"], kind=o.get("kind", "regression"), index=int(o.get("index", i)),
                               threshold=o.get("threshold"), unit=o.get("unit"), tflite_scale=o.get("tflite_scale"),
                               tflite_zero_point=o.get("tflite_zero_point")))
    return Package(root, manifest, signed=signed, unsigned_allowed=not signed, outputs=outs)


def sign_package(package_dir: str | Path, private_key_path: str | Path) -> Path:
    """Write manifest.sig (raw Ed25519 signature of manifest.json's bytes). Returns its path."""
    root = Path(package_dir)
    mpath = root / MANIFEST
    if not mpath.is_file():
        raise PackageError(f"{root} has no {MANIFEST} to sign")
    key = _load_private_key(private_key_path)
    sig = key.sign(mpath.read_bytes())
    out = root / SIGNATURE
    out.write_bytes(sig)
    return out


def write_manifest(package_dir: str | Path, manifest: dict) -> Path:
    """Fill manifest['artifacts'] from the folder's files and write manifest.json (for tests / export)."""
    root = Path(package_dir)
    manifest = dict(manifest)
    manifest["artifacts"] = artifact_hashes(root)
    if "model_int8.tflite" in manifest["artifacts"]:
        manifest["model_sha256"] = manifest["artifacts"]["model_int8.tflite"]
    manifest.setdefault("format", FORMAT)
    path = root / MANIFEST
    path.write_text(json.dumps(manifest, indent=1))
    return path


def generate_keypair(out_path: str | Path) -> tuple[Path, Path]:
    """Write an Ed25519 key pair: PKCS8 PEM private key at out_path (mode 0600), public PEM at out_path.pub."""
    import os

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
