"""A loopback fake of the Telegram Bot API (``/bot<token>/getMe``, ``/bot<token>/sendMessage``).

python-telegram-bot talks to it unchanged with ``Bot(token, base_url=fake.base_url)``::

    async with FakeTelegram(TOKEN) as fake:
        env["TELEGRAM_API_BASE"] = fake.base_url        # http://127.0.0.1:<port>/bot
        [sent] = await fake.wait_for(1, timeout=5)
        fake.inject(status=429, retry_after=3)          # the next request is throttled

``update(update_id, chat_id, text)`` builds an Update as Telegram posts it to a webhook.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Sent:
    chat_id: str
    text: str
    message_id: int


@dataclass
class Fault:
    status: int = 500
    description: str = "Internal Server Error"
    retry_after: int | None = None
    delay: float = 0.0


@dataclass
class _State:
    sent: list[Sent] = field(default_factory=list)
    requests: int = 0
    faults: list[Fault] = field(default_factory=list)


class FakeTelegram:
    def __init__(self, token: str) -> None:
        self.token = token
        self._state = _State()
        self._runner: web.AppRunner | None = None
        self._changed = asyncio.Condition()
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/bot"

    @property
    def sent(self) -> list[Sent]:
        return list(self._state.sent)

    @property
    def requests(self) -> int:
        return self._state.requests

    def reset(self) -> None:
        self._state = _State()

    def inject(
        self,
        n: int = 1,
        *,
        status: int = 500,
        description: str | None = None,
        retry_after: int | None = None,
        delay: float = 0.0,
    ) -> None:
        texts = {
            429: f"Too Many Requests: retry after {retry_after}",
            403: "Forbidden: bot was blocked by the user",
            400: "Bad Request: chat not found",
        }
        for _ in range(n):
            self._state.faults.append(
                Fault(status, description or texts.get(status, "Internal Server Error"), retry_after, delay)
            )

    async def __aenter__(self) -> FakeTelegram:
        app = web.Application()
        app.router.add_post("/bot{token}/{method}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def wait_for(self, n: int, timeout: float = 5.0) -> list[Sent]:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: len(self._state.sent) >= n), timeout)
        return self.sent

    async def _params(self, request: web.Request) -> dict[str, Any]:
        if request.content_type == "application/json":
            data = await request.json()
            return data if isinstance(data, dict) else {}
        form = await request.post()
        return {k: v for k, v in form.items() if isinstance(v, str)}

    async def _handle(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.json_response({"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401)
        method = request.match_info["method"]
        params = await self._params(request)
        if method == "getMe":
            return web.json_response(
                {
                    "ok": True,
                    "result": {
                        "id": 7000001,
                        "is_bot": True,
                        "first_name": "Ma Mutuelle",
                        "username": "ma_mutuelle_bot",
                    },
                }
            )
        if method != "sendMessage":
            return web.json_response({"ok": False, "error_code": 404, "description": "Not Found"}, status=404)
        self._state.requests += 1
        if self._state.faults:
            fault = self._state.faults.pop(0)
            if fault.delay:
                await asyncio.sleep(fault.delay)
            if fault.status != 200:
                body: dict[str, Any] = {"ok": False, "error_code": fault.status, "description": fault.description}
                if fault.retry_after is not None:
                    body["parameters"] = {"retry_after": fault.retry_after}
                return web.json_response(body, status=fault.status)
        chat_id = str(params.get("chat_id"))
        text = str(params.get("text", ""))
        async with self._changed:
            message_id = len(self._state.sent) + 1
            self._state.sent.append(Sent(chat_id, text, message_id))
            self._changed.notify_all()
        return web.json_response(
            {
                "ok": True,
                "result": {
                    "message_id": message_id,
                    "from": {"id": 7000001, "is_bot": True, "first_name": "Ma Mutuelle"},
                    "chat": {"id": int(chat_id), "type": "private"},
                    "date": int(time.time()),
                    "text": text,
                },
            }
        )


def update(
    update_id: int, chat_id: int, text: str, *, edited: bool = False, first_name: str = "Camille"
) -> dict[str, Any]:
    """An Update as Telegram posts it for a private message."""
    message = {
        "message_id": update_id % 100000,
        "from": {"id": chat_id, "is_bot": False, "first_name": first_name, "language_code": "fr"},
        "chat": {"id": chat_id, "first_name": first_name, "type": "private"},
        "date": int(time.time()),
        "text": text,
    }
    if edited:
        message["edit_date"] = int(time.time())
    return {"update_id": update_id, "edited_message" if edited else "message": message}


def as_body(data: dict[str, Any]) -> bytes:
    return json.dumps(data).encode()
