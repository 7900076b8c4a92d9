"""Every sub-command, fed generated bad arguments and bad files (Hypothesis): each case must end in
exit code 2 with one line on stderr and no traceback, start no process, and write nothing outside
the files the case itself made.

Each case is a valid base command line with one thing spoiled: an option given a value out of its
range or of the wrong kind, a file option or argument pointing at garbage bytes, deep nesting,
huge numbers, a bad URL; for `lref train`, a config whose field has a value of the wrong type. The
commands run in this process (typer's CliRunner): every check they make comes before anything
heavy. In case a bad value were accepted anyway, what would start something (a node, a model
server, a reranker process, training) is replaced by a call that fails the test with its name."""

from __future__ import annotations

import dataclasses
import json
import os
import typing
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from conftest import free_port
from lref.cli import app

EXAMPLES = 60  # per command (derandomized: the same cases every run); 500 each also passed, in 71 s

# -- bad values --------------------------------------------------------------------------------
NOT_A_PORT = st.one_of(st.integers(max_value=0), st.integers(min_value=65536, max_value=2**63)).map(str)
NOT_POSITIVE = st.one_of(st.sampled_from(["nan", "inf", "-inf", "0", "-0.0"]),
                         st.floats(max_value=0, allow_nan=False, allow_infinity=False).map(repr))
NOT_A_FRACTION = st.one_of(st.sampled_from(["nan", "inf", "0", "1.0001"]),
                           st.floats(min_value=1.001, allow_nan=False).map(repr),
                           st.floats(max_value=0, allow_nan=False).map(repr))
BELOW_ONE = st.integers(max_value=0).map(str)
WORD = st.text(st.characters(codec="utf-8", categories=("L", "N", "P", "S", "Zs")), min_size=1, max_size=20)
NOT_A_URL = st.one_of(st.sampled_from(["not a url", "ftp://127.0.0.1:9200", "http://", "http://[::1", "://x",
                                       "http://127.0.0.1:99999", "http://127.0.0.1:0", "file:///etc/passwd",
                                       "http://127.0.0.1:9200?x=1#y"]),
                      WORD.filter(lambda w: not w.startswith(("http://", "https://"))))
GARBAGE = st.one_of(
    st.sampled_from([b"", b"\n\n", bytes(range(256)) * 4, b"[" * 100_000, b"{" * 50_000,
                     b'{"query": ' + b"9" * 5000 + b"}", b"\xff\xfe\x00garbage", b"null", b"[]", b"{}",
                     b'{"query": "\\ud800", "product_id": "1", "title": "t", "level": 4}']),
    st.binary(min_size=1, max_size=300),
)


def not_among(*allowed: str):
    return WORD.filter(lambda w: w.strip() not in allowed and w not in allowed)


# -- the sandbox every case runs in ----------------------------------------------------------------
def children() -> set[int]:
    """Live child processes of this process (the tests' own long-lived ones included)."""
    me, found = str(os.getpid()), set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[1] == me and fields[0] != "Z":
                found.add(int(entry.name))
    return found


def files_under(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("fuzz")
    (root / "judgments.jsonl").write_text("".join(
        json.dumps({"query": q, "product_id": str(i), "title": t, "level": lv}) + "\n"
        for i, (q, t, lv) in enumerate([("garden hose", "garden hose 50 ft", 4), ("garden hose", "paint tray", 1),
                                        ("drill", "cordless drill", 4), ("drill", "drill bit set", 2)])))
    (root / "catalog.jsonl").write_text('{"product_id": "1", "title": "garden hose"}\n')
    (root / "key").write_text("a-good-key\n")
    return {"root": root, "tiny": str(tiny_model_dir)}


def forbid_starting(monkeypatch) -> None:
    """What a case must never reach: each replaced by a failure that names it."""
    import uvicorn

    import engine.node as node
    import apps.store.demo as demo
    import engine.build as build
    import training.runner as runner

    def reached(what):
        def refuse(*_, **__):
            raise AssertionError(f"a bad value was accepted: the command went on to {what}")
        return refuse

    monkeypatch.setattr(uvicorn.Server, "run", reached("serve HTTP"))
    monkeypatch.setattr(node, "start", reached("start an OpenSearch node"))
    monkeypatch.setattr(node, "up", reached("start an OpenSearch node"))
    monkeypatch.setattr(demo, "Reranker", reached("start a reranker process"))
    monkeypatch.setattr(runner.Run, "run", reached("train"))
    monkeypatch.setattr(build, "build_tier_filter", reached("build the plugin"))


def run_case(sandbox, args: list[str], files: dict[str, bytes] | None = None) -> None:
    root = sandbox["root"]
    case = root / "case"
    case.mkdir(exist_ok=True)
    for leftover in case.iterdir():
        leftover.unlink()
    for name, data in (files or {}).items():
        (case / name).write_bytes(data)
    before, procs = files_under(root), children()
    env = {"LREF_CACHE": str(root / "cache"), "LREF_OPENSEARCH_HOME": str(root / "opensearch"),
           "LREF_API_KEY": None, "HF_HUB_OFFLINE": "1"}
    result = CliRunner().invoke(app, [a.replace("{case}", str(case)).replace("{root}", str(root)) for a in args],
                                env=env)
    shown = f"lref {' '.join(args)}\nexit {result.exit_code}\nstderr: {result.stderr}\nstdout: {result.stdout[-500:]}"
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"{shown}\nraised {result.exception!r}") from result.exception
    assert result.exit_code == 2, shown
    assert "Traceback" not in result.stderr + result.stdout, shown
    assert len(result.stderr.strip().splitlines()) == 1, shown
    assert children() <= procs, f"{shown}\nleft processes running"
    assert files_under(root) == before, f"{shown}\nwrote files"


FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                suppress_health_check=list(HealthCheck))


@dataclasses.dataclass(frozen=True)
class File:
    """A bad value that is a file: the option gets the path of `name` holding `data`."""

    name: str
    data: bytes


def garbage(name: str) -> st.SearchStrategy:
    return GARBAGE.map(lambda data: File(name, data))


# How a command reaches a secured cluster: each bad alone (a user with no password, a password
# with no user, an unreadable or multi-line password file, a CA file that is no PEM certificate).
ACCESS = {
    "--user": st.sampled_from(["admin", "a:b", "x\x01y"]),
    "--password-file": st.sampled_from([b"", b"\n", b"\xff\xfe", b"two\nlines", b"password"]).map(lambda b: File("pw", b)),
    "--ca-cert": garbage("ca.pem"),
}


def spoil(base: list[str], choices: dict[str, st.SearchStrategy], defaults: dict[str, str] | None = None):
    """Command lines: `base` with one option (or a positional "<name>" in it) given a bad value;
    every other positional gets its good value from `defaults`."""
    def apply(option: str, value) -> tuple[list[str], dict[str, bytes]]:
        files = {value.name: value.data} if isinstance(value, File) else {}
        given = "{case}/" + value.name if isinstance(value, File) else value
        args = [*base, option, given] if not option.startswith("<") else list(base)
        filled = {**(defaults or {}), **({option: given} if option.startswith("<") else {})}
        return [filled.get(a, a) for a in args], files
    return st.sampled_from(sorted(choices)).flatmap(lambda option: choices[option].map(lambda v: apply(option, v)))


# -- the commands ------------------------------------------------------------------------------
def test_score(sandbox, monkeypatch):
    forbid_starting(monkeypatch)
    base = ["score", "<query>", "a title", "--model", sandbox["tiny"]]
    choices = {
        "<query>": st.sampled_from(["", "   ", "\u200b", "\u200b\u2060\ufeff", "\t\n"]),
        "--beta": NOT_A_FRACTION, "--device": not_among("auto", "cpu"), "--min-tier": not_among("Good", "Mid", "Bad"),
        "--tier-map": WORD.filter(lambda w: "=" not in w), "--scheme": garbage("scheme.json"),
        "--order": not_among("expected", "retrieval"), "--dtype": not_among("auto", "float32", "bfloat16", "float16"),
        "--backend": not_among("transformers"), "--model": garbage("model.gguf"),  # the last --model given wins
        "--judge": st.sampled_from(["{case}/missing", "/no/such/judge"]),
    }

    @FUZZ
    @given(spoil(base, choices, {"<query>": "drill"}))
    def case(spoiled):
        run_case(sandbox, *spoiled)

    case()


def test_serve(sandbox, monkeypatch):
    forbid_starting(monkeypatch)
    base = ["serve", "--model", sandbox["tiny"], "--port", str(free_port())]
    choices = {
        "--port": NOT_A_PORT, "--max-batch-pairs": BELOW_ONE, "--max-documents": BELOW_ONE,
        "--max-wait-ms": st.sampled_from(["nan", "-1", "-inf", "inf"]), "--company-wait-ms": st.sampled_from(["nan", "-5", "inf"]),
        "--request-timeout-s": NOT_POSITIVE,
        "--api-key-file": st.sampled_from([b"", b"  \n", b"\xff\xfe", "clé".encode(), b"two words", b"\x00"]).map(lambda b: File("key", b)),
        "--host": st.sampled_from(["no-such-host.invalid", "192.0.2.1", "256.1.1.1", "exa mple"]),
        "--beta": NOT_A_FRACTION, "--min-tier": not_among("Good", "Mid", "Bad"), "--scheme": garbage("scheme.json"),
    }

    @FUZZ
    @given(spoil(base, choices))
    def case(spoiled):
        run_case(sandbox, *spoiled)

    case()


def test_train(sandbox, monkeypatch):
    """A valid tiny config with one field of one section given a value of the wrong type, or a
    config file that is not YAML at all."""
    from training.config import NOT_IN_YAML, TrainConfig

    forbid_starting(monkeypatch)
    root = sandbox["root"]
    config = {"run_dir": str(root / "run"), "model": sandbox["tiny"], "device": "cpu",
              "data": {"train": str(root / "judgments.jsonl"), "eval_fraction": 0.5}}

    def wrong_for(hint) -> st.SearchStrategy:
        kinds = {int: st.one_of(st.text(min_size=1, max_size=8), st.booleans(), st.floats(allow_nan=False).filter(lambda f: f != int(f) if abs(f) < 1e15 else True), st.lists(st.integers(), max_size=2)),
                 float: st.one_of(st.text(min_size=1, max_size=8), st.booleans(), st.lists(st.floats(), max_size=2)),
                 bool: st.one_of(st.text(min_size=1, max_size=8), st.integers()),
                 str: st.one_of(st.integers(), st.lists(st.text(max_size=3), min_size=1, max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), min_size=1, max_size=1))}
        origin, args = typing.get_origin(hint), typing.get_args(hint)
        if origin in (list, tuple):
            return st.one_of(st.integers(), st.text(min_size=1, max_size=5), st.dictionaries(st.text(max_size=3), st.integers(), min_size=1, max_size=1))
        if origin is dict:
            return st.one_of(st.integers(), st.lists(st.integers(), min_size=1, max_size=2), st.text(min_size=1, max_size=5))
        plain = [a for a in args if a is not type(None)] if args else [hint]
        if len(plain) == 1 and plain[0] in kinds:
            return kinds[plain[0]]
        return st.nothing()

    fields = []  # (section or None, name, hint) of every scalar-ish field with a wrong-type strategy
    for f in dataclasses.fields(TrainConfig):
        hint = typing.get_type_hints(TrainConfig)[f.name]
        if dataclasses.is_dataclass(hint):
            fields += [(f.name, g.name, typing.get_type_hints(hint)[g.name]) for g in dataclasses.fields(hint)
                       if not dataclasses.is_dataclass(typing.get_type_hints(hint)[g.name])]
        elif f.name not in NOT_IN_YAML:
            fields.append((None, f.name, hint))
    fields = [item for item in fields if not wrong_for(item[2]).is_empty]

    def spoiled(item):
        section, name, hint = item
        return wrong_for(hint).map(lambda value: (section, name, value))

    @FUZZ
    @given(st.one_of(st.sampled_from(fields).flatmap(spoiled), GARBAGE))
    def case(change):
        if isinstance(change, bytes):
            run_case(sandbox, ["train", "--config", "{case}/train.yaml"], {"train.yaml": change})
            return
        section, name, value = change
        spoilt = json.loads(json.dumps(config))
        (spoilt.setdefault(section, {}) if section else spoilt)[name] = value
        run_case(sandbox, ["train", "--config", "{case}/train.yaml"], {"train.yaml": yaml.safe_dump(spoilt).encode()})

    case()


def test_audit(sandbox, monkeypatch):
    forbid_starting(monkeypatch)
    base = ["audit", "<judgments>", "--opensearch", f"http://127.0.0.1:{free_port()}"]
    key = st.sampled_from([b"", b"\n", b"\xff", "kéy".encode()]).map(lambda b: File("key", b))
    choices = {
        "<judgments>": garbage("judgments.jsonl"), "--queries": garbage("queries.txt"), "--template": garbage("body.json"),
        "--api-key-file": key, "--size": BELOW_ONE, "--k": st.one_of(BELOW_ONE, st.integers(min_value=101, max_value=2**40).map(str)),
        "--timeout": st.sampled_from(["nan", "inf", "0", "-1", "0.5"]), "--rel-level": st.sampled_from(["0", "1", "5", "-3"]),
        "--worst": st.integers(max_value=-1).map(str), "--limit": BELOW_ONE, "--opensearch": NOT_A_URL,
        "--fail-under": WORD, "--fail-over": st.sampled_from(["nDCG@10=nan", "x:MRR=1", "P@10=", "=3", "IrrRate@10=inf"]),
        "--format": not_among("auto", "jsonl", "trec", "srw", "quepid"), "--grades": WORD.filter(lambda w: "=" not in w),
        "--index": st.sampled_from(["", ".hidden", "_x", "UPPER", "a b", "a,b"]),
        "--reranker-url": NOT_A_URL,  # used with --judge, which the base does not ask for: passes unchecked or refused
        **ACCESS,
    }

    @FUZZ
    @given(spoil(base, choices, {"<judgments>": "{root}/judgments.jsonl"}))
    def case(spoiled):
        run_case(sandbox, *spoiled)

    case()


def test_opensearch_commands(sandbox, monkeypatch):
    forbid_starting(monkeypatch)
    unreachable = f"http://127.0.0.1:{free_port()}"
    commands = {
        "up": (["opensearch", "up", "--port", str(free_port()), "--transport-port", str(free_port())],
               {"--port": NOT_A_PORT, "--transport-port": NOT_A_PORT, "--timeout": NOT_POSITIVE,
                "--heap": st.sampled_from(["12", "lots", "1t", "0g", "-1g", "1.5g", "100m", ""]),
                "--version": st.sampled_from(["../3.6.0", "latest", "3.6", "3.6.0;rm", ""]),
                "--nodes": st.sampled_from(["0", "-1", "10", "100000"])}, {}),
        "down": (["opensearch", "down"], {"--port": NOT_A_PORT}, {}),
        "status": (["opensearch", "status"], {"--port": NOT_A_PORT, **ACCESS}, {}),
        "status of a cluster": (["opensearch", "status", "--opensearch", unreachable],
                                {"--opensearch": NOT_A_URL, **ACCESS}, {}),
        "plugin": (["opensearch", "plugin", "--out", "{case}/zips"],
                   {"--version": st.sampled_from(["../3.6.0", "latest", "3.6", ""]),
                    "--out": st.sampled_from([b"", b"a file"]).map(lambda b: File("out", b))}, {}),
        "load": (["opensearch", "load", "<catalog>", "--opensearch", unreachable],
                 {"<catalog>": garbage("catalog.jsonl"), "--opensearch": NOT_A_URL,
                  "--index": st.sampled_from(["", ".plugins-ml-config", "_bad", "Upper", "a/b", "x" * 300]), **ACCESS},
                 {"<catalog>": "{root}/catalog.jsonl"}),
        "install": (["opensearch", "install", "--opensearch", unreachable],
                    {"--opensearch": NOT_A_URL, "--reranker-url": NOT_A_URL,
                     "--connect-timeout-s": st.one_of(BELOW_ONE, st.integers(min_value=601).map(str)),
                     "--read-timeout-s": st.one_of(BELOW_ONE, st.integers(min_value=601).map(str)),
                     "--fields": st.sampled_from([",", "a b", "title;drop", "x/y"]),
                     "--min-tier": not_among("Good", "Mid", "Bad"), "--scheme": garbage("scheme.json"),
                     "--api-key-file": st.sampled_from([b"", b"  \n", b"\xff\xfe", "clé".encode(), b"two words"])
                     .map(lambda b: File("key", b)), **ACCESS}, {}),
    }
    cases = st.sampled_from(sorted(commands)).flatmap(lambda name: spoil(*commands[name]))

    @settings(FUZZ, max_examples=EXAMPLES * len(commands))
    @given(cases)
    def case(spoiled):
        run_case(sandbox, *spoiled)

    case()


def test_demo(sandbox, monkeypatch):
    forbid_starting(monkeypatch)
    base = ["demo", "--catalog", "{root}/catalog.jsonl", "--model", sandbox["tiny"], "--port", str(free_port()),
            "--opensearch-port", str(free_port()), "--reranker-port", str(free_port())]
    choices = {
        "--port": NOT_A_PORT, "--opensearch-port": NOT_A_PORT, "--transport-port": NOT_A_PORT,
        "--reranker-port": NOT_A_PORT, "--size": st.sampled_from(["0", "-1", "101", "100000"]),
        "--catalog": garbage("catalog.jsonl"), "--timeout": NOT_POSITIVE, "--heap": st.sampled_from(["12", "lots", "1t", ""]),
        "--opensearch-url": NOT_A_URL, "--reranker-url": NOT_A_URL, "--index": st.sampled_from([".x", "_x", "A", ""]),
        "--read-timeout-s": st.sampled_from(["0", "-3", "601"]), "--min-tier": not_among("Good", "Mid", "Bad"),
        "--host": st.sampled_from(["no-such-host.invalid", "192.0.2.1"]),
        **ACCESS,
    }

    @FUZZ
    @given(spoil(base, choices))
    def case(spoiled):
        run_case(sandbox, *spoiled)

    case()
