#!/usr/bin/env python3
"""Keys and tokens for heartwire's tests, made by libraries independent of the server
(PyJWT and `cryptography`), so that a test of the server's verification is not the
server agreeing with itself.

    python3 tests/peers/jwt_tool.py keys DIR
        Writes private and public PEM keys into DIR: rsa, rsa2 (RSA 2048), rsa1024 (a
        legacy RSA 1024), ec (P-256), ed (Ed25519); each as NAME.pem (private) and
        NAME.pub.pem (public).

    python3 tests/peers/jwt_tool.py mint < SPECS
        SPECS is a JSON list of {"alg": "HS256", "secret": "…"} or
        {"alg": "RS256", "key": "path/to/private.pem"}, each with "claims" (an object,
        as is), optionally "kid", and optionally "exp_in": seconds from now to put in
        the exp claim (so the time spent starting this tool does not shorten a
        token's life). Prints a JSON list of {"token": …, "claims": …}, in order.
        {"forge_hmac": "text", "claims": …} signs HS256 with any text as the secret,
        such as a public key, which PyJWT rightly refuses to do: the token of the
        algorithm-confusion attack, made with the standard library's hmac.

    python3 tests/peers/jwt_tool.py jwks PUBLIC_PEM:KID:ALG ...
        Prints a JWK set with one public key per argument.

Exit status 0 on success, 2 on a usage or setup error (with a sentence on stderr).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

try:
    import jwt
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
except ImportError as err:  # pragma: no cover - the message is the point
    print(
        f"jwt_tool.py: a Python package is missing ({err}); "
        "install tests/peers/requirements.txt (scripts/test does)",
        file=sys.stderr,
    )
    sys.exit(2)


def write_keys(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    keys = {
        "rsa": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "rsa2": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "rsa1024": rsa.generate_private_key(public_exponent=65537, key_size=1024),
        "ec": ec.generate_private_key(ec.SECP256R1()),
        "ed": ed25519.Ed25519PrivateKey.generate(),
    }
    for name, key in keys.items():
        private = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        public = key.public_key().public_bytes(
            serialization.Encoding.PEM,
            serialization.PublicFormat.SubjectPublicKeyInfo,
        )
        (folder / f"{name}.pem").write_bytes(private)
        (folder / f"{name}.pub.pem").write_bytes(public)


def mint(specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    minted = []
    now = int(time.time())
    for spec in specs:
        claims = dict(spec["claims"])
        if "exp_in" in spec:
            claims["exp"] = now + int(spec["exp_in"])
        if "forge_hmac" in spec:
            token = forge_hmac(spec["forge_hmac"], claims)
        else:
            if "secret" in spec:
                key: Any = spec["secret"]
            else:
                key = Path(spec["key"]).read_bytes()
            headers = {"kid": spec["kid"]} if "kid" in spec else None
            with warnings.catch_warnings():
                # The rsa1024 key is short on purpose: tokens of legacy keys are tested.
                warnings.simplefilter("ignore")
                token = jwt.encode(claims, key, algorithm=spec["alg"], headers=headers)
        minted.append({"token": token, "claims": claims})
    return minted


def forge_hmac(secret: str, claims: dict[str, Any]) -> str:
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = b64(json.dumps(claims).encode())
    signing_input = f"{header}.{payload}".encode()
    signature = hmac.new(secret.encode(), signing_input, hashlib.sha256).digest()
    return f"{header}.{payload}.{b64(signature)}"


def jwks(entries: list[str]) -> dict[str, Any]:
    keys = []
    for entry in entries:
        path, kid, alg = entry.split(":")
        public = serialization.load_pem_public_key(Path(path).read_bytes())
        jwk = json.loads(jwt.get_algorithm_by_name(alg).to_jwk(public))
        jwk.update({"kid": kid, "alg": alg, "use": "sig"})
        keys.append(jwk)
    return {"keys": keys}


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[0] == "keys":
        write_keys(Path(argv[1]))
    elif argv == ["mint"]:
        print(json.dumps(mint(json.load(sys.stdin))))
    elif len(argv) >= 2 and argv[0] == "jwks":
        print(json.dumps(jwks(argv[1:])))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
