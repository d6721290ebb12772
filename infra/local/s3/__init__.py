"""The S3-compatible object store: a real versitygw server for tests and the demo (see README.md
for pointing the archive at AWS S3 or any other S3 service instead)."""

from infra.local.s3.versitygw import DEFAULT_VERSION, S3Server, VersitygwError, build_versitygw

__all__ = ["DEFAULT_VERSION", "S3Server", "VersitygwError", "build_versitygw"]
