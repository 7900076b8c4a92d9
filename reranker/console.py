"""How every `lref` command reports bad input: one clear line and exit code 2."""

from __future__ import annotations

import subprocess

import typer
from rich.console import Console
from rich.markup import escape

err = Console(stderr=True)


def fail(message: str) -> None:
    # one line, whatever the message carries (a YAML parser's or a server's errors span several)
    message = " ".join(part.strip() for part in str(message).splitlines() if part.strip())
    err.print("[bold red]error:[/] " + escape(message), highlight=False, soft_wrap=True)  # user text is no markup
    raise typer.Exit(2)


def check_port(option: str, port: int) -> None:
    if not 0 < port < 65536:
        fail(f"{option} must be a TCP port (1-65535), got {port}")


def bind_problem(host: str, port: int) -> str | None:
    """Why a server could not listen on host:port now, or None. SO_REUSEADDR as uvicorn and the JVM
    bind: a stopped server's TIME_WAIT is not "in use". Checked before a model or a node is loaded."""
    import socket

    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
    except (socket.gaierror, UnicodeError) as exc:
        return f"host {host!r} does not resolve ({exc})"
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            return exc.strerror or str(exc)
    return None


def check_listen(host_option: str, host: str, port_option: str, port: int) -> None:
    check_port(port_option, port)
    if problem := bind_problem(host, port):
        fail(f"cannot listen on {host}:{port} ({host_option} / {port_option}): {problem}")


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


def stop_process(proc, timeout_s: float = 30) -> None:
    """Terminate a child we started (a reranker, a replica) and reap it; killed if it will not stop."""
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
