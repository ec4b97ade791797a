"""Alembic migrations of the alert store, run programmatically by
:meth:`dnsieve.alerts.store.AlertStore.open` (no ``alembic.ini`` needed)."""
