"""`lref opensearch up --secure`: the opensearch-security plugin with TLS on HTTP and transport and
two users, all generated per state dir (never the plugin's public demo certificates or users).

STATE/security/ (the invoking user's; keys and passwords readable by their owner only):
    ca.pem, ca.key            a throwaway CA, made once per state dir (10 years)
    node.pem, node.key        the node's certificate for 127.0.0.1/localhost, re-issued on every `up`
    admin.password            the admin user (all_access: connectors, models, pipelines, indices)
    lref-search.password      a read-only user: searches (through the pipeline), cannot change anything
The node's config dir gets copies of the certificates and the security plugin's YAML, which the
plugin loads into its index on the first start (plugins.security.allow_default_init_securityindex).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import secrets
import shutil
from pathlib import Path

import yaml

from .access import Access

PLUGIN = "opensearch-security"
# The newest line Maven Central serves opensearch-security for beside ML Commons (not 3.6.0.0).
SECURE_VERSION = "2.19.1"
ADMIN_USER = "admin"
SEARCH_USER = "lref-search"
SEARCH_ROLE = "lref_search"
NODE_CN, ADMIN_CN, ORG = "lref-node", "lref-admin", "lref"
# What the read-only user may do: read any index, search with a pipeline whose rerank step calls
# the ML Commons model (predict runs as the searching user), read cluster state. Nothing else.
SEARCH_PERMISSIONS = {
    "cluster_permissions": ["cluster_composite_ops_ro", "cluster_monitor", "cluster:admin/opensearch/ml/predict"],
    "index_permissions": [{"index_patterns": ["*"], "allowed_actions": ["read"]}],
}


def _write_private(path: Path, data: bytes) -> None:
    """Owner-only from the first byte: created 0600, then replaced atomically."""
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    partial.replace(path)


def _name(common_name: str):
    from cryptography.x509 import Name, NameAttribute
    from cryptography.x509.oid import NameOID

    return Name([NameAttribute(NameOID.ORGANIZATION_NAME, ORG), NameAttribute(NameOID.COMMON_NAME, common_name)])


def dn(common_name: str) -> str:
    """The DN as the plugin compares it (RFC 4514: CN=lref-node,O=lref)."""
    return _name(common_name).rfc4514_string()


def _key():
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem_key(key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    # PKCS#8, unencrypted: the plugin's pemkey_filepath format.
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _certificate(subject: str, key, issuer_name, issuer_key, days: int, ca: bool, server: bool):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID

    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(issuer_name or _name(subject))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False, encipher_only=False,
            decipher_only=False), critical=True)
    else:
        # Transport TLS is mutual: every node is both server and client.
        builder = builder.add_extension(x509.ExtendedKeyUsage(
            [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    return builder.sign(issuer_key or key, hashes.SHA256())


def _pem_cert(cert) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return cert.public_bytes(serialization.Encoding.PEM)


def password_file(security_dir: Path, user: str) -> Path:
    return security_dir / f"{user}.password"


def ensure_identity(security_dir: Path) -> None:
    """The CA and the two passwords, made once per state dir and kept: the security index is
    initialised from them on the first start, and later starts must still match it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    security_dir.mkdir(parents=True, exist_ok=True)
    security_dir.chmod(0o700)
    if not (security_dir / "ca.pem").exists() or not (security_dir / "ca.key").exists():
        key = _key()
        _write_private(security_dir / "ca.key", _pem_key(key))
        ca = _certificate(f"lref throwaway CA {secrets.token_hex(4)}", key, None, None, days=3650, ca=True, server=False)
        (security_dir / "ca.pem").write_bytes(_pem_cert(ca))
    for user in (ADMIN_USER, SEARCH_USER):
        if not password_file(security_dir, user).exists():
            _write_private(password_file(security_dir, user), (secrets.token_urlsafe(24) + "\n").encode())
    ca_key = serialization.load_pem_private_key((security_dir / "ca.key").read_bytes(), password=None)
    ca = x509.load_pem_x509_certificate((security_dir / "ca.pem").read_bytes())
    for name, common_name, server in (("node", NODE_CN, True), ("admin", ADMIN_CN, False)):
        key = _key()  # re-issued on every start: a state dir that outlives a certificate still starts
        _write_private(security_dir / f"{name}.key", _pem_key(key))
        cert = _certificate(common_name, key, ca.subject, ca_key, days=397, ca=False, server=server)
        (security_dir / f"{name}.pem").write_bytes(_pem_cert(cert))


def _bcrypt(password: str) -> str:
    import bcrypt

    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=12)).decode()


def _yaml(path: Path, kind: str, body: dict) -> None:
    path.write_text(yaml.safe_dump({"_meta": {"type": kind, "config_version": 2}, **body}, sort_keys=False))


def write_node_config(conf: Path, security_dir: Path) -> dict[str, object]:
    """Certificates and the plugin's YAML into the node's config dir; returns the opensearch.yml lines."""
    for name in ("ca.pem", "node.pem", "node.key"):
        shutil.copyfile(security_dir / name, conf / name)
    (conf / "node.key").chmod(0o600)
    plugin_conf = conf / PLUGIN  # the plugin's defaults, copied from the distribution; ours replace the demo ones
    passwords = {user: password_file(security_dir, user).read_text().strip() for user in (ADMIN_USER, SEARCH_USER)}
    _yaml(plugin_conf / "internal_users.yml", "internalusers", {
        ADMIN_USER: {"hash": _bcrypt(passwords[ADMIN_USER]), "reserved": True, "description": "lref admin"},
        SEARCH_USER: {"hash": _bcrypt(passwords[SEARCH_USER]), "reserved": False, "description": "lref read-only search"},
    })
    _yaml(plugin_conf / "roles.yml", "roles", {SEARCH_ROLE: {"reserved": False, **SEARCH_PERMISSIONS}})
    _yaml(plugin_conf / "roles_mapping.yml", "rolesmapping", {
        "all_access": {"reserved": False, "users": [ADMIN_USER]},
        SEARCH_ROLE: {"reserved": False, "users": [SEARCH_USER]},
    })
    _yaml(plugin_conf / "config.yml", "config", {"config": {"dynamic": {
        "http": {"anonymous_auth_enabled": False},
        "authc": {"basic_internal_auth_domain": {
            "http_enabled": True, "transport_enabled": True, "order": 0,
            "http_authenticator": {"type": "basic", "challenge": True},
            "authentication_backend": {"type": "intern"},
        }},
    }}})
    return {
        "plugins.security.ssl.transport.pemcert_filepath": "node.pem",
        "plugins.security.ssl.transport.pemkey_filepath": "node.key",
        "plugins.security.ssl.transport.pemtrustedcas_filepath": "ca.pem",
        "plugins.security.ssl.transport.enforce_hostname_verification": "false",
        "plugins.security.ssl.http.enabled": "true",
        "plugins.security.ssl.http.pemcert_filepath": "node.pem",
        "plugins.security.ssl.http.pemkey_filepath": "node.key",
        "plugins.security.ssl.http.pemtrustedcas_filepath": "ca.pem",
        "plugins.security.allow_default_init_securityindex": "true",
        "plugins.security.authcz.admin_dn": f"['{dn(ADMIN_CN)}']",
        "plugins.security.nodes_dn": f"['{dn(NODE_CN)}']",
        "plugins.security.restapi.roles_enabled": "['all_access']",
        "plugins.security.system_indices.enabled": "true",
    }


def access(security_dir: Path, user: str = ADMIN_USER) -> Access:
    """How our own commands reach a node started with --secure."""
    return Access(user, password_file(security_dir, user).read_text().strip(), security_dir / "ca.pem")
