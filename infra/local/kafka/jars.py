"""The Kafka classpaths, fetched from Maven Central, and the Java toolchain that runs them.

``infra/local/kafka/pom.xml`` declares ``kafka_2.13`` plus a log4j2/SLF4J 2 logging backend and
``infra/local/kafka/tools/pom.xml`` kafka-tools (ProducerPerformance, ConsumerPerformance); Maven
copies each runtime classpath once into ``$LANTOA_CACHE_DIR`` (default ``~/.cache/lantoa``),
``kafka-<version>/libs`` and ``kafka-<version>/tools``, each completed by a marker file written
last. Java and Maven are taken from ``$JAVA_HOME/bin`` when ``JAVA_HOME`` is set, else from PATH.
``infra.local.kafka.broker`` re-exports these names.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
from pathlib import Path

from infra.local.processes import cache_root, file_lock

__all__ = [
    "BROKER_POM",
    "DEFAULT_VERSION",
    "MARKER_NAME",
    "TOOLS_POM",
    "KafkaBrokerError",
    "fetch_jars",
    "java_executable",
]

# The broker's logger, as before the fetch moved out of broker.py.
log = logging.getLogger("infra.local.kafka.broker")

DEFAULT_VERSION = "4.1.1"
HERE = Path(__file__).resolve().parent
BROKER_POM = HERE / "pom.xml"
TOOLS_POM = HERE / "tools" / "pom.xml"
MARKER_NAME = ".lantoa-complete.json"


class KafkaBrokerError(RuntimeError):
    """The broker (or the jar fetch) failed; the message carries the relevant log tail."""


# --------------------------------------------------------------------------------------------
# Tools and cache
# --------------------------------------------------------------------------------------------


def _executable(name: str) -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidate = Path(java_home) / "bin" / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise KafkaBrokerError(f"{name!r} not found (set JAVA_HOME or put it on PATH)")
    return found


def java_executable() -> str:
    """``$JAVA_HOME/bin/java`` if present, else ``java`` from PATH."""
    return _executable("java")


def _mvn_executable() -> str:
    # Maven itself honours JAVA_HOME for the JVM it runs on; mvn comes from PATH.
    found = shutil.which("mvn")
    if found is None:
        raise KafkaBrokerError("'mvn' not found on PATH (Maven 3.8+ is needed to fetch Kafka)")
    return found


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _marker_ok(target: Path, version: str, pom_hash: str) -> bool:
    marker = target / MARKER_NAME
    try:
        data = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(data, dict):
        return False
    if data.get("version") != version or data.get("pom_sha256") != pom_hash:
        return False
    jars = data.get("jars")
    if not isinstance(jars, list) or not jars:
        return False
    return all(isinstance(j, str) and (target / j).is_file() for j in jars)


def fetch_jars(cache_dir: Path | None = None, version: str = DEFAULT_VERSION, tools: bool = False) -> Path:
    """Download a Kafka classpath from Maven Central into the cache and return its directory.

    ``tools=False``: the broker classpath (``infra/local/kafka/pom.xml``) into
    ``<cache>/kafka-<version>/libs``; ``tools=True``: the kafka-tools classpath
    (``infra/local/kafka/tools/pom.xml``) into ``<cache>/kafka-<version>/tools``.
    ``cache_dir`` defaults to :func:`cache_root`. Nothing is downloaded when the marker file
    (written last, recording the version, the pom's hash and the jar list) is present and
    all jars it lists exist. Concurrent callers are serialised with a file lock.
    """
    pom = TOOLS_POM if tools else BROKER_POM
    main_artifact = f"kafka-tools-{version}.jar" if tools else f"kafka_2.13-{version}.jar"
    # Absolute: Maven resolves a relative outputDirectory against the pom's directory.
    base = (cache_dir if cache_dir is not None else cache_root()).absolute() / f"kafka-{version}"
    target = base / ("tools" if tools else "libs")
    pom_hash = _sha256(pom)
    if _marker_ok(target, version, pom_hash):
        return target
    with file_lock(base / ".fetch.lock"):
        if _marker_ok(target, version, pom_hash):
            return target
        if target.exists():
            shutil.rmtree(target)
        cmd = [
            _mvn_executable(),
            "-B",
            "-q",
            "-Dstyle.color=never",
            "-f",
            str(pom),
            f"-Dkafka.version={version}",
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={target}",
        ]
        log.info("fetching Kafka %s %s jars into %s", version, "tools" if tools else "broker", target)
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            out = (proc.stdout + proc.stderr).strip().splitlines()
            raise KafkaBrokerError(
                f"mvn failed with exit code {proc.returncode}: {' '.join(cmd)}\n" + "\n".join(out[-40:])
            )
        jars = sorted(p.name for p in target.glob("*.jar"))
        if main_artifact not in jars:
            raise KafkaBrokerError(f"{main_artifact} missing from {target} after mvn: {jars}")
        marker = {"version": version, "pom_sha256": pom_hash, "jars": jars}
        tmp = target / (MARKER_NAME + ".tmp")
        tmp.write_text(json.dumps(marker, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, target / MARKER_NAME)
        return target
