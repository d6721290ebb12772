"""Local emulators of the channels' platforms (Facebook Graph API Pages, Zalo OA Open API v3),
for the contract tests, the adapters' tests and ``make demo``. See ``faults`` for the fault
injection, ``common`` for the control API, and ``python -m infra.local.emulators --help`` for the
command line."""
