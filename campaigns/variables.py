"""What a notice says to one member: their own figures, resolved, computed and checked.

A notice's variables come, in this order (a later source wins):

1. the campaign's constant values (``values``: a text, a phone number...);
2. the member's record: ``current_contribution`` (``contribution_eur``), ``cover_level``, ``age_band``
   (on the effective date);
3. the campaign's per-member file (one row per member: the member number, ``new_contribution``, any
   other column as a variable, stored in ``camp:{<id>}:vars``);
4. computed, never typed: ``change_eur`` and ``change_percent`` from the current and new contribution
   (a typed value of either is ignored).

Before a campaign is counted or scheduled, every member is checked: a value the templates read must
not be missing, a new contribution must be a positive amount and the change must stay within the
campaign's bound (±25 % unless the campaign says otherwise). Refusals name the members.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from babel.numbers import format_currency, format_decimal

from campaigns.render import LOCALE

RECORD_VARIABLES = ("current_contribution", "cover_level", "age_band")
COMPUTED = ("change_eur", "change_percent")
NEW = "new_contribution"
CURRENT = "current_contribution"
DEFAULT_MAX_CHANGE_PERCENT = 25.0
LABELS = {
    NEW: "nouvelle cotisation",
    CURRENT: "cotisation actuelle",
    "cover_level": "formule",
    "age_band": "tranche d'âge",
    "change_eur": "évolution en euros",
    "change_percent": "évolution en %",
}
# Header cells of a per-member file (compared without case, accents or spaces) and the variable each gives.
COLUMN_ALIASES = {
    "nouvelle_cotisation": NEW,
    "cotisation_nouvelle": NEW,
    "nouveau_montant": NEW,
    "new_contribution": NEW,
    "cotisation_actuelle": CURRENT,
    "ancienne_cotisation": CURRENT,
    "current_contribution": CURRENT,
}
SHOWN = 5  # members named in a refusal


def parse_amount(value: Any) -> Decimal | None:
    """« 71,20 », « 1 234,50 € », "71.2" → Decimal; anything else → None."""
    text = str(value or "").strip().replace("€", "").replace("\u202f", "").replace("\xa0", "").replace(" ", "")
    if not text:
        return None
    try:
        number = Decimal(text.replace(",", "."))
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def variable_name(header: str) -> str:
    """A file's column header (already folded: lower case, no accents, ``_`` for spaces) as a variable."""
    if header in COLUMN_ALIASES:
        return COLUMN_ALIASES[header]
    name = re.sub(r"[^a-z0-9_]", "_", header).strip("_")
    return f"col_{name}" if name[:1].isdigit() else name


def age_band(birth_date: str, on: dt.date) -> str:
    """Ten-year bands as contribution grids use them: « moins de 20 ans », « 40–49 ans », « 80 ans et plus »."""
    try:
        born = dt.date.fromisoformat(birth_date)
    except (TypeError, ValueError):
        return ""
    age = on.year - born.year - ((on.month, on.day) < (born.month, born.day))
    if age < 20:
        return "moins de 20 ans"
    if age >= 80:
        return "80 ans et plus"
    low = age // 10 * 10
    return f"{low}–{low + 9} ans"


def resolve(values: dict[str, Any], member: dict[str, str], own: dict[str, str], on: dt.date) -> dict[str, Any]:
    """The variables one member's notice sees (see the module's docstring for the order)."""
    out: dict[str, Any] = {k: v for k, v in values.items() if k not in COMPUTED}
    out[CURRENT] = member.get("contribution_eur", "")
    out["cover_level"] = member.get("cover_level", "")
    out["age_band"] = age_band(member.get("birth_date", ""), on)
    out.update({k: v for k, v in own.items() if k not in COMPUTED})
    for name in (NEW, CURRENT):  # amounts as the euros filter reads them, whatever the file's format
        amount = parse_amount(out.get(name))
        if amount is not None:
            out[name] = str(amount)
    new, current = parse_amount(out.get(NEW)), parse_amount(out.get(CURRENT))
    if new is not None and current is not None and current > 0:
        out["change_eur"] = (new - current).quantize(Decimal("0.01"), ROUND_HALF_UP)
        out["change_percent"] = ((new - current) * 100 / current).quantize(Decimal("0.1"), ROUND_HALF_UP)
    return out


def needed(names: set[str]) -> set[str]:
    """The variables that must have a value for the templates' ``names``: a computed change needs both amounts."""
    out = set(names)
    if out & set(COMPUTED):
        out |= {NEW, CURRENT}
    return out - set(COMPUTED)


@dataclass
class Findings:
    """What stops a campaign, member by member: missing values and figures out of bounds."""

    max_change_percent: float = DEFAULT_MAX_CHANGE_PERCENT
    missing: dict[str, list[str]] = field(default_factory=dict)  # variable -> first members lacking it
    missing_count: dict[str, int] = field(default_factory=dict)
    out_of_bounds: list[str] = field(default_factory=list)  # first members, with their figures
    out_of_bounds_count: int = 0

    def check(
        self, number: str, variables: dict[str, Any], names: set[str], fields: set[str], member: dict[str, str],
        bounded: bool,
    ) -> None:  # fmt: skip
        """Look at one member: ``names`` the variables and ``fields`` the record fields the templates read;
        ``bounded``: the campaign announces a new contribution, whose figures are checked."""
        lacking = sorted(n for n in names if str(variables.get(n, "")).strip() == "")
        lacking += sorted(f"member.{f}" for f in fields if f != "number" and not str(member.get(f, "")).strip())
        for name in lacking:
            self.missing_count[name] = self.missing_count.get(name, 0) + 1
            shown = self.missing.setdefault(name, [])
            if len(shown) < SHOWN:
                shown.append(number)
        if not bounded or lacking:
            return
        new, current = parse_amount(variables.get(NEW)), parse_amount(variables.get(CURRENT))
        problem = ""
        if new is None:
            problem = f"nouvelle cotisation illisible : « {variables.get(NEW)} »" if variables.get(NEW) else ""
        elif new <= 0:
            problem = f"nouvelle cotisation {_eur(new)}"
        elif current is None or current <= 0:
            problem = f"cotisation actuelle {variables.get(CURRENT) or 'absente'}"
        else:
            change = (new - current) * 100 / current
            if abs(change) > Decimal(str(self.max_change_percent)):
                problem = f"{_eur(current)} → {_eur(new)}, {_pct(change)}"
        if problem:
            self.out_of_bounds_count += 1
            if len(self.out_of_bounds) < SHOWN:
                self.out_of_bounds.append(f"{number} ({problem})")

    def errors(self) -> dict[str, str]:
        """French messages per field, empty when every member's notice can go."""
        out: dict[str, str] = {}
        if self.missing:
            out["values"] = " ".join(
                f"{_members(self.missing_count[name])} sans valeur pour « {name} »"
                f"{' (' + LABELS[name.removeprefix('member.')] + ')' if name.removeprefix('member.') in LABELS else ''}"
                f" : {_named(self.missing[name], self.missing_count[name])}."
                for name in sorted(self.missing)
            )
        if self.out_of_bounds_count:
            out["bounds"] = (
                f"{_members(self.out_of_bounds_count)} hors des bornes (nouvelle cotisation positive, évolution "
                f"d'au plus ±{_limit(self.max_change_percent)} %) : "
                f"{_named(self.out_of_bounds, self.out_of_bounds_count)}."
            )
        return out


def _members(n: int) -> str:
    return f"{n} adhérent" if n == 1 else f"{n} adhérents"


def _named(shown: list[str], total: int) -> str:
    rest = total - len(shown)
    return ", ".join(shown) + (f" et {rest} autre{'s' if rest > 1 else ''}" if rest > 0 else "")


def _eur(amount: Decimal) -> str:
    return str(format_currency(amount, "EUR", locale=LOCALE)).replace("\u202f", " ").replace("\xa0", " ")


def _pct(change: Decimal) -> str:
    sign = "+" if change > 0 else ""
    return f"{sign}{format_decimal(change, format='#,##0.0', locale=LOCALE)} %"


def _limit(value: float) -> str:
    return str(format_decimal(Decimal(str(value)), format="#,##0.##", locale=LOCALE))
