"""A campaign: what is announced, to whom, on which channels, in which window, and its state.

Stored in Redis under the campaign's hash tag (``camp:{<id>}…``) so its plan, recipients and
counters live in one cluster slot and are updated together by scripts.

States: draft → scheduled → sending → done, with paused (from scheduled or sending) and
cancelled. Only a draft can be edited. A campaign's per-member values (from an uploaded file) live in
``camp:{<id>}:vars`` (member number → JSON object), next to its list (``camp:{<id>}:list``).
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import re
import secrets
import time
import unicodedata
from dataclasses import asdict, dataclass, field
from typing import Any

from babel.dates import format_date

from campaigns.rules import PARIS, SendWindow
from campaigns.variables import DEFAULT_MAX_CHANGE_PERCENT, variable_name
from gateway import keys
from members import cover

KINDS = {
    "benefit_change": "Évolution des garanties",
    "contribution_change": "Évolution de la cotisation",
    "information": "Autre information",
}
MANDATORY = ("benefit_change", "contribution_change")  # notices members cannot unsubscribe from
CHANNELS = ("email", "sms", "whatsapp")
DATE_FIELDS = ("contribution_call_date",)
STATES = ("draft", "scheduled", "sending", "paused", "done", "cancelled")
STATE_LABELS = {
    "draft": "brouillon", "scheduled": "programmée", "sending": "en cours", "paused": "en pause",
    "done": "terminée", "cancelled": "annulée",
}  # fmt: skip
CHANNEL_LABELS = {"email": "e-mail", "sms": "SMS", "whatsapp": "WhatsApp", "none": "courrier", "": "courrier"}
# Working hours: a window reaching outside them is allowed, with a warning (notices at 01:50 upset members).
WORKING_START, WORKING_END, WORKING_DAYS = dt.time(9, 0), dt.time(19, 0), (1, 2, 3, 4, 5)
ALL = keys.CAMPAIGNS_ALL  # sorted set: campaign id, score = creation time (ms)


def key(campaign_id: str, part: str = "") -> str:
    return keys.campaign(campaign_id, part)


class CampaignError(ValueError):
    """Invalid campaign, with one French message per field."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k} : {v}" for k, v in errors.items()))
        self.errors = errors


@dataclass
class Audience:
    cover_levels: list[str] = field(default_factory=list)
    regions: list[str] = field(default_factory=list)
    segments: list[str] = field(default_factory=list)
    age_min: int | None = None
    age_max: int | None = None
    members: list[str] = field(default_factory=list)  # a list given inline (then the filters still apply)
    uploaded: int = 0  # members in the imported file's list, kept in Redis (``camp:{id}:list``)

    def matches(self, member: dict[str, str], today: dt.date) -> bool:
        level = member.get("cover_level") or ""
        if self.cover_levels and level not in self.cover_levels and not cover.same_level(level, self.cover_levels):
            return False
        if self.regions and member.get("region") not in self.regions:
            return False
        if self.segments and member.get("segment") not in self.segments:
            return False
        if self.age_min is not None or self.age_max is not None:
            try:
                born = dt.date.fromisoformat(member.get("birth_date", ""))
            except ValueError:
                return False
            age = today.year - born.year - ((today.month, today.day) < (born.month, born.day))
            if self.age_min is not None and age < self.age_min:
                return False
            if self.age_max is not None and age > self.age_max:
                return False
        return True

    def describe(self) -> str:
        parts = []
        if self.uploaded:
            parts.append(f"liste importée de {self.uploaded} adhérents")
        if self.members:
            parts.append(f"liste de {len(self.members)} adhérents")
        if self.cover_levels:
            parts.append("formules " + ", ".join(self.cover_levels))
        if self.regions:
            parts.append("régions " + ", ".join(self.regions))
        if self.segments:
            parts.append("segments " + ", ".join(self.segments))
        if self.age_min is not None or self.age_max is not None:
            parts.append(f"âge {self.age_min or 0}–{self.age_max or '∞'} ans")
        return " ; ".join(parts) or "tous les adhérents"


@dataclass
class Campaign:
    id: str
    kind: str
    title: str
    effective_date: str  # ISO date; or "" with date_field
    date_field: str
    audience: Audience
    channels: list[str]
    templates: dict[str, dict[str, str]]
    values: dict[str, Any]
    window: dict[str, Any]
    lead_days: int = 2  # per-member campaigns: sent this many days before each member's deadline
    state: str = "draft"
    start_at: str = ""  # ISO datetime (Europe/Paris) once scheduled
    created_by: str = ""
    created_ms: int = 0
    max_change_percent: float = 25.0  # a contribution change beyond ± this refuses count and schedule
    variables: list[str] = field(default_factory=list)  # per-member variables from the uploaded file

    @property
    def mandatory(self) -> bool:
        return self.kind in MANDATORY

    def send_window(self) -> SendWindow:
        return SendWindow(
            start=dt.time.fromisoformat(self.window.get("start", "09:00")),
            end=dt.time.fromisoformat(self.window.get("end", "19:00")),
            weekdays=tuple(int(d) for d in self.window.get("weekdays", (1, 2, 3, 4, 5, 6))),
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_json(cls, raw: str) -> Campaign:
        data = json.loads(raw)
        data["audience"] = Audience(**data.get("audience") or {})
        return cls(**data)

    def window_warning(self) -> str:
        """A French warning when the window reaches outside working hours and days, else ""."""
        window = self.send_window()
        outside = []
        if window.start < WORKING_START or window.end > WORKING_END:
            outside.append(f"de {window.start:%H:%M} à {window.end:%H:%M}")
        if any(d not in WORKING_DAYS for d in window.weekdays):
            outside.append("le samedi")
        if not outside:
            return ""
        return (f"Fenêtre d'envoi hors des heures ouvrées (9 h – 19 h, du lundi au vendredi) : des notices "
                f"partiraient {' et '.join(outside)}.")  # fmt: skip

    def public(self) -> dict[str, Any]:
        out = asdict(self)
        out["kind_label"] = KINDS.get(self.kind, self.kind)
        out["state_label"] = STATE_LABELS.get(self.state, self.state)
        out["channels_label"] = " puis ".join(CHANNEL_LABELS.get(c, c) for c in self.channels)
        out["effective_label"] = long_date(self.effective_date) if self.effective_date else ""
        out["start_label"] = long_datetime(self.start_at) if self.start_at else ""
        out["audience_label"] = self.audience.describe()
        out["window_label"] = self.send_window().describe()
        out["window_warning"] = self.window_warning()
        out["mandatory"] = self.mandatory
        return out


def long_date(iso: str) -> str:
    """« 15 janvier 2027 », « 1er mars 2027 » (Babel's long French date), or the text as it is when it is no date."""
    try:
        day = dt.date.fromisoformat(iso[:10])
    except ValueError:
        return iso
    text = str(format_date(day, format="long", locale="fr_FR"))
    return "1er" + text[1:] if day.day == 1 else text


def long_datetime(iso: str) -> str:
    """« 15 janvier 2027 à 9 h 00 », in Paris time."""
    try:
        moment = dt.datetime.fromisoformat(iso)
    except ValueError:
        return iso
    if moment.tzinfo is not None:
        moment = moment.astimezone(PARIS)
    return f"{long_date(moment.date().isoformat())} à {hour(moment.time())}"


def hour(moment: dt.time) -> str:
    """« 14 h 50 », as French writes a time of day."""
    return f"{moment.hour} h {moment.minute:02d}"


def new_id() -> str:
    return time.strftime("%Y%m%d") + "-" + secrets.token_hex(4)


def from_input(data: dict[str, Any], *, created_by: str = "", existing: Campaign | None = None) -> Campaign:
    """Validate what staff typed (JSON API, console form or a file for ``run.py campaign create``).
    ``existing``: the draft being edited (its id, author, list and per-member values are kept)."""
    from campaigns.render import Renderer, RenderError, default_templates

    errors: dict[str, str] = {}
    kind = str(data.get("kind") or "")
    if kind not in KINDS:
        errors["kind"] = "type inconnu : benefit_change, contribution_change ou information"
    title = str(data.get("title") or "").strip()
    if not 3 <= len(title) <= 120:
        errors["title"] = "un titre de 3 à 120 caractères"
    effective = str(data.get("effective_date") or "").strip()
    date_field = str(data.get("date_field") or "").strip()
    if bool(effective) == bool(date_field):
        errors["effective_date"] = "une date d'effet, ou un champ de date propre à chaque adhérent (pas les deux)"
    elif effective:
        try:
            dt.date.fromisoformat(effective)
        except ValueError:
            errors["effective_date"] = "date illisible (AAAA-MM-JJ)"
    elif date_field not in DATE_FIELDS:
        errors["date_field"] = f"champ inconnu : {', '.join(DATE_FIELDS)}"
    raw_channels = data.get("channels") or ["email", "sms"]
    channels = [str(c) for c in raw_channels] if isinstance(raw_channels, list) else []
    if not channels or any(c not in CHANNELS for c in channels) or len(set(channels)) != len(channels):
        errors["channels"] = "canaux par ordre de préférence, parmi : " + ", ".join(CHANNELS)
    raw_audience = data.get("audience") or {}
    try:
        audience = Audience(
            cover_levels=[str(x) for x in raw_audience.get("cover_levels") or []],
            regions=[str(x) for x in raw_audience.get("regions") or []],
            segments=[str(x) for x in raw_audience.get("segments") or []],
            age_min=int(raw_audience["age_min"]) if raw_audience.get("age_min") not in (None, "") else None,
            age_max=int(raw_audience["age_max"]) if raw_audience.get("age_max") not in (None, "") else None,
            members=[str(x).strip().upper() for x in raw_audience.get("members") or [] if str(x).strip()],
        )
    except (TypeError, ValueError, AttributeError, OverflowError):
        errors["audience"] = "filtres illisibles"
        audience = Audience()
    window = _object(data, "window", errors, "fenêtre illisible")
    # A new campaign's window is stored whole: 9 h – 19 h on working days unless it says otherwise
    # (campaigns stored before kept the defaults of ``send_window``, Saturdays included).
    window = {"start": "09:00", "end": "19:00", "weekdays": list(WORKING_DAYS), **window}
    try:
        Campaign("x", "information", "x", "", "", Audience(), [], {}, {}, window).send_window()
    except (ValueError, TypeError, OverflowError) as exc:
        errors["window"] = str(exc) if "fenêtre" in str(exc) or "jours" in str(exc) else "fenêtre illisible"
    values = _object(data, "values", errors, "valeurs illisibles (un objet JSON est attendu)")
    templates = default_templates(kind) if kind in KINDS else {}
    for channel, parts in _object(data, "templates", errors, "modèles illisibles (un objet par canal)").items():
        if isinstance(parts, dict):
            templates.setdefault(str(channel), {}).update({str(k): str(v) for k, v in parts.items()})
    try:
        lead = int(data.get("lead_days", 2))
        if not 0 <= lead <= 20:
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        errors["lead_days"] = "de 0 à 20 jours"
        lead = 2
    raw_bound = data.get("max_change_percent")
    try:
        bound = float(str(raw_bound).replace(",", ".")) if raw_bound not in (None, "") else DEFAULT_MAX_CHANGE_PERCENT
        if not 0 < bound <= 100:
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        errors["max_change_percent"] = "une évolution maximale de 0,1 à 100 %"
        bound = DEFAULT_MAX_CHANGE_PERCENT
    if errors:
        raise CampaignError(errors)
    campaign = Campaign(
        id=existing.id if existing else new_id(),
        kind=kind,
        title=title,
        effective_date=effective,
        date_field=date_field,
        audience=audience,
        channels=channels,
        templates=templates,
        values=values,
        window=window,
        lead_days=lead,
        created_by=existing.created_by if existing else created_by,
        created_ms=existing.created_ms if existing else int(time.time() * 1000),
        max_change_percent=bound,
        variables=list(existing.variables) if existing else [],
    )
    if existing is not None:
        campaign.audience.uploaded = existing.audience.uploaded
    _try_sample(campaign, Renderer, RenderError)
    return campaign


SAMPLE = {"number": "M0000000", "first_name": "Camille", "last_name": "Durand", "cover_level": "confort",
          "contribution_eur": "64.20", "contribution_call_date": "2027-01-05", "region": "Bretagne",
          "segment": "famille", "birth_date": "1975-03-12", "phone": "+33600000000",
          "email": "camille.durand@example.fr"}  # fmt: skip
PLACEHOLDERS = ("66.10", "2027-01-05", "texte")  # what a per-member file may bring: an amount, a date, a text


def _try_sample(campaign: Campaign, renderer_type: Any, error_type: type[Exception]) -> None:
    """Every channel's template must render for a sample member now, not fail at 9 a.m. on send day.
    A variable the campaign does not give comes from the per-member file later: the sample tries an
    amount, a date and a text for it (count and schedule then check each member has a value)."""
    from campaigns.variables import resolve

    try:
        renderer = renderer_type(campaign.templates, campaign.values)
    except error_type as exc:
        raise CampaignError({"templates": str(exc)}) from exc
    base = resolve(campaign.values, SAMPLE, {}, dt.date(2027, 1, 5))
    from_file = sorted(renderer.names() - set(base) - {"change_eur", "change_percent"} - set(campaign.values))
    last: Exception | None = None
    for placeholder in PLACEHOLDERS:
        own = dict.fromkeys(from_file, placeholder)
        extra = resolve(campaign.values, SAMPLE, own, dt.date(2027, 1, 5))
        try:
            for channel in campaign.channels:
                renderer.render(channel, SAMPLE, context(campaign, SAMPLE), extra)
            return
        except error_type as exc:
            last = exc
            if not from_file:
                break
    raise CampaignError({"templates": str(last)})


def context(campaign: Campaign, member: dict[str, Any]) -> dict[str, Any]:
    """What templates see as ``campaign``: the effective date is the member's own for per-member campaigns."""
    effective = campaign.effective_date or str(member.get(campaign.date_field) or "")
    return {"title": campaign.title, "kind": campaign.kind, "effective_date": effective, "id": campaign.id}


MEMBER_NUMBER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{2,39}$")  # as the member import accepts them
_NUMBER_COLUMNS = ("numero_adherent", "numero", "adherent", "number", "member", "membre")


def _object(data: dict[str, Any], name: str, errors: dict[str, str], message: str) -> dict[str, Any]:
    """An optional field that must be a JSON object: a copy of it, or {} and the French error."""
    value = data.get(name) or {}
    if isinstance(value, dict):
        return dict(value)
    errors[name] = message
    return {}


def decode_list(raw: bytes) -> str:
    """An uploaded file's text: UTF-8 (with or without a BOM), else Windows-1252, as a spreadsheet's
    "CSV (séparateur : point-virgule)" is saved in France."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("cp1252", errors="replace")


@dataclass
class MemberFile:
    """An uploaded file: member numbers in file order (each once), their own values per variable
    (columns other than the number), and the lines that hold no number."""

    numbers: list[str]
    values: dict[str, dict[str, str]]
    variables: list[str]
    bad: list[int]


def parse_member_file(text: str) -> MemberFile:
    """Member numbers, and per-member values, from an uploaded file: one number per line, or a CSV
    (comma, semicolon as French spreadsheets write it, or tab) whose number column is named numéro,
    adhérent, number..., else its first column. With a header row, every other named column is a
    variable (« nouvelle cotisation » → ``new_contribution``; see ``campaigns/variables.py``)."""
    lines = text.splitlines()
    first = next((line for line in lines if line.strip()), "")
    delimiter = next((d for d in (";", "\t", ",") if d in first), ";")
    try:
        rows = list(csv.reader(lines, delimiter=delimiter))
    except csv.Error as exc:  # a field past the csv module's limit (128 KB): not a list of members
        raise CampaignError({"file": "fichier illisible : une ligne est bien trop longue pour un numéro"}) from exc
    column, start = 0, 0
    header: list[str] = []
    if rows:
        header = [_plain(cell) for cell in rows[0]]
        named = next((header.index(name) for name in _NUMBER_COLUMNS if name in header), None)
        if named is not None:
            column, start = named, 1
        elif rows[0] and not MEMBER_NUMBER.match(rows[0][0].strip()):
            start = 1  # a header we do not know: its first column is taken
        else:
            header = []  # no header: numbers only
    columns = {i: variable_name(h) for i, h in enumerate(header) if i != column and variable_name(h)}
    numbers: dict[str, None] = {}
    values: dict[str, dict[str, str]] = {}
    bad: list[int] = []
    for i, row in enumerate(rows[start:], start=start + 1):
        if not any(cell.strip() for cell in row):
            continue
        value = row[column].strip() if column < len(row) else ""
        if MEMBER_NUMBER.match(value):
            numbers.setdefault(value)
            if columns:
                values[value] = {name: row[j].strip() if j < len(row) else "" for j, name in columns.items()}
        else:
            bad.append(i)
    return MemberFile(list(numbers), values, list(dict.fromkeys(columns.values())), bad)


def parse_member_list(text: str) -> tuple[list[str], list[int]]:
    """The member numbers of an uploaded file and the lines that hold none (``parse_member_file``)."""
    parsed = parse_member_file(text)
    return parsed.numbers, parsed.bad


def _plain(cell: str) -> str:
    """A header cell compared without case, accents, spaces or "n°"."""
    folded = unicodedata.normalize("NFKD", cell.strip().lower().replace("n°", "numero"))
    return "".join(c for c in folded if not unicodedata.combining(c)).replace(" ", "_").replace("'", "_")
