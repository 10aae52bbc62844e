"""Template tags and filters of the eCRF pages (``{% load ecrf %}``)."""

from __future__ import annotations

from typing import Any

from django import template
from django.urls import reverse
from django.utils.html import format_html

register = template.Library()


@register.filter
def get(mapping: Any, key: Any) -> Any:
    """``mapping[key]`` (None when absent): ``{{ cells|get:code }}``."""
    try:
        return mapping.get(key)
    except AttributeError:
        return None


@register.simple_tag
def hist(participant: Any, model: str, pk: Any, field: str) -> str:
    """A "history" link of one field: opens who changed it, when, old → new and why in the
    history panel (htmx), or as a page without JavaScript."""
    if pk is None:
        return ""
    url = reverse("web:history", kwargs={"study_id": participant.study_id, "model": model,
                                         "pk": pk, "field": field})
    return format_html(
        '<a class="hist" href="{}" hx-get="{}" hx-target="#history-panel" '
        'hx-swap="innerHTML" title="history of this field" aria-label="history of {}">'
        '&#x21BA;</a>', url, url, field)


@register.filter
def val(value: Any) -> str:
    """A stored or evaluated value as the pages show it: dates ISO, booleans yes/no, floats
    without a trailing ``.0``, None as "(empty)"."""
    import datetime as dt

    if value is None or value == "":
        return "(empty)"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@register.filter
def yesno_blank(value: Any) -> str:
    """True → yes, False → no, None → "" (not assessed)."""
    if value is None or value == "":
        return ""
    return "yes" if value else "no"
