"""edge-keygen: make an Ed25519 key pair for signing model packages (KEY private, KEY.pub public)."""

from __future__ import annotations

import argparse
import sys

from ecgedge.errors import EdgeError


def parse(args=None):
    p = argparse.ArgumentParser(prog="edge-keygen", description=__doc__)
    p.add_argument("--out", required=True, help="private key path (PKCS8 PEM); the public key goes to OUT.pub")
    p.add_argument("--force", action="store_true", help="overwrite an existing key")
    return p.parse_args(args)


def main(args=None) -> int:
    a = parse(args)
    from pathlib import Path

    from ecgedge.contract.package import generate_keypair, key_fingerprint

    try:
        if Path(a.out).exists() and not a.force:
            raise EdgeError(f"{a.out} exists; pass --force to overwrite it")
        priv, pub = generate_keypair(a.out)
    except EdgeError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    print(f"private key: {priv}\npublic key:  {pub}\nfingerprint: {key_fingerprint(pub)}  "
          "(a trust folder's `revoked` file lists these to revoke a key)")
    return 0


if __name__ == "__main__":
    main()
