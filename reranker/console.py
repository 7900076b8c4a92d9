"""How every `lref` command reports bad input: one clear line and exit code 2."""

from __future__ import annotations

import typer
from rich.console import Console

err = Console(stderr=True)


def fail(message: str) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def check_port(option: str, port: int) -> None:
    if not 0 < port < 65536:
        fail(f"{option} must be a TCP port (1-65535), got {port}")


def api_key_from(file, env: str = "LREF_API_KEY") -> str | None:
    """The API key from `file` (it wins) or the environment, or None when neither is given. A
    file that yields no key is refused, never read as "no authentication"; so is a key a client
    cannot send in an HTTP header (non-ASCII, control characters, inner whitespace)."""
    import os
    from pathlib import Path

    if file is None:
        key, where = os.environ.get(env, "").strip(), f"${env}"
        if not key:
            return None
    else:
        try:
            key = Path(file).read_bytes().decode("utf-8").strip()
        except UnicodeDecodeError:
            fail(f"API key file {file}: not text (UTF-8)")
        except OSError as exc:
            fail(f"cannot read the API key file: {exc}")
        where = f"API key file {file}"
        if not key:
            fail(f"{where} holds no key (empty or whitespace only); refusing to run without authentication")
    if not (key.isascii() and key.isprintable()) or any(c.isspace() for c in key):
        fail(f"{where}: the key must be one word of printable ASCII characters (an HTTP header carries it)")
    return key
