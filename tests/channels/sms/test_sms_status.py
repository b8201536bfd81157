"""Status callbacks: the fake Twilio calls back, signed, about the messages we sent."""

from __future__ import annotations

from gateway.envelope import Message
from tests.channels.sms.sms_harness import PUBLIC_URL, Harness

MEMBER = "+33639980012"


def outbound(text: str = "Votre devis optique est disponible.") -> Message:
    return Message(id="m1", channel="sms", urn=f"tel:{MEMBER}", direction="out", text=text)


async def test_queued_sent_delivered_reach_the_gateway(sms: Harness) -> None:
    result = await sms.channel.send(outbound())
    # Twilio signs the StatusCallback URL it was given (the public one); the proxy forwards
    # to where the gateway really listens.
    codes = await sms.fake.deliver_callbacks(sms.status_url)
    assert codes == [200, 200, 200]
    updates = await sms.statuses()
    assert [(u.external_id, u.status) for u in updates] == [
        (result.external_id, "queued"),
        (result.external_id, "sent"),
        (result.external_id, "delivered"),
    ]
    assert all(u.channel == "sms" and u.error_code is None for u in updates)


async def test_undelivered_carries_the_error(sms: Harness) -> None:
    result = await sms.channel.send(outbound())
    codes = await sms.fake.deliver_callbacks(sms.status_url, statuses=("sent", "undelivered"), error_code="30005")
    assert codes == [200, 200]
    last = (await sms.statuses())[-1]
    assert (last.external_id, last.status, last.error_code) == (result.external_id, "undelivered", "30005")
    assert last.error_message == "Numéro du destinataire inconnu ou inexistant"


async def test_failed_21610_records_the_opt_out(sms: Harness) -> None:
    await sms.channel.send(outbound())
    assert not await sms.opted_out(f"tel:{MEMBER}")
    await sms.fake.deliver_callbacks(sms.status_url, statuses=("failed",), error_code="21610")
    assert await sms.opted_out(f"tel:{MEMBER}")


async def test_callbacks_signed_with_another_token_are_refused(sms: Harness) -> None:
    await sms.channel.send(outbound())
    codes = await sms.fake.deliver_callbacks(sms.status_url, "another-account-token")
    assert codes == [403, 403, 403]
    assert await sms.statuses() == []


async def test_callbacks_signed_over_the_bind_address_are_refused(sms: Harness) -> None:
    await sms.channel.send(outbound())
    assert sms.fake.messages[0].status_callback == PUBLIC_URL + "/sms/twilio/status"
    codes = await sms.fake.deliver_callbacks(sms.status_url, sign_url=sms.status_url, statuses=("delivered",))
    assert codes == [403]
    assert await sms.statuses() == []
