"""Threat definitions: Sigma rules, watchlists and anomaly rules (ARCHITECTURE §3 ``rules/``)."""
