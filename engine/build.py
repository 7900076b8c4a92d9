"""Build the Java tier-filter plugin with Maven, once per source version."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from importlib import resources
from pathlib import Path

from engine.java import find_java_home, required_major
from reranker.errors import LrefError

# The Java processor's Maven project ships as data of the `plugin` package (plugin/tier-filter).
SOURCE = Path(str(resources.files("plugin"))) / "tier-filter"
ARTIFACT = "lref-tier-filter-0.1.0.zip"


class BuildError(LrefError, RuntimeError):
    pass


def source_hash(root: Path = SOURCE) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and "target" not in p.relative_to(root).parts):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def build_tier_filter(out_dir: Path, opensearch_version: str, log=print) -> Path:
    """The plugin zip for this source tree, built with `mvn package` (unit tests included) when
    no zip of the same source is in out_dir yet."""
    cached = out_dir / f"lref-tier-filter-{opensearch_version}-{source_hash()}.zip"
    if cached.exists():
        return cached
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BuildError("Maven (mvn) is needed to build the tier-filter plugin: apt-get install maven")
    env = dict(os.environ, JAVA_HOME=str(find_java_home(opensearch_version, need_compiler=True)))
    log("building the tier-filter plugin with Maven")
    # One source for both engine lines: the version and the Java release it runs on are Maven properties.
    java = required_major(opensearch_version)
    command = [mvn, "-q", "-B", f"-Dopensearch.version={opensearch_version}", f"-Dmaven.compiler.release={java}",
               f"-Dplugin.java.version={java}", "clean", "package"]
    done = subprocess.run(command, cwd=SOURCE, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        lines = [ln for ln in (done.stdout + done.stderr).splitlines() if "ERROR" in ln or "FAIL" in ln]
        raise BuildError(f"mvn package failed in {SOURCE}: {' | '.join(lines[:3]) or done.returncode}")
    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy2(SOURCE / "target" / ARTIFACT, cached)
    return cached
