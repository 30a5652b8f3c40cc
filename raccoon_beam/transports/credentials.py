"""Header values that are not strings in the pipeline: credentials resolved on the worker.

A header value given to ``WriteToRaccoon(headers=...)`` may be a
:class:`CredentialProvider` instead of a string: :class:`FromEnv` (an
environment variable of the worker), :class:`FromFile` (a file on the worker,
e.g. a mounted secret) or :class:`FromCallable` (your own function; a plain
callable given as a header value is wrapped in one). The provider, never the
value, is what the pipeline holds and pickles: the value is read on the
worker when its transport sends its first request, and read again when the
server answers 401 (gRPC ``UNAUTHENTICATED``), once, before the failure
counts as permanent (see :meth:`HeaderValues.refresh`).

A resolved value is a secret whatever its header is called: it never appears
in a repr, display data, a log line or a failure message
(:func:`resolved_secrets` feeds :func:`~raccoon_beam.transports.redact`).
"""

from __future__ import annotations

import abc
import asyncio
import collections
import dataclasses
import logging
import os
import threading
from typing import Any, Callable, Deque, Dict, Iterable, Mapping, Optional, Tuple, Union

from raccoon_beam.errors import FailureKind, SendFailure

__all__ = [
    "CredentialProvider",
    "FromEnv",
    "FromFile",
    "FromCallable",
    "HeaderValue",
    "HeaderValues",
    "header_value",
    "header_value_from_config",
    "check_header_value",
    "resolved_secrets",
    "MAX_REMEMBERED_SECRETS",
]

_log = logging.getLogger(__name__)

# Values remembered per provider for redaction: the current one and those
# it replaced recently (a message may quote the value a request was sent
# with). Bounded: a token that rotates hourly for weeks must not pile up,
# and an old token no longer works, so forgetting it is harmless.
MAX_REMEMBERED_SECRETS = 16

_remembered: Dict["CredentialProvider", Deque[str]] = {}
_remembered_lock = threading.Lock()


def resolved_secrets(providers: Iterable["CredentialProvider"]) -> Tuple[str, ...]:
    """The values ``providers`` resolved in this process (the most recent ones), for redaction.

    Per provider, so that one endpoint's short token never blanks out the
    text of another endpoint's messages.
    """
    with _remembered_lock:
        return tuple(secret for provider in providers for secret in _remembered.get(provider, ()))


def _remember(provider: "CredentialProvider", secret: str) -> None:
    if secret:
        with _remembered_lock:
            recent = _remembered.setdefault(provider, collections.deque(maxlen=MAX_REMEMBERED_SECRETS))
            if secret not in recent:
                recent.append(secret)


class CredentialProvider(abc.ABC):
    """A header value resolved on the worker, and again when the server answers 401.

    Subclasses read the secret in :meth:`read` and name its source in
    :meth:`describe`; :meth:`resolve` adds the ``prefix`` (e.g.
    ``"Bearer "``). A provider holds where the value is, never the value: it
    is what gets pickled into the pipeline, and it is part of the
    configuration's identity (one client per worker process and
    configuration), so a subclass is best a frozen dataclass, as the
    providers here are. Its repr names the source only.
    """

    prefix: str = ""

    @abc.abstractmethod
    def read(self) -> str:
        """The secret, read now from its source.

        Raises:
          ValueError: the source has no value (an unset variable, a missing
            file); the message names the source, never a value.
        """

    @abc.abstractmethod
    def describe(self) -> str:
        """Where the value comes from, for messages (never the value)."""

    def resolve(self) -> str:
        """``prefix`` + the secret read now; remembered for redaction."""
        secret = self.read()
        if not isinstance(secret, str):
            raise ValueError(f"{self.describe()} gave a {type(secret).__name__}, not a string")
        _remember(self, secret)
        return self.prefix + secret

    def __repr__(self) -> str:
        return self.describe()


def _check_prefix(prefix: Any) -> None:
    if not isinstance(prefix, str) or "\n" in prefix or "\r" in prefix:
        raise ValueError(f"prefix must be a single-line string, got {prefix!r}")


@dataclasses.dataclass(frozen=True, repr=False)
class FromEnv(CredentialProvider):
    """A header value read from an environment variable of the worker.

    Args:
      name: the variable's name, e.g. ``"RACCOON_TOKEN"``.
      prefix: put before the variable's value, e.g. ``"Bearer "``.

    Raises:
      ValueError: ``name`` is not a variable name.
    """

    name: str
    prefix: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or "=" in self.name or "\0" in self.name:
            raise ValueError(f"FromEnv needs an environment variable name, got {self.name!r}")
        _check_prefix(self.prefix)

    def read(self) -> str:
        value = os.environ.get(self.name)
        if value is None:
            raise ValueError(f"environment variable {self.name!r} is not set on this worker")
        return value

    def describe(self) -> str:
        return f"FromEnv({self.name!r})"


@dataclasses.dataclass(frozen=True, repr=False)
class FromFile(CredentialProvider):
    """A header value read from a file of the worker (e.g. a mounted secret), re-read on refresh.

    Whitespace around the content (the newline ``echo token > file`` leaves)
    is not part of the value.

    Args:
      path: the file's path on the worker.
      prefix: put before the file's content, e.g. ``"Bearer "``.

    Raises:
      ValueError: ``path`` is empty.
    """

    path: str
    prefix: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.path, (str, os.PathLike)) or not str(self.path):
            raise ValueError(f"FromFile needs a file path, got {self.path!r}")
        object.__setattr__(self, "path", os.fspath(self.path))
        _check_prefix(self.prefix)

    def read(self) -> str:
        try:
            with open(self.path, encoding="utf-8") as handle:
                return handle.read().strip()
        except (OSError, UnicodeDecodeError) as exc:
            # The exception's text names the path only (never the content).
            raise ValueError(f"cannot read {self.path!r}: {type(exc).__name__}: {exc.args[-1]}") from None

    def describe(self) -> str:
        return f"FromFile({self.path!r})"


@dataclasses.dataclass(frozen=True, repr=False)
class FromCallable(CredentialProvider):
    """A header value returned by your own function, called on the worker (again on refresh).

    The function is pickled with the pipeline: let it fetch the secret (from
    a secret manager, a token endpoint...), not hold it. A module-level
    function is pickled by reference, so every DoFn of a worker process
    shares one connection per endpoint; a lambda or closure gets one per
    DoFn instance.

    Args:
      function: called with no argument, returns the value (a ``str``).
      prefix: put before what ``function`` returns, e.g. ``"Bearer "``.

    Raises:
      TypeError: ``function`` is not callable.
    """

    function: Callable[[], str]
    prefix: str = ""

    def __post_init__(self) -> None:
        if not callable(self.function):
            raise TypeError(f"FromCallable needs a function, got {type(self.function).__name__}")
        _check_prefix(self.prefix)

    def read(self) -> str:
        try:
            return self.function()
        except Exception as exc:  # noqa: BLE001 - any failure of the user's function is a missing value
            # Only the exception's type: its message might quote the secret.
            raise ValueError(f"{self.describe()} raised {type(exc).__name__}") from None

    def describe(self) -> str:
        name = getattr(self.function, "__qualname__", None) or type(self.function).__name__
        return f"FromCallable({name})"


HeaderValue = Union[str, CredentialProvider]
"""A header value: a string, or a provider resolved on the worker."""


def header_value(name: str, value: Any) -> HeaderValue:
    """``value`` as a header value: a string or provider as it is, a callable wrapped in :class:`FromCallable`.

    Raises:
      ValueError: a string value spans lines, or ``value`` is of another type.
    """
    if isinstance(value, str):
        if "\n" in value or "\r" in value:
            raise ValueError(f"header {name!r} must have a single-line string value")
        return value
    if isinstance(value, CredentialProvider):
        return value
    if callable(value):
        return FromCallable(value)
    raise ValueError(
        f"header {name!r} must be a string or a credential provider (FromEnv, FromFile, FromCallable, "
        f"or a function), got {type(value).__name__}"
    )


_CONFIG_KINDS = {"env": FromEnv, "file": FromFile}


def header_value_from_config(name: str, value: Any) -> HeaderValue:
    """A header value as configuration files write it (Beam YAML).

    A string is the value itself; ``{"env": "RACCOON_TOKEN"}`` is
    ``FromEnv("RACCOON_TOKEN")`` and ``{"file": "/secrets/token"}`` is
    ``FromFile("/secrets/token")``, each with an optional ``prefix``
    (``{"env": "RACCOON_TOKEN", "prefix": "Bearer "}``).

    Args:
      name: the header's name (for messages).
      value: the configured value.

    Raises:
      ValueError: the value is neither a string nor one of those forms.
    """
    if not isinstance(value, Mapping):
        if callable(value) and not isinstance(value, CredentialProvider):
            raise ValueError(f"header {name!r}: a configuration file gives a string, {{env: NAME}} or {{file: PATH}}")
        return header_value(name, value)
    kinds = [key for key in value if key in _CONFIG_KINDS]
    unknown = sorted(str(key) for key in value if key not in _CONFIG_KINDS and key != "prefix")
    if len(kinds) != 1 or unknown:
        raise ValueError(
            f"header {name!r}: expected a string, {{env: NAME}} or {{file: PATH}} (with an optional prefix), "
            f"got the keys {sorted(map(str, value))}"
        )
    kind = kinds[0]
    return _CONFIG_KINDS[kind](value[kind], prefix=value.get("prefix", ""))


# What gRPC accepts in an ASCII (non "-bin") metadata value.
_PRINTABLE_ASCII = frozenset(range(0x20, 0x7F))


def check_header_value(name: str, value: str, *, grpc: bool) -> Optional[str]:
    """Why ``value`` cannot be sent as header ``name``, or None; the reason never quotes it.

    Args:
      name: the header's name.
      value: its value.
      grpc: whether it is gRPC metadata (printable ASCII unless the key ends in ``-bin``).
    """
    if "\n" in value or "\r" in value:
        return f"header {name!r} must have a single-line value"
    if grpc and not name.lower().endswith("-bin") and not _PRINTABLE_ASCII.issuperset(value.encode("utf-8")):
        return (
            f"header {name!r}: gRPC metadata values must be printable ASCII "
            "(or the key must end in '-bin'); the value has other characters"
        )
    return None


class HeaderValues:
    """One transport's header values, with those of providers resolved (on first use, then on refresh).

    Without providers it is the configured strings, resolved from the start
    and never refreshed. With them, the first :meth:`current` resolves every
    provider in the loop's default executor (a file or a user's function may
    block); :meth:`refresh` resolves them again.

    Args:
      headers: header name -> string or provider (``TransportConfig.headers``).
      grpc: whether the values go out as gRPC metadata (checked after resolving).
      where: the endpoint, for log lines and messages (redacted).

    Attributes:
      generation: how many times the providers were resolved; a request
        remembers the generation it was sent with, so that many requests
        refused at once cause one refresh, not one each.
    """

    def __init__(self, headers: Mapping[str, HeaderValue], *, grpc: bool, where: str) -> None:
        self._headers = dict(headers)
        self._providers = {name: v for name, v in self._headers.items() if isinstance(v, CredentialProvider)}
        self._grpc = grpc
        self._where = where
        self._values: Optional[Dict[str, str]] = None
        if not self._providers:
            self._values = {name: value for name, value in self._headers.items() if isinstance(value, str)}
        self._lock = asyncio.Lock()
        self.generation = 0

    async def current(self) -> Dict[str, str]:
        """The header values now (resolving the providers the first time).

        Raises:
          SendFailure: a provider gave no usable value (``FailureKind.CREDENTIALS``).
        """
        values = self._values
        if values is None:
            async with self._lock:
                if self._values is None:
                    await self._resolve()
            values = self._values
            assert values is not None
        return values

    async def refresh(self, seen: int) -> bool:
        """Resolves the providers again, unless that was done since generation ``seen``.

        Args:
          seen: the generation when the refused request was sent (0: before
            the first resolution, whose values it then used).

        Returns:
          Whether a resend may succeed: False when no value comes from a provider.

        Raises:
          SendFailure: a provider gave no usable value (``FailureKind.CREDENTIALS``).
        """
        if not self._providers:
            return False
        async with self._lock:
            if self.generation == max(seen, 1):
                _log.info(
                    "raccoon_beam: %s refused the credentials; reading header(s) %s again from %s",
                    self._where,
                    ", ".join(sorted(self._providers)),
                    ", ".join(p.describe() for _, p in sorted(self._providers.items())),
                )
                await self._resolve()
        return True

    async def _resolve(self) -> None:
        loop = asyncio.get_running_loop()
        resolved, failure = await loop.run_in_executor(None, self._resolve_now)
        if failure is not None:
            raise SendFailure(FailureKind.CREDENTIALS, failure)
        self._values = resolved
        self.generation += 1

    def _resolve_now(self) -> Tuple[Dict[str, str], Optional[str]]:
        """Every header value, or the reason one provider failed (never a value)."""
        values: Dict[str, str] = {}
        for name, configured in self._headers.items():
            if not isinstance(configured, CredentialProvider):
                values[name] = configured
                continue
            try:
                value = configured.resolve()
            except ValueError as exc:
                return {}, f"no value for header {name!r} ({configured.describe()}) sending to {self._where}: {exc}"
            problem = check_header_value(name, value, grpc=self._grpc)
            if problem is not None:
                return {}, f"{problem} ({configured.describe()})"
            values[name] = value
        return values, None
