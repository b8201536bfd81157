"""X-Twilio-Signature: checked against the configured public URL, never the request's Host."""

from __future__ import annotations

import urllib.parse

from tests.channels.sms.sms_harness import AUTH_TOKEN, PUBLIC_URL, Harness, HarnessFactory
from tests.fakes.twilio import inbound_params, signed_inbound

MEMBER = "+33639980012"
INBOUND = "/sms/twilio/inbound"


async def test_genuine_request_is_accepted(sms: Harness) -> None:
    params = inbound_params(MEMBER, "Bonjour")
    headers, body = signed_inbound(PUBLIC_URL, INBOUND, AUTH_TOKEN, params)
    resp = await sms.client.post(INBOUND, data=body, headers=headers)
    assert resp.status == 200
    [msg] = await sms.accepted()
    assert (msg.urn, msg.text, msg.external_id) == (f"tel:{MEMBER}", "Bonjour", params["MessageSid"])


async def test_forged_signature_is_refused(sms: Harness) -> None:
    params = inbound_params(MEMBER, "STOP")
    headers, body = signed_inbound(PUBLIC_URL, INBOUND, "not-our-auth-token", params)
    resp = await sms.client.post(INBOUND, data=body, headers=headers)
    assert resp.status == 403
    assert await sms.accepted() == []
    assert not await sms.opted_out(f"tel:{MEMBER}")


async def test_missing_signature_is_refused(sms: Harness) -> None:
    _, body = signed_inbound(PUBLIC_URL, INBOUND, AUTH_TOKEN, inbound_params(MEMBER, "Bonjour"))
    resp = await sms.client.post(INBOUND, data=body, headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert resp.status == 403
    assert await sms.accepted() == []


async def test_body_tampered_after_signing_is_refused(sms: Harness) -> None:
    signed = inbound_params(MEMBER, "Bonjour")
    tampered = {**signed, "Body": "STOP"}
    status, _, _ = await sms.post(INBOUND, tampered, sign_params=signed)
    assert status == 403
    assert not await sms.opted_out(f"tel:{MEMBER}")
    # A parameter added after signing, or the sender changed, is refused as well.
    assert (await sms.post(INBOUND, {**signed, "OptOutType": "STOP"}, sign_params=signed))[0] == 403
    assert (await sms.post(INBOUND, {**signed, "From": "+33639980099"}, sign_params=signed))[0] == 403
    assert await sms.accepted() == []


async def test_signature_for_another_endpoint_is_refused(sms: Harness) -> None:
    params = inbound_params(MEMBER, "Bonjour")
    status, _, _ = await sms.post(INBOUND, params, sign_url=PUBLIC_URL + "/sms/twilio/status")
    assert status == 403


async def test_behind_a_proxy_the_public_url_is_what_counts(sms: Harness) -> None:
    """The test server listens on 127.0.0.1:<port>; Twilio signs the public URL."""
    params = inbound_params(MEMBER, "Bonjour")
    bind_url = str(sms.client.make_url(INBOUND))
    assert not bind_url.startswith(PUBLIC_URL)
    # Signed over the address the gateway is bound to: not what Twilio signs, refused.
    assert (await sms.post(INBOUND, params, sign_url=bind_url))[0] == 403
    # Signed over an attacker's URL, with headers claiming that URL: headers are ignored.
    evil = "https://evil.example" + INBOUND
    status, _, _ = await sms.post(
        INBOUND,
        params,
        sign_url=evil,
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": "{signature}",
            "Host": "evil.example",
            "X-Forwarded-Host": "evil.example",
            "X-Forwarded-Proto": "https",
            "Forwarded": "host=evil.example;proto=https",
        },
    )
    assert status == 403
    # Signed over the public URL (the proxy's), even with misleading forwarding headers: accepted.
    status, _, _ = await sms.post(
        INBOUND,
        params,
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": "{signature}",
            "X-Forwarded-Host": "evil.example",
        },
    )
    assert status == 200
    # Twilio may sign with the default port spelled out.
    again = inbound_params(MEMBER, "Encore")
    assert (await sms.post(INBOUND, again, sign_url="https://passerelle.mutuelle.example:443" + INBOUND))[0] == 200
    assert [m.text for m in await sms.accepted()] == ["Bonjour", "Encore"]


async def test_public_url_with_a_path_prefix(make_sms: HarnessFactory) -> None:
    """A proxy serving the gateway under /passerelle and stripping the prefix."""
    public = "https://www.mutuelle.example/passerelle"
    sms = await make_sms(PUBLIC_URL=public)
    params = inbound_params(MEMBER, "Bonjour")
    assert (await sms.post(INBOUND, params, sign_url=PUBLIC_URL + INBOUND))[0] == 403
    assert (await sms.post(INBOUND, params, sign_url=public + INBOUND))[0] == 200


async def test_query_string_is_part_of_the_signed_url(sms: Harness) -> None:
    params = inbound_params(MEMBER, "Bonjour")
    path = INBOUND + "?tenant=mutuelle-a&x=%C3%A9"
    assert (await sms.post(path, params, sign_url=PUBLIC_URL + path))[0] == 200
    other = inbound_params(MEMBER, "Bonjour")
    assert (await sms.post(path, other, sign_url=PUBLIC_URL + INBOUND))[0] == 403


async def test_invalid_utf8_body_cannot_be_authenticated(sms: Harness) -> None:
    params = inbound_params(MEMBER, "x")
    raw = urllib.parse.urlencode(params).encode() + b"&Extra=%FF%FE\xff"
    status, _, _ = await sms.post(INBOUND, raw, sign_params=params)
    assert status == 403
    assert await sms.accepted() == []


async def test_form_with_too_many_fields_is_refused_before_parsing(sms: Harness) -> None:
    params = {**inbound_params(MEMBER, "Bonjour"), **{f"X{i}": "y" for i in range(300)}}
    assert (await sms.post(INBOUND, params))[0] == 403
    assert await sms.accepted() == []


async def test_a_message_to_a_messaging_service_number_behind_the_proxy_is_accepted(sms: Harness) -> None:
    """Sent to a number of a Messaging Service's pool (not our configured sender) and signed over
    the proxy's public URL: authentic, accepted, and answered from the number the member wrote to."""
    pool_number = "+33700000099"
    params = inbound_params(MEMBER, "Bonjour", to=pool_number, messaging_service_sid="MG" + "5" * 32)
    status, _, _ = await sms.post(INBOUND, params, headers={
        "Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": "{signature}",
        "Host": "127.0.0.1", "X-Forwarded-Proto": "http",
    })  # fmt: skip
    assert status == 200
    [msg] = await sms.accepted()
    assert msg.meta["messaging_service_sid"] == "MG" + "5" * 32
    assert msg.meta["reply"] == {"twilio_from": pool_number}
    # The same form tampered to claim another service: refused.
    forged = {**params, "MessagingServiceSid": "MG" + "6" * 32}
    assert (await sms.post(INBOUND, forged, sign_params=params))[0] == 403
