"""Sending through Twilio's Messages API: shared with WhatsApp, now in ``channels/twilio_api.py``.

Kept so that existing imports (``channels.sms.sender``) keep working.
"""

from __future__ import annotations

from channels.twilio_api import UNSUBSCRIBED, Created, TwilioSender, parse_retry_after, to_send_error

__all__ = ["UNSUBSCRIBED", "Created", "TwilioSender", "parse_retry_after", "to_send_error"]
