"""The ES256 key pair both peers sign with (P-256, PEM), shared with the bench driver.

``BENCH_EC_KEY`` names a PEM file holding the private key (the bench writes one per run, so
every process of a run signs with the same key); without it a key is generated in-process.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

__all__ = ["key_pair_pem"]


def key_pair_pem() -> tuple[str, str]:
    """``(private PEM, public PEM)`` of the run's P-256 key."""
    path = os.environ.get("BENCH_EC_KEY")
    if path:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise SystemExit(f"BENCH_EC_KEY={path}: not an EC private key")
    else:
        key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public
