"""``run.py demo-data``: a realistic synthetic French member data set, of any size, as the
CSV files ``run.py import`` reads. Deterministic for a given seed; names and addresses come
from Faker's ``fr_FR`` provider; phone numbers are drawn from the ranges ARCEP reserves
for fiction, and every e-mail is on ``example.fr``."""

from __future__ import annotations

import csv
import datetime as dt
import random
from dataclasses import asdict
from pathlib import Path
from typing import Any

from faker import Faker
from tqdm import tqdm

from members import cover, numbers
from members.importer import FILES
from members.records import (
    SEGMENTS,
    Card,
    Claim,
    Complaint,
    Member,
    Membership,
    Quote,
    complaint_due,
    field_names,
)

# ARCEP's numbers reserved for fiction (valid for phonenumbers): nobody real is ever reached.
FICTION_RANGES = ("+3319900", "+3326191", "+3335301", "+3346571", "+3353649")
REGIONS = (
    "Île-de-France", "Auvergne-Rhône-Alpes", "Nouvelle-Aquitaine", "Occitanie", "Hauts-de-France",
    "Grand Est", "Provence-Alpes-Côte d'Azur", "Pays de la Loire", "Bretagne", "Normandie",
    "Bourgogne-Franche-Comté", "Centre-Val de Loire", "Corse", "La Réunion", "Guadeloupe",
)  # fmt: skip
CARE_KINDS = (
    ("consultation généraliste", 30, 60),
    ("consultation spécialiste", 50, 120),
    ("pharmacie", 8, 90),
    ("lunettes", 150, 650),
    ("prothèse dentaire", 300, 1200),
    ("kinésithérapie", 25, 60),
    ("hospitalisation", 400, 3000),
    ("analyses de laboratoire", 15, 150),
)
COMPLAINT_SUBJECTS = (
    "Remboursement non reçu",
    "Montant de remboursement contesté",
    "Carte de tiers payant non reçue",
    "Erreur sur la cotisation",
    "Délai de traitement d'un devis",
    "Prélèvement en double",
)


def _money(value: float) -> str:
    return f"{value:.2f}"


def generate(
    members: int, out_dir: Path, *, seed: int = 2026, today: dt.date | None = None, progress: bool = True
) -> dict[str, int]:
    """Write the CSV files for ``members`` members into ``out_dir``; returns the row counts."""
    today = today or dt.date.today()
    rng = random.Random(seed)
    fake = Faker("fr_FR")
    fake.seed_instance(seed)
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in FILES}
    fmt = numbers.current()  # the member-number format setting, as the import and the bot read it
    for i in tqdm(range(members), desc="Données de démonstration", unit="adhérent", disable=not progress):
        number = fmt.prefix + f"{100000 + i:0{fmt.digits}d}"
        serial = number[len(fmt.prefix) :]
        first, last = fake.first_name(), fake.last_name()
        birth = today - dt.timedelta(days=rng.randint(18 * 365, 92 * 365))
        email_local = f"{first}.{last}".lower().replace(" ", "-").replace("'", "")
        email_local = "".join(c for c in email_local if c.isascii() and (c.isalnum() or c in ".-"))
        call_day = dt.date(
            today.year + (1 if today.month == 12 else 0), today.month % 12 + 1, rng.choice((1, 5, 10, 15))
        )
        member = Member(
            number=number,
            first_name=first,
            last_name=last,
            birth_date=birth.isoformat(),
            phone=f"{rng.choice(FICTION_RANGES)}{rng.randint(0, 9999):04d}" if rng.random() < 0.85 else "",
            email=f"{email_local}.{i}@example.fr" if rng.random() < 0.9 else "",
            cover_level=rng.choice(cover.levels()),
            region=rng.choice(REGIONS),
            segment="senior" if (today - birth).days > 65 * 365 else rng.choice(SEGMENTS),
            contribution_eur=_money(rng.uniform(25, 180)),
            contribution_call_date=call_day.isoformat(),
        )
        rows["members.csv"].append(asdict(member))
        for c in range(rng.choice((0, 1, 2, 3, 4, 6))):
            kind, low, high = rng.choice(CARE_KINDS)
            care = today - dt.timedelta(days=rng.randint(1, 120))
            amount = rng.uniform(low, high)
            status = rng.choices(("received", "in_progress", "paid", "rejected"), (2, 3, 8, 1))[0]
            tele = rng.random() < 0.8
            paid = status == "paid"
            rows["claims.csv"].append(
                asdict(
                    Claim(
                        id=f"S{serial}{c:02d}",
                        member=number,
                        care_date=care.isoformat(),
                        kind=kind,
                        amount_eur=_money(amount),
                        reimbursed_eur=_money(amount * rng.uniform(0.5, 1.0)) if paid else "",
                        status=status,
                        payment_date=(care + dt.timedelta(days=2 if tele else rng.randint(4, 9))).isoformat()
                        if paid
                        else "",
                        teletransmitted=tele,
                        received_date=min(
                            today, care + dt.timedelta(days=rng.randint(0, 1) if tele else rng.randint(2, 6))
                        ).isoformat(),
                    )
                )
            )
        if rng.random() < 0.08:
            received = today - dt.timedelta(days=rng.randint(0, 20))
            urgent = rng.random() < 0.2
            status = rng.choice(("open", "answered", "closed"))
            rows["complaints.csv"].append(
                asdict(
                    Complaint(
                        id=f"REC-{today.year}-{i:06d}",
                        member=number,
                        received_date=received.isoformat(),
                        urgent=urgent,
                        due_date=complaint_due(received, urgent).isoformat(),
                        status=status,
                        subject=rng.choice(COMPLAINT_SUBJECTS),
                        answered_date=""
                        if status == "open"
                        else (received + dt.timedelta(days=rng.randint(1, 9))).isoformat(),
                    )
                )
            )
        if rng.random() < 0.15:
            amount = rng.uniform(200, 2500)
            rows["quotes.csv"].append(
                asdict(
                    Quote(
                        id=f"DV{serial}",
                        member=number,
                        kind=rng.choice(("optique", "dentaire", "audio")),
                        received_date=(today - dt.timedelta(days=rng.randint(0, 30))).isoformat(),
                        status=rng.choice(("received", "in_review", "accepted", "refused")),
                        amount_eur=_money(amount),
                        out_of_pocket_eur=_money(amount * rng.uniform(0, 0.4)),
                    )
                )
            )
        card_status = rng.choices(("in_production", "sent", "delivered"), (1, 2, 12))[0]
        rows["cards.csv"].append(
            asdict(
                Card(
                    id=f"TP{serial}",
                    member=number,
                    status=card_status,
                    dispatch_date=""
                    if card_status == "in_production"
                    else (today - dt.timedelta(days=rng.randint(2, 60))).isoformat(),
                )
            )
        )
        if rng.random() < 0.05:
            received = today - dt.timedelta(days=rng.randint(0, 15))
            acked = received + dt.timedelta(days=rng.randint(1, 9))
            rows["memberships.csv"].append(
                asdict(
                    Membership(
                        id=f"AD{serial}",
                        member=number,
                        received_date=received.isoformat(),
                        acknowledged_date=acked.isoformat() if acked <= today else "",
                        documents_sent_date=acked.isoformat() if acked <= today and rng.random() < 0.7 else "",
                    )
                )
            )
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, records in rows.items():
        with (out_dir / name).open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=field_names(FILES[name]))
            writer.writeheader()
            for record in records:
                writer.writerow({k: ("oui" if v is True else "non" if v is False else v) for k, v in record.items()})
    return {name: len(records) for name, records in rows.items()}
