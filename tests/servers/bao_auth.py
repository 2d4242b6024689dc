"""What the Vault auth tests make for themselves: a CA and client certificates, an RSA key
pair and the JWTs it signs, and a small Kubernetes TokenReview endpoint on loopback that
stands in for a cluster's API server (OpenBao's kubernetes method asks it about each login).
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import http.server
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "CertPair",
    "TokenReview",
    "client_certificate",
    "make_ca",
    "rsa_key",
    "service_account_jwt",
    "sign_jwt",
    "token_review",
]


def rsa_key() -> rsa.RSAPrivateKey:
    """A fresh 2048-bit RSA key."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_pem(key: rsa.RSAPrivateKey) -> str:
    """The key's public half as PEM text."""
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


@dataclass
class CertPair:
    """A certificate and its key, written as PEM files (the key 0600)."""

    cert_path: Path
    key_path: Path
    cert: x509.Certificate = field(repr=False)
    key: rsa.RSAPrivateKey = field(repr=False)

    @property
    def pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode()


def _write(pair_dir: Path, name: str, cert: x509.Certificate, key: rsa.RSAPrivateKey) -> CertPair:
    pair_dir.mkdir(parents=True, exist_ok=True)
    cert_path = pair_dir / f"{name}.pem"
    key_path = pair_dir / f"{name}-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return CertPair(cert_path, key_path, cert, key)


def make_ca(where: Path, name: str = "test-ca") -> CertPair:
    """A self-signed CA valid for a day."""
    key = rsa_key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return _write(where, name, cert, key)


def client_certificate(where: Path, ca: CertPair, common_name: str) -> CertPair:
    """A TLS client certificate signed by ``ca``."""
    key = rsa_key()
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    return _write(where, common_name, cert, key)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign_jwt(key: rsa.RSAPrivateKey, claims: dict[str, Any], kid: str = "test") -> str:
    """An RS256 JWT of ``claims`` signed with ``key``."""
    header = {"alg": "RS256", "typ": "JWT", "kid": kid}
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{_b64(signature)}"


def service_account_jwt(key: rsa.RSAPrivateKey, namespace: str, name: str, uid: str) -> str:
    """A JWT shaped like a Kubernetes service-account token (legacy claims)."""
    now = int(time.time())
    return sign_jwt(
        key,
        {
            "iss": "kubernetes/serviceaccount",
            "sub": f"system:serviceaccount:{namespace}:{name}",
            "iat": now,
            "exp": now + 3600,
            "kubernetes.io/serviceaccount/namespace": namespace,
            "kubernetes.io/serviceaccount/secret.name": f"{name}-token",
            "kubernetes.io/serviceaccount/service-account.name": name,
            "kubernetes.io/serviceaccount/service-account.uid": uid,
        },
    )


@dataclass
class TokenReview:
    """A loopback TokenReview endpoint: ``url`` to configure as ``kubernetes_host``.

    It authenticates exactly the JWTs in ``accepted`` (JWT -> (namespace, name, uid)) and
    counts the reviews it answered.
    """

    url: str
    accepted: dict[str, tuple[str, str, str]]
    reviews: list[bool] = field(default_factory=list)


@contextlib.contextmanager
def token_review() -> Iterator[TokenReview]:
    """Serve ``POST /apis/authentication.k8s.io/v1/tokenreviews`` on a free loopback port."""
    state = TokenReview(url="", accepted={})

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            review = json.loads(self.rfile.read(length) or b"{}")
            jwt = str((review.get("spec") or {}).get("token") or "")
            known = state.accepted.get(jwt)
            state.reviews.append(known is not None)
            status: dict[str, Any] = {"authenticated": False}
            if known is not None:
                namespace, name, uid = known
                status = {
                    "authenticated": True,
                    "user": {
                        "username": f"system:serviceaccount:{namespace}:{name}",
                        "uid": uid,
                        "groups": ["system:serviceaccounts"],
                    },
                }
            body = json.dumps(
                {"kind": "TokenReview", "apiVersion": "authentication.k8s.io/v1", "status": status}
            ).encode()
            self.send_response(201)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
