"""Delivery status notifications (RFC 3464) as Postfix, Exchange and Gmail send them."""

from __future__ import annotations

from channels.email.parse import Bounce, bounces

DSN_POSTFIX = (
    "From: MAILER-DAEMON@relay.example (Mail Delivery System)\r\n"
    "To: notices@mutuelle.example\r\n"
    "Subject: Undelivered Mail Returned to Sender\r\n"
    "Auto-Submitted: auto-replied\r\n"
    "MIME-Version: 1.0\r\n"
    'Content-Type: multipart/report; report-type=delivery-status; boundary="B1"\r\n'
    "\r\n--B1\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nI'm sorry to have to inform you...\r\n"
    "--B1\r\nContent-Type: message/delivery-status\r\n\r\n"
    "Reporting-MTA: dns; relay.example\r\n\r\n"
    "Final-Recipient: rfc822; u1@example.fr\r\nOriginal-Recipient: rfc822;u1@example.fr\r\n"
    "Action: failed\r\nStatus: 5.1.1\r\n"
    "Diagnostic-Code: smtp; 550 5.1.1 <u1@example.fr>: Recipient address\r\n rejected: User unknown\r\n"
    "--B1\r\nContent-Type: {inner}\r\n\r\n"
    "From: notices@mutuelle.example\r\nTo: u1@example.fr\r\nSubject: =?utf-8?q?=C3=89volution?=\r\n"
    "Message-ID: <c.20261202-ab12cd34.M8000001.0@mutuelle.example>\r\n\r\n"
    "--B1--\r\n"
)


def test_a_hard_bounce_names_the_mail_that_failed_and_why() -> None:
    for inner in ("message/rfc822", "text/rfc822-headers"):
        found = bounces(DSN_POSTFIX.replace("{inner}", inner).encode())
        assert found == [
            Bounce(
                "c.20261202-ab12cd34.M8000001.0@mutuelle.example",
                "5.1.1",
                "smtp; 550 5.1.1 <u1@example.fr>: Recipient address rejected: User unknown",
            )
        ]


def test_a_delay_warning_or_a_damaged_report_is_no_failure() -> None:
    delayed = DSN_POSTFIX.replace("{inner}", "message/rfc822").replace("Action: failed", "Action: delayed")
    assert bounces(delayed.encode()) == []
    no_original = DSN_POSTFIX.replace("{inner}", "text/plain").replace("Message-ID: <c.", "X-Id: <c.")
    assert bounces(no_original.encode()) == []  # nothing says which mail failed: kept as a message
    for damaged in (DSN_POSTFIX[:400], DSN_POSTFIX.replace('boundary="B1"', 'boundary="nope"'), "\x00\xff" * 50):
        assert bounces(damaged.encode("utf-8", "surrogateescape") if isinstance(damaged, str) else damaged) == []
    assert bounces(b"From: a@b.fr\r\nSubject: Bonjour\r\n\r\nBonjour") == []
