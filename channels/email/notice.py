"""The HTML part of a campaign notice, built from its text when the e-mail is sent.

Notices travel through the outbound stream as text only (a million notices are not stored
twice); the e-mail channel adds this HTML alternative, and the campaign preview shows it.
"""

from __future__ import annotations

import html


def notice_html(subject: str, text: str) -> str:
    """The text's paragraphs (blank-line separated), escaped, in a plain accessible page."""
    paragraphs = "".join(f"<p>{html.escape(p).replace(chr(10), '<br>')}</p>" for p in text.split("\n\n"))
    return (
        '<!doctype html><html lang="fr"><head><meta charset="utf-8">'
        f"<title>{html.escape(subject)}</title></head>"
        '<body style="font-family:Arial,sans-serif;font-size:15px;line-height:1.5;color:#1d2733">'
        f"{paragraphs}</body></html>"
    )
