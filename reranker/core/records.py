"""Text and records that come from outside (requests, command lines, catalogs, judgments): what is
no UTF-8 text is refused with a message that says where, before it reaches a tokenizer or an index."""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterator
from pathlib import Path

from ..errors import LrefError


class RecordError(LrefError, ValueError):
    """A file of records that cannot be read; the message names the file and line."""


def text_problem(text: str) -> str | None:
    """Why `text` is not UTF-8 text the tokenizer can take, or None. Lone surrogates come from
    JSON escapes such as \\ud800 or from undecodable bytes in command-line arguments."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"not valid UTF-8 text (lone surrogate or undecodable byte {text[exc.start]!r} at character {exc.start})"
    return None


def blank(text: str) -> bool:
    """Whether `text` has nothing to read: only whitespace and invisible format characters (zero-
    width space and joiners, BOM, bidi marks: Unicode category Cf), which str.strip() keeps."""
    return all(c.isspace() or unicodedata.category(c) == "Cf" for c in text)


def json_value(text: str | bytes, where: str, error: type[Exception] = RecordError):
    """json.loads, with every way it refuses input raised as `error` naming `where`: not JSON, an
    integer past Python's digit limit (ValueError), nesting past the recursion limit."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"{where}: not JSON ({exc.msg})") from None
    except RecursionError:
        raise error(f"{where}: JSON nested too deeply") from None
    except ValueError:  # int('9' * 5000): CPython refuses to convert more than sys.get_int_max_str_digits()
        raise error(f"{where}: a number with too many digits") from None


def jsonl_objects(path: Path, error: type[Exception] = RecordError) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line of a JSON Lines file. A file that cannot be
    read, or a line that is not UTF-8, not JSON, not an object, or holds a field that is no text,
    raises `error` (the caller's own error type) with a message naming the file and line."""
    try:
        lines = path.read_bytes().splitlines()
    except OSError as exc:
        raise error(f"cannot read {path}: {exc}") from exc
    for number, raw in enumerate(lines, 1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise error(f"{path}:{number}: not UTF-8 (byte 0x{raw[exc.start]:02x} at byte {exc.start + 1})") from None
        if not line.strip():
            continue
        record = json_value(line, f"{path}:{number}", error)
        if not isinstance(record, dict):
            raise error(f"{path}:{number}: expected a JSON object")
        for name, value in record.items():  # a \ud800 escape is valid JSON but no text
            if problem := text_problem(name) or (isinstance(value, str) and text_problem(value)):
                raise error(f"{path}:{number}: {name!r}: {problem}")
        yield number, record
