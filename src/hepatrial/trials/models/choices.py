"""Django choices of the store, derived from the code lists in :mod:`hepatrial.vocab`."""

from __future__ import annotations

from django.db import models

from hepatrial import vocab

__all__ = [
    "AEOutcome",
    "Ascites",
    "DeviationCategory",
    "Edema",
    "Encephalopathy",
    "Etiology",
    "ParticipantStatus",
    "Relatedness",
    "Role",
    "Route",
    "Sex",
    "VisitStatus",
]


def _choices(name: str, pairs: vocab.Pairs, members: tuple[str, ...] | None = None) -> type:
    """A ``TextChoices`` class whose member names are the upper-cased codes (or ``members``)."""
    names = members or tuple(code.upper().replace("-", "_") for code, _label in pairs)
    return models.TextChoices(  # type: ignore[return-value]
        name, [(n, (code, label)) for n, (code, label) in zip(names, pairs, strict=True)]
    )


Sex = _choices("Sex", vocab.SEX, ("FEMALE", "MALE"))
Etiology = _choices("Etiology", vocab.ETIOLOGY)
ParticipantStatus = _choices("ParticipantStatus", vocab.PARTICIPANT_STATUS)
VisitStatus = _choices("VisitStatus", vocab.VISIT_STATUS)
Ascites = _choices("Ascites", vocab.ASCITES)
Edema = _choices("Edema", vocab.EDEMA)
Encephalopathy = _choices("Encephalopathy", vocab.ENCEPHALOPATHY)
Route = _choices("Route", vocab.ROUTE)
Relatedness = _choices("Relatedness", vocab.RELATEDNESS)
AEOutcome = _choices("AEOutcome", vocab.AE_OUTCOME)
DeviationCategory = _choices("DeviationCategory", vocab.DEVIATION_CATEGORY)
Role = _choices("Role", vocab.ROLES)
