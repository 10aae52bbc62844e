"""The signing and locking pages with the Django test client (real SQLite store, no mocks):
the investigator signs a visit and the casebook (meaning shown, password re-entered, a wrong
one counted, five deactivate), the data manager locks and unlocks with a reason, a locked form
refuses edits on the server, an edit after unlocking shows the signature invalidated.

The world (``tests/web/conftest.py``): A1 at S01 (D0 done: bilirubin 2.3 mg/dL, creatinine
1.1 mg/dL, INR 1.5), B1 at S02; ``u_<role>`` users of S01 (no password), ``coord_b`` of S02.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

D0 = "/participants/A1/visits/D0/"
PASSWORD = "Signing-test-pw-9731"
MEANING = "I reviewed and approve these data"


@pytest.fixture
def inv(world: Any, settings: Any) -> Any:
    """An investigator of S01 with a password (MD5 hashing: fast)."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    return world.services.create_user(username="dr_ada", password=PASSWORD,
                                      role="investigator", site_codes=["S01"],
                                      printed_name="Dr Ada Lovelace")


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).strip()


def _signatures(html: str) -> list[str]:
    table = re.search(r'id="signatures">(.*?)</table>', html, re.S)
    if table is None:
        return []
    return [_text(r) for r in re.findall(r"<tr class=\"sig-[a-z]+\">(.*?)</tr>",
                                         table.group(1), re.S)]


def _failed(user: Any) -> int:
    from hepatrial.trials.models import UserProfile

    return int(UserProfile.objects.get(user=user).failed_signatures)


def test_sign_a_visit_with_the_password(world: Any, login: Any, inv: Any) -> None:
    from hepatrial.trials.models import Signature

    c = login(inv)
    url = D0 + "sign/"
    page = c.get(url).content.decode()
    assert "Not signed." in page
    assert f'value="{MEANING}" checked' in page and "By signing I state:" in page
    covered = _text(re.search(r'id="covered">(.*?)</table>', page, re.S).group(1))
    assert "D0" in covered and "bilirubin 2.3 mg/dL; creatinine 1.1 mg/dL; inr 1.5 1" in covered
    r = c.post(url, {"meaning": MEANING, "password": ""})
    assert r.status_code == 400 and "enter your password to sign" in r.content.decode()
    assert _failed(inv) == 0  # an empty password is not an attempt
    r = c.post(url, {"meaning": "whatever I like", "password": PASSWORD})
    assert r.status_code == 400 and "choose the meaning of your signature" in \
        r.content.decode()
    r = c.post(url, {"meaning": MEANING, "password": "wrong-password"})
    assert r.status_code == 400
    assert "sign: wrong password for &#x27;dr_ada&#x27; (1 of 5 before the account is " \
           "deactivated)" in r.content.decode()
    assert _failed(inv) == 1 and not Signature.objects.exists()
    r = c.post(url, {"meaning": MEANING, "password": PASSWORD})
    assert r.status_code == 302 and r["Location"] == url
    assert _failed(inv) == 0
    sig = Signature.objects.get()
    assert (sig.level, sig.visit.code, sig.printed_name, sig.meaning, sig.role) == (
        "visit", "D0", "Dr Ada Lovelace", MEANING, "investigator")
    page = c.get(url).content.decode()
    [row] = _signatures(page)
    assert row == (f"Dr Ada Lovelace dr_ada investigator {sig.signed_at:%Y-%m-%d %H:%M:%S} "
                   f"{MEANING} valid")
    # the worklist no longer lists D0 as waiting for this signature
    wl = c.get("/").content.decode()
    sec = re.search(r'id="wl-signatures">(.*?)</section>', wl, re.S).group(1)
    assert "A1 D0" not in sec


def test_five_wrong_passwords_deactivate_the_account(world: Any, login: Any, inv: Any
                                                     ) -> None:
    c = login(inv)
    for n in range(1, 5):
        r = c.post(D0 + "sign/", {"meaning": MEANING, "password": "nope"})
        assert r.status_code == 400 and f"({n} of 5 before" in r.content.decode()
    r = c.post(D0 + "sign/", {"meaning": MEANING, "password": "nope"})
    assert r.status_code == 400
    assert "5 consecutive failures: the account is now deactivated" in r.content.decode()
    inv.refresh_from_db()
    assert inv.is_active is False
    r = c.get(D0 + "sign/")  # signed out: an inactive account has no session
    assert r.status_code == 302 and r["Location"].startswith("/login/")


def test_only_the_sites_investigator_signs(world: Any, login: Any) -> None:
    for role in ("coordinator", "monitor", "data-manager", "qa", "auditor", "admin"):
        c = login(role)
        page = c.get(D0 + "sign/").content.decode()
        assert 'id="sign-form"' not in page, role
        assert c.post(D0 + "sign/", {"meaning": MEANING, "password": "x"}).status_code == 403
    c = login("investigator")
    assert c.post("/participants/B1/visits/D0/sign/",
                  {"meaning": MEANING, "password": "x"}).status_code == 404


def test_a_visit_not_done_cannot_be_signed(world: Any, login: Any, inv: Any) -> None:
    c = login(inv)
    url = "/participants/A1/visits/W2/sign/"
    page = c.get(url).content.decode()
    assert "The visit has not taken place yet: it cannot be signed." in page
    assert 'id="sign-form"' not in page


def test_lock_refuses_edits_unlock_allows_and_the_signature_shows_invalidated(
        world: Any, login: Any, inv: Any) -> None:
    from hepatrial.errors import RecordLocked
    from hepatrial.trials.models import AuditLedger, LabResult, Lock

    login(inv).post(D0 + "sign/", {"meaning": MEANING, "password": PASSWORD})
    dm = login("data-manager")
    url = D0 + "lock/"
    page = dm.get(url).content.decode()
    assert 'id="locked-badge">not locked<' in page and 'id="lock-form"' in page
    r = dm.post(url, {"reason": ""})
    assert r.status_code == 400 and "say why the data are locked" in r.content.decode()
    assert not Lock.objects.exists()
    r = dm.post(url, {"reason": "monitoring complete, queries closed"})
    assert r.status_code == 302 and r["Location"] == url
    page = dm.get(url).content.decode()
    assert 'id="locked-badge">locked<' in page and 'id="unlock-form"' in page
    assert "is locked (lock " in _text(re.search(r'id="locked">(.*?)</div>', page,
                                                 re.S).group(1))
    assert dm.post(url, {"reason": "again"}).status_code == 400  # already locked
    # every page of the visit says so; the CRF and the store refuse the edit
    c = login("coordinator")
    assert "This visit is locked" in c.get(D0).content.decode()
    assert 'id="locked"' in c.get(D0 + "sign/").content.decode()
    lab = LabResult.objects.get(participant__study_id="A1", visit__code="D0",
                                analyte="bilirubin")
    r = c.post(D0, {"actual_date": world.day0.isoformat(), "lab-bilirubin": "2.4",
                    "lab-bilirubin-unit": "mg/dL", "reason": "transcription error"})
    assert r.status_code == 409
    with pytest.raises(RecordLocked):
        world.services.update_lab(lab, value="2.4", unit="mg/dL", reason="typo",
                                  user=world.users["coordinator"])
    lab.refresh_from_db()
    assert lab.value_as_entered == "2.3"
    # unlock: a reason is required
    dm = login("data-manager")
    r = dm.post(D0 + "unlock/", {"reason": " "})
    assert r.status_code == 400 and "say why the data are unlocked" in r.content.decode()
    r = dm.post(D0 + "unlock/", {"reason": "bilirubin transcription error found"})
    assert r.status_code == 302
    lock = Lock.objects.get()
    assert (lock.reason, lock.unlock_reason, lock.unlocked_by.username) == (
        "monitoring complete, queries closed", "bilirubin transcription error found",
        "u_data-manager")
    hist = _text(re.search(r'id="lock-history">(.*?)</table>', dm.get(url).content.decode(),
                           re.S).group(1))
    assert "monitoring complete, queries closed" in hist
    assert "bilirubin transcription error found" in hist
    # the edit is allowed now, and the signature shows invalidated by that change
    world.services.update_lab(lab, value="2.4", unit="mg/dL", reason="transcription error",
                              user=world.users["coordinator"])
    seq = AuditLedger.objects.filter(history_model="trials.historicallabresult",
                                     object_pk=str(lab.pk)).order_by("-seq").first().seq
    page = login(inv).get(D0 + "sign/").content.decode()
    [row] = _signatures(page)
    assert row.endswith(f"invalidated by change seq {seq} — a signed record changed after "
                        "signing: sign again after review")
    assert 'id="sign-form"' in page  # to sign again


def test_lock_pages_roles_and_sites(world: Any, login: Any) -> None:
    for role in ("coordinator", "investigator", "monitor", "qa", "auditor"):
        c = login(role)
        page = c.get(D0 + "lock/").content.decode()
        assert 'id="lock-form"' not in page, role
        assert c.post(D0 + "lock/", {"reason": "x"}).status_code == 403
        assert c.post(D0 + "unlock/", {"reason": "x"}).status_code == 403
    c = login(world.other)
    assert c.get(D0 + "lock/").status_code == 404
    assert c.get("/participants/A1/sign/").status_code == 404
    r = login("data-manager").post(D0 + "unlock/", {"reason": "not locked"})
    assert r.status_code == 400 and "is not locked" in r.content.decode()
    assert login("admin").post("/participants/B1/lock/", {"reason": "closed"}).status_code \
        == 302


def test_casebook_sign_and_lock(world: Any, login: Any, inv: Any) -> None:
    from hepatrial.trials.models import Signature

    c = login(inv)
    page = c.get("/participants/A1/sign/").content.decode()
    assert "A casebook signature covers every record of the participant" in page
    covered = _text(re.search(r'id="covered">(.*?)</table>', page, re.S).group(1))
    assert covered.count("scheduled") == 6 and "D0" in covered  # D0 done, 6 visits to come
    r = c.post("/participants/A1/sign/", {"meaning": MEANING, "password": PASSWORD})
    assert r.status_code == 302
    assert Signature.objects.get().level == "participant"
    dm = login("data-manager")
    r = dm.post("/participants/A1/lock/", {"reason": "casebook complete"})
    assert r.status_code == 302
    page = login("coordinator").get(D0).content.decode()
    assert "This visit is locked" in page  # the casebook lock covers every visit
    page = dm.get("/participants/A1/lock/").content.decode()
    assert "The casebook of participant A1 is locked (lock " in page


def test_ended_casebooks_wait_for_the_investigators_signature(world: Any, login: Any,
                                                              inv: Any) -> None:
    from tests.web.conftest import today

    world.services.change_status(participant="A3", status="withdrawn", date=today(),
                                 reason="consent withdrawn")
    c = login(inv)
    sec = _text(re.search(r'id="wl-casebooks">(.*?)</section>', c.get("/").content.decode(),
                          re.S).group(1))
    assert sec == (f"Casebooks waiting for your signature 1 to sign A3 casebook — withdrawn on "
                   f"{today().isoformat()}")
    assert c.post("/participants/A3/sign/", {"meaning": MEANING, "password": PASSWORD}
                  ).status_code == 302
    sec = _text(re.search(r'id="wl-casebooks">(.*?)</section>', c.get("/").content.decode(),
                          re.S).group(1))
    assert sec.endswith("No ended participation is waiting for your casebook signature.")
    assert 'id="wl-casebooks"' not in login("coordinator").get("/").content.decode()
