"""One router per resource: auth, alerts, review, allowlist, model, runs, and the JSON API."""
