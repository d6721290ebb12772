"""A secured client listener for the local broker (infra/local/kafka/broker.py): SSL or SASL_SSL with SCRAM.

The broker keeps its PLAINTEXT listener for the controller, inter-broker traffic and its own
readiness probe; clients under test connect to the secured one (``KafkaBroker.secured_bootstrap``).
Key material is PEM (``ssl.keystore.type=PEM``, Kafka 4.1); SCRAM users are written into the
metadata log when the storage is formatted (``kafka-storage format --add-scram``), so they exist
before the first client connects.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from infra.local.kafka.tls import CertificateSet

LISTENER_NAME = "SECURE"
SCRAM_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512")
_SCRAM_LOGIN = "org.apache.kafka.common.security.scram.ScramLoginModule required;"


@dataclass(frozen=True)
class SecuredListener:
    """How the secured listener is set up.

    ``protocol`` is ``SSL`` or ``SASL_SSL``; ``require_client_cert`` turns on mutual TLS
    (``ssl.client.auth=required``); ``scram_users`` maps user name to password, each created for
    every mechanism in ``SCRAM_MECHANISMS`` (SASL_SSL only).
    """

    protocol: str
    certs: CertificateSet
    require_client_cert: bool = False
    scram_users: Mapping[str, str] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.protocol not in ("SSL", "SASL_SSL"):
            raise ValueError(f"secured listener protocol {self.protocol!r}: expected SSL or SASL_SSL")
        if self.protocol == "SASL_SSL" and not self.scram_users:
            raise ValueError("a SASL_SSL listener needs at least one SCRAM user")

    def keystore(self, data_dir: Path) -> Path:
        """The PEM key store Kafka reads: the server's private key followed by its certificate."""
        return data_dir / "server-keystore.pem"

    def write_keystore(self, data_dir: Path) -> None:
        key = self.certs.server.key.read_text(encoding="ascii")
        cert = self.certs.server.cert.read_text(encoding="ascii")
        path = self.keystore(data_dir)
        path.write_text(key + cert, encoding="ascii")
        path.chmod(0o600)

    def properties(self, data_dir: Path) -> dict[str, str]:
        """Per-listener broker properties (``listener.name.secure.*``)."""
        prefix = f"listener.name.{LISTENER_NAME.lower()}."
        props = {
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(self.keystore(data_dir)),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(self.certs.ca.cert),
            "ssl.client.auth": "required" if self.require_client_cert else "none",
        }
        if self.protocol == "SASL_SSL":
            props["sasl.enabled.mechanisms"] = ",".join(SCRAM_MECHANISMS)
            for mechanism in SCRAM_MECHANISMS:
                props[f"{mechanism.lower()}.sasl.jaas.config"] = _SCRAM_LOGIN
        return {prefix + k: v for k, v in props.items()}

    def add_to(self, props: dict[str, str | int | float | bool], port: int, data_dir: Path) -> None:
        """Add the listener on 127.0.0.1:``port`` to a broker's ``props`` (next to its PLAINTEXT one)."""
        endpoint = f"{LISTENER_NAME}://127.0.0.1:{port}"
        props["listeners"] = f"{props['listeners']},{endpoint}"
        props["advertised.listeners"] = f"{props['advertised.listeners']},{endpoint}"
        props["listener.security.protocol.map"] = (
            f"{props['listener.security.protocol.map']},{LISTENER_NAME}:{self.protocol}"
        )
        props.update(self.properties(data_dir))

    def format_args(self) -> list[str]:
        """``--add-scram`` arguments for ``kafka-storage format`` (one per user and mechanism)."""
        if self.protocol != "SASL_SSL":
            return []
        args: list[str] = []
        for user, password in self.scram_users.items():
            for mechanism in SCRAM_MECHANISMS:
                args += ["--add-scram", f"{mechanism}=[name={user},password={password}]"]
        return args
