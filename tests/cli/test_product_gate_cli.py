"""Every condition of the dosing gate through ``hepatrial product administer`` (issue 11: one
rule, one place; each rule on each path; the service and the admin are in
tests/store/test_product_gate.py).

For each name of :data:`hepatrial.protocol.dosing.CONDITIONS` (the tuple is iterated: a
condition without a case fails the test) the store is put in the state where that condition
alone fails, and the same administration is given twice: to the service with Python values
(``services.record_administration``), then as the command's options. The command exits with
the code :mod:`hepatrial.cli._errors` maps the service's error to, prints exactly the
service's message (``error: `` and every problem, the condition named with its reason), and
writes nothing: the row count of every table (administrations, their history, custody
events, deviations, the audit ledger, ...) is unchanged. Then every condition holds and the
command stores the administration.

A condition that cannot fail alone is refused together with the companions
:data:`COMPANIONS` names, with the reason. Two conditions need a protocol amendment
(installed for their case, then the original again): ``protocol`` (an amendment without a
``[product]``) and ``weight_recorded`` (kharaziha2009 doses total cells: an amendment dosing
per kg, and a participant whose weight was cleared). One store serves every case (a refusal
writes nothing, which each case checks).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from hepatrial.cli import app
from hepatrial.cli._errors import exit_code
from hepatrial.protocol.dosing import CONDITIONS
from tests.store import _product as P
from tests.store.conftest import DAY0, enrol
from tests.store.test_product_gate import _request

PROTOCOL_TOML = (Path(__file__).resolve().parents[2] / "src" / "hepatrial" / "protocol"
                 / "builtin" / "kharaziha2009.toml")


@dataclass(frozen=True)
class Case:
    """An administration over the default request (``tests.store.test_product_gate._request``:
    40e6 cells by portal vein at 10:00 on DAY0, both identifiers, the batch's label scanned)
    and the condition's reason, exactly. Strings are formatted with the batches' chain-of-
    identity ids (``{B1}``); ``amend``: a protocol amendment in force for the case;
    ``after_dose``: run after the administration every condition allows."""

    participant: str
    batch: str
    reason: str
    changes: dict[str, Any] = field(default_factory=dict)
    amend: str | None = None
    after_dose: bool = False


#: condition -> the case where it alone fails (with its :data:`COMPANIONS`)
CASES: dict[str, Case] = {
    "protocol": Case("K01", "B1", "the protocol declares no product: nothing may be "
                     "administered", amend="no_product"),
    "batch_exists": Case("K01", "B-none", "batch 'B-none' does not exist",
                         {"scanned_coi": "{B1}"}),
    "batch_belongs": Case("K01", "B2", "batch 'B2' belongs to participant K02, not to K01 "
                          "(autologous product)"),
    "batch_released": Case("K01", "B1", "2008-01-20T08:15:00+00:00 is before the release of "
                           "batch 'B1' at 2008-01-20T08:30:00+00:00",
                           {"administered_at": P.at(DAY0, 8, 15)}),
    "within_shelf_life": Case("K01", "B1", "expired at 2008-01-20T13:00:00+00:00 (6 h after "
                              "formulation)", {"administered_at": P.at(DAY0, 13, 1)}),
    "transport_temperature": Case("K01", "B1D", "no transport temperature record"),
    "coi_scanned": Case("K01", "B1", "'{B1x}': check character '{B1x_check}' is wrong: "
                        "expected '{B1_check}' (mis-scanned or mistyped identifier)",
                        {"scanned_coi": "{B1x}"}),
    "patient_identifiers": Case("K01", "B1", "year_of_birth '1961' does not match the "
                                "participant's record",
                                {"identifiers": {"study_id": "K01", "year_of_birth": "1961"}}),
    "participant_enrolled": Case("K03", "B3", "K03 is completed, not enrolled"),
    "participant_eligible": Case("K04", "B4", "K04 does not meet the eligibility criteria"),
    "dosing_not_paused": Case("K02", "B2", "dosing is paused by stopping rule SR-SENTINEL: "
                              "{sentinel}", {"administered_at": P.at(DAY0, 10, 30)},
                              after_dose=True),
    "route_allowed": Case("K01", "B1", "'hepatic_artery' is not a route the protocol allows "
                          "(peripheral_vein, portal_vein)", {"route": "hepatic_artery"}),
    "weight_recorded": Case("K02", "B2", "the dose is per kg of body weight and the "
                            "participant has no weight recorded", amend="per_kg"),
    "dose_in_range": Case("K01", "B1", "dose 8e+07 cells is outside the protocol's range "
                          "3e+07-5e+07 cells (give an override with its reason to administer "
                          "it; it is recorded as a major deviation)", {"cells_total": 80e6}),
}

#: condition -> (the problems refused with it whatever the state, why)
COMPANIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "batch_belongs": (("coi_scanned",), "the label scanned is either the batch's, made for "
                      "its own participant, or not the batch's: a label cannot be both the "
                      "batch's and made for another participant"),
    "transport_temperature": (("state",), "a batch at the bedside had its logger readings "
                              "checked at the receipt (none, or one outside 2-8 °C, refuses the "
                              "receipt: test_product_cli.py); a batch not received has no "
                              "readings and the store refuses it as not received yet"),
}

#: condition -> why no state reachable through the CLI makes it fail (none: every condition
#: of the gate can be made to fail through ``hepatrial product administer``)
UNREACHABLE: dict[str, str] = {}


@pytest.fixture
def store(db: Any) -> Any:
    """A store with the kharaziha2009 protocol (as tests/store/conftest.py's)."""
    from hepatrial.trials import services

    services.install_protocol("kharaziha2009")
    return services


@pytest.fixture(autouse=True)
def _fast_passwords(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def ward(store: Any) -> dict[str, str]:
    """Batches at the bedside on DAY0: B1 of K01, B2 of K02, B3 of K03 (enrolled 3 days
    earlier, completed the day before), B4 of K04 (found ineligible after enrolment); B1D of
    K01 released and dispatched, not received. Returns batch -> chain-of-identity id (and
    ``B1x``: B1's with a wrong check character; ``B1_check``, ``B1x_check``: their check
    characters)."""
    from hepatrial.trials.models.product import CellProductBatch

    for pid, day0 in (("K01", DAY0), ("K02", DAY0), ("K03", DAY0 - dt.timedelta(days=3)),
                      ("K04", DAY0)):
        enrol(store, pid, day0=day0)
        P.ready_batch(store, f"B{pid[-1]}", pid, DAY0)
    b = P.to_qa_review(store, "K01", DAY0, batch_id="B1D")
    P.release(store, b, DAY0)
    store.dispatch_batch("B1D", scanned_coi=b.coi_identifier, at=P.at(DAY0, 9),
                         location="GMP cell lab", temperature_c=5.0)
    store.change_status(participant="K03", status="completed", date=DAY0 - dt.timedelta(days=1),
                        reason="follow-up complete")
    store.assess_eligibility(participant="K04", screening_data={"hcc": True},
                             reason="hepatocellular carcinoma on the pre-infusion scan")
    cois = {b.batch_id: b.coi_identifier for b in CellProductBatch.objects.all()}
    c = cois["B1"]
    x = "A" if c[-1] != "A" else "B"
    return {**cois, "B1x": c[:-1] + x, "B1_check": c[-1], "B1x_check": x}


def _counts() -> dict[str, int]:
    """The number of rows of every table (a refusal changes none)."""
    from django.apps import apps

    return {m._meta.label: m._default_manager.count() for m in apps.get_models()}


def _fill(value: Any, facts: dict[str, str]) -> Any:
    return value.format(**facts) if isinstance(value, str) else value


def _argv(r: dict[str, Any]) -> list[str]:
    """``hepatrial product administer`` with the options of request ``r``."""
    ids = ",".join(f"{k}={v}" for k, v in r["identifiers"].items())
    argv = ["product", "administer", r["participant"], "--batch", r["batch_id"], "--scan",
            r["scanned_coi"], "--identifiers", ids, "--route", r["route"], "--cells",
            f"{r['cells_total']:g}", "--volume-ml", str(r["volume_ml"]), "--date",
            r["administered_at"].isoformat(), "--operator", r["operator"]]
    if r.get("dose_override_reason"):
        argv += ["--override-reason", r["dose_override_reason"]]
    return argv


def _cli(argv: list[str]) -> Any:
    return CliRunner().invoke(app, argv)


@contextmanager
def _amended(store: Any, kind: str | None, participant: str, tmp: Path) -> Iterator[None]:
    """The protocol amendment ``kind`` in force (``no_product``: no ``[product]``;
    ``per_kg``: the dose per kg of body weight, and ``participant``'s weight cleared), then
    the original protocol again."""
    if kind is None:
        yield
        return
    from hepatrial.trials.models import ClinicalAssessment

    text = PROTOCOL_TOML.read_text(encoding="utf-8")
    c = None
    if kind == "no_product":
        lines = text.splitlines(keepends=True)
        start = lines.index("[product]\n")
        end = next(i for i, line in enumerate(lines) if line.startswith("[safety]"))
        new = "".join(lines[:start] + lines[end:])
    else:
        new = text.replace('cells_min = 30e6\ncells_max = 50e6\ndose_basis = "total"',
                           'cells_min = 3e5\ncells_max = 7e5\ndose_basis = "per_kg"').replace(
            'unit = "cells"\nmin = 30e6\nmax = 50e6\ndose_range = true',
            'unit = "cells"\ndose_range = true')
        c = ClinicalAssessment.objects.get(participant__study_id=participant, visit__code="D0")
        store.update_clinical(c, weight_kg=None, reason="weight entered on the wrong record")
    assert new != text
    path = tmp / f"kharaziha2009-{kind}.toml"
    path.write_text(new, encoding="utf-8")
    assert store.install_protocol(path, reason=f"amendment {kind}")[1] == "updated"
    try:
        yield
    finally:
        assert store.install_protocol(PROTOCOL_TOML, reason="amendment withdrawn")[1] == \
            "updated"
        if c is not None:
            store.update_clinical(c, weight_kg=P.WEIGHT_KG, reason="weight entered again")


def _refused(store: Any, condition: str, facts: dict[str, str], tmp: Path) -> str | None:
    """None when the case of ``condition`` is refused by the service and the command alike,
    as it must be, else what went wrong."""
    from hepatrial.errors import StoreError
    from hepatrial.trials.validators import RuleViolation

    case = CASES[condition]
    changes = {k: _fill(v, facts) for k, v in case.changes.items()}
    request = _request(case.participant, case.batch, changes)
    expected = {condition, *COMPANIONS.get(condition, ((), ""))[0]}
    line = (f"participant {case.participant} administration {condition}: "
            f"{_fill(case.reason, facts)}")
    with _amended(store, case.amend, case.participant, tmp):
        before = _counts()
        try:
            store.record_administration(**request)
        except StoreError as exc:
            error = exc
        else:
            return "the service stored it"
        if _counts() != before:
            return "the service wrote something"
        if not isinstance(error, RuleViolation):
            return f"the service raised {type(error).__name__}: {error}"
        named = {p.field for p in error.problems}
        if named != expected:
            return f"the service named {sorted(named)}, not {sorted(expected)}: {error}"
        if line not in [str(p) for p in error.problems]:
            return f"the service's reason differs: {error}"
        res = _cli(_argv(request))
        if res.exit_code != exit_code(error) or exit_code(error) != 1:
            return f"exit {res.exit_code}, not {exit_code(error)}: {res.output}"
        if res.stderr != f"error: {error}\n" or res.stdout:
            return f"the command's message is not the service's: {res.output!r}"
        after = _counts()
        if after != before:
            return f"the command wrote {[k for k in after if after[k] != before[k]]}"
    return None


def test_every_condition_has_a_case() -> None:
    """Each condition of the gate has its case (or says why the CLI cannot reach it), and
    nothing else does."""
    assert set(CASES) | set(UNREACHABLE) == set(CONDITIONS)
    assert not set(CASES) & set(UNREACHABLE)
    assert set(COMPANIONS) <= set(CASES)


def test_every_condition_through_the_cli(ward: dict[str, str], store: Any,
                                         tmp_path: Path) -> None:
    """Each condition alone refused by ``product administer`` as by the service, nothing
    written; then the administration every condition allows is stored (one store for all)."""
    from hepatrial.trials import audit
    from hepatrial.trials.models import AuditLedger, ProtocolDeviation
    from hepatrial.trials.models.product import Administration, CellProductBatch, CustodyEvent
    from hepatrial.trials.services import safety

    pause = safety.dosing_pause("K02", at=P.at(DAY0, 10, 30))
    assert pause is None  # nobody dosed yet: the sentinel rule holds nobody back
    first = [c for c in CONDITIONS if c in CASES and not CASES[c].after_dose]
    wrong = {c: w for c in first if (w := _refused(store, c, ward, tmp_path)) is not None}

    # every condition holds: stored, with its custody event, history and ledger entries
    P.allow_dosing(store, "K01", P.at(DAY0, 10))
    n = {"history": Administration.history.count(), "ledger": AuditLedger.objects.count(),
         "custody": CustodyEvent.objects.count()}
    request = _request("K01", "B1", {})
    res = _cli(_argv(request))
    assert res.exit_code == 0, res.output
    assert res.stdout == ("participant K01: 4e+07 cells, 5e+05 cells/kg of batch B1 by "
                          "portal_vein at 2008-01-20T10:00:00+00:00\n")
    a = Administration.objects.get()
    assert (a.participant.study_id, a.batch_id, a.route, a.cells_total, a.cells_per_kg,
            str(a.volume_ml), a.administered_at, a.operator, a.scanned_coi,
            a.identifiers_checked) == (
        "K01", "B1", "portal_vein", 40e6, 40e6 / 80, "10.00", P.at(DAY0, 10), "nurse1",
        ward["B1"], {"study_id": "K01", "year_of_birth": "1960"})
    assert CellProductBatch.objects.get(batch_id="B1").state == "administered"
    assert Administration.history.count() == n["history"] + 1
    assert CustodyEvent.objects.filter(batch__batch_id="B1").latest("seq").action == "administer"
    assert CustodyEvent.objects.count() == n["custody"] + 1
    assert AuditLedger.objects.count() > n["ledger"]
    assert not ProtocolDeviation.objects.filter(category="dosing").exists()

    # the sentinel rule now pauses the next participant
    pause = safety.dosing_pause("K02", at=P.at(DAY0, 10, 30))
    assert pause is not None and pause.rule == "SR-SENTINEL"
    facts = {**ward, "sentinel": pause.reason}
    later = [c for c in CONDITIONS if c in CASES and CASES[c].after_dose]
    wrong |= {c: w for c in later if (w := _refused(store, c, facts, tmp_path)) is not None}
    assert wrong == {}
    assert len(first) + len(later) == len(CONDITIONS) - len(UNREACHABLE)

    # the same batch again, through the command: already administered, nothing written
    before = _counts()
    res = _cli(_argv(request))
    assert (res.exit_code, res.stderr) == (1, "error: participant K01 administration "
                                           "batch_released: batch 'B1' has already been "
                                           "administered\n")
    assert _counts() == before and Administration.objects.count() == 1
    assert audit.verify() == []
