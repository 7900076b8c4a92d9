"""How our commands reach an OpenSearch cluster: a user, a password and the CA its TLS
certificate must chain to. Certificates are always checked: nothing here can turn that off.

Every command that talks to OpenSearch (install, load, audit, demo, status) takes the same three
options, or the environment: LREF_OPENSEARCH_USER, LREF_OPENSEARCH_PASSWORD (or
LREF_OPENSEARCH_PASSWORD_FILE) and LREF_OPENSEARCH_CA_CERT.
"""

from __future__ import annotations

import base64
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import typer

from reranker.errors import LrefError

ENV_USER = "LREF_OPENSEARCH_USER"
ENV_PASSWORD = "LREF_OPENSEARCH_PASSWORD"
ENV_PASSWORD_FILE = "LREF_OPENSEARCH_PASSWORD_FILE"
ENV_CA_CERT = "LREF_OPENSEARCH_CA_CERT"

user_option = typer.Option(None, "--user", help=f"OpenSearch user for HTTP basic auth (or env {ENV_USER})")
password_file_option = typer.Option(None, "--password-file", help=f"file holding that user's password "
                                                                  f"(or env {ENV_PASSWORD} / {ENV_PASSWORD_FILE})")
ca_cert_option = typer.Option(None, "--ca-cert", help="PEM file of the CA that signed the cluster's TLS certificate "
                                                      f"(or env {ENV_CA_CERT}; default: the system's CAs)")


class AccessError(LrefError, ValueError):
    pass


@dataclass(frozen=True)
class Access:
    user: Optional[str] = None
    password: Optional[str] = None
    ca_cert: Optional[Path] = None

    def opensearch_kwargs(self) -> dict:
        """For opensearchpy.OpenSearch: certificates checked against ca_cert (or certifi's)."""
        kwargs: dict = {"verify_certs": True}
        if self.user is not None:
            kwargs["http_auth"] = (self.user, self.password or "")
        if self.ca_cert is not None:
            kwargs["ca_certs"] = str(self.ca_cert)
        return kwargs

    def httpx_kwargs(self) -> dict:
        return {"verify": self.ssl_context(), **({"auth": (self.user, self.password or "")} if self.user else {})}

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_cert) if self.ca_cert else None)

    def headers(self) -> dict[str, str]:
        if self.user is None:
            return {}
        token = base64.b64encode(f"{self.user}:{self.password or ''}".encode()).decode()
        return {"Authorization": f"Basic {token}"}


NO_ACCESS = Access()


def read_secret(path: Path, what: str) -> str:
    try:
        secret = path.read_text(encoding="utf-8").strip()
    except UnicodeDecodeError:
        raise AccessError(f"{what} {path}: not text (UTF-8)") from None
    except OSError as exc:
        raise AccessError(f"cannot read the {what}: {exc.strerror or exc} ({path})") from None
    if not secret or "\n" in secret:
        raise AccessError(f"{what} {path} must hold one line, the password")
    return secret


def access_from(user: Optional[str], password_file: Optional[Path], ca_cert: Optional[Path]) -> Access:
    """The options, else the environment; checked now so that a typo is one line, not a TLS error later."""
    user = user or os.environ.get(ENV_USER) or None
    password_file = password_file or (Path(os.environ[ENV_PASSWORD_FILE]) if os.environ.get(ENV_PASSWORD_FILE) else None)
    password = read_secret(password_file, "password file") if password_file else os.environ.get(ENV_PASSWORD) or None
    if password is not None and user is None:
        raise AccessError(f"a password was given but no user: pass --user (or {ENV_USER})")
    if user is not None and password is None:
        raise AccessError(f"--user {user} needs its password: --password-file (or {ENV_PASSWORD} / {ENV_PASSWORD_FILE})")
    if user is not None and (":" in user or not user.isprintable()):
        raise AccessError(f"--user {user!r}: a user name cannot hold ':' or control characters (HTTP basic auth)")
    ca_cert = ca_cert or (Path(os.environ[ENV_CA_CERT]) if os.environ.get(ENV_CA_CERT) else None)
    if ca_cert is not None:
        if not ca_cert.is_file():
            raise AccessError(f"--ca-cert {ca_cert}: no such file")
        try:
            ssl.create_default_context(cafile=str(ca_cert))
        except (ssl.SSLError, OSError, UnicodeDecodeError):
            raise AccessError(f"--ca-cert {ca_cert} is not a PEM certificate") from None
    return Access(user, password, ca_cert)


def tls_problem(exc: BaseException) -> Optional[str]:
    """A certificate check that failed, said in words, or None when `exc` is not one."""
    seen, cause = set(), exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, ssl.SSLCertVerificationError):
            return cause.verify_message or "certificate verify failed"
        if isinstance(cause, ssl.SSLError):
            return cause.reason or str(cause)
        cause = cause.__cause__ or cause.__context__ or next(
            (arg for arg in getattr(cause, "args", ()) if isinstance(arg, BaseException)), None)
    return None
