"""The endpoints of the REST API ``/api/v1/`` (django-ninja; OpenAPI 3 at ``openapi.json``).

Who may see what is decided on the server for every call, by the same matrix as every other
path (:mod:`hepatrial.trials.services.permissions`): a token acts as its account; reads are
scoped to the account's sites (an object of another site answers 404, exactly like one that
does not exist, so its existence is not revealed); a write needs the action's permission on
the participant's site (403 for a role that may not) and goes through the services
(:func:`hepatrial.trials.services.record_lab`), so the store's validators, locks and the
signatures' invalidation apply as on every other path. Errors are RFC 9457 problems
(:mod:`.problems`).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any, Literal

from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, path, re_path
from django.views.decorators.csrf import csrf_exempt
from ninja import NinjaAPI, Path, Query
from pydantic import ValidationError as PydanticError

from hepatrial import vocab
from hepatrial.textrules import text_problem
from hepatrial.trials.api import problems as P
from hepatrial.trials.api.auth import BearerToken
from hepatrial.trials.api.schemas import (
    MAX_LABS,
    LabIn,
    LabsCreated,
    Me,
    ParticipantOut,
    ParticipantPage,
    QueryPage,
    VisitOut,
)

__all__ = ["Caller", "HepatrialAPI", "api", "not_found"]

DESCRIPTION = """\
The REST API of a hepatrial trial store.

**Authentication**: every operation needs `Authorization: Bearer TOKEN`; a token is made for an
account by `hepatrial user token NAME` (shown once, stored hashed, revocable) and acts as that
account, with its role and sites.

**Errors** are `application/problem+json` (RFC 9457): `type`, `title`, `status`, `detail`,
`instance` and `errors`, one entry per problem (`location`, `field`, `reason`, and for the body
`pointer`, a JSON Pointer such as `/1/value`, and `index`, the item of a list). 401: no or bad
token; 403: the account's role may not; 404: no such object *or* an object of a site the account
does not act on; 409: a locked record or a concurrent edit; 422: refused by the store's rules.
"""

_PROBLEM = P.Problem
_READ = {401: _PROBLEM, 403: _PROBLEM, 404: _PROBLEM, 422: _PROBLEM, 503: _PROBLEM}
_WRITE = {400: _PROBLEM, 401: _PROBLEM, 403: _PROBLEM, 404: _PROBLEM, 409: _PROBLEM,
          413: _PROBLEM, 422: _PROBLEM, 503: _PROBLEM}

#: status -> what the OpenAPI document says of a problem response
_DESCRIPTIONS = {
    400: "malformed body (not JSON, not UTF-8, empty)",
    401: "no bearer token, or an unknown, expired or revoked one",
    403: "the account's role may not do this",
    404: "no such object, or one of a site the account does not act on",
    409: "the record is locked, or another request changed it at the same time",
    413: "request body too large",
    422: "refused by the store's rules or the request's schema; errors lists each problem",
    503: "the store is busy; retry",
}

ParticipantStatus = Literal[tuple(vocab.codes(vocab.PARTICIPANT_STATUS))]  # type: ignore[valid-type]
QueryStatus = Literal[tuple(vocab.codes(vocab.QUERY_STATUS))]  # type: ignore[valid-type]


def _problem_405(view: Any) -> Any:
    """``view`` whose 405 answer (django-ninja's plain text) is a problem with ``Allow``."""

    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        resp = view(request, *args, **kwargs)
        if resp.status_code == 405 and not resp.get("Content-Type", "").startswith(
                P.MEDIA_TYPE):
            allow = resp.get("Allow", "")
            return P.problem(request, "method-not-allowed",
                             f"{request.method} is not allowed here (allowed: {allow})",
                             headers={"Allow": allow})
        return resp

    return wrapped


@csrf_exempt
def not_found(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
    """Any path under ``/api/v1/`` that names no operation: a 404 problem."""
    return P.problem(request, "not-found", f"no API operation at {request.path} (the "
                     "operations are listed in /api/v1/openapi.json)")


class HepatrialAPI(NinjaAPI):
    """django-ninja API whose every answer, also for unknown paths and methods, is JSON, and
    whose OpenAPI document gives the errors' media type (``application/problem+json``)."""

    def _get_urls(self) -> list[Any]:
        urls = []
        for u in super()._get_urls():
            if isinstance(u, URLPattern) and u.name == "api-root":
                u = path("", not_found, name="api-root")
            elif isinstance(u, URLPattern):
                u = URLPattern(u.pattern, _problem_405(u.callback), u.default_args, u.name)
            urls.append(u)
        urls.append(re_path(r"^.+$", not_found, name="not-found"))
        return urls

    def get_openapi_schema(self, *args: Any, **kwargs: Any) -> Any:
        """The OpenAPI document, with the problem responses as ``application/problem+json``
        and their ``WWW-Authenticate`` (401) and ``Retry-After`` (503) headers."""
        schema = super().get_openapi_schema(*args, **kwargs)
        schema["components"].setdefault("schemas", {})["LabIn"] = LabIn.model_json_schema(
            ref_template="#/components/schemas/{model}")
        for ops in schema["paths"].values():
            for op in ops.values():
                for code, resp in op.get("responses", {}).items():
                    if int(code) >= 400 and "application/json" in resp.get("content", {}):
                        resp["content"] = {P.MEDIA_TYPE: resp["content"]["application/json"]}
                        resp["description"] = _DESCRIPTIONS.get(int(code), resp.get(
                            "description", ""))
                    if int(code) == 401:
                        resp["headers"] = {"WWW-Authenticate": {
                            "description": "Bearer challenge (RFC 6750)",
                            "schema": {"type": "string"}}}
                    if int(code) == 503:
                        resp["headers"] = {"Retry-After": {
                            "description": "seconds", "schema": {"type": "string"}}}
        return schema


api = HepatrialAPI(
    title="hepatrial REST API",
    version="1",
    description=DESCRIPTION,
    urls_namespace="api",
    auth=BearerToken(),
    docs_url=None,
)
P.install_handlers(api)


# ------------------------------------------------------------------------------ helpers
@dataclass(frozen=True)
class Caller:
    """The account a request acts as: its role and the sites it sees."""

    user: Any
    role: str
    site_ids: frozenset[int]


def _caller(request: HttpRequest, query: frozenset[str] = frozenset()) -> Caller:
    """The caller; a query parameter the operation does not have (``query``) is refused
    (422), never ignored: a mistyped filter must not silently return everything."""
    from hepatrial.errors import PermissionDenied
    from hepatrial.trials.services.permissions import allowed, role_of, site_ids_of

    unknown = sorted(set(request.GET) - query)
    if unknown:
        known = ", ".join(sorted(query)) or "none"
        names = ", ".join(map(repr, unknown))
        raise P.ApiProblem("validation", f"unknown query parameter(s) {names} (this "
                           f"operation has: {known})",
                           [P.item("query", k, f"not a parameter of this operation (it has: "
                                   f"{known})") for k in unknown])
    user = request.auth  # type: ignore[attr-defined]
    role = role_of(user)
    if role is None or not allowed("view", role):
        raise PermissionDenied(f"view: account {user.get_username()!r} ({role or 'no role'}) "
                               "may not read participant records")
    return Caller(user, role, frozenset(site_ids_of(user)))


def _key(value: str, what: str, max_length: int) -> str:
    """A path or filter key that cannot name a stored object (control characters, too long)
    answers 404 like any unknown one, before it reaches the database."""
    if text_problem(value, max_length):
        raise P.ApiProblem("not-found", f"no {what} {value!r}")
    return value


def _participant(caller: Caller, study_id: str) -> dict[str, Any]:
    from hepatrial.trials import selectors

    _key(study_id, "participant", 40)
    row = selectors.api_participant(study_id, caller.site_ids)
    if row is None:
        raise P.ApiProblem("not-found", f"no participant {study_id!r}")
    return row


def _lab_out(row: Any) -> dict[str, Any]:
    from hepatrial.protocol import analytes

    get = row.get if isinstance(row, dict) else functools.partial(getattr, row)
    return {
        "analyte": get("analyte"), "value_as_entered": get("value_as_entered"),
        "unit_as_entered": get("unit_as_entered"), "value": get("value"), "unit": get("unit"),
        "loinc": get("loinc"), "laboratory": get("laboratory"),
        "specimen_date": get("specimen_date"),
        "range_flag": analytes.range_flag(get("analyte"), get("value"))
        if analytes.is_known(get("analyte")) else "unknown",
    }  # fmt: skip


# ---------------------------------------------------------------------------- endpoints
@api.get("/me", response={200: Me, **_READ}, operation_id="me", tags=["accounts"])
def me(request: HttpRequest) -> dict[str, Any]:
    """The account the token acts as: user name, role and the codes of its sites."""
    from hepatrial.trials.models import Site

    caller = _caller(request)
    codes = sorted(Site.objects.filter(pk__in=caller.site_ids).values_list("code", flat=True))
    return {"username": caller.user.get_username(), "role": caller.role, "sites": codes}


@api.get("/participants", response={200: ParticipantPage, **_READ},
         operation_id="list_participants", tags=["participants"])
def list_participants(
    request: HttpRequest,
    site: Annotated[str | None, Query(description="only this site (code)",
                                      examples=["S01"])] = None,
    status: Annotated[ParticipantStatus | None, Query(description="only this status")] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="at most this many")] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000, description="skip this many")] = 0,
) -> dict[str, Any]:
    """The participants of the sites the account acts on, by study id (a site the account
    does not act on answers 404)."""
    from hepatrial.trials import selectors
    from hepatrial.trials.models import Site

    caller = _caller(request, frozenset({"site", "status", "limit", "offset"}))
    if site is not None:
        _key(site, "site", 30)
        if not Site.objects.filter(code=site, pk__in=caller.site_ids).exists():
            raise P.ApiProblem("not-found", f"no site {site!r}")
    total, rows = selectors.api_participants(caller.site_ids, site=site, status=status,
                                             limit=limit, offset=offset)
    return {"count": total, "limit": limit, "offset": offset, "items": rows}


@api.get("/participants/{study_id}", response={200: ParticipantOut, **_READ},
         operation_id="get_participant", tags=["participants"])
def get_participant(
    request: HttpRequest, study_id: Annotated[str, Path(examples=["K01"])],
) -> dict[str, Any]:
    """One participant (404 when there is none with this study id at the account's sites)."""
    return _participant(_caller(request), study_id)


@api.get("/participants/{study_id}/visits", response={200: list[VisitOut], **_READ},
         operation_id="list_visits", tags=["visits"])
def list_visits(
    request: HttpRequest, study_id: Annotated[str, Path(examples=["K01"])],
) -> list[dict[str, Any]]:
    """The participant's protocol visits: window dates (earliest, target, latest), actual
    date and day, status, and the lab results of each."""
    from hepatrial.trials import selectors

    caller = _caller(request)
    _participant(caller, study_id)
    visits = selectors.api_visits(study_id, caller.site_ids) or []
    for v in visits:
        v["labs"] = [_lab_out(lab) for lab in v["labs"]]
    return visits


@api.get("/queries", response={200: QueryPage, **_READ}, operation_id="list_queries",
         tags=["queries"])
def list_queries(
    request: HttpRequest,
    status: Annotated[QueryStatus, Query(description="open (waiting for the site; the "
                                          "default), answered (waiting for the raiser) or "
                                          "closed")] = "open",
    participant: Annotated[str | None, Query(description="only this participant (study id)",
                                             examples=["K01"])] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="at most this many")] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000, description="skip this many")] = 0,
) -> dict[str, Any]:
    """The data queries of the participants of the sites the account acts on (the open ones
    unless ``status`` says otherwise), oldest first, each with its thread. A participant of a
    site the account does not act on answers 404."""
    from hepatrial.trials import selectors

    caller = _caller(request, frozenset({"status", "participant", "limit", "offset"}))
    if participant is not None:
        _participant(caller, participant)
    total, rows = selectors.api_queries(caller.site_ids, status=status,
                                        participant=participant, limit=limit, offset=offset)
    return {"count": total, "limit": limit, "offset": offset, "items": rows}


_LAB_BODY = {
    "required": True,
    "content": {"application/json": {"schema": {
        "oneOf": [
            {"$ref": "#/components/schemas/LabIn"},
            {"type": "array", "items": {"$ref": "#/components/schemas/LabIn"}, "minItems": 1,
             "maxItems": MAX_LABS},
        ]}}},
    "description": "one lab result, or a list of them (all recorded or none)",
}
#: a store rule's field -> the request's field (``visit`` is the path's visit code)
_BODY_FIELD = {"specimen_date": "date", "visit": "visit_code"}


def _pointer(single: bool, index: int, *rest: Any) -> str:
    """RFC 6901 JSON Pointer to item ``index`` of the body (or the body itself when it is one
    object), then ``rest``; ``""`` is the whole body."""
    parts = ([] if single else [str(index)]) + [str(x) for x in rest]
    return "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in parts)


def _decimal(text: str) -> Decimal:
    return Decimal(text)


def _no_constant(text: str) -> Any:
    raise ValueError(f"{text} is not a JSON number (RFC 8259 §6)")


def _json_body(request: HttpRequest) -> Any:
    raw = request.body
    if not raw.strip():
        raise P.ApiProblem("malformed-body", "the body is empty: send a lab result (a JSON "
                           "object) or a list of them")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise P.ApiProblem("malformed-body", f"the body is not UTF-8 (byte {exc.start})") \
            from None
    try:
        return json.loads(text, parse_float=_decimal, parse_int=_decimal,
                          parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise P.ApiProblem("malformed-body", f"the body is not JSON: {exc}") from None


def _lab_items(
    body: Any,
) -> tuple[bool, int, list[tuple[int, LabIn]], list[dict[str, Any]]]:
    """``(single, n, [(index, lab)], problems)``: the form of a body (an object or a list of
    ``n``) checked against :class:`LabIn`, item by item."""
    single = isinstance(body, dict)
    items = [body] if single else body
    if not isinstance(items, list):
        raise P.ApiProblem("validation", "the body must be a lab result (a JSON object) or a "
                           "list of them", [P.item("body", "", "not an object or a list",
                                                   pointer="")])
    if not items:
        raise P.ApiProblem("validation", "the list of lab results is empty",
                           [P.item("body", "", "empty list", pointer="")])
    if len(items) > MAX_LABS:
        raise P.ApiProblem("validation", f"{len(items)} lab results in one request; at most "
                           f"{MAX_LABS}", [P.item("body", "", f"more than {MAX_LABS} items",
                                                  pointer="")])
    good, bad = [], []
    for i, obj in enumerate(items):
        idx = None if single else i
        if not isinstance(obj, dict):
            bad.append(P.item("body", "", "not an object", pointer=_pointer(single, i),
                              index=idx))
            continue
        try:
            good.append((i, LabIn.model_validate(obj)))
        except PydanticError as exc:
            for e in exc.errors(include_url=False):
                loc = list(e["loc"])
                names = [x for x in loc if isinstance(x, str)]
                msg = str(e["msg"]).removeprefix("Value error, ")
                bad.append(P.item("body", names[0] if names else "", msg,
                                  pointer=_pointer(single, i, *loc), index=idx))
    return single, len(items), good, bad


class _Refused(Exception):
    pass


@api.post("/participants/{study_id}/visits/{visit_code}/labs",
          response={201: LabsCreated, **_WRITE}, operation_id="record_labs", tags=["visits"],
          openapi_extra={"requestBody": _LAB_BODY})
def record_labs(
    request: HttpRequest,
    study_id: Annotated[str, Path(examples=["K01"])],
    visit_code: Annotated[str, Path(examples=["W1"])],
) -> Any:
    """Record lab results of a visit: one (a JSON object) or several (a list), all in one
    transaction — every result is recorded or none, and a refusal lists every problem with
    its index in the list, field and reason. The value is kept as entered (a JSON number as
    written: ``2.30`` stays ``"2.30"``) and converted to the analyte's canonical unit. Needs
    ``enter_data`` on the participant's site (coordinator, investigator, data manager)."""
    from ninja import Status

    from hepatrial.errors import ChangeReasonRequired, RecordLocked, StoreError
    from hepatrial.trials import selectors, services
    from hepatrial.trials.services.permissions import require_permission
    from hepatrial.trials.validators import RuleViolation

    caller = _caller(request)
    _participant(caller, study_id)
    _key(visit_code, "visit", 20)
    visits = selectors.api_visits(study_id, caller.site_ids) or []
    if visit_code not in {v["code"] for v in visits}:
        known = ", ".join(v["code"] for v in visits) or "none"
        raise P.ApiProblem("not-found", f"participant {study_id}: no visit {visit_code!r} "
                           f"(visits: {known})")
    require_permission(caller.user, "enter_data", study_id)
    single, total, labs, problems = _lab_items(_json_body(request))
    created = []
    try:
        with transaction.atomic():
            for i, lab in labs:
                idx = None if single else i
                try:
                    with transaction.atomic():
                        created.append(services.record_lab(
                            participant=study_id, visit_code=visit_code, analyte=lab.analyte,
                            value=lab.value, unit=lab.unit, laboratory=lab.laboratory,
                            specimen_date=lab.date, user=caller.user,
                            confirmed_out_of_range=lab.confirmed_out_of_range))
                except RuleViolation as exc:
                    for p in exc.problems:
                        field = _BODY_FIELD.get(p.field, p.field)
                        where = "path" if field == "visit_code" else "body"
                        problems.append(P.item(
                            where, field, p.reason, index=idx, record=p.record,
                            pointer=None if where != "body" else
                            _pointer(single, i, *([field] if field else []))))
                except (RecordLocked, ChangeReasonRequired):
                    raise
                except StoreError as exc:
                    problems.append(P.item("body", "", str(exc), index=idx,
                                           pointer=_pointer(single, i)))
            if problems:
                raise _Refused
    except _Refused:
        problems.sort(key=lambda e: -1 if e["index"] is None else e["index"])
        n = len({e["index"] for e in problems})
        what = "the lab result was" if single else f"{n} of {total} lab results were"
        raise P.ApiProblem("validation", f"nothing recorded: {what} refused: " + "; ".join(
            (f"[{e['index']}] " if e["index"] is not None else "")
            + (f"{e['field']}: " if e["field"] else "") + e["reason"] for e in problems),
            problems) from None
    return Status(201, {"participant": study_id, "visit": visit_code,
                        "items": [_lab_out(lab) for lab in created]})

