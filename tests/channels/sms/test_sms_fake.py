"""The fake Twilio API itself: what other tests (e2e, chaos, benchmark) rely on."""

from __future__ import annotations

import base64
import time
import urllib.parse

import aiohttp
import pytest
from twilio.request_validator import RequestValidator

from tests.channels.sms.sms_harness import ACCOUNT_SID, AUTH_TOKEN
from tests.fakes.twilio import FakeTwilio, inbound_params, signed_inbound


async def post(
    fake: FakeTwilio, form: dict[str, str], auth: tuple[str, str] = (ACCOUNT_SID, AUTH_TOKEN)
) -> tuple[int, dict[str, object], dict[str, str]]:
    url = f"{fake.base_url}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    basic = base64.b64encode(":".join(auth).encode()).decode()
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=form, headers={"Authorization": f"Basic {basic}"}) as resp,
    ):
        return resp.status, await resp.json(), dict(resp.headers)


async def test_wait_for_times_out_with_a_clear_error(fake_twilio: FakeTwilio) -> None:
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=r"waited 0\.2s for 1 messages"):
        await fake_twilio.wait_for(1, timeout=0.2)
    assert time.monotonic() - started < 1.0


async def test_validates_like_twilio(fake_twilio: FakeTwilio) -> None:
    base = {"From": "+33700000000", "Body": "Bonjour"}
    assert (await post(fake_twilio, base))[1]["code"] == 21604
    assert (await post(fake_twilio, {**base, "To": "0639980012"}))[1]["code"] == 21211
    assert (await post(fake_twilio, {"To": "+33639980012", "From": "+33700000000"}))[1]["code"] == 21602
    assert (await post(fake_twilio, {"To": "+33639980012", "Body": "x"}))[1]["code"] == 21603
    assert (await post(fake_twilio, {**base, "To": "+33639980012", "Body": "x" * 1601}))[1]["code"] == 21617
    status, payload, _ = await post(fake_twilio, {**base, "To": "+33639980012"}, auth=(ACCOUNT_SID, "wrong"))
    assert (status, payload["code"]) == (401, 20003)
    assert fake_twilio.messages == []
    status, payload, _ = await post(fake_twilio, {**base, "To": "+33639980012"})
    assert status == 201 and payload["status"] == "queued" and payload["sid"] == fake_twilio.messages[0].sid
    assert len(fake_twilio.requests) == 7


async def test_faults_apply_in_order_then_stop(fake_twilio: FakeTwilio) -> None:
    form = {"To": "+33639980012", "From": "+33700000000", "Body": "x"}
    fake_twilio.inject(2, status=429, code=20429, retry_after=3)
    fake_twilio.inject(status=500)
    first, second, third, fourth = [await post(fake_twilio, form) for _ in range(4)]
    assert (first[0], first[2]["Retry-After"]) == (429, "3")
    assert second[0] == 429 and third[0] == 500 and fourth[0] == 201
    await fake_twilio.wait_for_requests(4)


def test_signed_inbound_is_what_twilio_validator_accepts() -> None:
    params = inbound_params("+33639980012", "Bonjour, ça va ?", media=[("https://api.twilio.com/m/ME1", "image/jpeg")])
    headers, body = signed_inbound("https://passerelle.mutuelle.example/", "/sms/twilio/inbound", AUTH_TOKEN, params)
    decoded = dict(urllib.parse.parse_qsl(body.decode(), keep_blank_values=True))
    assert decoded == params and params["MessageSid"].startswith("MM") and params["NumMedia"] == "1"
    validator = RequestValidator(AUTH_TOKEN)
    url = "https://passerelle.mutuelle.example/sms/twilio/inbound"
    assert validator.validate(url, decoded, headers["X-Twilio-Signature"])
    assert not validator.validate(url, {**decoded, "Body": "STOP"}, headers["X-Twilio-Signature"])
