"""Errors of the REST API as ``application/problem+json`` (RFC 9457, "Problem Details for HTTP
APIs"), one function per kind, and the exception handlers that turn every refusal into one.

A problem has the RFC's members ``type`` (a URI naming the kind, ``urn:hepatrial:problem:…``;
:data:`KINDS`), ``title`` (the kind in words), ``status``, ``detail`` (what happened, in
words) and ``instance`` (the request's path), plus the extension member ``errors``: one entry
per problem found, ``{location, field, reason}`` with ``pointer`` (RFC 6901 JSON Pointer into
the request body, e.g. ``/1/value`` for the value of the second lab of a list), ``index`` (the
item of a list) and ``record`` (the record the store's rule names, e.g. ``participant K01 visit
W1 lab bilirubin``) when they apply. RFC 9457 §3 lets a problem carry such members.

Status codes: 400 malformed body, 401 no or bad token (with ``WWW-Authenticate: Bearer``,
RFC 6750 §3), 403 a role that may not, 404 no such object — also for an object of a site the
caller does not see (its existence is not revealed) —, 409 a locked record or a concurrent
edit, 413 body too large, 422 the store's rules or the request's schema refuse the input, 503
the store is busy. A handler never lets a refusal commit: every problem response marks the
request's transaction for rollback.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from django.db import DatabaseError, IntegrityError, OperationalError, connection, transaction
from django.http import HttpRequest, HttpResponse
from ninja import Schema
from pydantic import Field

__all__ = [
    "KINDS",
    "MEDIA_TYPE",
    "ApiProblem",
    "Problem",
    "ProblemItem",
    "install_handlers",
    "item",
    "problem",
]

log = logging.getLogger("hepatrial.api")

MEDIA_TYPE = "application/problem+json"

#: kind -> (status, title); ``type`` is ``urn:hepatrial:problem:<kind>``
KINDS: dict[str, tuple[int, str]] = {
    "malformed-body": (400, "Malformed request body"),
    "unauthenticated": (401, "Authentication required"),
    "forbidden": (403, "Not allowed for your role"),
    "not-found": (404, "Not found"),
    "method-not-allowed": (405, "Method not allowed"),
    "record-locked": (409, "Record locked"),
    "conflict": (409, "Concurrent edit"),
    "too-large": (413, "Request body too large"),
    "validation": (422, "Refused by the rules"),
    "server-error": (500, "Internal error"),
    "unavailable": (503, "Store busy"),
}


class ProblemItem(Schema):
    """One problem: where (``location``, ``field``, ``pointer``, ``index``) and why."""

    location: Literal["body", "query", "path", "header"]
    field: str
    reason: str
    pointer: str | None = None
    index: int | None = None
    record: str | None = None


class Problem(Schema):
    """RFC 9457 problem details with the list of problems found (``errors``)."""

    type: str
    title: str
    status: int
    detail: str
    instance: str
    errors: list[ProblemItem] = Field(default_factory=list)


class ApiProblem(Exception):
    """Raised by an endpoint to answer with a problem (handled by :func:`install_handlers`)."""

    def __init__(self, kind: str, detail: str, errors: Sequence[Mapping[str, Any]] = (),
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail)
        self.kind, self.detail = kind, detail
        self.errors = list(errors)
        self.headers = dict(headers or {})


def item(location: str, field: str, reason: str, *, pointer: str | None = None,
         index: int | None = None, record: str | None = None) -> dict[str, Any]:
    """One entry of a problem's ``errors``."""
    return {"location": location, "field": field, "reason": reason, "pointer": pointer,
            "index": index, "record": record}


def problem(request: HttpRequest, kind: str, detail: str,
            errors: Iterable[Mapping[str, Any]] = (),
            headers: Mapping[str, str] | None = None) -> HttpResponse:
    """The ``application/problem+json`` response of ``kind`` (:data:`KINDS`); rolls back the
    request's transaction (a refused request writes nothing)."""
    status, title = KINDS[kind]
    body = {"type": f"urn:hepatrial:problem:{kind}", "title": title, "status": status,
            "detail": detail, "instance": request.path, "errors": [dict(e) for e in errors]}
    if connection.in_atomic_block:
        transaction.set_rollback(True)
    resp = HttpResponse(json.dumps(body, ensure_ascii=True), status=status,
                        content_type=MEDIA_TYPE)
    for k, v in (headers or {}).items():
        resp[k] = v
    return resp


def _bearer_challenge(description: str | None = None) -> dict[str, str]:
    """``WWW-Authenticate`` of a 401 (RFC 6750 §3: ``invalid_token`` when one was sent)."""
    if description is None:
        return {"WWW-Authenticate": 'Bearer realm="hepatrial"'}
    text = description.encode("ascii", "replace").decode().replace("\\", "/").replace('"', "'")
    return {"WWW-Authenticate": f'Bearer realm="hepatrial", error="invalid_token", '
                                f'error_description="{text}"'}


_PARAM_SOURCES = {"body": "body", "query": "query", "path": "path", "header": "header"}


def validation_items(errors: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """django-ninja/pydantic validation errors (``loc``, ``msg``) as problem items."""
    out = []
    for e in errors:
        loc = [str(x) if not isinstance(x, int) else x for x in e.get("loc", ())]
        source = _PARAM_SOURCES.get(str(loc[0]) if loc else "", "query")
        rest = loc[1:]
        names = [x for x in rest if isinstance(x, str)]
        out.append(item(source, names[-1] if names else "", str(e.get("msg", "invalid")),
                        pointer=("/" + "/".join(str(x) for x in rest)) if source == "body"
                        else None))
    return out


def install_handlers(api: Any) -> None:
    """Answer every exception an endpoint lets out with a problem (never Django's HTML pages,
    never a traceback)."""
    from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
    from django.http import Http404
    from ninja.errors import AuthenticationError, HttpError, ValidationError

    from hepatrial import errors as E
    from hepatrial.trials.validators import RuleViolation

    def on_problem(request: HttpRequest, exc: ApiProblem) -> HttpResponse:
        return problem(request, exc.kind, exc.detail, exc.errors, exc.headers)

    def on_no_auth(request: HttpRequest, exc: Exception) -> HttpResponse:
        return problem(request, "unauthenticated",
                       "no bearer token: send 'Authorization: Bearer TOKEN' (a token is made "
                       "by: hepatrial user token NAME)", headers=_bearer_challenge())

    def on_bad_token(request: HttpRequest, exc: Exception) -> HttpResponse:
        return problem(request, "unauthenticated", str(exc),
                       headers=_bearer_challenge(str(exc)))

    def on_denied(request: HttpRequest, exc: Exception) -> HttpResponse:
        return problem(request, "forbidden", str(exc))

    def on_not_found(request: HttpRequest, exc: Exception) -> HttpResponse:
        return problem(request, "not-found", str(exc) or "not found")

    def on_locked(request: HttpRequest, exc: Exception) -> HttpResponse:
        return problem(request, "record-locked", str(exc))

    def on_conflict(request: HttpRequest, exc: Exception) -> HttpResponse:
        return problem(request, "conflict", "another request changed the same record at the "
                       "same time; read it again and retry")

    def on_rules(request: HttpRequest, exc: RuleViolation) -> HttpResponse:
        return problem(request, "validation", str(exc), [
            item("body", p.field, p.reason, record=p.record) for p in exc.problems])

    def on_store(request: HttpRequest, exc: Exception) -> HttpResponse:
        return problem(request, "validation", str(exc), [item("body", "", str(exc))])

    def on_schema(request: HttpRequest, exc: ValidationError) -> HttpResponse:
        items = validation_items(exc.errors)
        detail = "; ".join(f"{i['field'] or i['location']}: {i['reason']}" for i in items)
        return problem(request, "validation", detail or "invalid request", items)

    def on_http(request: HttpRequest, exc: HttpError) -> HttpResponse:
        kind = {400: "malformed-body", 401: "unauthenticated", 403: "forbidden",
                404: "not-found", 413: "too-large"}.get(exc.status_code, "malformed-body")
        return problem(request, kind, str(exc))

    def on_too_big(request: HttpRequest, exc: Exception) -> HttpResponse:
        return problem(request, "too-large", "the request body is larger than the server "
                       "accepts (DATA_UPLOAD_MAX_MEMORY_SIZE)")

    def on_suspicious(request: HttpRequest, exc: Exception) -> HttpResponse:
        return problem(request, "malformed-body", "the request was refused as malformed")

    def on_busy(request: HttpRequest, exc: Exception) -> HttpResponse:
        log.warning("API: store busy: %s", exc)
        return problem(request, "unavailable", "the store is busy; retry in a few seconds",
                       headers={"Retry-After": "5"})

    def on_internal(request: HttpRequest, exc: Exception) -> HttpResponse:
        log.exception("API: internal error on %s %s", request.method, request.path)
        return problem(request, "server-error", "internal error (logged on the server)")

    for cls, fn in [
        (ApiProblem, on_problem),
        (AuthenticationError, on_no_auth),
        (E.AuthenticationFailed, on_bad_token),
        (E.PermissionDenied, on_denied),
        (E.NotFoundError, on_not_found),
        (Http404, on_not_found),
        (E.RecordLocked, on_locked),
        (E.ConcurrentEditError, on_conflict),
        (IntegrityError, on_conflict),
        (RuleViolation, on_rules),
        (E.InputError, on_store),
        (ValidationError, on_schema),
        (HttpError, on_http),
        (RequestDataTooBig, on_too_big),
        (SuspiciousOperation, on_suspicious),
        (OperationalError, on_busy),
        (DatabaseError, on_internal),
        (Exception, on_internal),
    ]:
        api.add_exception_handler(cls, fn)
