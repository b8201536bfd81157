"""Notices rendered from Jinja2 templates with French formatting (Babel), and their previews.

Templates are data: the defaults for each kind live in ``templates/campaigns/`` and a campaign
may carry its own. They run in Jinja2's sandbox with ``StrictUndefined``, so a typo in a
variable is an error at preview time, not a blank in 100,000 messages. Filters:
``date`` (« 1er janvier 2027 »), ``euros`` (« 1 234,50 € »), ``percent`` (« 3,5 % »), and
``signed_euros`` / ``signed_percent`` for a change (« +2,90 € », « -3,5 % »).
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from babel import Locale
from babel.numbers import format_currency, format_decimal
from jinja2 import StrictUndefined, Template, TemplateError, meta, nodes
from jinja2.sandbox import SandboxedEnvironment

from campaigns.rules import fr_date
from channels.email.notice import notice_html
from channels.sms.encoding import sms_info
from gateway.settings import ROOT

TEMPLATES = ROOT / "templates" / "campaigns"
LOCALE = Locale.parse("fr_FR")  # parsed once: formatting runs for every member


class RenderError(ValueError):
    pass


def _memo(func: Any) -> Any:
    """Formatting runs for every member with few distinct values: remember them (unhashable ones pass through)."""
    cached = functools.lru_cache(maxsize=4096)(func)

    @functools.wraps(func)
    def wrapper(*args: Any) -> str:
        try:
            return str(cached(*args))
        except TypeError as exc:
            if "unhashable" not in str(exc):
                raise
            return str(func(*args))

    return wrapper


@_memo
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


@_memo
def _euros(value: Any) -> str:
    return str(format_currency(_number(value), "EUR", locale=LOCALE))


@_memo
def _percent(value: Any, digits: int = 1) -> str:
    """``3.5`` → « 3,5 % » (the value is already a percentage)."""
    number = _number(value)
    pattern = "#,##0." + "#" * digits if digits else "#,##0"
    return f"{format_decimal(number, format=pattern, locale=LOCALE)}\u202f%"


def _sign(number: Decimal) -> str:
    return "+" if number > 0 else ""  # Babel writes the minus of a negative number itself (ASCII "-")


@_memo
def _signed_euros(value: Any) -> str:
    return _sign(_number(value)) + str(_euros(value))


@_memo
def _signed_percent(value: Any, digits: int = 1) -> str:
    return _sign(_number(value)) + str(_percent(value, digits))


def environment() -> SandboxedEnvironment:
    env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)
    env.filters.update(
        date=_date, euros=_euros, percent=_percent, signed_euros=_signed_euros, signed_percent=_signed_percent
    )
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

    @property
    def html(self) -> str:
        """The e-mail's HTML part, as the e-mail channel builds it when sending."""
        return notice_html(self.subject, self.text) if self.channel == "email" else ""

    def preview(self) -> dict[str, Any]:
        out: dict[str, Any] = {"channel": self.channel, "text": self.text}
        if self.channel == "sms":
            info = sms_info(self.text)
            out.update(encoding=info.encoding, segments=info.segments, units=info.units)
        if self.channel == "email":
            out.update(subject=self.subject, html=self.html)
        return out


def reads(source: str) -> dict[str, tuple[str, ...] | None]:
    """The fields of ``member`` and ``campaign`` a template reads (``None``: it uses the whole object).

    A part of a notice depends only on those fields and the campaign's constant values, so it is
    rendered once per distinct set of them: a subject once per campaign, an SMS once per amount.
    """
    ast = ENV.parse(source)
    fields: dict[str, set[str]] = {"member": set(), "campaign": set()}
    through_field = 0
    called = {id(call.node) for call in ast.find_all(nodes.Call)}  # member.items(): not a field
    for node in ast.find_all((nodes.Getattr, nodes.Getitem)):
        if id(node) in called:
            continue
        target = getattr(node, "node", None)
        if not isinstance(target, nodes.Name) or target.name not in fields:
            continue
        if isinstance(node, nodes.Getattr):
            fields[target.name].add(node.attr)
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
            fields[target.name].add(node.arg.value)
        else:
            continue
        through_field += 1
    named = sum(1 for n in ast.find_all(nodes.Name) if n.name in fields)
    if named != through_field:  # ``member`` passed whole, looped over, indexed by a variable...
        return {name: None for name in fields}
    return {name: tuple(sorted(used)) for name, used in fields.items()}


def names(source: str) -> set[str]:
    """The top-level variables a template reads (``new_contribution``...), apart from ``member`` and
    ``campaign``: each must have a value for every member, from the campaign, the record or a file."""
    return set(meta.find_undeclared_variables(ENV.parse(source))) - {"member", "campaign"}


class _Part:
    """One compiled template part and the renders already made, keyed by the fields it reads.

    A part that reads something different for nearly every member (a name) stops remembering
    after a while: looking up would only cost time.
    """

    CACHE = 20_000

    def __init__(self, source: str) -> None:
        self.template: Template = ENV.from_string(source)
        used = reads(source)
        member, campaign = used["member"], used["campaign"]
        self.fields: tuple[tuple[str, ...], tuple[str, ...]] | None = (
            None if member is None or campaign is None else (member, campaign)
        )
        # Top-level variables may differ per member too (a new contribution from a file): part of the key.
        self.names = tuple(sorted(names(source)))
        self.member_used = member  # kept: ``fields`` is dropped when remembering does not pay
        self.done: dict[tuple[Any, ...], str] = {}
        self.hits = self.misses = 0
        self.globals = dict(self.template.globals)  # copied once, not merged again for every member

    def _render(self, context: dict[str, Any]) -> str:
        """``Template.render`` without re-merging the environment's globals into each context."""
        template = self.template
        env = template.environment
        # Template.new_context would iterate the template's ChainMap of globals for every member.
        ctx = env.context_class(env, {**self.globals, **context}, template.name, template.blocks, globals=self.globals)
        try:
            return str(env.concat(template.root_render_func(ctx))).strip()
        except Exception:
            env.handle_exception()
            raise  # handle_exception always raises (with the template's line in the traceback)

    def render(self, context: dict[str, Any]) -> str:
        if self.fields is None:
            return self._render(context)
        member, campaign = context["member"], context["campaign"]
        key = (
            *[member.get(f) for f in self.fields[0]], None,
            *[campaign.get(f) for f in self.fields[1]], None,
            *[context.get(n) for n in self.names],
        )  # fmt: skip
        try:
            out = self.done.get(key)
        except TypeError:  # an unhashable value: render without remembering
            return self._render(context)
        if out is not None:
            self.hits += 1
            return out
        out = self._render(context)
        self.misses += 1
        if self.misses >= 1000 and self.hits < self.misses:
            self.fields = None  # nearly every member differs
            self.done.clear()
        elif len(self.done) < self.CACHE:
            self.done[key] = out
        return out


class Renderer:
    """Compiled once per campaign, then rendered for each member."""

    def __init__(self, templates: dict[str, dict[str, str]], values: dict[str, Any]) -> None:
        self.values = values
        try:
            self.compiled = {
                channel: {part: _Part(source) for part, source in parts.items() if source}
                for channel, parts in templates.items()
            }
        except TemplateError as exc:
            raise RenderError(f"modèle invalide : {exc}") from exc

    def names(self) -> set[str]:
        """Every top-level variable the campaign's templates read."""
        return {n for parts in self.compiled.values() for part in parts.values() for n in part.names}

    def member_fields(self) -> set[str] | None:
        """The member fields the templates read (``None``: the whole record is used)."""
        out: set[str] = set()
        for parts in self.compiled.values():
            for part in parts.values():
                if part.member_used is None:
                    return None
                out.update(part.member_used)
        return out

    def render(
        self, channel: str, member: dict[str, Any], campaign: dict[str, Any], extra: dict[str, Any] | None = None
    ) -> Rendered:
        """``extra``: this member's own variables (see ``campaigns/variables.py``), over the campaign's."""
        parts = self.compiled.get(channel) or {}
        if "text" not in parts:
            raise RenderError(f"pas de modèle pour le canal {channel}")
        context = {**self.values, **(extra or {}), "member": member, "campaign": campaign}
        try:
            text = parts["text"].render(context)
            subject = parts["subject"].render(context) if "subject" in parts else ""
        except (TemplateError, RenderError, ArithmeticError, TypeError, ValueError) as exc:
            raise RenderError(f"{channel} : {exc}") from exc
        if not text:
            raise RenderError(f"{channel} : le message rendu est vide")
        if channel == "sms":  # typographic spaces are not GSM-7: they would make every SMS UCS-2
            text = text.replace("\u202f", " ").replace("\xa0", " ")
        if channel == "email":
            subject = subject or str(campaign.get("title") or "Information de votre mutuelle")
        return Rendered(channel=channel, text=text, subject=subject)
