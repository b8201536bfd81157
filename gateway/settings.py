"""Settings: one frozen object built once from the environment.

Every value has an embedded default so that ``run.py serve`` works with nothing
configured. A channel is enabled when its credentials are set.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from urllib.parse import urlsplit

from gateway.hours import DEFAULT_HOURS, DEFAULT_OPENING_HOURS, OpeningHours

ROOT = Path(__file__).resolve().parent.parent


class SettingsError(ValueError):
    """A setting is present but unusable; the message names the variable."""


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from exc


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from exc


def _str(env: Mapping[str, str], name: str, default: str = "") -> str:
    return env.get(name, default) or default


def _hours(env: Mapping[str, str]) -> OpeningHours:
    raw = _str(env, "OPENING_HOURS", DEFAULT_OPENING_HOURS)
    try:
        return OpeningHours.parse(raw)
    except ValueError as exc:
        raise SettingsError(f"OPENING_HOURS: {exc}, got {raw!r}") from exc


def _quiet_hours(env: Mapping[str, str], name: str, default: str) -> OpeningHours | None:
    """When a channel may carry the messages the product sends first (Europe/Paris); "" = any time."""
    raw = env.get(name, default)
    if not raw:
        return None
    try:
        return OpeningHours.parse(raw)
    except ValueError as exc:
        raise SettingsError(f"{name}: {exc}, got {raw!r}") from exc


def _secret(env: Mapping[str, str], var_dir: Path) -> str:
    """The signing secret: from SECRET_KEY, else one generated once and kept under var/."""
    explicit = env.get("SECRET_KEY")
    if explicit:
        return explicit
    path = var_dir / "secret_key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        var_dir.mkdir(parents=True, exist_ok=True)
        value = secrets.token_urlsafe(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(value)
        return value


@dataclass(frozen=True, slots=True)
class Settings:
    # Where the product keeps its files (Redis data, outbox, secret).
    var_dir: Path = ROOT / "var"
    # HTTP
    host: str = "127.0.0.1"
    port: int = 8080
    # The URL the outside world uses to reach us (Twilio signs against it).
    public_url: str = "http://127.0.0.1:8080"
    # Redis: empty means "start a private redis-server under var/".
    redis_url: str = ""
    redis_appendfsync: str = "everysec"  # for the private redis-server: always / everysec
    # Responder: "rasa" (the bot; started by serve unless RASA_URL is set) or "ack" (acknowledgements only).
    responder: str = "rasa"
    rasa_url: str = ""
    actions_url: str = ""  # the bot's action server, checked by /readyz (serve sets both)
    rasa_servers: int = 1  # how many Rasa servers serve starts (RASA_URL may also list several, comma-separated)
    # Streams
    stream_shards: int = 1
    # After accepting an inbound message, wait up to this long for a replica to hold it before
    # answering the provider (Redis WAIT); 0 = do not wait. See README "Redis Cluster".
    inbound_wait_replica_ms: int = 0
    stream_maxlen: int = 1_000_000
    consumer_name: str = ""
    claim_idle_ms: int = 30_000
    campaign_reclaim_s: float = 120.0  # a dead worker's claimed campaign batch is taken back after this
    # One sender writing faster than a person can: stored, but answered once per quarter hour only.
    flood_per_min: float = 30.0
    flood_burst: int = 20
    dedup_ttl_s: int = 7 * 24 * 3600
    # Members' data: conversations whose last message is older than this are purged (0 = never).
    retention_days: int = 1095
    retention_every_s: float = 3600.0
    # Public endpoints (web chat sessions and sockets, unsubscribe pages; the callback form and API
    # have their own, stricter, figures): requests per client address, and how many proxies in front of us append to X-Forwarded-For (0: none, the
    # peer address counts; the header is then ignored, anyone can write it).
    public_rate_per_min: float = 30.0
    public_burst: int = 20
    # One-time codes (README, "Threat model"): sent to one member's phone or e-mail, whoever claims to be
    # them: a burst of ``otp_burst``, then ``otp_per_hour`` an hour, at most ``otp_per_day`` a day; wrong
    # codes tried for one member, all conversations together, at most ``otp_failures_per_day``; codes
    # asked from one address (a web-chat client's, an SMS or Telegram sender's); codes sent, all members
    # together, per minute (the SMS budget).
    otp_per_hour: float = 2.0
    otp_burst: int = 3
    otp_per_day: int = 8
    otp_failures_per_day: int = 10
    otp_source_per_hour: float = 6.0
    otp_source_burst: int = 3
    otp_per_minute: int = 60
    otp_handoff_every_s: int = 3600  # a failed verification per member number reaches agents once in this
    # The name members know the mutuelle by: one-time code messages start with it.
    mutuelle_name: str = "Ma Mutuelle"
    # A web-chat session ends after this long without a message from the visitor, and this long in all.
    webchat_idle_s: int = 15 * 60
    webchat_max_s: int = 4 * 3600
    callback_rate_per_hour: float = 10.0  # accepted callback requests per client address
    callback_burst: int = 5
    # Callback submissions refused for a mistake (a typo in the number...): a looser limit of their own.
    callback_invalid_rate_per_hour: float = 60.0
    callback_invalid_burst: int = 30
    # When agents call back and answer (the callback form's slots, what members are told); French
    # public holidays are always closed. See gateway/hours.py for the format.
    opening_hours: OpeningHours = DEFAULT_HOURS
    trusted_proxy_hops: int = 0
    # Dispatcher
    send_max_attempts: int = 8
    send_backoff_base_s: float = 1.0
    send_backoff_max_s: float = 300.0
    send_timeout_s: float = 15.0
    # Campaign notices may use this share of each provider's rate; members' replies keep the rest.
    bulk_share: float = 0.8
    # Inbound limits
    max_body_bytes: int = 256 * 1024
    max_email_bytes: int = 10 * 1024 * 1024
    # E-mail
    smtp_listen_host: str = "127.0.0.1"
    smtp_listen_port: int = 2525
    smtp_url: str = ""  # outbound relay, e.g. smtp://user:pass@relay:587; empty = file outbox
    email_from: str = "Ma Mutuelle <contact@mutuelle.example>"
    email_domain: str = "mutuelle.example"
    email_rate_per_s: float = 20.0
    # Mail-loop guard: an address writing more than this gets no automatic answer (stored for agents).
    email_answered_per_10min: int = 10
    email_answered_per_day: int = 30
    # The authserv-id the mutuelle's MX writes in Authentication-Results (RFC 8601). When set, only mail
    # whose DMARC (or aligned SPF/DKIM) passed there counts as coming from its From address; empty = every
    # From is taken as it is (e-mail identity then rests on the MX alone).
    email_authserv_id: str = ""
    # Twilio (SMS and WhatsApp share the account): SMS is enabled when the account and an SMS sender
    # (TWILIO_FROM or TWILIO_MESSAGING_SERVICE_SID) are set, WhatsApp when the account and
    # TWILIO_WHATSAPP_FROM are; either may go without the other.
    twilio_account_sid: str = ""
    twilio_auth_token: str = ""
    twilio_from: str = ""  # sender number
    twilio_messaging_service_sid: str = ""
    twilio_api_base: str = ""  # tests point this at a loopback server
    sms_rate_per_s: float = 10.0
    # WhatsApp (Twilio, same account as SMS, no SMS sender needed): enabled with TWILIO_WHATSAPP_FROM.
    twilio_whatsapp_from: str = ""  # the WhatsApp sender, E.164 ("+33...", "whatsapp:" prefix accepted)
    twilio_whatsapp_messaging_service_sid: str = ""
    # Content API template (ContentSid "HX...") a campaign notice goes by outside the 24-hour window;
    # its one variable {{1}} receives the notice's text.
    twilio_whatsapp_notice_content_sid: str = ""
    # « Reprise de contact » template (ContentSid) an agent's reply goes by outside the window, its text
    # as variable {{1}}; empty: such a reply is refused, and the agent told why in the console.
    twilio_whatsapp_reply_content_sid: str = ""
    whatsapp_rate_per_s: float = 80.0  # Twilio's default throughput for a WhatsApp sender
    whatsapp_pair_per_min: float = 10.0  # to one member: Meta's pair rate limit (about one per 6 s)
    # Phone calls (Twilio Programmable Voice, same account as SMS): enabled when the account is set and
    # TWILIO_VOICE_NUMBER is (the mutuelle's number members call, and the caller ID of the calls we place).
    twilio_voice_number: str = ""
    voice_tts: str = "Polly.Lea"  # the French text-to-speech voice of <Say>
    # How long a speech/keypad webhook waits for the bot's reply before a holding phrase and a <Redirect>
    # (Twilio gives up on a webhook after 15 s).
    voice_reply_wait_s: float = 6.0
    # Telegram: enabled when a token is set.
    telegram_token: str = ""
    telegram_secret_token: str = ""
    telegram_api_base: str = ""  # e.g. http://127.0.0.1:PORT/bot (tests)
    telegram_rate_per_s: float = 30.0
    telegram_chat_rate_per_s: float = 1.0
    # Web chat
    webchat_allowed_origins: tuple[str, ...] = ()
    # Secrets
    secret_key: str = field(default="", repr=False)
    metrics_token: str = field(default="", repr=False)  # if set, /metrics wants "Authorization: Bearer <it>"
    # Back-office integration: the records API (per API key) and the events sent out as signed webhooks.
    api_rate_per_s: float = 20.0
    api_burst: int = 40
    api_bulk_max_bytes: int = 32 * 1024 * 1024
    api_bulk_max_lines: int = 50_000
    webhook_urls: tuple[str, ...] = ()
    webhook_secret: str = field(default="", repr=False)
    webhook_max_attempts: int = 10
    webhook_backoff_base_s: float = 2.0
    webhook_backoff_max_s: float = 3600.0
    webhook_timeout_s: float = 10.0
    # Members told before they ask (members/proactive.py): when SMS/WhatsApp and e-mail may carry them
    # (None: any time); outside, a message waits for the next allowed hour.
    proactive_sms_hours: OpeningHours | None = None
    proactive_email_hours: OpeningHours | None = None
    # A reminder this many days before a contribution call (0: none); changes told within this many seconds
    # of each other are grouped in one message (0: only those of one request, or waiting for the hours).
    proactive_due_days: int = 3
    proactive_group_window_s: float = 0.0
    # Logging
    log_level: str = "INFO"

    @property
    def twilio_enabled(self) -> bool:
        return bool(self.twilio_account_sid and self.twilio_auth_token)

    @property
    def sms_enabled(self) -> bool:
        return self.twilio_enabled and bool(self.twilio_from or self.twilio_messaging_service_sid)

    @property
    def whatsapp_enabled(self) -> bool:
        return self.twilio_enabled and bool(self.twilio_whatsapp_from)

    @property
    def voice_enabled(self) -> bool:
        return self.sms_enabled and bool(self.twilio_voice_number)

    @property
    def telegram_enabled(self) -> bool:
        return bool(self.telegram_token)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def secret_values(self) -> list[str]:
        """The configured secrets themselves, for the logs to recognise and hide (gateway.logs)."""
        values = [self.secret_key, self.twilio_auth_token, self.telegram_token, self.telegram_secret_token,
                  self.metrics_token, self.webhook_secret]  # fmt: skip
        if self.telegram_token:
            values.append(self.telegram_token.partition(":")[2])  # the secret half of a bot token
        for url in (self.redis_url, self.smtp_url):
            password = urlsplit(url).password if url else None
            if password:
                values.append(password)
        return [v for v in values if v]

    def campaign_rates(self) -> dict[str, float]:
        """Sends per second a campaign can count on: its share of each provider's rate."""
        share = self.bulk_share if 0 < self.bulk_share < 1 else 1.0
        return {
            "email": self.email_rate_per_s * share,
            "sms": self.sms_rate_per_s * share,
            "whatsapp": self.whatsapp_rate_per_s * share,
        }

    def redacted(self) -> dict[str, object]:
        """Settings safe to print or log: secrets replaced."""
        secret_names = {
            "secret_key",
            "twilio_auth_token",
            "telegram_token",
            "telegram_secret_token",
            "metrics_token",
            "webhook_secret",
        }
        out: dict[str, object] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in secret_names and value:
                value = "***"
            elif f.name in {"redis_url", "smtp_url"} and value and "@" in str(value):
                scheme, _, rest = str(value).partition("://")
                value = f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
            out[f.name] = value
        return out

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        var_dir = Path(_str(env, "VAR_DIR", str(ROOT / "var"))).resolve()
        host = _str(env, "HOST", "127.0.0.1")
        port = _int(env, "PORT", 8080)
        origins = tuple(o.strip().rstrip("/") for o in _str(env, "WEBCHAT_ALLOWED_ORIGINS").split(",") if o.strip())
        settings = cls(
            var_dir=var_dir,
            host=host,
            port=port,
            public_url=_str(env, "PUBLIC_URL", f"http://{host}:{port}").rstrip("/"),
            redis_url=_str(env, "REDIS_URL"),
            redis_appendfsync=_str(env, "REDIS_APPENDFSYNC", "everysec"),
            responder=_str(env, "RESPONDER", "rasa").lower(),
            rasa_url=_str(env, "RASA_URL").rstrip("/"),
            actions_url=_str(env, "ACTIONS_URL").rstrip("/"),
            rasa_servers=_int(env, "RASA_SERVERS", 1),
            stream_shards=_int(env, "STREAM_SHARDS", 1),
            inbound_wait_replica_ms=_int(env, "INBOUND_WAIT_REPLICA_MS", 0),
            stream_maxlen=_int(env, "STREAM_MAXLEN", 1_000_000),
            consumer_name=_str(env, "CONSUMER_NAME"),
            claim_idle_ms=_int(env, "CLAIM_IDLE_MS", 30_000),
            campaign_reclaim_s=_float(env, "CAMPAIGN_RECLAIM_S", 120.0),
            flood_per_min=_float(env, "FLOOD_PER_MIN", 30.0),
            flood_burst=_int(env, "FLOOD_BURST", 20),
            dedup_ttl_s=_int(env, "DEDUP_TTL_S", 7 * 24 * 3600),
            retention_days=_int(env, "RETENTION_DAYS", 1095),
            retention_every_s=_float(env, "RETENTION_EVERY_S", 3600.0),
            public_rate_per_min=_float(env, "PUBLIC_RATE_PER_MIN", 30.0),
            public_burst=_int(env, "PUBLIC_BURST", 20),
            callback_rate_per_hour=_float(env, "CALLBACK_RATE_PER_HOUR", 10.0),
            otp_per_hour=_float(env, "OTP_PER_HOUR", 2.0),
            otp_burst=_int(env, "OTP_BURST", 3),
            otp_per_day=_int(env, "OTP_PER_DAY", 8),
            otp_failures_per_day=_int(env, "OTP_FAILURES_PER_DAY", 10),
            otp_source_per_hour=_float(env, "OTP_SOURCE_PER_HOUR", 6.0),
            otp_source_burst=_int(env, "OTP_SOURCE_BURST", 3),
            otp_per_minute=_int(env, "OTP_PER_MINUTE", 60),
            otp_handoff_every_s=_int(env, "OTP_HANDOFF_EVERY_S", 3600),
            mutuelle_name=_str(env, "MUTUELLE_NAME", "Ma Mutuelle"),
            webchat_idle_s=_int(env, "WEBCHAT_IDLE_S", 15 * 60),
            webchat_max_s=_int(env, "WEBCHAT_MAX_S", 4 * 3600),
            callback_burst=_int(env, "CALLBACK_BURST", 5),
            callback_invalid_rate_per_hour=_float(env, "CALLBACK_INVALID_RATE_PER_HOUR", 60.0),
            callback_invalid_burst=_int(env, "CALLBACK_INVALID_BURST", 30),
            opening_hours=_hours(env),
            trusted_proxy_hops=_int(env, "TRUSTED_PROXY_HOPS", 0),
            send_max_attempts=_int(env, "SEND_MAX_ATTEMPTS", 8),
            send_backoff_base_s=_float(env, "SEND_BACKOFF_BASE_S", 1.0),
            send_backoff_max_s=_float(env, "SEND_BACKOFF_MAX_S", 300.0),
            send_timeout_s=_float(env, "SEND_TIMEOUT_S", 15.0),
            bulk_share=_float(env, "BULK_SHARE", 0.8),
            max_body_bytes=_int(env, "MAX_BODY_BYTES", 256 * 1024),
            max_email_bytes=_int(env, "MAX_EMAIL_BYTES", 10 * 1024 * 1024),
            smtp_listen_host=_str(env, "SMTP_LISTEN_HOST", "127.0.0.1"),
            smtp_listen_port=_int(env, "SMTP_LISTEN_PORT", 2525),
            smtp_url=_str(env, "SMTP_URL"),
            email_from=_str(env, "EMAIL_FROM", "Ma Mutuelle <contact@mutuelle.example>"),
            email_domain=_str(env, "EMAIL_DOMAIN", "mutuelle.example"),
            email_rate_per_s=_float(env, "EMAIL_RATE_PER_S", 20.0),
            email_answered_per_10min=_int(env, "EMAIL_ANSWERED_PER_10MIN", 10),
            email_answered_per_day=_int(env, "EMAIL_ANSWERED_PER_DAY", 30),
            email_authserv_id=_str(env, "EMAIL_AUTHSERV_ID").strip().lower(),
            twilio_account_sid=_str(env, "TWILIO_ACCOUNT_SID"),
            twilio_auth_token=_str(env, "TWILIO_AUTH_TOKEN"),
            twilio_from=_str(env, "TWILIO_FROM"),
            twilio_messaging_service_sid=_str(env, "TWILIO_MESSAGING_SERVICE_SID"),
            twilio_api_base=_str(env, "TWILIO_API_BASE").rstrip("/"),
            sms_rate_per_s=_float(env, "SMS_RATE_PER_S", 10.0),
            twilio_whatsapp_from=_str(env, "TWILIO_WHATSAPP_FROM").removeprefix("whatsapp:"),
            twilio_whatsapp_messaging_service_sid=_str(env, "TWILIO_WHATSAPP_MESSAGING_SERVICE_SID"),
            twilio_whatsapp_notice_content_sid=_str(env, "TWILIO_WHATSAPP_NOTICE_CONTENT_SID"),
            twilio_whatsapp_reply_content_sid=_str(env, "TWILIO_WHATSAPP_REPLY_CONTENT_SID"),
            whatsapp_rate_per_s=_float(env, "WHATSAPP_RATE_PER_S", 80.0),
            whatsapp_pair_per_min=_float(env, "WHATSAPP_PAIR_PER_MIN", 10.0),
            twilio_voice_number=_str(env, "TWILIO_VOICE_NUMBER"),
            voice_tts=_str(env, "VOICE_TTS", "Polly.Lea"),
            voice_reply_wait_s=_float(env, "VOICE_REPLY_WAIT_S", 6.0),
            telegram_token=_str(env, "TELEGRAM_TOKEN"),
            telegram_secret_token=_str(env, "TELEGRAM_SECRET_TOKEN"),
            telegram_api_base=_str(env, "TELEGRAM_API_BASE").rstrip("/"),
            telegram_rate_per_s=_float(env, "TELEGRAM_RATE_PER_S", 30.0),
            telegram_chat_rate_per_s=_float(env, "TELEGRAM_CHAT_RATE_PER_S", 1.0),
            webchat_allowed_origins=origins,
            secret_key=_secret(env, var_dir),
            metrics_token=_str(env, "METRICS_TOKEN"),
            api_rate_per_s=_float(env, "API_RATE_PER_S", 20.0),
            api_burst=_int(env, "API_BURST", 40),
            api_bulk_max_bytes=_int(env, "API_BULK_MAX_BYTES", 32 * 1024 * 1024),
            api_bulk_max_lines=_int(env, "API_BULK_MAX_LINES", 50_000),
            webhook_urls=tuple(u.strip() for u in _str(env, "WEBHOOK_URLS").split(",") if u.strip()),
            webhook_secret=_str(env, "WEBHOOK_SECRET"),
            webhook_max_attempts=_int(env, "WEBHOOK_MAX_ATTEMPTS", 10),
            webhook_backoff_base_s=_float(env, "WEBHOOK_BACKOFF_BASE_S", 2.0),
            webhook_backoff_max_s=_float(env, "WEBHOOK_BACKOFF_MAX_S", 3600.0),
            webhook_timeout_s=_float(env, "WEBHOOK_TIMEOUT_S", 10.0),
            proactive_sms_hours=_quiet_hours(env, "PROACTIVE_SMS_HOURS", "mon-sat 08:00-20:00"),
            proactive_email_hours=_quiet_hours(env, "PROACTIVE_EMAIL_HOURS", ""),
            proactive_due_days=_int(env, "PROACTIVE_DUE_DAYS", 3),
            proactive_group_window_s=_float(env, "PROACTIVE_GROUP_WINDOW_S", 0.0),
            log_level=_str(env, "LOG_LEVEL", "INFO").upper(),
        )
        if settings.redis_appendfsync not in ("always", "everysec", "no"):
            raise SettingsError("REDIS_APPENDFSYNC must be always, everysec or no")
        if settings.responder not in ("rasa", "ack"):
            raise SettingsError("RESPONDER must be rasa or ack")
        if settings.stream_shards < 1:
            raise SettingsError("STREAM_SHARDS must be at least 1")
        if bool(settings.twilio_account_sid) != bool(settings.twilio_auth_token):
            raise SettingsError("TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN must be set together")
        if settings.twilio_enabled and not (settings.sms_enabled or settings.whatsapp_enabled):
            raise SettingsError(
                "With TWILIO_ACCOUNT_SID set, TWILIO_FROM or TWILIO_MESSAGING_SERVICE_SID (SMS) or "
                "TWILIO_WHATSAPP_FROM (WhatsApp) is required"
            )
        if settings.twilio_whatsapp_from and not settings.twilio_enabled:
            raise SettingsError(
                "TWILIO_WHATSAPP_FROM needs TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN (the same Twilio account)"
            )
        if settings.twilio_whatsapp_from and not re.fullmatch(r"\+[1-9][0-9]{6,14}", settings.twilio_whatsapp_from):
            raise SettingsError("TWILIO_WHATSAPP_FROM must be a number in E.164 form, e.g. +33700000000")
        for url in settings.webhook_urls:
            if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
                raise SettingsError(f"WEBHOOK_URLS: {url.split('?')[0]!r} is not an http(s) URL")
        if settings.webhook_urls and len(settings.webhook_secret) < 16:
            raise SettingsError("WEBHOOK_SECRET (16 characters at least) is required when WEBHOOK_URLS is set")
        if settings.twilio_voice_number and not settings.sms_enabled:
            raise SettingsError(
                "TWILIO_VOICE_NUMBER needs SMS on the same Twilio account (TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN and "
                "TWILIO_FROM or TWILIO_MESSAGING_SERVICE_SID): codes and confirmations of calls go by SMS"
            )
        if settings.twilio_voice_number and not re.fullmatch(r"\+[1-9][0-9]{6,14}", settings.twilio_voice_number):
            raise SettingsError("TWILIO_VOICE_NUMBER must be a number in E.164 form, e.g. +33100000000")
        if not 0 <= settings.voice_reply_wait_s <= 12:
            raise SettingsError("VOICE_REPLY_WAIT_S must be between 0 and 12 (Twilio waits 15 s for a webhook)")
        return settings
