"""edge-keygen: make an Ed25519 key pair for signing model packages: KEY (private, PKCS8 PEM) and KEY.pub.

Sign with `edge-export ... --sign-key KEY`; require the signature with `edge-run --trust KEY.pub` and
`edge-hil run --trust KEY.pub`.
"""

from __future__ import annotations

import argparse
import sys

from ecgedge.tools import _cli

EXAMPLES = [
    ("edge-keygen --out keys/release", "keys/release (private: keep it off the handheld) and keys/release.pub"),
    ("edge-keygen --out keys/release --force", "replace an existing pair (packages signed by the old key will "
                                               "no longer verify against the new .pub)"),
]


def parser() -> argparse.ArgumentParser:
    p = _cli.make_parser("edge-keygen", __doc__, EXAMPLES, exit_codes={
        _cli.EXIT_OK: "both keys were written",
        _cli.EXIT_USAGE: "the key exists (without --force) or its folder does not"}, notes="", verbose=False)
    p.add_argument("--out", required=True, type=_cli.file_in_existing_dir,
                   help="private key path (PKCS8 PEM); the public key goes to OUT.pub")
    p.add_argument("--force", action="store_true", help="overwrite an existing key")
    return p


def parse(args=None):
    return parser().parse_args(args)


def _run(a) -> int:
    from pathlib import Path

    from ecgedge.contract.package import generate_keypair, key_fingerprint
    from ecgedge.errors import EdgeError

    if Path(a.out).exists() and not a.force:
        raise EdgeError(f"{a.out} exists; pass --force to overwrite it")
    priv, pub = generate_keypair(a.out)
    print(f"private key: {priv}\npublic key:  {pub}\nfingerprint: {key_fingerprint(pub)}  "
          "(a trust folder's `revoked` file lists these to revoke a key)")
    return 0


def main(args=None) -> int:
    a = parse(args)
    sys.exit(_cli.run("edge-keygen", lambda: _run(a), quiet=False))


if __name__ == "__main__":
    main()
