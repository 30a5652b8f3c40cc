"""Who may use the control routes and the console (everything under ``/_emulator``).

Four checks, in one middleware, on every ``/_emulator`` request (ingest,
Raccoon's own API, is never checked):

1. **Another origin is refused.** A request whose ``Origin`` is not the
   emulator's own, or whose ``Sec-Fetch-Site`` is neither ``same-origin``
   nor ``none`` (the user typed the URL), comes from a page of another
   site that the developer happens to have open: 403. Clients that are not
   browsers send neither header.
2. **A ``POST`` needs ``Content-Type: application/json``.** A page can post
   ``text/plain`` to any origin without asking (no CORS preflight); JSON
   it cannot.
3. **Without a token, only loopback host names.** A page of another site
   can make its own name resolve to 127.0.0.1 (DNS rebinding) and then read
   the emulator as its "same origin"; its ``Host`` header still carries its
   own name: 403 unless it is ``localhost``, a 127.x address or ``[::1]``.
4. **The token, when one is set.** Bound beyond loopback (``--host
   0.0.0.0``) the emulator would let anyone on the network read captured
   events and switch faults on, so every route then requires a token:
   generated at start (and printed once by the CLI) unless configured. An
   empty token is refused there (:func:`with_console_token`). It travels in
   the ``X-Emulator-Token`` header, as ``Authorization: Bearer <token>``,
   or in the cookie the console page gets from :data:`SESSION_PATH`: the
   console's URL carries it in its fragment (``#token=...``), which the
   browser never sends, and the page trades it for that cookie, so that it
   is in no request line, server or proxy log, or ``Referer``.

The console's page and static files (``/_emulator/ui``,
``/_emulator/ui/static/``: the same for every installation of the package)
are served without the token, so that the page can load and then present
it; checks 1-3 still apply to them.
"""

from __future__ import annotations

import dataclasses
import hmac
import ipaddress
import secrets
from typing import Awaitable, Callable, Optional

from aiohttp import web
from aiohttp.typedefs import Middleware

from raccoon_beam.emulator.config import CONSOLE_TOKEN_ENV, EmulatorConfig

__all__ = [
    "TOKEN_HEADER",
    "TOKEN_FRAGMENT",
    "TOKEN_ENV",
    "PUBLIC_PREFIX",
    "PUBLIC_PAGE",
    "SESSION_PATH",
    "is_loopback",
    "is_loopback_host_header",
    "with_console_token",
    "access_middleware",
    "add_session_route",
    "request_token",
    "token_cookie_name",
]

TOKEN_HEADER = "X-Emulator-Token"
# The console URL's fragment key: ``/_emulator/ui#token=...`` (never sent to a server).
TOKEN_FRAGMENT = "token"
# Where the CLI reads a token from when --console-token-file is not given (never argv).
TOKEN_ENV = CONSOLE_TOKEN_ENV
# Package files, identical for everyone: nothing to protect.
PUBLIC_PREFIX = "/_emulator/ui/static/"
# The console page: static HTML that reads the token from its own URL's fragment.
PUBLIC_PAGE = "/_emulator/ui"
# POST here with the token (header) to get it as a cookie (what the page's event stream sends).
SESSION_PATH = "/_emulator/ui/session"
_GUARDED_PREFIX = "/_emulator"
_COOKIE_PREFIX = "raccoon_emulator_token_"
# 18 random bytes: 24 URL-safe characters, beyond guessing and short enough to paste.
_TOKEN_BYTES = 18
_SAME_SITE_FETCHES = ("same-origin", "none")
_JSON = "application/json"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) only accepts connections from this machine."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def is_loopback_host_header(value: str) -> bool:
    """Whether a ``Host`` header (``name[:port]``, ``[v6]:port``) names this machine's loopback."""
    host = value.strip()
    if host.startswith("["):
        host = host[1 : host.find("]")] if "]" in host else host
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    return bool(host) and is_loopback(host)


def with_console_token(config: EmulatorConfig) -> EmulatorConfig:
    """``config`` with a generated ``console_token`` when it listens beyond loopback and has none.

    Raises:
      ValueError: an empty token beyond loopback (it would turn the check off).
    """
    if is_loopback(config.http_address):
        return config
    if config.console_token is None:
        return dataclasses.replace(config, console_token=secrets.token_urlsafe(_TOKEN_BYTES))
    if not config.console_token.strip():
        raise ValueError(
            f"console_token is empty while the HTTP port listens on {config.http_address}: anyone who can "
            "reach it could read the captured events and switch faults; give a token, or leave it unset "
            "to have one generated"
        )
    return config


def token_cookie_name(request: web.Request) -> str:
    """The console's cookie for the emulator that ``request`` reached (one per port: cookies ignore ports)."""
    return f"{_COOKIE_PREFIX}{request.url.port or 0}"


def request_token(request: web.Request) -> str:
    """The token a request carries (header, bearer or the console's cookie), or ""."""
    token = request.headers.get(TOKEN_HEADER) or ""
    if not token:
        authorization = request.headers.get("Authorization", "")
        if authorization.lower().startswith("bearer "):
            token = authorization[7:].strip()
    return token or request.cookies.get(token_cookie_name(request), "")


def _refused(status: int, error: str) -> web.Response:
    return web.json_response({"ok": False, "error": error}, status=status)


def _cross_origin(request: web.Request) -> Optional[str]:
    """Why ``request`` comes from a page of another origin, or None."""
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site is not None and fetch_site.lower() not in _SAME_SITE_FETCHES:
        return f"Sec-Fetch-Site {fetch_site!r}"
    origin = request.headers.get("Origin")
    if origin is not None and origin != f"{request.scheme}://{request.host}":
        return f"Origin {origin!r}"
    return None


def access_middleware(token: Optional[str]) -> Middleware:
    """The middleware of the four checks (module docstring) on every ``/_emulator`` request.

    Args:
      token: the token every route but the public ones requires; ``None``:
        none, and then only loopback ``Host`` names are answered.
    """
    expected = token.encode("utf-8") if token else None

    @web.middleware
    async def check_access(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if not path.startswith(_GUARDED_PREFIX):
            return await handler(request)
        cross = _cross_origin(request)
        if cross is not None:
            return _refused(403, f"refused a request from another origin ({cross}): the emulator's routes "
                                 "answer only their own page and clients that are not browsers")
        if request.method == "POST" and request.content_type != _JSON:
            return _refused(415, f"a POST to {path} needs Content-Type: {_JSON}")
        if expected is None:
            if not is_loopback_host_header(request.host):
                return _refused(403, f"Host {request.host!r} refused: without a token the emulator answers only "
                                     "loopback names (localhost, 127.0.0.1, [::1]); see docs/security.md")
        elif not (path.startswith(PUBLIC_PREFIX) or (path == PUBLIC_PAGE and request.method == "GET")):
            given = request_token(request).encode("utf-8")
            if not hmac.compare_digest(given, expected):
                return _refused(401, f"this route needs the emulator's token ({TOKEN_HEADER} header, "
                                     "or open the console URL printed at start)")
        return await handler(request)

    return check_access


def add_session_route(app: web.Application) -> None:
    """Adds ``POST`` :data:`SESSION_PATH`: the token (checked by the middleware) comes back as a cookie."""

    async def post_session(request: web.Request) -> web.Response:
        """The console page trades the token of its URL's fragment for a cookie (for its event stream)."""
        response = web.json_response({"ok": True})
        token = request_token(request)
        if token:
            # HttpOnly: no script reads it back; Strict: no other site's page sends it.
            response.set_cookie(
                token_cookie_name(request), token, path=_GUARDED_PREFIX, httponly=True, samesite="Strict",
                secure=request.secure,
            )
        return response

    app.router.add_route("POST", SESSION_PATH, post_session)
