"""Keeping credentials out of every message: failure texts, logs, dead letters."""

from __future__ import annotations

import urllib.parse

from raccoon_beam.transports.config import TransportConfig
from raccoon_beam.transports.credentials import resolved_secrets
from raccoon_beam.transports.endpoint import REDACTED, basic_token, redact_url

__all__ = ["redact"]


def redact(text: str, config: TransportConfig) -> str:
    """``text`` without the endpoint's credentials or the user's header values.

    Removed: the URL's password (plain and percent-encoded), the Basic
    authorization token built from the URL's ``user:password`` (whole and
    its base64 part), the values of secret headers, and the value of every
    other header given in ``config.headers`` that is at least
    :data:`_MINREDACTED_VALUE` characters long (shorter ones, such as
    ``"1"``, would mangle the text and cannot be credentials), and the
    values its credential providers resolved. The connection
    id and group are not secrets: messages name them on purpose.

    Library exceptions and servers' bodies may quote a URL or a header;
    failure messages end up in dead letters and logs, so they pass through
    here first.
    """
    endpoint = config.parsed_endpoint
    secrets = []
    for name, value in config.headers.items():
        if isinstance(value, str) and (name.lower() in config.secret_headers or len(value) >= _MINREDACTED_VALUE):
            secrets.append(value)
    secrets.extend(resolved_secrets(config.credential_providers.values()))
    if endpoint.username is not None:
        token = basic_token(endpoint.username, endpoint.password)
        secrets.extend(("Basic " + token, token))
    if endpoint.password:
        secrets.append(endpoint.password)
        secrets.append(urllib.parse.quote(endpoint.password, safe=""))
    # Longest first: a value that contains another is replaced whole.
    for secret in sorted(set(secrets), key=len, reverse=True):
        if secret:
            text = text.replace(secret, REDACTED)
    return redact_url(text)


# Header values shorter than this are left in messages (see redact).
_MINREDACTED_VALUE = 6
