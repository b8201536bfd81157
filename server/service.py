"""Running the product: ``run.py serve`` (everything) and the single roles.

``serve`` is a small supervisor. It starts a private Redis (unless ``REDIS_URL`` is set)
and two child processes on it:

* **web**: the HTTP application (webhooks, web chat, callback form, health, metrics) and the
  SMTP listener. It only accepts: a message is durable in the inbound stream before the
  provider gets its 2xx. Accepting is latency-critical (providers time out and retry).
* **worker**: the router, the dispatcher and the retry poller, at a lower CPU priority, so a
  burst of webhooks is accepted first and worked through right after.

The children die with the supervisor (a ``kill -9`` of ``serve`` is a crash of the whole
product, which the streams survive); a child that dies on its own is restarted. Ctrl-C or
SIGTERM stops both cleanly (listeners closed, messages in hand finished), then Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass

from aiohttp import web

from gateway.redis_client import connect
from gateway.redis_server import PrivateRedis, RedisStartError, free_port
from gateway.settings import ROOT, Settings
from members import cover
from server.product import Product

log = logging.getLogger(__name__)

WORKER_NICENESS = 19
_PR_SET_PDEATHSIG = 1


def banner(settings: Settings, redis_desc: str) -> str:
    base = settings.base_url
    lines = [
        "",
        "Passerelle démarrée / gateway running",
        f"  Demo page and web chat : {base}/",
        f"  Callback request form  : {base}/callback",
        f"  Agents' console        : {base}/console  (supervisors: {base}/console/supervisor; "
        "users: run.py create-user)",
        f"  Campaigns console      : {base}/console/campaigns",
        f"  Health / metrics       : {base}/healthz  {base}/metrics",
        f"  Redis                  : {redis_desc}",
    ]
    outbound = "relay configured" if settings.smtp_url else f"file outbox {settings.var_dir / 'outbox'}"
    lines.append(f"  E-mail in (SMTP)       : {settings.smtp_listen_host}:{settings.smtp_listen_port} ({outbound})")
    sms = f"{settings.public_url}/sms/twilio/inbound" if settings.sms_enabled else "disabled (set TWILIO_*)"
    telegram = (
        f"{settings.public_url}/telegram/webhook" if settings.telegram_enabled else "disabled (set TELEGRAM_TOKEN)"
    )
    whatsapp = (
        f"{settings.public_url}/whatsapp/twilio/inbound"
        if settings.whatsapp_enabled
        else "disabled (set TWILIO_WHATSAPP_FROM)"
    )
    lines.append(f"  SMS (Twilio)           : {sms}")
    lines.append(f"  WhatsApp (Twilio)      : {whatsapp}")
    voice = (
        f"{settings.public_url}/voice/twilio/incoming (status: /voice/twilio/status)"
        if settings.voice_enabled
        else "disabled (set TWILIO_VOICE_NUMBER)"
    )
    lines.append(f"  Calls (Twilio Voice)   : {voice}")
    lines.append(f"  Telegram               : {telegram}")
    lines.append("Ctrl-C to stop.")
    return "\n".join(lines)


def ensure_demo_members(url: str, settings: Settings, members: int = 500) -> int:
    """On a fresh machine (no member at all), load a synthetic data set so the product is usable."""
    from members.demo_data import generate
    from members.importer import import_directory
    from members.records import ALL_MEMBERS

    async def run() -> int:
        redis = connect(url)
        try:
            if await redis.scard(ALL_MEMBERS):
                return 0
            out = settings.var_dir / "demo"
            generate(members, out, progress=False)
            report = await import_directory(redis, out, progress=False)
            return sum(report.counts.values())
        finally:
            await redis.aclose()

    return asyncio.run(run())


# --- one role in this process -------------------------------------------------------


async def run_roles(settings: Settings, roles: frozenset[str]) -> None:
    """Run the given roles ("web", "worker") in this process until SIGINT/SIGTERM."""
    if not settings.redis_url:
        raise SystemExit("REDIS_URL is required to run a single role (run.py serve starts its own Redis)")
    redis = connect(settings.redis_url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await redis.ping()
        product = Product(settings, redis, roles=roles)
        app = product.build_app()
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=10.0)
        await runner.setup()  # runs the lifecycle: channels (and workers) start
        if "web" in roles:
            site = web.TCPSite(runner, settings.host, settings.port, reuse_address=True)
            try:
                await site.start()
            except OSError as exc:
                await runner.cleanup()
                raise SystemExit(
                    f"cannot listen on {settings.host}:{settings.port}: {exc.strerror} (set PORT)"
                ) from exc
        log.info("role started", extra={"roles": sorted(roles), "channels": sorted(product.gateway.channels)})
        await stop.wait()
        # Stops the listener first, lets requests in flight finish, then channels and workers.
        await runner.cleanup()
        log.info("role stopped", extra={"roles": sorted(roles)})
    finally:
        with contextlib.suppress(Exception):
            await redis.aclose()


# --- the supervisor -------------------------------------------------------------------


def _die_with_parent(niceness: int) -> None:
    """In the child, before exec: get SIGKILL when the supervisor dies; lower priority."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if niceness:
        os.nice(niceness)
        with contextlib.suppress(OSError, AttributeError):
            # Run only on CPU time that accepting does not need; replies follow right after a burst.
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))


class Child:
    """A process ``serve`` runs and restarts: a role of the product (``run.py ROLE``) by default, or
    ``argv`` (a Rasa server, an action server) with its output appended to ``log_path``."""

    def __init__(
        self,
        role: str,
        env: dict[str, str],
        niceness: int,
        argv: list[str] | None = None,
        log_path: os.PathLike[str] | None = None,
    ) -> None:
        self.role = role
        self.env = env
        self.niceness = niceness
        self.argv = argv or [sys.executable, str(ROOT / "run.py"), role]
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    def start(self) -> None:
        out = open(self.log_path, "ab") if self.log_path is not None else None
        try:
            self.proc = subprocess.Popen(  # noqa: S603 - fixed arguments
                self.argv,
                env=self.env,
                cwd=ROOT,
                stdout=out,
                stderr=out,
                preexec_fn=lambda: _die_with_parent(self.niceness),
            )
        finally:
            if out is not None:
                out.close()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.alive() and self.proc is not None:
            self.proc.kill()


def _wait_http(url: str, child: Child, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not child.alive():
            raise SystemExit(f"the {child.role} process exited during start-up")
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:  # noqa: S310 - our own loopback URL
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{url} did not answer within {timeout:.0f}s")


def serve(settings: Settings) -> int:
    """Everything, with embedded defaults. Returns the exit code."""
    try:
        cover.levels()  # a bad COVER_LEVELS stops start-up with its name, as any other setting does
    except ValueError as exc:
        raise SystemExit(str(exc)) from exc
    private: PrivateRedis | None = None
    url = settings.redis_url
    if not url:
        private = PrivateRedis(settings.var_dir / "redis", appendfsync=settings.redis_appendfsync)
        url = private.start()
        redis_desc = f"private redis-server on {url} (AOF {settings.redis_appendfsync}, data in {private.data_dir})"
        if private.adopted:
            redis_desc += ", adopted from a previous run"
    else:
        redis_desc = "REDIS_URL"
    if private is not None and ensure_demo_members(url, settings):
        redis_desc += "; synthetic demo members loaded (run.py import DIR for real ones)"
    env = {**os.environ, "REDIS_URL": url, "VAR_DIR": str(settings.var_dir), "SECRET_KEY": settings.secret_key}
    bots: list[Child] = []
    if settings.responder == "rasa" and not settings.rasa_url:
        # RASA_SERVERS servers, each with its action server, sharing trackers and locks in Redis.
        fleet = start_rasa(settings, url, servers=settings.rasa_servers)
        bots = [child for server in fleet for child in server.children]
        env["RASA_URL"] = ",".join(server.url for server in fleet)
        env["ACTIONS_URL"] = ",".join(server.actions_url for server in fleet)
        redis_desc += f"\n  Bot (Rasa)             : {env['RASA_URL']}"
    children = [Child("web", env, 0), Child("worker", env, WORKER_NICENESS)]
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        for child in children:
            child.start()
        _wait_http(f"http://{_loopback(settings.host)}:{settings.port}/healthz", children[0], timeout=60)
        print(banner(settings, redis_desc), flush=True)
        while not stopping:
            if private is not None and not private.alive() and not stopping:
                # Redis crashed (or was killed): start it again on the same port and data; it replays
                # its append-only file, and the children's clients reconnect by themselves.
                log.error("private redis-server exited, restarting")
                try:
                    private.restart()
                except RedisStartError as exc:
                    log.error("private redis-server did not restart", extra={"error": str(exc)[:300]})
                    time.sleep(1.0)
            # A Rasa server or an action server that died starts again on its port (a fleet's other servers
            # carry its conversations meanwhile; trackers are in Redis, so nothing is lost).
            for child in children + bots:
                if not child.alive() and not stopping:
                    child.restarts += 1
                    log.error("child exited, restarting", extra={"role": child.role, "restarts": child.restarts})
                    time.sleep(min(5.0, 0.5 * child.restarts))
                    child.start()
            time.sleep(0.1)
        print("Arrêt en cours… / stopping: finishing messages in hand", file=sys.stderr, flush=True)
        return _stop_children(children)
    finally:
        for child in children:
            child.kill()
        _stop_children(bots, grace_s=20)
        if private is not None:
            private.stop()


@dataclass
class BotServer:
    """A Rasa server and its action server, each a process of its own that ``serve`` restarts."""

    rasa: Child
    actions: Child
    port: int
    actions_port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def actions_url(self) -> str:
        return f"http://127.0.0.1:{self.actions_port}"

    @property
    def children(self) -> list[Child]:
        return [self.actions, self.rasa]


def start_rasa(settings: Settings, redis_url: str, *, servers: int = 1, timeout: float = 300.0) -> list[BotServer]:
    """Build the bot's virtualenv and model if needed (cached), then start ``servers`` Rasa servers, each
    with its action server, side by side; returns them once every Rasa server answers."""
    manage = ["python3", str(ROOT / "bot" / "manage.py")]  # the system Python: the bot has its own venv
    for step in ("venv", "train"):
        subprocess.run([*manage, step], check=True, stdout=subprocess.DEVNULL)  # noqa: S603
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    # Rasa keeps its trackers and locks in Redis, and its actions read the members' records there.
    env = {**os.environ, "REDIS_URL": redis_url, "PUBLIC_URL": settings.public_url}
    fleet: list[BotServer] = []
    for n in range(max(1, servers)):
        port, actions_port = free_port(), free_port()
        suffix = "" if n == 0 else f"-{n + 1}"
        # Each writes its own log under the var dir (var/rasa.log, var/actions.log; -2, -3… for a fleet's
        # others), at INFO and never a member's words, whatever LOG_LEVEL says (bot/logsafe.py).
        rasa_log, actions_log = settings.var_dir / f"rasa{suffix}.log", settings.var_dir / f"actions{suffix}.log"
        actions = Child(f"actions{suffix}", env, 0, [*manage, "actions", "--port", str(actions_port)], actions_log)
        rasa = Child(f"rasa{suffix}", env, 0, [*manage, "run", "--port", str(port), "--actions-port",
                                               str(actions_port), "--no-actions"], rasa_log)  # fmt: skip
        actions.start()
        rasa.start()
        fleet.append(BotServer(rasa, actions, port, actions_port))
    deadline = time.monotonic() + timeout
    waiting = list(fleet)
    while waiting and time.monotonic() < deadline:
        server = waiting[0]
        if not server.rasa.alive() or not server.actions.alive():
            _kill(fleet)
            raise SystemExit(
                f"a Rasa or action server exited during start-up; see {server.rasa.log_path} and "
                f"{server.actions.log_path}"
            )
        try:
            with urllib.request.urlopen(f"{server.url}/status", timeout=1) as resp:  # noqa: S310 - our loopback URL
                if resp.status == 200:
                    waiting.pop(0)
                    continue
        except OSError:
            pass
        time.sleep(0.25)
    if waiting:
        _kill(fleet)
        raise SystemExit(f"the Rasa server did not answer within {timeout:.0f}s")
    return fleet


def _kill(fleet: list[BotServer]) -> None:
    for server in fleet:
        for child in server.children:
            child.kill()


def _stop_children(children: list[Child], grace_s: float = 30.0) -> int:
    for child in children:
        if child.alive() and child.proc is not None:
            child.proc.send_signal(signal.SIGTERM)
    code = 0
    deadline = time.monotonic() + grace_s
    for child in children:
        if child.proc is None:
            continue
        try:
            rc = child.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.proc.kill()
            rc = child.proc.wait()
        code = code or (0 if rc in (0, -signal.SIGTERM, -signal.SIGINT) else rc)
    return code


def _loopback(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
