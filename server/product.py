"""The composition root: the messaging core with every room wired to it.

Only this module (with ``server/service.py`` and ``run.py``) sees every room. Each room above the
core plugs in through a small interface the lower layer owns:

* members: one-time codes sent through the enabled channels (the Rasa responder's ``one_time_code``),
  unsubscriptions written to the audit trail (``Gateway.on_unsubscribed``), the retention purge (a
  scheduler job), a Telegram chat linked by consent or undone (the Rasa responder's ``word_answer``);
* agents: the satisfaction survey (a router detour), what a member handed off is told about the
  wait (the Rasa responder's ``handoff_note``), the console's routes and live updates;
* campaigns: a failed notice rechecked (``Gateway.on_delivery_failed``), the campaign runner (a
  scheduler job), the campaign console and the unsubscribe pages;
* staff: the sign-in shared by both consoles.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator

from aiohttp import web
from redis.asyncio import Redis

from agents.calls import CallDesk
from agents.console import Console
from agents.desk import Desk
from agents.survey import Survey
from agents.waiting import expected_wait_text
from campaigns.engine import Campaigns
from campaigns.web import public_routes as unsubscribe_routes
from campaigns.web import routes as campaign_routes
from gateway import events, keys
from gateway.app import ALL_ROLES, Gateway
from gateway.rasa import RasaResponder
from gateway.responders import Responder
from gateway.settings import Settings
from gateway.webhooks import WebhookSender
from members import detail_word
from members.api import RecordsApi
from members.audit import unsubscribed_audit
from members.codes import CodeLimits, OneTimeCodes
from members.links import LinkWords
from members.privacy import run_retention
from members.proactive import Proactive
from staff.web import StaffSite

CODE_CHANNELS = ("sms", "email")  # one-time codes go by SMS first, else by e-mail
NOTICE_CHANNELS = ("email", "whatsapp", "sms")  # channels a notice may use (each campaign orders its own)
PROACTIVE_CHANNELS = ("sms", "email", "whatsapp")  # channels a member may be told first on


class Product:
    """Everything one process runs for its roles: the gateway and the rooms hooked into it."""

    def __init__(
        self,
        settings: Settings,
        redis: Redis,
        *,
        responder: Responder | None = None,
        roles: frozenset[str] = ALL_ROLES,
        channel_names: list[str] | None = None,
    ) -> None:
        self.settings = settings
        self.redis = redis
        self.gateway = gw = Gateway(settings, redis, responder=responder, roles=roles, channel_names=channel_names)
        # Members.
        if isinstance(gw.responder, RasaResponder):
            s = settings
            limits = CodeLimits(
                per_hour=s.otp_per_hour, burst=s.otp_burst, per_day=s.otp_per_day,
                failures_per_day=s.otp_failures_per_day, source_per_hour=s.otp_source_per_hour,
                source_burst=s.otp_source_burst, per_minute=s.otp_per_minute, handoff_every_s=s.otp_handoff_every_s,
            )  # fmt: skip
            codes = OneTimeCodes(
                redis,
                secret=s.secret_key,
                channels=tuple(c for c in CODE_CHANNELS if c in gw.channels),
                limits=limits,
                mutuelle=s.mutuelle_name,
                callback_url=f"{s.public_url}/callback",
            )
            gw.responder.one_time_code = codes.handle
            gw.responder.code_metadata = codes.metadata
            gw.responder.bot_message = detail_word.for_bot  # « DETAIL » after a message sent first
            gw.responder.handoff_note = functools.partial(expected_wait_text, redis, hours=settings.opening_hours)
            gw.responder.word_answer = LinkWords(redis)  # a Telegram chat linked with consent, and undone
        gw.on_unsubscribed.append(unsubscribed_audit(redis))
        gw.jobs.append(("scheduler", "retention", self.retention))
        self.records_api = RecordsApi(settings, redis)  # the back office's records API (issue 23)
        # Agents and the staff sign-in.
        gw.router.detours.append(Survey(redis))
        self.desk = Desk(redis, gw.router, rasa_url=settings.rasa_url or "", sms_enabled="sms" in gw.channels,
                         hours=settings.opening_hours)  # fmt: skip
        self.site = StaffSite(settings, redis, gw.ctx.templates)
        self.console = Console(settings, redis, self.desk, self.site)
        # Phone calls: the voice channel tells the desk what happens to calls, the desk places calls with it.
        voice = gw.channels.get("voice")
        if voice is not None:
            calls = CallDesk(redis, self.desk, public_url=settings.public_url, hours=settings.opening_hours,
                             sms="sms" in gw.channels)  # fmt: skip
            voice.events = calls  # type: ignore[attr-defined]
            gw.router.detours.append(calls)  # « RAPPEL » answering an abandoned call's SMS books a callback
            self.console.calls = calls
            self.console.phones = voice  # type: ignore[assignment]
        # Campaigns.
        self.campaigns = Campaigns(
            redis,
            enqueue=gw.router.enqueue_many,
            enabled_channels=tuple(c for c in NOTICE_CHANNELS if c in gw.channels),
            rates=settings.campaign_rates(),
            reclaim_s=settings.campaign_reclaim_s,
        )
        gw.on_delivery_failed.append(self._recheck_notice)
        gw.jobs.append(("scheduler", "campaigns", self.campaigns.run))
        # Events out (issue 23): what the back office hears of, as a stream and as signed webhooks.
        self.webhooks = WebhookSender(settings, redis)
        gw.jobs.append(("dispatcher", "webhooks", self.webhooks.run))
        gw.on_status.append(self._notice_event)
        gw.on_unsubscribed.append(self._unsubscribed_event)
        # Members told before they ask: a claim the back office sets to paid, on the member's channel.
        self.proactive = Proactive(
            redis, enqueue=gw.router.enqueue_many, channels=tuple(c for c in PROACTIVE_CHANNELS if c in gw.channels),
            templates=gw.ctx.templates, sms_hours=settings.proactive_sms_hours, email_hours=settings.proactive_email_hours,
            due_days=settings.proactive_due_days, group_window_s=settings.proactive_group_window_s,
            mutuelle=settings.mutuelle_name,
        )  # fmt: skip
        self.records_api.on_stored.append(self.proactive.changed)
        gw.jobs.append(("scheduler", "proactive", self.proactive.run))

    async def retention(self, stop: asyncio.Event) -> None:
        s = self.settings
        await run_retention(
            self.redis, shards=s.stream_shards, days=s.retention_days, every_s=s.retention_every_s,
            stop=stop, outbox=s.var_dir / "outbox",
        )  # fmt: skip

    async def _notice_event(self, msg_id: str, status: str) -> None:
        """A campaign notice delivered (or read), or failed: told to the back office once per notice and outcome."""
        parts = msg_id.split(".")
        if len(parts) != 4 or parts[0] != "c":
            return
        _, cid, number, _ = parts
        if status in ("delivered", "read"):
            kind = events.NOTICE_DELIVERED
        elif status in ("failed", "undelivered", "canceled"):
            kind = events.NOTICE_FAILED
        else:
            return
        channel = str(await self.redis.hget(keys.message(f"c.{cid}.{number}", msg_id), "channel") or "")
        await events.emit(self.redis, kind, msg_id, {"campaign": cid, "member": number, "notice": msg_id,
                                                     "channel": channel, "status": status})  # fmt: skip

    async def _unsubscribed_event(self, number: str, via: str) -> None:
        await events.emit(self.redis, events.OPTED_OUT, f"{number} information-email {int(time.time() // 60)}",
                          {"member": number, "channel": "email", "scope": "information", "via": via})  # fmt: skip

    async def _recheck_notice(self, msg_id: str) -> None:
        await self.campaigns.recheck(msg_id)

    def build_app(self) -> web.Application:
        app = self.gateway.build_app()
        app.add_routes(self.site.routes())
        app.add_routes(self.console.routes())
        app.add_routes(campaign_routes(self.site, self.campaigns))
        app.add_routes(unsubscribe_routes(self.settings, self.redis, self.gateway.ctx.templates))
        app.add_routes(self.records_api.routes())
        app.cleanup_ctx.append(self._console_lifecycle)
        app.on_shutdown.append(self._close_console_sockets)
        return app

    async def _console_lifecycle(self, app: web.Application) -> AsyncIterator[None]:
        if "web" in self.gateway.roles:
            await self.console.start()
        yield
        await self.console.stop()

    async def _close_console_sockets(self, app: web.Application) -> None:
        await self.console.shutdown()
