"""Time passing for leases, without wall-clock sleeps."""

from __future__ import annotations

from data.store import PreferenceStore


def run_out_leases(store: PreferenceStore) -> None:
    """Every lease in `store` has run out, as if its time had passed."""
    with store.transaction() as cur:
        cur.execute("UPDATE leases SET expires_at = now()::TIMESTAMP - INTERVAL 1 SECOND")
