"""The local signing identity for content credentials: a certificate authority and a signing certificate under it,
made on first use in ``<user folder>/credentials`` and reused after.

C2PA refuses a self-signed signing certificate, so there are two: the authority (``ca.pem``, its key in
``ca-key.pem``) issues the signer (``signer.pem``: the signer's key, its certificate and the authority's, in one
file so that a key and its certificate are always written together). The key files are readable by the user only
(0o600). No name of the user or the computer goes into either certificate: every image carries them.

Nobody else trusts this authority: a reader of the image learns that the file is unchanged since it was signed on
some computer running desktop-app, not who made it. ES256 (P-256): small, fast, accepted by every C2PA reader.
``cryptography`` is imported inside the functions (the studio loads without it).
"""

from __future__ import annotations

import datetime
import threading
from pathlib import Path

FOLDER = "credentials"
CA_FILE, CA_KEY_FILE, SIGNER_FILE = "ca.pem", "ca-key.pem", "signer.pem"
KEY_MODE = 0o600
ORGANIZATION = "desktop-app (local)"
CA_NAME, SIGNER_NAME = "desktop-app local certificate authority", "desktop-app local signer"
CA_YEARS, SIGNER_YEARS = 30, 10  # long: an image is checked against the certificate's dates when it is read
RENEW_BEFORE = datetime.timedelta(days=30)

_lock = threading.Lock()
_cache: dict[Path, tuple[bytes, bytes]] = {}


def folder() -> Path:
    from desktop_app.paths import home

    return home() / FOLDER


def signing_identity(where: Path | None = None) -> tuple[bytes, bytes]:
    """(certificate chain PEM: the signer's then the authority's, the signer's private key PEM), made on first use
    in ``where`` (default ``<user folder>/credentials``) and read back after; a signer that expires within a month,
    or a file that cannot be read, is made again (under the same authority when its key is still there).
    Raises OSError when the folder cannot be written."""
    where = Path(where) if where is not None else folder()
    with _lock:
        cached = _cache.get(where)
        if cached is not None:
            return cached
        identity = _read_signer(where / SIGNER_FILE)
        if identity is None:
            identity = _make_signer(where)
        _cache[where] = identity
        return identity


def forget() -> None:
    """Drop what was read (tests that make a new user folder, or remove the files)."""
    with _lock:
        _cache.clear()


# ---- reading --------------------------------------------------------------------------------------------------


def _read_signer(path: Path) -> tuple[bytes, bytes] | None:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        data = path.read_bytes()
        key = serialization.load_pem_private_key(data, password=None)
        certificates = x509.load_pem_x509_certificates(data)
    except (OSError, ValueError, TypeError):
        return None
    if len(certificates) < 2 or _expiring(certificates[0]) or \
            certificates[0].public_key().public_numbers() != key.public_key().public_numbers():
        return None
    return _chain_pem(certificates), _key_pem(key)


def _read_ca(where: Path):
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        data = (where / CA_KEY_FILE).read_bytes()
        key = serialization.load_pem_private_key(data, password=None)
        certificate = x509.load_pem_x509_certificate(data)
    except (OSError, ValueError, TypeError):
        return None
    if _expiring(certificate) or certificate.public_key().public_numbers() != key.public_key().public_numbers():
        return None
    return key, certificate


def _expiring(certificate) -> bool:
    now = datetime.datetime.now(datetime.timezone.utc)
    return certificate.not_valid_after_utc - now < RENEW_BEFORE or certificate.not_valid_before_utc > now


# ---- making ---------------------------------------------------------------------------------------------------


def _make_signer(where: Path) -> tuple[bytes, bytes]:
    from cryptography.hazmat.primitives.asymmetric import ec

    where.mkdir(parents=True, exist_ok=True)
    try:
        where.chmod(0o700)
    except OSError:
        pass
    authority = _read_ca(where) or _make_ca(where)
    ca_key, ca_certificate = authority
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = _signer_certificate(key, ca_key, ca_certificate)
    chain = _chain_pem([certificate, ca_certificate])
    key_pem = _key_pem(key)
    _write(where / SIGNER_FILE, key_pem + chain, KEY_MODE)
    return chain, key_pem


def _make_ca(where: Path):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(CA_NAME)
    identifier = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    certificate = (
        _dated(x509.CertificateBuilder(), CA_YEARS).subject_name(name).issuer_name(name)
        .public_key(key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(identifier, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(identifier), critical=False)
        .sign(key, hashes.SHA256()))
    _write(where / CA_KEY_FILE, _key_pem(key) + _chain_pem([certificate]), KEY_MODE)
    _write(where / CA_FILE, _chain_pem([certificate]), 0o644)  # to add to a trust list, for whoever wants to
    return key, certificate


def _signer_certificate(key, ca_key, ca_certificate):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID

    ca_identifier = ca_certificate.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_KEY_IDENTIFIER).value
    return (
        _dated(x509.CertificateBuilder(), SIGNER_YEARS).subject_name(_name(SIGNER_NAME))
        .issuer_name(ca_certificate.subject).public_key(key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(digital_signature=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_identifier),
                       critical=False)
        .sign(ca_key, hashes.SHA256()))


def _dated(builder, years: int):
    from cryptography import x509

    now = datetime.datetime.now(datetime.timezone.utc)
    return (builder.serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))  # a clock a little behind still accepts it
            .not_valid_after(now + datetime.timedelta(days=365 * years)))


def _name(common_name: str):
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION)])


def _key_usage(**chosen):
    from cryptography import x509

    flags = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
             "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only")
    return x509.KeyUsage(**{flag: chosen.get(flag, False) for flag in flags})


def _key_pem(key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _chain_pem(certificates) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return b"".join(certificate.public_bytes(serialization.Encoding.PEM) for certificate in certificates)


def _write(path: Path, data: bytes, mode: int) -> None:
    from desktop_app.paths import write_atomically

    write_atomically(path, lambda stream: stream.write(data), prefix=f".{path.name}-", mode=mode)
