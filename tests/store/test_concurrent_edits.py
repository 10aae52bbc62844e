"""Optimistic concurrency of the edit forms (issue 8): two sessions load one record's form,
the first saves, the second's save is refused naming who changed what and when, nothing of it
is written, and a field the second user never touched is never put back.

Every session works as a browser does: it GETs the page, reads the form's fields (the hidden
version included) from the HTML, changes what its user changes and POSTs the whole form.
The admin cases run on SQLite here and on PostgreSQL in tests/_engines/test_store_on_postgresql.py;
the race of two saves waiting on one lock is tested on both engines with two processes.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from tests.store.conftest import enrol
from tests.store.test_e2e_cli import backend  # noqa: F401  (fixture: fresh SQLite / PostgreSQL)
from tests.web.conftest import World, world  # noqa: F401  (fixture: the eCRF's store)

REPO = Path(__file__).resolve().parents[2]
VERSION = "loaded_version"


class _FormFields(HTMLParser):
    """The (name, value) pairs a browser submits for ``<form id=FORM_ID>`` (``""``: a post
    form without an id): inputs (checked
    boxes only), the selected options of each select, textareas; no buttons."""

    def __init__(self, form_id: str) -> None:
        super().__init__()
        self.form_id, self.inside, self.pairs = form_id, False, []
        self._select: tuple[str, bool] | None = None
        self._options: list[tuple[str, bool]] = []
        self._textarea: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form":
            self.inside = a.get("id") == self.form_id if self.form_id else (
                "id" not in a and (a.get("method") or "").lower() == "post")
        if not self.inside:
            return
        if tag == "input" and a.get("name"):
            kind = (a.get("type") or "text").lower()
            if kind in ("submit", "button", "reset", "image", "file"):
                return
            if kind in ("checkbox", "radio") and "checked" not in a:
                return
            default = "on" if kind in ("checkbox", "radio") else ""
            self.pairs.append((a["name"] or "", a["value"] or "" if "value" in a else default))
        elif tag == "select" and a.get("name"):
            self._select, self._options = (a["name"] or "", "multiple" in a), []
        elif tag == "option" and self._select is not None:
            self._options.append((a.get("value") or "", "selected" in a))
        elif tag == "textarea" and a.get("name"):
            self._textarea, self._text = a["name"], []

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.inside = False
        elif tag == "select" and self._select is not None:
            name, multiple = self._select
            chosen = [v for v, sel in self._options if sel]
            if not chosen and not multiple and self._options:
                chosen = [self._options[0][0]]
            self.pairs += [(name, v) for v in chosen]
            self._select = None
        elif tag == "textarea" and self._textarea is not None:
            text = "".join(self._text)
            self.pairs.append((self._textarea, text[1:] if text.startswith("\n") else text))
            self._textarea = None

    def handle_data(self, data: str) -> None:
        if self._textarea is not None:
            self._text.append(data)


def form_of(response: Any, form_id: str) -> dict[str, Any]:
    """The form as the browser would submit it (a list value for a repeated name)."""
    assert response.status_code in (200, 409), response.status_code
    parser = _FormFields(form_id)
    parser.feed(response.content.decode())
    assert parser.pairs, f"no form {form_id!r} in the page"
    out: dict[str, Any] = {}
    for k, v in parser.pairs:
        out.setdefault(k, []).append(v)
    return {k: v[0] if len(v) == 1 else v for k, v in out.items()}


def session(user: Any) -> Client:
    c = Client()
    c.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
    return c


def history_count(obj: Any) -> int:
    return int(obj.history.count())


@pytest.fixture
def users(store: Any) -> dict[str, Any]:
    """K01 enrolled at S01 (day 0 2008-01-20); two data managers and a coordinator of S01."""
    enrol(store, "K01", "S01")
    return {name: store.create_user(username=name, password=None, role=role,
                                    site_codes=["S01"])
            for name, role in (("dm", "data-manager"), ("dm2", "data-manager"),
                               ("coord", "coordinator"))}


def _ae(store: Any, **over: Any) -> Any:
    from hepatrial.trials.services import safety

    values = {"term": "Nausea", "grade": 3, "serious": False, "seriousness_criteria": [],
              "relatedness_product": "unlikely", "relatedness_procedure": "not_related",
              "onset_date": dt.date(2008, 1, 21), "resolution_date": None,
              "outcome": "unknown", "action_taken": "none", **over}  # fmt: skip
    return safety.record_adverse_event(participant="K01", **values)


def stale_admin_save(s1: Client, s2: Client, url: str, form_id: str, first: dict[str, Any],
                     second: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], Any]:
    """Both sessions load the admin change form at ``url``; ``s1`` saves its form with
    ``first`` (must pass: 302), then ``s2`` posts the form it loaded before with ``second``.
    ``(s1's form, s2's form, s2's response)``."""
    f1, f2 = form_of(s1.get(url), form_id), form_of(s2.get(url), form_id)
    r = s1.post(url, {**f1, **first, "_save": 1})
    assert r.status_code == 302, r.content.decode()[:3000]
    return f1, f2, s2.post(url, {**f2, **second, "_save": 1})


def _refused(r: Any, who: str) -> str:
    """The page of a refused save: 409, the message names who changed it, the current form."""
    page = r.content.decode()
    assert r.status_code == 409, page[:3000]
    assert f"by {who} at " in page and "since you loaded this form" in page, page[:5000]
    assert "reload the page to see the change, then edit again" in page
    return page


# ---------------------------------------------------------------------- admin
def test_admin_adverse_event_term_recode_and_grade_change(store: Any, users: Any) -> None:
    """Session 1 recodes the term, session 2 (loaded before) changes the grade: refused with
    who and when; the event keeps session 1's term and grade 3; one new history row."""
    ae = _ae(store)
    url = f"/admin/trials/adverseevent/{ae.pk}/change/"
    loaded = str(ae.history.latest("history_id").history_id)
    before = history_count(ae)
    s1, s2 = session(users["dm"]), session(users["dm2"])
    f1, f2, r = stale_admin_save(s1, s2, url, "adverseevent_form",
                                 {"term": "Vomiting", "change_reason": "recoded the term"},
                                 {"grade": "2", "change_reason": "grade corrected"})
    assert f1[VERSION] == f2[VERSION] == loaded
    assert (f1["term"], f1["grade"]) == ("Nausea", "3")
    page = _refused(r, "dm")
    assert "term: &#x27;Nausea&#x27; -&gt; &#x27;Vomiting&#x27;" in page
    ae.refresh_from_db()
    assert (ae.term, ae.grade) == ("Vomiting", 3)
    assert history_count(ae) == before + 1
    last = ae.history.latest("history_id")
    assert (last.history_user.username, last.history_change_reason) == ("dm", "recoded the term")
    # the page shown is the record as stored now, with its current version: saving it works
    again = form_of(r, "adverseevent_form")
    assert (again["term"], again["grade"], again[VERSION]) == ("Vomiting", "3",
                                                               str(last.history_id))
    r = s2.post(url, {**again, "grade": "2", "change_reason": "grade corrected", "_save": 1})
    assert r.status_code == 302, r.content.decode()[:3000]
    ae.refresh_from_db()
    assert (ae.term, ae.grade) == ("Vomiting", 2)
    assert history_count(ae) == before + 2
    from hepatrial.trials import audit

    assert audit.verify() == []


def test_admin_never_puts_back_a_field_the_user_did_not_touch(store: Any, users: Any) -> None:
    """The issue's case: session 1 raises the grade 1 -> 3, session 2 (loaded at grade 1)
    recodes the term; without the version the admin would write grade 1 back."""
    ae = _ae(store, grade=1)
    url = f"/admin/trials/adverseevent/{ae.pk}/change/"
    _f1, _f2, r = stale_admin_save(session(users["dm"]), session(users["dm2"]), url,
                                   "adverseevent_form",
                                   {"grade": "3", "change_reason": "worsened"},
                                   {"term": "Vomiting", "change_reason": "recoded"})
    page = _refused(r, "dm")
    assert "grade: 1 -&gt; 3" in page
    ae.refresh_from_db()
    assert (ae.term, ae.grade) == ("Nausea", 3)
    assert [h.grade for h in ae.history.order_by("history_id")] == [1, 3]


def test_admin_participant(store: Any, users: Any) -> None:
    from hepatrial.trials.models import Participant

    p = Participant.objects.get(study_id="K01")
    url = f"/admin/trials/participant/{p.pk}/change/"
    before = history_count(p)
    _f1, _f2, r = stale_admin_save(
        session(users["dm"]), session(users["dm2"]), url, "participant_form",
        {"year_of_birth": "1961", "change_reason": "source document check"},
        {"etiology": "HCV", "change_reason": "aetiology corrected"})
    page = _refused(r, "dm")
    assert "year of birth: 1960 -&gt; 1961" in page.lower()
    p.refresh_from_db()
    assert (p.year_of_birth, p.etiology) == (1961, "HBV")
    assert history_count(p) == before + 1
    assert form_of(r, "participant_form")["year_of_birth"] == "1961"


def test_admin_lab_result(store: Any, users: Any) -> None:
    store.record_visit(participant="K01", visit_code="D0", actual_date="2008-01-20")
    lab = store.record_lab(participant="K01", visit_code="D0", analyte="creatinine",
                           value="1.0", unit="mg/dL")
    url = f"/admin/trials/labresult/{lab.pk}/change/"
    before = history_count(lab)
    _f1, _f2, r = stale_admin_save(
        session(users["coord"]), session(users["dm"]), url, "labresult_form",
        {"value_as_entered": "1.2", "change_reason": "transcription error"},
        {"laboratory": "central lab", "change_reason": "lab named"})
    _refused(r, "coord")
    lab.refresh_from_db()
    assert (lab.value_as_entered, lab.unit_as_entered, lab.laboratory) == ("1.2", "mg/dL", "")
    assert history_count(lab) == before + 1


def test_admin_delete_of_a_changed_record_refused(store: Any, users: Any) -> None:
    """The delete confirmation page carries the version: a record changed since it was
    loaded is not deleted (409, the page shown again with the current version)."""
    from hepatrial.trials.models import LabResult

    store.record_visit(participant="K01", visit_code="D0", actual_date="2008-01-20")
    lab = store.record_lab(participant="K01", visit_code="D0", analyte="creatinine",
                           value="1.0", unit="mg/dL")
    s1, s2 = session(users["coord"]), session(users["dm"])
    change, delete = (f"/admin/trials/labresult/{lab.pk}/{x}/" for x in ("change", "delete"))
    f1 = form_of(s1.get(change), "labresult_form")
    page = s2.get(delete)
    d2 = form_of(page, "")  # the confirmation form has no id
    assert d2[VERSION] == f1[VERSION]
    r = s1.post(change, {**f1, "value_as_entered": "1.2", "change_reason": "transcription",
                         "_save": 1})
    assert r.status_code == 302, r.content.decode()[:3000]
    r = s2.post(delete, {**d2, "change_reason": "entered twice"})
    _refused(r, "coord")
    lab.refresh_from_db()
    assert lab.value_as_entered == "1.2"
    again = form_of(r, "")
    r = s2.post(delete, {**again, "change_reason": "entered twice"})
    assert r.status_code == 302, r.content.decode()[:3000]
    assert not LabResult.objects.filter(pk=lab.pk).exists()


def test_admin_plain_model_and_a_forged_version(store: Any, users: Any) -> None:
    """A record saved by the default admin path (a site) and a version that is not one."""
    from hepatrial.trials.models import Site

    root = store.create_user(username="root", password=None, superuser=True)
    root2 = store.create_user(username="root2", password=None, superuser=True)
    site = Site.objects.get(code="S01")
    url = f"/admin/trials/site/{site.pk}/change/"
    s1 = session(root)
    f1, _f2, r = stale_admin_save(s1, session(root2), url, "site_form",
                                  {"name": "first site", "change_reason": "renamed"},
                                  {"name": "other name", "change_reason": "renamed"})
    _refused(r, "root")
    site.refresh_from_db()
    assert site.name == "first site"
    r = s1.post(url, {**f1, VERSION: "12abc", "name": "x", "change_reason": "y", "_save": 1})
    assert r.status_code == 409
    assert "the form&#x27;s version &#x27;12abc&#x27; is not a version" in r.content.decode()
    site.refresh_from_db()
    assert site.name == "first site"


def test_admin_unchanged_save_and_read_only_page(store: Any, users: Any) -> None:
    """Saving an unchanged form writes nothing; a read-only page has no version field."""
    from hepatrial.trials.models import Participant

    p = Participant.objects.get(study_id="K01")
    url = f"/admin/trials/participant/{p.pk}/change/"
    s = session(users["dm"])
    f = form_of(s.get(url), "participant_form")
    before = history_count(p)
    assert s.post(url, {**f, "_save": 1}).status_code == 302
    assert history_count(p) == before
    auditor = store.create_user(username="aud", password=None, role="auditor")
    page = session(auditor).get(url)
    assert page.status_code == 200 and f'name="{VERSION}"' not in page.content.decode()


# ---------------------------------------------------------------------- eCRF
W1 = "/participants/A1/visits/W1/"


def _crf_w1(form: dict[str, Any], **values: str) -> dict[str, Any]:
    from tests.web.conftest import today

    return {**form, "actual_date": today().isoformat(),
            "lab-bilirubin-unit": "mg/dL", "lab-creatinine-unit": "mg/dL",
            "lab-inr-unit": "1", "lab-albumin-unit": "g/L", "action": "draft", **values}


def _w1_state() -> tuple[Any, ...]:
    from hepatrial.trials.models import AuditLedger, LabResult, Visit

    v = Visit.objects.get(participant__study_id="A1", code="W1")
    labs = sorted(LabResult.objects.filter(visit=v).values_list("analyte", "value_as_entered"))
    return v.actual_date, tuple(labs), AuditLedger.objects.count()


def test_ecrf_visit_crf_second_save_is_409_nothing_written(world: World) -> None:  # noqa: F811
    coord = world.users["coordinator"]
    dm = world.users["data-manager"]
    s1, s2 = session(coord), session(dm)
    f1, f2 = form_of(s1.get(W1), "crf-form"), form_of(s2.get(W1), "crf-form")
    assert f1[VERSION] == f2[VERSION]
    r = s1.post(W1, _crf_w1(f1, **{"lab-bilirubin": "2.0", "lab-creatinine": "1.0",
                                   "lab-inr": "1.4", "lab-albumin": "32"}))
    assert r.status_code == 302, r.content.decode()[:3000]
    after_first = _w1_state()
    assert after_first[1] == (("albumin", "32"), ("bilirubin", "2.0"), ("creatinine", "1.0"),
                              ("inr", "1.4"))
    r = s2.post(W1, _crf_w1(f2, **{"lab-bilirubin": "2.5", "lab-creatinine": "1.3",
                                   "lab-inr": "1.2", "lab-albumin": "30"}))
    page = _refused(r, coord.username)
    assert "participant A1 visit W1 was changed by u_coordinator" in page
    assert "a lab result of participant A1 visit W1 was added by u_coordinator" in page
    assert _w1_state() == after_first  # nothing written, not even a ledger entry
    # the page shows the stored values and the current version: saving from it works
    again = form_of(r, "crf-form")
    assert again["lab-bilirubin"] == "2.0" and again[VERSION] != f2[VERSION]
    r = s2.post(W1, _crf_w1(again, **{"lab-bilirubin": "2.5", "reason": "re-read the report"}))
    assert r.status_code == 302, r.content.decode()[:3000]
    assert dict(_w1_state()[1])["bilirubin"] == "2.5"


def test_ecrf_missed_after_the_visit_was_entered_is_409(world: World) -> None:  # noqa: F811
    s1, s2 = session(world.users["coordinator"]), session(world.users["data-manager"])
    f1 = form_of(s1.get(W1), "crf-form")
    missed = form_of(s2.get(W1), "missed-form")
    r = s1.post(W1, _crf_w1(f1, **{"lab-bilirubin": "2.0"}))
    assert r.status_code == 302, r.content.decode()[:3000]
    state = _w1_state()
    r = s2.post("/participants/A1/visits/W1/missed/", {**missed, "reason": "did not come"})
    _refused(r, world.users["coordinator"].username)
    assert _w1_state() == state


def test_ecrf_screening_second_save_is_409(world: World) -> None:  # noqa: F811
    url = "/participants/A2/screening/"
    p = world.participant("A2")
    s1, s2 = session(world.users["coordinator"]), session(world.users["data-manager"])
    f1 = form_of(s1.get(url), "screening-form")
    f2 = form_of(s2.get(url), "screening-form")
    assert f1[VERSION] == str(p.history.latest("history_id").history_id)
    r = s1.post(url, {**f1, "year_of_birth": "1971", "reason": "source document check"})
    assert r.status_code == 302, r.content.decode()[:3000]
    before = history_count(p)
    r = s2.post(url, {**f2, "sex": "M", "reason": "corrected"})
    page = _refused(r, world.users["coordinator"].username)
    assert "year of birth: 1970 -&gt; 1971" in page.lower()
    p.refresh_from_db()
    assert (p.year_of_birth, p.sex) == (1971, "F")
    assert history_count(p) == before


# ---------------------------------------------------------------------- the race, two processes
#: process A: a fresh store with K01; prints K01's version; checks it in a transaction (which
#: locks the row) and says "checked"; waits for a line on stdin, then saves and commits
FIRST = r"""
import json, sys
from hepatrial.trials import setup, migrate
setup(sys.argv[1] if len(sys.argv) > 1 else None)
migrate()
from django.db import transaction
from hepatrial.trials import services
from hepatrial.trials.models import Participant
from hepatrial.trials.services._concurrency import check_version, version_of
from tests.store.conftest import enrol
services.install_protocol("kharaziha2009")
enrol(services, "K01")
version = version_of(Participant.objects.get(study_id="K01"))
print(version, flush=True)
with transaction.atomic():
    p = Participant.objects.get(study_id="K01")
    check_version(p, version)
    print("checked", flush=True)
    sys.stdin.readline()
    services.update_participant(p, reason="race", year_of_birth=1961)
print(json.dumps({"ok": 1961}), flush=True)
"""

#: process B (started with A, so that its start-up overlaps A's set-up): reads the version A
#: printed from stdin, says "ready", then saves that version (waiting for A's lock); prints
#: the outcome and the stored state
SECOND = r"""
import json, sys
from hepatrial.trials import setup
setup(sys.argv[1] if len(sys.argv) > 1 else None)
from django.db import transaction
from hepatrial.errors import ConcurrentEditError
from hepatrial.trials import audit, services
from hepatrial.trials.models import Participant
from hepatrial.trials.services._concurrency import check_version
version = sys.stdin.readline().strip()
print("ready", flush=True)
out = {}
try:
    with transaction.atomic():
        p = Participant.objects.get(study_id="K01")
        check_version(p, version)
        services.update_participant(p, reason="race", year_of_birth=1962)
    out["ok"] = 1962
except ConcurrentEditError as exc:
    out["refused"] = str(exc)
p = Participant.objects.get(study_id="K01")
out.update(year_of_birth=p.year_of_birth, verify=[str(x) for x in audit.verify()],
           saves=p.history.filter(history_change_reason="race").count())
print(json.dumps(out), flush=True)
"""


@pytest.mark.skipif(bool(os.environ.get("HEPATRIAL_DATABASE_URL")),
                    reason="the outer run tests both engines (backend fixture)")
def test_two_saves_of_one_version_race_one_wins(backend: dict[str, Any]) -> None:  # noqa: F811
    """Process A checks the version (taking the row lock / SQLite's write lock) and waits;
    process B, with the same version, waits for A's lock; A saves and commits; B then sees
    A's history row and is refused. Both engines."""
    env = dict(backend["env"])
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    args = backend["script_args"]

    def start(script: str) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-c", script, *args], cwd=REPO,
                                env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    procs: list[subprocess.Popen[str]] = []
    try:
        a, b = start(FIRST), start(SECOND)
        procs += [a, b]
        assert a.stdout is not None and a.stdin is not None
        assert b.stdout is not None and b.stdin is not None
        version = a.stdout.readline().strip()
        assert a.stdout.readline().strip() == "checked", a.communicate(timeout=60)
        b.stdin.write(version + "\n")
        b.stdin.flush()
        assert b.stdout.readline().strip() == "ready", b.communicate(timeout=60)
        time.sleep(1.5)  # B is inside its transaction, waiting for A's lock
        assert b.poll() is None
        a.stdin.write("\n")
        a.stdin.flush()
        out_a, err_a = a.communicate(timeout=120)
        assert json.loads(out_a.strip().splitlines()[-1]) == {"ok": 1961}, err_a[-2000:]
        out_b, err_b = b.communicate(timeout=120)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    res = json.loads(out_b.strip().splitlines()[-1])
    assert "refused" in res, (out_b, err_b[-2000:])
    assert "year of birth: 1960 -> 1961" in res["refused"].lower()
    assert (res["year_of_birth"], res["saves"], res["verify"]) == (1961, 1, [])
