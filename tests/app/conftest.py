"""The app's tests share the served app and its helpers from tests/fakes/served_app.py."""

from __future__ import annotations

# Re-exported for tests that still import them from here; new tests import tests.fakes.
from tests.fakes.served_app import (  # noqa: F401
    PASSWORDS,
    XSS_RESPONSE,
    Served,
    free_port,
    make_store,
    make_users,
    serve_store,
    served,
    stop,
    synthetic_records,
)
