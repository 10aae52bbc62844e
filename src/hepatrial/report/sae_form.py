"""The CIOMS-I-style form of one adverse event, as HTML and PDF, from plain data.

Layout after the CIOMS I form ("Suspect adverse reaction report", Council for International
Organizations of Medical Sciences, 1990; the form ICH E2A §III.C cites for expedited reports):
I. reaction information (patient, onset, seriousness criteria, description), II. suspect
product information (the cell product's administrations, route, indication), III. concomitant
treatment and history (hepatrial stores none: said so), IV. sponsor information (report id,
dates, report type); then what the trial adds: the CTCAE v5.0 coding with the definition of
the grade, causality (investigator and sponsor, product and procedure judged separately),
expectedness against the reference safety information, the SUSAR decision, every signed report
of the SAE chain and the reports due now. The patient is identified only by the pseudonymous
study id, the year of birth and sex (no initials, no date of birth).

The input is the plain dict the store's reader gives
(:func:`hepatrial.trials.selectors.sae_form_record`); this module imports no store. Same data,
same bytes (HTML and PDF: the PDF's creation date is the event's awareness time, or a fixed
date).
"""

from __future__ import annotations

import datetime as _dt
import io
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2

from hepatrial import vocab
from hepatrial.errors import InputError

__all__ = ["CRITERIA", "SaeForm", "render_sae_form_html", "render_sae_form_pdf", "write_text"]

#: CIOMS I boxes 8-12 "check all appropriate to adverse reaction", in the form's order, with
#: the ICH E2A criterion each stands for
CRITERIA: tuple[tuple[str, str], ...] = (
    ("death", "Patient died"),
    ("hospitalisation", "Involved or prolonged inpatient hospitalisation"),
    ("disability", "Involved persistence or significant disability or incapacity"),
    ("life_threatening", "Life threatening"),
    ("congenital_anomaly", "Congenital anomaly / birth defect"),
    ("important_medical_event", "Other medically important condition"),
)
_LABEL = {
    **{f"rel:{c}": lab for c, lab in vocab.RELATEDNESS},
    **{f"out:{c}": lab for c, lab in vocab.AE_OUTCOME},
    **{f"act:{c}": lab for c, lab in vocab.AE_ACTION},
    **{f"proc:{c}": lab for c, lab in vocab.SAFETY_PROCEDURE},
    **{f"kind:{c}": lab for c, lab in vocab.SAE_REPORT_KIND},
    "route:peripheral_vein": "peripheral vein", "route:portal_vein": "portal vein",
    "route:hepatic_artery": "hepatic artery",
}
_REQUIRED = ("report_id", "protocol", "product", "patient", "event", "causality",
             "expectedness", "susar", "reports", "due", "time_zone")  # fmt: skip


def _label(prefix: str, code: Any) -> str:
    if code in (None, ""):
        return "-"
    return _LABEL.get(f"{prefix}:{code}", str(code))


@dataclass(frozen=True)
class SaeForm:
    """The form's content: sections of ``(label, text)`` rows and the tables."""

    report_id: str
    title: str
    subtitle: str
    criteria: tuple[tuple[str, bool], ...]
    sections: tuple[tuple[str, tuple[tuple[str, str], ...]], ...]
    administrations: tuple[tuple[str, ...], ...]
    reports: tuple[tuple[str, ...], ...]
    narratives: tuple[tuple[str, str], ...]
    due: tuple[tuple[str, ...], ...]
    footer: str
    stamp: _dt.datetime

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SaeForm:
        """Build from the store reader's dict (InputError naming a missing key)."""
        missing = [k for k in _REQUIRED if k not in d]
        if missing:
            raise InputError(f"SAE form: missing {', '.join(missing)}")
        tz = ZoneInfo(str(d["time_zone"]))

        def when(t: Any) -> str:
            if t is None:
                return "-"
            if isinstance(t, _dt.datetime):
                return (f"{t.astimezone(tz):%Y-%m-%d %H:%M} {tz} "
                        f"({t.astimezone(_dt.UTC):%Y-%m-%d %H:%M} UTC)")
            return str(t)

        pr, pt, ev = d["protocol"], d["patient"], d["event"]
        cz, ex = d["causality"], d["expectedness"]
        crit = set(ev.get("seriousness_criteria") or [])
        inv, sp = cz["investigator"], cz.get("sponsor")

        def causality(c: Mapping[str, Any]) -> str:
            proc = f" ({_label('proc', c.get('procedure'))})" if c.get("procedure") else ""
            return (f"product: {_label('rel', c.get('relatedness_product'))}; procedure{proc}: "
                    f"{_label('rel', c.get('relatedness_procedure'))}")

        def signed(s: Mapping[str, Any] | None) -> str:
            if not s:
                return "not signed"
            return f"signed by {s['printed_name']} ({s['role']}) {when(s['signed_at'])}"

        first = next((r for r in d["reports"] if r["kind"] == "initial"), None)
        latest = d["reports"][-1] if d["reports"] else None
        reaction = (
            ("1. Patient", f"study id {pt['study_id']} (site {pt['site']})"),
            ("2. Year of birth / 2a. Age", f"{pt.get('year_of_birth') or '-'} / "
             f"{pt.get('age') if pt.get('age') is not None else '-'} years at onset"),
            ("3. Sex", {"F": "female", "M": "male"}.get(pt.get("sex"), "-")),
            ("4-6. Reaction onset", str(ev["onset_date"])),
            ("7+13. Reaction", ev["label"]),
            ("Outcome", _label("out", ev.get("outcome"))
             + (f", {ev['resolution_date']}" if ev.get("resolution_date") else "")),
            ("Date of death", str(ev["resolution_date"]) if ev.get("outcome") == "fatal"
             else "-"),
            ("Site became aware", when(ev.get("aware_at"))
             + (f" — entered as {ev['aware_local']} {ev['aware_time_zone']}"
                if ev.get("aware_local") else "")),
        )
        coding = (
            ("CTCAE term", f"{ev['term']}" + (f" (specify: {ev['specify']})"
                                              if ev.get("specify") else "")),
            ("MedDRA code / SOC", f"{ev.get('meddra_code') or 'not coded'} / "
             f"{ev.get('soc') or '-'}"),
            ("CTCAE version", ev.get("ctcae_version") or "not coded (stored before coding)"),
            ("Grade", f"{ev['grade']}: {ev.get('grade_definition') or '-'}"),
            ("Action taken with the product", _label("act", ev.get("action_taken"))),
        )
        product = (
            ("14. Suspect product", str(d["product"]["name"])),
            ("17. Indication", f"{pr['title']}"),
            ("16. Route(s)", ", ".join(dict.fromkeys(
                _label("route", a["route"]) for a in d["product"]["administrations"])) or
             "no administration recorded"),
            ("20-21. Dechallenge / rechallenge", "not applicable (cell product given as "
             "single administrations)"),
        )
        history = (
            ("22. Concomitant drugs", "not recorded in hepatrial"),
            ("23. Other relevant history", f"underlying liver disease: {pt.get('etiology')}; "
             f"status {pt.get('status')} ({pt.get('status_date')})"),
        )
        assess = (
            ("Investigator's causality", f"{causality(inv)}; {signed(inv.get('signed'))}"),
            ("Sponsor's causality", "not assessed yet" if sp is None else
             f"{causality(sp)}; expectedness {sp.get('expectedness') or '-'}; "
             f"{signed(sp.get('signed'))}" + (f"; {sp['comment']}" if sp.get("comment") else "")),
            ("Expectedness (reference safety information)",
             f"product: {ex.get('product') or 'not applicable (not suspected)'}; procedure: "
             f"{ex.get('procedure') or 'not applicable (not suspected)'}"
             + (f" — {ex['rsi']}" if ex.get("rsi") else "")),
            ("SUSAR", "yes: suspected unexpected serious adverse reaction (expedited report)"
             if d["susar"] else "no"),
        )
        sponsor = (
            ("24a. Protocol", f"{pr['name']} {pr['version']}"
             + (f" ({pr['registration']})" if pr.get("registration") else "")),
            ("24b. Report id", str(d["report_id"])),
            ("24c. Date received by the sponsor", when(first["submitted_at"]) if first else
             "initial report not submitted"),
            ("24d. Report source", "study"),
            ("25a. Report type", "-" if latest is None else
             _label("kind", latest["kind"]).split(" (")[0]),
        )
        adm = tuple((str(a["date"]), _label("route", a["route"]),
                     f"{a['cells_total']:.3g}", "-" if a.get("cells_per_kg") is None else
                     f"{a['cells_per_kg']:.3g}", str(a.get("batch_id") or "-"))
                    for a in d["product"]["administrations"])  # fmt: skip
        reps = tuple((_label("kind", r["kind"]).split(" (")[0], when(r["submitted_at"]),
                      when(r.get("deadline")), {True: "on time", False: "LATE", None: "-"}[
                          r.get("on_time")] + (" (final)" if r.get("final") else ""),
                      f"{r['printed_name']} ({r['role']}), {when(r['signed_at'])}: "
                      f"{r['meaning']}") for r in d["reports"])  # fmt: skip
        narr = tuple((f"{_label('kind', r['kind']).split(' (')[0]} {when(r['submitted_at'])}",
                      str(r["narrative"])) for r in d["reports"])
        due = tuple((_label("kind", r["kind"]).split(" (")[0], str(r["due_date"]),
                     when(r["deadline"]), str(r["status"]).upper() if r["status"] == "overdue"
                     else str(r["status"]), str(r["basis"])) for r in d["due"])  # fmt: skip
        ledger = d.get("ledger")
        stamp = ev.get("aware_at") or _dt.datetime(2000, 1, 1, tzinfo=_dt.UTC)
        return cls(
            report_id=str(d["report_id"]),
            title=f"Suspect adverse reaction report — {d['report_id']}",
            subtitle=f"CIOMS I form layout · {pr['name']} · participant {pt['study_id']}",
            criteria=tuple((text, code in crit) for code, text in CRITERIA),
            sections=(("I. Reaction information", reaction), ("CTCAE v5.0 coding", coding),
                      ("II. Suspect product information", product),
                      ("III. Concomitant treatment and history", history),
                      ("Causality, expectedness, SUSAR", assess),
                      ("IV. Sponsor information", sponsor)),
            administrations=adm, reports=reps, narratives=narr, due=due,
            footer=("Generated by hepatrial from the trial store"
                    + (f" (adverse event's ledger entry #{ledger['seq']}, chain hash "
                       f"{ledger['chain_hash'][:16]}…)" if ledger else "")
                    + ". Pseudonymised: no patient initials or date of birth."),
            stamp=stamp if stamp.tzinfo else stamp.replace(tzinfo=_dt.UTC),
        )


@cache
def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("hepatrial.report", "templates"), autoescape=True,
        keep_trailing_newline=True, undefined=jinja2.StrictUndefined)


def render_sae_form_html(form: SaeForm) -> str:
    """The form as one self-contained HTML page."""
    return _env().get_template("sae_form.html.j2").render(f=form)


def _font_path() -> Path:
    """DejaVu Sans (shipped with matplotlib, a dependency): a Unicode font."""
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"


def render_sae_form_pdf(form: SaeForm) -> bytes:
    """The form as a PDF (fpdf2, A4 portrait; same data, same bytes)."""
    from fpdf import FPDF
    from fpdf.enums import XPos, YPos

    pdf = FPDF(orientation="P", unit="mm", format="A4")
    pdf.set_creation_date(form.stamp)
    pdf.set_title(form.title)
    for setter in (pdf.set_author, pdf.set_creator, pdf.set_producer):
        setter("hepatrial")
    pdf.add_font("DejaVu", "", str(_font_path()))
    pdf.add_font("DejaVu", "B", str(_font_path().with_name("DejaVuSans-Bold.ttf")))
    pdf.set_auto_page_break(auto=True, margin=12)
    pdf.add_page()
    nl = {"new_x": XPos.LMARGIN, "new_y": YPos.NEXT}
    pdf.set_font("DejaVu", "B", 13)
    pdf.multi_cell(0, 7, form.title, **nl)
    pdf.set_font("DejaVu", "", 8.5)
    pdf.multi_cell(0, 5, form.subtitle, **nl)
    pdf.ln(1)
    pdf.set_font("DejaVu", "B", 9)
    pdf.cell(0, 5, "8-12. Check all appropriate to the adverse reaction", **nl)
    pdf.set_font("DejaVu", "", 8.5)
    for text, on in form.criteria:
        pdf.cell(0, 4.5, f"[{'X' if on else ' '}] {text}", **nl)

    def table(head: tuple[str, ...], rows: tuple[tuple[str, ...], ...],
              widths: tuple[float, ...]) -> None:  # fmt: skip
        with pdf.table(col_widths=widths, text_align="LEFT", line_height=4.2,
                       first_row_as_headings=True) as t:
            pdf.set_font("DejaVu", "", 7.5)
            r = t.row()
            for h in head:
                r.cell(h)
            for row in rows:
                r = t.row()
                for v in row:
                    r.cell(v)

    for title, rows in form.sections:
        pdf.ln(2)
        pdf.set_font("DejaVu", "B", 9.5)
        pdf.cell(0, 5.5, title, **nl)
        table(("Item", "Value"), rows, (55, 135))
        if title.startswith("II."):
            pdf.ln(1)
            table(("Date", "Route", "Cells", "Cells/kg", "Batch"),
                  form.administrations or (("-", "-", "-", "-", "-"),), (30, 35, 30, 30, 65))
    pdf.ln(2)
    pdf.set_font("DejaVu", "B", 9.5)
    pdf.cell(0, 5.5, "Reports of the SAE chain (signed)", **nl)
    table(("Report", "Submitted", "Due", "On time", "Signature"),
          form.reports or (("none", "-", "-", "-", "-"),), (28, 40, 40, 17, 65))
    pdf.ln(2)
    pdf.set_font("DejaVu", "B", 9.5)
    pdf.cell(0, 5.5, "Reports due now", **nl)
    table(("Report", "Due date", "Deadline", "Status", "Basis"),
          form.due or (("none", "-", "-", "-", "-"),), (28, 20, 45, 20, 77))
    for head, text in form.narratives:
        pdf.ln(2)
        pdf.set_font("DejaVu", "B", 9)
        pdf.multi_cell(0, 5, f"Narrative — {head}", **nl)
        pdf.set_font("DejaVu", "", 8.5)
        pdf.multi_cell(0, 4.5, text, **nl)
    pdf.ln(3)
    pdf.set_font("DejaVu", "", 7)
    pdf.multi_cell(0, 4, form.footer, **nl)
    buf = io.BytesIO()
    pdf.output(buf)
    return buf.getvalue()


def write_text(path: str | Path, text: str) -> None:
    """Write a rendered page (UTF-8, LF)."""
    Path(path).write_text(text, encoding="utf-8", newline="\n")
