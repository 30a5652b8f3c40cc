"""The delivery tests share the transports' leak-checked sender factory."""

from tests.transports.conftest import make_client  # noqa: F401 (a fixture)
