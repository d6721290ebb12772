"""The S3-compatible object store: a real versitygw server for tests and the demo (see README.md
for pointing the archive at AWS S3 or any other S3 service instead)."""
