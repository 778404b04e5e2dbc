"""The Shared Signals transmitter's endpoints (OpenID SSF 1.0; RFC 8935 push, RFC 8936 poll).

* ``GET /.well-known/ssf-configuration`` (§7.1): the transmitter's metadata;
* ``/ssf/streams`` (the ``configuration_endpoint``, §8.1.1): ``POST`` creates a stream (201),
  ``GET`` reads one (``?stream_id=``) or lists the caller's, ``PATCH`` updates, ``PUT``
  replaces, ``DELETE ?stream_id=`` deletes (204);
* ``/ssf/status`` (§8.1.2): ``GET ?stream_id=``, ``POST {"stream_id", "status", "reason"}``;
* ``POST /ssf/subjects/add`` (200) and ``/ssf/subjects/remove`` (204) (§8.1.3);
* ``POST /ssf/verify`` (§8.1.4.2): a verification event is sent (204; 429 within the
  stream's ``min_verification_interval``);
* ``POST /ssf/poll/{stream_id}`` (RFC 8936 §2.4): ``{"ack", "setErrs", "maxEvents",
  "returnImmediately"}`` → ``{"sets": {jti: SET}, "moreAvailable"}``.

Every endpoint but the metadata needs a bearer access token with the reserved ``ssf`` scope
that a client got for itself (``client_credentials``): a missing or bad token is 401 with
``WWW-Authenticate``, a token without the scope (or a user's token) 403 ``insufficient_scope``.
A client sees and changes only its own streams (another's is 404).
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query, Request, Response

from ...claims import AccessTokenClaims
from ...errors import InsufficientScope
from ..deps import get_runtime, no_store, require_scope
from ..errors import JSON, OAuthError
from ..ssf_streams import POLL, PUSH, StreamError

__all__ = ["router"]

router = APIRouter(tags=["shared signals"])
managed = APIRouter(tags=["shared signals"], dependencies=[Depends(no_store)])

_MAX_POLL_EVENTS = 100
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": OAuthError},
    404: {"model": OAuthError},
}


async def _receiver(
    request: Request, claims: Annotated[AccessTokenClaims, Depends(require_scope("ssf"))]
) -> str:
    """The calling client's id: its own token (``client_credentials``), with the scope."""
    if claims.sid or not claims.client_id or claims.sub != claims.client_id:
        request.state.required_scope = "ssf"
        raise InsufficientScope("stream management needs a client's own token (client_credentials)")
    return claims.client_id


Receiver = Annotated[str, Depends(_receiver)]


def _body_doc(schema: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


_STREAM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "stream_id": {"type": "string"},
        "events_requested": {"type": "array", "items": {"type": "string"}},
        "description": {"type": "string"},
        "delivery": {
            "type": "object",
            "properties": {
                "method": {"type": "string", "enum": [PUSH, POLL]},
                "endpoint_url": {"type": "string"},
                "authorization_header": {"type": "string"},
            },
            "required": ["method"],
        },
    },
}


async def _json(request: Request) -> Any:
    ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if ctype != "application/json":
        raise StreamError("the body must be application/json")
    raw = await request.body()
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise StreamError("the body is not valid JSON") from None


@router.get("/.well-known/ssf-configuration", summary="Shared Signals transmitter metadata")
async def ssf_configuration(request: Request) -> dict[str, Any]:
    """OpenID SSF 1.0 §7.1 transmitter configuration metadata."""
    base = get_runtime(request).settings.issuer
    return {
        "spec_version": "1_0",
        "issuer": base,
        "jwks_uri": f"{base}/.well-known/jwks.json",
        "delivery_methods_supported": [PUSH, POLL],
        "configuration_endpoint": f"{base}/ssf/streams",
        "status_endpoint": f"{base}/ssf/status",
        "add_subject_endpoint": f"{base}/ssf/subjects/add",
        "remove_subject_endpoint": f"{base}/ssf/subjects/remove",
        "verification_endpoint": f"{base}/ssf/verify",
        "authorization_schemes": [{"spec_urn": "urn:ietf:rfc:6749"}],
        "default_subjects": "ALL",
    }


@managed.post(
    "/ssf/streams", status_code=201, responses=_ERRORS, openapi_extra=_body_doc(_STREAM_SCHEMA)
)
async def create_stream(request: Request, client_id: Receiver) -> JSON:
    """Create a stream (SSF 1.0 §8.1.1.1)."""
    rt = get_runtime(request)
    stream = await rt.ssf.streams.create(client_id, await _json(request))
    return JSON(rt.ssf.config(stream), status_code=201)


@managed.get("/ssf/streams", responses=_ERRORS)
async def read_streams(
    request: Request,
    client_id: Receiver,
    stream_id: Annotated[str | None, Query(max_length=64)] = None,
) -> Any:
    """One stream's configuration, or every stream of the caller (SSF 1.0 §8.1.1.2)."""
    rt = get_runtime(request)
    if stream_id is not None:
        return rt.ssf.config(await rt.ssf.streams.get(client_id, stream_id))
    return [rt.ssf.config(s) for s in await rt.ssf.streams.list_for(client_id)]


@managed.patch("/ssf/streams", responses=_ERRORS, openapi_extra=_body_doc(_STREAM_SCHEMA))
async def update_stream(request: Request, client_id: Receiver) -> dict[str, Any]:
    """Change the given receiver-supplied properties (SSF 1.0 §8.1.1.3)."""
    rt = get_runtime(request)
    stream = await rt.ssf.streams.update(client_id, await _json(request), replace=False)
    return rt.ssf.config(stream)


@managed.put("/ssf/streams", responses=_ERRORS, openapi_extra=_body_doc(_STREAM_SCHEMA))
async def replace_stream(request: Request, client_id: Receiver) -> dict[str, Any]:
    """Replace the receiver-supplied properties (SSF 1.0 §8.1.1.4)."""
    rt = get_runtime(request)
    stream = await rt.ssf.streams.update(client_id, await _json(request), replace=True)
    return rt.ssf.config(stream)


@managed.delete("/ssf/streams", status_code=204, response_class=Response, responses=_ERRORS)
async def delete_stream(
    request: Request, client_id: Receiver, stream_id: Annotated[str, Query(max_length=64)]
) -> Response:
    """Delete a stream and what it holds (SSF 1.0 §8.1.1.5)."""
    rt = get_runtime(request)
    stream = await rt.ssf.streams.delete(client_id, stream_id)
    await rt.ssf.drop_queue(stream.stream_id)
    return Response(status_code=204)


def _status(stream: Any) -> dict[str, Any]:
    out = {"stream_id": stream.stream_id, "status": stream.status}
    if stream.reason:
        out["reason"] = stream.reason
    return out


@managed.get("/ssf/status", responses=_ERRORS)
async def read_status(
    request: Request, client_id: Receiver, stream_id: Annotated[str, Query(max_length=64)]
) -> dict[str, Any]:
    """A stream's status (SSF 1.0 §8.1.2.1)."""
    return _status(await get_runtime(request).ssf.streams.get(client_id, stream_id))


@managed.post(
    "/ssf/status",
    responses=_ERRORS,
    openapi_extra=_body_doc(
        {
            "type": "object",
            "properties": {
                "stream_id": {"type": "string"},
                "status": {"type": "string", "enum": ["enabled", "paused", "disabled"]},
                "reason": {"type": "string"},
            },
            "required": ["stream_id", "status"],
        }
    ),
)
async def update_status(request: Request, client_id: Receiver) -> dict[str, Any]:
    """Enable, pause (events are held) or disable (events are dropped) a stream (§8.1.2.2)."""
    rt = get_runtime(request)
    body = await _json(request)
    if not isinstance(body, dict) or set(body) - {"stream_id", "status", "reason"}:
        raise StreamError("the body is {stream_id, status, reason}")
    stream, _ = await rt.ssf.streams.set_status(
        client_id, body.get("stream_id"), body.get("status"), body.get("reason")
    )
    if stream.status == "disabled":
        await rt.ssf.drop_queue(stream.stream_id)
    else:
        await rt.ssf.release(stream)
    return _status(stream)


_SUBJECT_DOC = _body_doc(
    {
        "type": "object",
        "properties": {
            "stream_id": {"type": "string"},
            "subject": {"type": "object"},
            "verified": {"type": "boolean"},
        },
        "required": ["stream_id", "subject"],
    }
)


@managed.post("/ssf/subjects/add", responses=_ERRORS, openapi_extra=_SUBJECT_DOC)
async def add_subject(request: Request, client_id: Receiver) -> Response:
    """Deliver events about a subject (SSF 1.0 §8.1.3.2); ``{"format": "all"}``: everyone."""
    rt = get_runtime(request)
    await rt.ssf.streams.subjects(client_id, await _json(request), add=True)
    return Response(status_code=200)


@managed.post(
    "/ssf/subjects/remove",
    status_code=204,
    response_class=Response,
    responses=_ERRORS,
    openapi_extra=_SUBJECT_DOC,
)
async def remove_subject(request: Request, client_id: Receiver) -> Response:
    """Stop events about a subject (SSF 1.0 §8.1.3.3); ``{"format": "all"}``: only those
    added afterwards."""
    rt = get_runtime(request)
    await rt.ssf.streams.subjects(client_id, await _json(request), add=False)
    return Response(status_code=204)


@managed.post(
    "/ssf/verify",
    status_code=204,
    response_class=Response,
    responses={**_ERRORS, 429: {"model": OAuthError}},
    openapi_extra=_body_doc(
        {
            "type": "object",
            "properties": {"stream_id": {"type": "string"}, "state": {"type": "string"}},
            "required": ["stream_id"],
        }
    ),
)
async def verify_stream(request: Request, client_id: Receiver) -> Response:
    """Ask for a verification event on the stream (SSF 1.0 §8.1.4.2)."""
    rt = get_runtime(request)
    body = await _json(request)
    if not isinstance(body, dict) or set(body) - {"stream_id", "state"}:
        raise StreamError("the body is {stream_id, state}")
    state = body.get("state")
    if state is not None and (not isinstance(state, str) or len(state) > 256):
        raise StreamError("state must be a string of at most 256 characters")
    stream = await rt.ssf.streams.get(client_id, body.get("stream_id"))
    if stream.status == "disabled":
        raise StreamError("the stream is disabled")
    stream = await rt.ssf.streams.mark_verified(client_id, stream.stream_id)
    await rt.ssf.verify(stream, state)
    return Response(status_code=204)


def _poll_request(body: Any) -> tuple[list[str], dict[str, dict[str, Any]], int, bool]:
    if not isinstance(body, dict):
        raise StreamError("the body must be a JSON object")
    unknown = set(body) - {"ack", "setErrs", "maxEvents", "returnImmediately"}
    if unknown:
        raise StreamError(f"unknown poll parameter {sorted(unknown)[0]!r}")
    ack = body.get("ack", [])
    if not isinstance(ack, list) or len(ack) > 1000 or not all(isinstance(j, str) for j in ack):
        raise StreamError("ack must be a list of jti strings")
    errs = body.get("setErrs", {})
    if (
        not isinstance(errs, dict)
        or len(errs) > 1000
        or not all(isinstance(v, dict) for v in errs.values())
    ):
        raise StreamError('setErrs must map jti to {"err", "description"}')
    max_events = body.get("maxEvents", _MAX_POLL_EVENTS)
    if isinstance(max_events, bool) or not isinstance(max_events, int) or max_events < 0:
        raise StreamError("maxEvents must be a non-negative integer")
    immediately = body.get("returnImmediately", False)
    if not isinstance(immediately, bool):
        raise StreamError("returnImmediately must be true or false")
    return ack, errs, min(max_events, _MAX_POLL_EVENTS), immediately


@managed.post(
    "/ssf/poll/{stream_id}",
    responses={**_ERRORS, 429: {"model": OAuthError}},
    openapi_extra=_body_doc(
        {
            "type": "object",
            "properties": {
                "ack": {"type": "array", "items": {"type": "string"}},
                "setErrs": {"type": "object"},
                "maxEvents": {"type": "integer", "minimum": 0},
                "returnImmediately": {"type": "boolean"},
            },
        }
    ),
)
async def poll(request: Request, stream_id: str, client_id: Receiver) -> dict[str, Any]:
    """RFC 8936 §2.4 poll: acknowledge SETs, receive the next ones (long-polls up to the
    server's ``feed_max_wait`` unless ``returnImmediately``; a waiting poll counts against the
    feed's concurrent-stream caps, 429 beyond them)."""
    rt = get_runtime(request)
    ack, errs, max_events, immediately = _poll_request(await _json(request))
    stream = await rt.ssf.streams.get(client_id, stream_id)
    if stream.method != POLL:
        raise StreamError("this stream delivers by push, not poll")
    await rt.ssf.streams.touch(stream)
    await rt.ssf.acknowledge(stream.stream_id, ack, errs)
    if stream.status != "enabled":  # a paused stream holds its SETs (SSF 1.0 §8.1.2)
        return {"sets": {}, "moreAvailable": False}
    sets, more = await rt.ssf.take(stream.stream_id, max_events)
    if sets or not max_events or immediately or rt.settings.feed_max_wait <= 0:
        return {"sets": sets, "moreAvailable": more}
    # a waiting poll holds a slot of the feed's caps (FEED_MAX_STREAMS, ..._PER_CLIENT): 429
    # beyond them, like a feed long-poll
    with rt.feed_streams.slot(client_id):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + rt.settings.feed_max_wait
        while not sets and not rt.stopping.is_set():
            left = deadline - loop.time()
            if left <= 0:
                break
            # woken at once by this instance; another instance's SETs are seen within a second
            await rt.until_stopping(rt.ssf.wait(stream.stream_id, min(left, 1.0)))
            sets, more = await rt.ssf.take(stream.stream_id, max_events)
    return {"sets": sets, "moreAvailable": more}


router.include_router(managed)
