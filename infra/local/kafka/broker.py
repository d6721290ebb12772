"""A real single-node Apache Kafka (KRaft) broker, run from the official Maven Central jars.

No Docker and no release tarball: ``infra/local/kafka/pom.xml`` declares ``kafka_2.13`` plus a
log4j2/SLF4J 2 logging backend, Maven copies the runtime classpath into a cache once, and
the broker runs as ``java -cp '<libs>/*' kafka.Kafka server.properties``.

Typical use::

    with KafkaBroker() as broker:          # temp data dir, free loopback ports
        admin = clients.admin(KafkaConnection(broker.bootstrap))
        ...
        broker.restart()                   # same ports and data, no reformat
        broker.kill()                      # SIGKILL, for fault drills

Java and Maven are taken from ``$JAVA_HOME/bin`` when ``JAVA_HOME`` is set, else from PATH.
Jars are cached under ``$LANTOA_CACHE_DIR`` (default ``~/.cache/lantoa``) in
``kafka-<version>/libs`` (broker) and ``kafka-<version>/tools`` (kafka-tools: ProducerPerformance,
ConsumerPerformance), each completed by a marker file written last; the fetch and the Java
toolchain live in ``infra.local.kafka.jars`` (their names are re-exported here).

``secured=SecuredListener(...)`` (infra/local/kafka/listener.py) adds an SSL or SASL_SSL (SCRAM) client
listener on :attr:`KafkaBroker.secured_bootstrap`; the PLAINTEXT one stays for the controller,
inter-broker traffic and the readiness probe.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

# The jar fetch and the Java toolchain moved to infra.local.kafka.jars; their names stay importable here.
from infra.kafka import clients
from infra.local.kafka.jars import (
    DEFAULT_VERSION,
    KafkaBrokerError,
    fetch_jars,
    java_executable,
)
from infra.local.kafka.listener import SecuredListener
from infra.local.processes import (
    ServerProcess,
    free_loopback_ports,
    stop_process_group,
)
from schemas.settings import KafkaConnection

__all__ = ["KafkaBroker", "log_has_slf4j_problem", "stop_pid"]

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
LOG4J_CONFIG = HERE / "log4j2.properties"
LOG_FILE_NAME = "broker.log"
PROPERTIES_FILE_NAME = "server.properties"
DATA_SUBDIR = "kraft"
LOG4J_SUBDIR = "logs"
META_PROPERTIES = "meta.properties"
NODE_ID = 1

HEAP_OPTS: tuple[str, ...] = ("-Xms256m", "-Xmx512m")
JVM_OPTS: tuple[str, ...] = (
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
)
TOOL_JVM_OPTS: tuple[str, ...] = (
    "-Xmx256m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-Djava.awt.headless=true",
)

SLF4J_PROBLEMS: tuple[str, ...] = (
    "No SLF4J providers",
    "multiple SLF4J providers",
    "Defaulting to no-operation",
)

PropertyValue = str | int | float | bool


# --------------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------------


def stop_pid(pid: int, timeout: float = 30.0) -> None:
    """SIGTERM ``pid``'s process group, wait up to ``timeout`` s, then SIGKILL.

    For brokers that are not children of this process (``python -m infra.local.kafka stop``).
    """
    stop_process_group(pid, timeout, poll_s=0.1, kill_wait_s=10.0, logger=log, what="Kafka broker")


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def random_cluster_id() -> str:
    # Same shape as Kafka's Uuid.randomUuid().toString(): URL-safe base64 of 16 bytes, unpadded,
    # never starting with '-' (would look like a command-line option).
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")
        if not cid.startswith("-"):
            return cid


def _tail(path: Path, lines: int) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return "".join(collections.deque(fh, maxlen=lines))
    except OSError:
        return f"(no log at {path})"


def log_has_slf4j_problem(text: str) -> str | None:
    """The first SLF4J binding warning found in ``text`` (e.g. "No SLF4J providers"), or None."""
    for line in text.splitlines():
        if any(p in line for p in SLF4J_PROBLEMS):
            return line.strip()
    return None


def _format_value(value: PropertyValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# --------------------------------------------------------------------------------------------
# The broker
# --------------------------------------------------------------------------------------------


class KafkaBroker(ServerProcess):
    """A single-node combined broker+controller KRaft Kafka on 127.0.0.1, as a subprocess.

    Ports are picked on the first :meth:`start` (unless given) and kept for :meth:`restart`.
    The data dir holds ``server.properties``, ``broker.log`` (the JVM's stdout/stderr),
    ``logs/server.log`` (rolled log4j file) and ``kraft/`` (``log.dirs``). A data dir that is
    already formatted (``kraft/meta.properties``) is reused as is. A temp data dir created
    by the broker is removed by :meth:`close` / ``__exit__`` unless ``keep_data_dir``.

    ``die_with_parent`` (default): when started from the main thread and util-linux
    ``setpriv`` is available, the JVM gets SIGTERM if this Python process dies without
    stopping it (e.g. a test run killed by ``timeout``), so no orphan broker is left behind.
    Such a broker cannot be :meth:`detach`-ed; pass ``die_with_parent=False`` for that.
    """

    error = KafkaBrokerError
    noun = "broker"

    def __init__(
        self,
        data_dir: Path | str | None = None,
        *,
        version: str = DEFAULT_VERSION,
        extra_properties: Mapping[str, PropertyValue] | None = None,
        port: int | None = None,
        controller_port: int | None = None,
        libs_dir: Path | None = None,
        cache_dir: Path | None = None,
        start_timeout: float = 90.0,
        heap_opts: Sequence[str] = HEAP_OPTS,
        jvm_options: Sequence[str] = (),
        keep_data_dir: bool = False,
        die_with_parent: bool = True,
        node_id: int = NODE_ID,
        cluster_id: str | None = None,
        quorum_voters: str | None = None,
        secured: SecuredListener | None = None,
    ) -> None:
        self._owns_data_dir = data_dir is None
        self.data_dir: Path = (
            Path(tempfile.mkdtemp(prefix="lantoa-kafka-")) if data_dir is None else Path(data_dir).resolve()
        )
        self.version = version
        self.extra_properties: dict[str, PropertyValue] = dict(extra_properties or {})
        self._fixed_ports = port is not None or controller_port is not None
        self._port = port
        self._controller_port = controller_port
        self._libs_dir = libs_dir
        self._cache_dir = cache_dir
        self.start_timeout = start_timeout
        self.heap_opts = tuple(heap_opts)
        self.jvm_options = tuple(jvm_options)
        self.keep_data_dir = keep_data_dir
        self.die_with_parent = die_with_parent
        self._pdeathsig = False
        # A member of a multi-node cluster (infra/local/kafka/cluster.py) gets its node id, the shared
        # cluster id it is formatted with, and the controller quorum of every member.
        self.node_id = node_id
        self.cluster_id: str | None = cluster_id
        self.quorum_voters = quorum_voters
        self._proc = None
        self._log_offset = 0
        self.secured = secured
        self._secured_port: int | None = None

    # -- paths and addresses --------------------------------------------------------------

    @property
    def properties_file(self) -> Path:
        return self.data_dir / PROPERTIES_FILE_NAME

    @property
    def log_file(self) -> Path:
        """The JVM's stdout+stderr (all broker logging at INFO, plus JVM/SLF4J messages)."""
        return self.data_dir / LOG_FILE_NAME

    @property
    def log_dirs(self) -> Path:
        return self.data_dir / DATA_SUBDIR

    @property
    def port(self) -> int:
        if self._port is None:
            raise KafkaBrokerError("broker not started yet: no port assigned")
        return self._port

    @property
    def controller_port(self) -> int:
        if self._controller_port is None:
            raise KafkaBrokerError("broker not started yet: no controller port assigned")
        return self._controller_port

    @property
    def bootstrap(self) -> str:
        """``"127.0.0.1:<port>"``."""
        return f"127.0.0.1:{self.port}"

    @property
    def secured_bootstrap(self) -> str:
        """``"127.0.0.1:<port>"`` of the secured listener (only with ``secured``)."""
        if self.secured is None:
            raise KafkaBrokerError("this broker has no secured listener (pass secured=SecuredListener(...))")
        if self._secured_port is None:
            raise KafkaBrokerError("broker not started yet: no secured port assigned")
        return f"127.0.0.1:{self._secured_port}"

    def log_tail(self, lines: int = 40) -> str:
        return _tail(self.log_file, lines)

    # -- configuration --------------------------------------------------------------------

    def properties(self) -> dict[str, str]:
        """The effective server.properties (defaults overridden by ``extra_properties``)."""
        port, cport = self.port, self.controller_port
        props: dict[str, PropertyValue] = {
            "process.roles": "broker,controller",
            "node.id": self.node_id,
            "controller.quorum.voters": self.quorum_voters or f"{self.node_id}@127.0.0.1:{cport}",
            "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
            "inter.broker.listener.name": "PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.log_dirs),
            "num.partitions": 1,
            "default.replication.factor": 1,
            "min.insync.replicas": 1,
            "auto.create.topics.enable": False,
            "offsets.topic.replication.factor": 1,
            "offsets.topic.num.partitions": 10,
            "transaction.state.log.replication.factor": 1,
            "transaction.state.log.min.isr": 1,
            "transaction.state.log.num.partitions": 10,
            "share.coordinator.state.topic.replication.factor": 1,
            "share.coordinator.state.topic.min.isr": 1,
            "group.initial.rebalance.delay.ms": 0,
            "log.retention.check.interval.ms": 10_000,
        }
        if self.secured is not None and self._secured_port is not None:
            self.secured.add_to(props, self._secured_port, self.data_dir)
        props.update(self.extra_properties)
        return {k: _format_value(v) for k, v in props.items()}

    def _write_properties(self) -> None:
        lines = ["# Written by infra/local/kafka/broker.py; rewritten on every start."]
        lines += [f"{k}={v}" for k, v in self.properties().items()]
        tmp = self.properties_file.with_suffix(".tmp")
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
        os.replace(tmp, self.properties_file)

    def _libs(self) -> Path:
        if self._libs_dir is None:
            self._libs_dir = fetch_jars(self._cache_dir, self.version)
        return self._libs_dir

    def _java_cmd(self, main_class: str, jvm: Sequence[str], *args: str) -> list[str]:
        return [
            java_executable(),
            *jvm,
            f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
            f"-Dkafka.logs.dir={self.data_dir / LOG4J_SUBDIR}",
            "-cp",
            f"{self._libs()}/*",
            main_class,
            *args,
        ]

    def _format_storage(self) -> None:
        if (self.log_dirs / META_PROPERTIES).exists():
            return
        self.cluster_id = self.cluster_id or random_cluster_id()
        cmd = self._java_cmd(
            "kafka.tools.StorageTool",
            TOOL_JVM_OPTS,
            "format",
            "-t",
            self.cluster_id,
            "-c",
            str(self.properties_file),
        )
        scram = self.secured.format_args() if self.secured is not None else []
        proc = subprocess.run(
            cmd + scram,
            cwd=self.data_dir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            check=False,
        )
        with open(self.log_file, "a", encoding="utf-8") as logfh:
            # The SCRAM passwords stay out of the log: only how many users were added.
            logfh.write(
                f"# {time.strftime('%Y-%m-%dT%H:%M:%S')} format: {' '.join(cmd)}"
                f" (+{len(scram) // 2} SCRAM credentials)\n"
            )
            logfh.write(proc.stdout)
        if proc.returncode != 0:
            raise KafkaBrokerError(
                f"kafka StorageTool format failed (exit {proc.returncode}):\n" + proc.stdout[-4000:]
            )
        problem = log_has_slf4j_problem(proc.stdout)
        if problem:
            log.warning("Kafka StorageTool logging is misconfigured: %s", problem)

    def _read_cluster_id(self) -> None:
        with contextlib.suppress(OSError):
            for line in (self.log_dirs / META_PROPERTIES).read_text().splitlines():
                if line.startswith("cluster.id="):
                    self.cluster_id = line.split("=", 1)[1].strip()

    # -- lifecycle ------------------------------------------------------------------------

    def start(self, wait: bool = True) -> KafkaBroker:
        """Format storage if needed, launch the broker and wait until it answers metadata.

        ``wait=False`` returns once the JVM is spawned (a cluster member cannot answer metadata
        before a quorum of its controllers runs): call :meth:`wait_ready` then."""
        if self.is_running():
            return self
        self.data_dir.mkdir(parents=True, exist_ok=True)
        first_start = self._port is None or self._controller_port is None
        attempts = 3 if first_start and not self._fixed_ports else 1
        for attempt in range(1, attempts + 1):
            if self._port is None or self._controller_port is None:
                picked = free_loopback_ports(3)
                self._port = self._port or picked[0]
                self._controller_port = self._controller_port or picked[1]
                self._secured_port = self._secured_port or picked[2]
            elif self._secured_port is None:
                self._secured_port = free_loopback_ports(1)[0]
            try:
                self._launch(wait)
                return self
            except KafkaBrokerError:
                if attempt < attempts and "Address already in use" in self._launch_log():
                    log.warning("port race on %s; retrying with new ports", self.bootstrap)
                    self._port = self._controller_port = self._secured_port = None
                    continue
                raise
        raise AssertionError("unreachable")

    def _launch(self, wait: bool = True) -> None:
        if self.secured is not None:
            self.secured.write_keystore(self.data_dir)
        self._write_properties()
        self._format_storage()
        self._read_cluster_id()
        (self.data_dir / LOG4J_SUBDIR).mkdir(exist_ok=True)
        cmd = self._java_cmd(
            "kafka.Kafka", (*self.heap_opts, *JVM_OPTS, *self.jvm_options), str(self.properties_file)
        )
        self._log_offset = self._spawn(
            cmd,
            cwd=self.data_dir,
            log_file=self.log_file,
            die_with_parent=self.die_with_parent,
            pdeathsig="TERM",
        )
        if wait:
            self.wait_ready()

    def wait_ready(self) -> None:
        """Wait until the broker answers metadata (killed if it does not within the timeout)."""
        try:
            self._wait_ready()
        except BaseException:
            self.kill()
            raise
        problem = log_has_slf4j_problem(self.log_head(60))
        if problem:
            log.warning("Kafka broker logging is misconfigured: %s (see %s)", problem, self.log_file)

    def _launch_log(self, limit: int = 4 * 1024 * 1024) -> str:
        """What the current (or last) broker process wrote to :attr:`log_file`."""
        try:
            with open(self.log_file, "rb") as fh:
                fh.seek(self._log_offset)
                return fh.read(limit).decode("utf-8", errors="replace")
        except OSError:
            return ""

    def log_head(self, lines: int = 60) -> str:
        """The first ``lines`` lines the current broker process wrote to :attr:`log_file`."""
        return "".join(self._launch_log(256 * 1024).splitlines(keepends=True)[:lines])

    def _startup_failure(self, what: str) -> KafkaBrokerError:
        errors = [
            line
            for line in self._launch_log().splitlines()
            if " ERROR " in line or " FATAL " in line or line.startswith("Caused by:")
        ]
        first = "\n".join(errors[:10]) or "(none)"
        return KafkaBrokerError(
            f"{what}\nfirst ERROR lines:\n{first}\nlast 40 lines of {self.log_file}:\n{self.log_tail(40)}"
        )

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.start_timeout
        last_error: BaseException | None = None
        while True:
            if self._proc.poll() is not None:
                raise self._startup_failure(
                    f"Kafka broker exited with code {self._proc.returncode} during startup."
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._startup_failure(
                    f"Kafka broker not ready after {self.start_timeout:.0f} s "
                    f"(last client error: {last_error!r})."
                )
            if _port_open(self.port):
                try:
                    # The probe uses the PLAINTEXT listener, which every broker here keeps.
                    admin = clients.admin(
                        KafkaConnection(self.bootstrap),
                        client_id="lantoa-kafka-readiness",
                        bootstrap_timeout_ms=int(max(1.0, min(remaining, 10.0)) * 1000),
                        request_timeout_ms=5000,
                    )
                    try:
                        admin.list_topics()
                    finally:
                        admin.close()
                    return
                except Exception as exc:
                    last_error = exc
            time.sleep(0.2)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (controlled shutdown), wait up to ``timeout`` s, then SIGKILL. Idempotent."""
        self._terminate(timeout, logger=log, what="Kafka broker")

    def restart(self, timeout: float = 30.0) -> KafkaBroker:
        """Stop (if running) and start again on the same ports and data dir, no reformat."""
        self.stop(timeout)
        return self.start()

    def detach(self) -> int:
        """Forget the running process (it keeps running) and keep the data dir; return its pid."""
        pid = self._detach_pid(
            "this broker dies with its parent process (die_with_parent=True); "
            "create it with die_with_parent=False to detach it"
            if self._pdeathsig
            else None
        )
        self.keep_data_dir = True
        return pid

    def close(self) -> None:
        """Stop the broker and remove the data dir if this object created it."""
        self.stop()
        if self._owns_data_dir and not self.keep_data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> KafkaBroker:
        return self.start()

    def __repr__(self) -> str:
        where = f"127.0.0.1:{self._port}" if self._port else "unstarted"
        return f"KafkaBroker({where}, pid={self.pid}, data_dir={str(self.data_dir)!r})"
