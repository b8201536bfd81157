"""Notices rendered from Jinja2 templates with French formatting (Babel), and their previews.

Templates are data: the defaults for each kind live in ``templates/campaigns/`` and a campaign
may carry its own. They run in Jinja2's sandbox with ``StrictUndefined``, so a typo in a
variable is an error at preview time, not a blank in 100,000 messages. Filters:
``date`` (« 1er janvier 2027 »), ``euros`` (« 1 234,50 € »), ``percent`` (« 3,5 % »).
"""

from __future__ import annotations

import datetime as dt
import html
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from babel import Locale
from babel.numbers import format_currency, format_decimal
from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from campaigns.rules import fr_date
from channels.sms.encoding import sms_info
from gateway.settings import ROOT

TEMPLATES = ROOT / "templates" / "campaigns"
LOCALE = Locale.parse("fr_FR")  # parsed once: formatting runs for every member


class RenderError(ValueError):
    pass


def _date(value: Any) -> str:
    if isinstance(value, dt.datetime):
        value = value.date()
    if isinstance(value, str):
        try:
            value = dt.date.fromisoformat(value)
        except ValueError as exc:
            raise RenderError(f"date illisible : {value!r}") from exc
    if not isinstance(value, dt.date):
        raise RenderError(f"date attendue, reçu {value!r}")
    return fr_date(value)


def _number(value: Any) -> Decimal:
    try:
        return Decimal(str(value).replace(",", ".").replace("\u202f", "").replace(" ", ""))
    except (InvalidOperation, ValueError) as exc:
        raise RenderError(f"nombre illisible : {value!r}") from exc


def _euros(value: Any) -> str:
    return str(format_currency(_number(value), "EUR", locale=LOCALE))


def _percent(value: Any, digits: int = 1) -> str:
    """``3.5`` → « 3,5 % » (the value is already a percentage)."""
    number = _number(value)
    pattern = "#,##0." + "#" * digits if digits else "#,##0"
    return f"{format_decimal(number, format=pattern, locale=LOCALE)}\u202f%"


def environment() -> SandboxedEnvironment:
    env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)
    env.filters.update(date=_date, euros=_euros, percent=_percent)
    return env


ENV = environment()


def default_templates(kind: str) -> dict[str, dict[str, str]]:
    """The stock templates of a kind: ``{"sms": {"text"}, "email": {"subject", "text"}}``."""
    out: dict[str, dict[str, str]] = {"sms": {}, "email": {}}
    for path in TEMPLATES.glob(f"{kind}.*.j2"):
        _, channel, part, _ = path.name.split(".")
        out.setdefault(channel, {})[part] = path.read_text(encoding="utf-8").strip()
    return out


@dataclass(frozen=True, slots=True)
class Rendered:
    channel: str
    text: str
    subject: str = ""
    html: str = ""

    def preview(self) -> dict[str, Any]:
        out: dict[str, Any] = {"channel": self.channel, "text": self.text}
        if self.channel == "sms":
            info = sms_info(self.text)
            out.update(encoding=info.encoding, segments=info.segments, units=info.units)
        if self.channel == "email":
            out.update(subject=self.subject, html=self.html)
        return out


class Renderer:
    """Compiled once per campaign, then rendered for each member."""

    def __init__(self, templates: dict[str, dict[str, str]], values: dict[str, Any]) -> None:
        self.values = values
        try:
            self.compiled = {
                channel: {part: ENV.from_string(source) for part, source in parts.items() if source}
                for channel, parts in templates.items()
            }
        except TemplateError as exc:
            raise RenderError(f"modèle invalide : {exc}") from exc

    def render(self, channel: str, member: dict[str, Any], campaign: dict[str, Any]) -> Rendered:
        parts = self.compiled.get(channel) or {}
        if "text" not in parts:
            raise RenderError(f"pas de modèle pour le canal {channel}")
        context = {"member": member, "campaign": campaign, **self.values}
        try:
            text = parts["text"].render(context).strip()
            subject = parts["subject"].render(context).strip() if "subject" in parts else ""
        except (TemplateError, RenderError, ArithmeticError, TypeError, ValueError) as exc:
            raise RenderError(f"{channel} : {exc}") from exc
        if not text:
            raise RenderError(f"{channel} : le message rendu est vide")
        if channel == "sms":  # typographic spaces are not GSM-7: they would make every SMS UCS-2
            text = text.replace("\u202f", " ").replace("\xa0", " ")
        page = ""
        if channel == "email":
            subject = subject or str(campaign.get("title") or "Information de votre mutuelle")
            paragraphs = "".join(f"<p>{html.escape(p).replace(chr(10), '<br>')}</p>" for p in text.split("\n\n"))
            page = (
                '<!doctype html><html lang="fr"><head><meta charset="utf-8">'
                f"<title>{html.escape(subject)}</title></head>"
                '<body style="font-family:Arial,sans-serif;font-size:15px;line-height:1.5;color:#1d2733">'
                f"{paragraphs}</body></html>"
            )
        return Rendered(channel=channel, text=text, subject=subject, html=page)
