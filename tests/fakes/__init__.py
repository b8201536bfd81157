"""Loopback fakes of providers unreachable from tests (Twilio, Telegram...)."""
