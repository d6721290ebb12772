"""HTTP endpoint for CAP alerts: `POST /cap` with the XML body → 202 and the plan, or 4xx with the reason.

Bound to 127.0.0.1 by default. Every request is authenticated (schemas/access.py): the named
senders of the identities file (LANTOA_ACCESS_FILE, role ``sender``, each limited to its CAP
``<sender>`` values when it has ``cap_senders``) and/or one token alone (``--token-file``,
LANTOA_CAP_TOKEN_FILE or LANTOA_CAP_TOKEN, identity ``cap-token``), as ``Authorization: Bearer``
or HTTP Basic. No credentials: 401 before the body is read; a known identity without the sender
role, or sending as a CAP sender it may not use: 403. Without any of them the server does not start
unless told ``--insecure-no-auth``, which it logs at start and on every request. The accepted
alert carries the identity as its actor (``ce_actor``). An alert above the approval scope waits
for a second identity (producers/approvals.py): ``POST /cap/approve/{identifier}`` (role
``approver``, never the submitter) sends it; ``GET /cap/approvals`` lists the rule's alerts.

The whole body is read before anything is parsed, however it arrives (with a Content-Length or
chunked, in one segment or many): a body over ``MAX_CAP_BYTES`` is refused with 413 as soon as
it is known to be (at once from its Content-Length, or when the chunks pass the limit), so no
more than the limit is ever held. Parsing and planning run on a small thread pool of their own,
not on the event loop: a 1 MB alert takes a few hundred milliseconds to check, and meanwhile the
endpoint keeps answering other requests (health checks, small alerts).
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Final

from aiohttp import web

from producers.approvals import AlertDoor, ApprovalRefused
from producers.cap_ingest import check
from schemas.access import AccessError, AccessList, Identity, Role
from schemas.cap import MAX_CAP_BYTES
from schemas.errors import InvalidContent
from schemas.settings import Settings
from streams.alerts.plan import NotForBroadcast

# Alerts checked at once; more wait for a free thread. Two keep both cores of a small host busy
# with a burst of big alerts while leaving the default pool to the producer's sends.
PARSE_THREADS: Final = 2

# The actor of an alert taken with --insecure-no-auth: nobody was proved.
UNAUTHENTICATED: Final = "unauthenticated"
DOOR: Final = "cap-http"
SOURCE: Final = "urn:lantoa:cap-http"
TOKEN_IDENTITY: Final = "cap-token"

log = logging.getLogger(__name__)


def _shown(value: str) -> str:
    """A value from the alert as logs and refusals show it: quoted, escaped, at most 200 characters."""
    return repr(value[:200])


def cap_access(settings: Settings, token_file: Path | None = None) -> AccessList | None:
    """Who may POST /cap: the identities file's, plus the token of ``token_file`` (or
    LANTOA_CAP_TOKEN_FILE) and of LANTOA_CAP_TOKEN; None when none of them is configured.
    Raises AccessError (SecretFileError) for an unreadable, loose or empty one, or when no
    identity has the sender role."""
    found: list[AccessList] = []
    if settings.access_file is not None:
        found.append(AccessList.load(settings.access_file))
    token_file = token_file or settings.cap_token_file
    if token_file is not None:
        found.append(AccessList.from_token_file(token_file, TOKEN_IDENTITY, [Role.SENDER]))
    if settings.cap_token:
        found.append(
            AccessList.single_token(
                settings.cap_token, f"{TOKEN_IDENTITY}-env", [Role.SENDER], "LANTOA_CAP_TOKEN"
            )
        )
    if not found:
        return None
    access = found[0]
    for more in found[1:]:
        access = access.merged(more)
    if not access.with_role(Role.SENDER):
        raise AccessError(
            f"{access.source}: no identity has the sender role (lantoa access add NAME --role sender)"
        )
    return access


class BodyTooLarge(Exception):
    """The request body passed the limit: answered 413 with ``reason``, nothing parsed."""

    def __init__(self, size: int | None, limit: int) -> None:
        self.reason = (
            f"CAP alert too large: {size} bytes (limit {limit})"
            if size is not None
            else f"CAP alert too large: the chunked body passed the limit of {limit} bytes"
        )
        super().__init__(self.reason)


async def read_body(request: web.Request, limit: int = MAX_CAP_BYTES) -> bytes:
    """The whole request body, Content-Length or chunked; BodyTooLarge past ``limit`` bytes.

    ``request.content.read(n)`` returns only what is buffered (the first TCP segment or chunk),
    which truncated bodies; this reads until the end of the body.
    """
    if request.content_length is not None and request.content_length > limit:
        raise BodyTooLarge(request.content_length, limit)
    parts: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(None, limit)
        parts.append(chunk)
    return b"".join(parts)


def make_app(door: AlertDoor, access: AccessList | None = None, *, insecure: bool = False) -> web.Application:
    """The endpoint. Without ``access`` every request is refused (401) unless ``insecure``."""
    parser = ThreadPoolExecutor(max_workers=PARSE_THREADS, thread_name_prefix="cap-parse")

    def refused(status: int, reason: str) -> web.Response:
        return web.json_response({"accepted": False, "reason": reason}, status=status)

    async def audited_refusal(ident: Identity, subject: str, status: int, reason: str) -> web.Response:
        log.warning("%s refused for %s: %s", subject, ident.name, reason)
        await asyncio.to_thread(door.refuse, ident.name, subject, DOOR, reason)
        return refused(status, reason)

    async def who(request: web.Request, role: Role, subject: str) -> Identity | web.Response | None:
        """The proven identity holding ``role``; None in insecure mode; else the refusal (one
        refused for its role is audited under ``subject``)."""
        if insecure:
            log.warning(
                "%s %s from %s taken WITHOUT authentication (--insecure-no-auth)",
                request.method,
                request.path,
                request.remote,
            )
            return None
        ident = access.authenticate(request.headers.get("Authorization")) if access else None
        if ident is None:  # not audited: strangers could fill the trail; the log has it
            log.warning(
                "%s %s from %s refused: no valid credentials", request.method, request.path, request.remote
            )
            return web.json_response(
                {"accepted": False, "reason": f"unauthorised: a {role.value} token is required"},
                status=401,
                headers={"WWW-Authenticate": 'Bearer realm="lantoa-cap", Basic realm="lantoa-cap"'},
            )
        if not ident.has(role):
            return await audited_refusal(
                ident, subject, 403, f"identity {ident.name} may not do this (no {role.value} role)"
            )
        return ident

    async def receive(request: web.Request) -> web.Response:
        # Before the body is read: a stranger's megabyte is never parsed.
        ident = await who(request, Role.SENDER, request.path)
        if isinstance(ident, web.Response):
            return ident
        try:
            raw = await read_body(request)
        except BodyTooLarge as exc:
            return refused(413, exc.reason)
        try:
            checked = await asyncio.get_running_loop().run_in_executor(
                parser, check, raw, door.registry, door.trust
            )
        except NotForBroadcast as exc:
            return refused(422, exc.reason)
        except InvalidContent as exc:
            return refused(400, exc.reason)
        if ident is not None and not ident.may_send_as(checked.alert.sender):
            reason = f"identity {ident.name} may not send as CAP sender {_shown(checked.alert.sender)}"
            return await audited_refusal(ident, checked.alert.identifier, 403, reason)
        actor = ident.name if ident is not None else UNAUTHENTICATED
        try:
            result = await asyncio.to_thread(door.take, checked, actor, DOOR, SOURCE)
        except ApprovalRefused as exc:
            return refused(exc.status, exc.reason)
        log.info(
            "POST /cap: %s %s from %s",
            _shown(checked.alert.identifier),
            "waits for approval" if result["pending"] else "accepted",
            actor,
        )
        return web.json_response({"accepted": True, "actor": actor, **result}, status=202)

    async def approve(request: web.Request) -> web.Response:
        if insecure:  # nobody is proven, so nobody can be a second person
            return refused(
                403, "approvals need authenticated identities (the server runs --insecure-no-auth)"
            )
        identifier = request.match_info["identifier"]
        ident = await who(request, Role.APPROVER, identifier)
        if isinstance(ident, web.Response):
            return ident
        assert ident is not None
        try:
            result = await asyncio.to_thread(door.approve, identifier, ident.name, DOOR, SOURCE)
        except ApprovalRefused as exc:
            log.warning("approval of %s by %s refused: %s", _shown(identifier), ident.name, exc.reason)
            return refused(exc.status, exc.reason)
        log.info("POST /cap/approve: %s approved by %s", _shown(identifier), ident.name)
        return web.json_response({"approved": True, **result}, status=200)

    async def approvals(request: web.Request) -> web.Response:
        if not insecure:
            ident = access.authenticate(request.headers.get("Authorization")) if access else None
            if ident is None or not (ident.has(Role.SENDER) or ident.has(Role.APPROVER)):
                return web.json_response({"reason": "unauthorised"}, status=401)
        return web.json_response({"alerts": await asyncio.to_thread(door.list)})

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def stop_parser(app: web.Application) -> None:
        parser.shutdown(wait=True, cancel_futures=True)

    # Above the limit, so that read_body (not aiohttp's plain-text 413) answers with the reason.
    app = web.Application(client_max_size=MAX_CAP_BYTES + 1024)
    app.router.add_post("/cap", receive)
    app.router.add_post("/cap/approve/{identifier}", approve)
    app.router.add_get("/cap/approvals", approvals)
    app.router.add_get("/healthz", health)
    app.on_cleanup.append(stop_parser)
    return app


def serve(
    door: AlertDoor,
    host: str,
    port: int,
    access: AccessList | None,
    *,
    insecure: bool = False,
) -> None:
    if access is None and not insecure:
        raise AccessError("no sender identity or token: refusing to serve POST /cap unauthenticated")
    if insecure:
        log.warning(
            "lantoa alert-server runs WITHOUT authentication (--insecure-no-auth): anyone who reaches "
            "%s:%d can pre-empt every loudspeaker it plans for",
            host,
            port,
        )
    else:
        assert access is not None
        log.info("POST /cap senders: %s", ", ".join(i.name for i in access.with_role(Role.SENDER)))
    if door.trust is None or not door.trust.configured:
        log.warning("CAP signatures are not checked: no LANTOA_CAP_TRUST_FILE")
    app = make_app(door, access, insecure=insecure)
    web.run_app(app, host=host, port=port, print=None)
