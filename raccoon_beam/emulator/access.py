"""Who may use the control routes and the console (everything under ``/_emulator``).

On a loopback address (the default) anyone who can connect is on this
machine, and no token is asked for. Bound elsewhere (``--host 0.0.0.0``),
the emulator would let anyone on the network read captured events and switch
faults on, so every ``/_emulator`` route then requires a token: generated at
start (and printed by the CLI) unless one is configured. The token travels as
the ``token`` query parameter (what a browser opening the console URL sends,
and what the page's event stream uses), the ``X-Emulator-Token`` header or
``Authorization: Bearer <token>``.

The console's static files (``/_emulator/ui/static/``, the same for every
installation of the package) are served without it, so that the page can
load its script and style with plain relative URLs.
"""

from __future__ import annotations

import dataclasses
import hmac
import ipaddress
import secrets
from typing import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from raccoon_beam.emulator.config import EmulatorConfig

__all__ = [
    "TOKEN_HEADER",
    "TOKEN_QUERY",
    "PUBLIC_PREFIX",
    "is_loopback",
    "with_console_token",
    "token_middleware",
    "request_token",
]

TOKEN_HEADER = "X-Emulator-Token"
TOKEN_QUERY = "token"
# Package files, identical for everyone: nothing to protect.
PUBLIC_PREFIX = "/_emulator/ui/static/"
_GUARDED_PREFIX = "/_emulator"
# 18 random bytes: 24 URL-safe characters, beyond guessing and short enough to paste.
_TOKEN_BYTES = 18

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) only accepts connections from this machine."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def with_console_token(config: EmulatorConfig) -> EmulatorConfig:
    """``config`` with a generated ``console_token`` when it listens beyond loopback and has none."""
    if config.console_token is None and not is_loopback(config.http_address):
        return dataclasses.replace(config, console_token=secrets.token_urlsafe(_TOKEN_BYTES))
    return config


def request_token(request: web.Request) -> str:
    """The token a request carries (query parameter, header or bearer), or ""."""
    token = request.query.get(TOKEN_QUERY) or request.headers.get(TOKEN_HEADER) or ""
    if not token:
        authorization = request.headers.get("Authorization", "")
        if authorization.lower().startswith("bearer "):
            token = authorization[7:].strip()
    return token


def token_middleware(token: str) -> Middleware:
    """An aiohttp middleware answering 401 to ``/_emulator`` requests without ``token``.

    Installed only when a token is required, so that the ingest routes pay
    nothing for it otherwise.
    """
    expected = token.encode("utf-8")

    @web.middleware
    async def check_token(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if path.startswith(_GUARDED_PREFIX) and not path.startswith(PUBLIC_PREFIX):
            given = request_token(request).encode("utf-8")
            if not hmac.compare_digest(given, expected):
                return web.json_response(
                    {"ok": False, "error": f"this route needs the emulator's token ({TOKEN_QUERY}= or {TOKEN_HEADER})"},
                    status=401,
                )
        return await handler(request)

    return check_token
