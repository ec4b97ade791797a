"""The Alert Manager: a FastAPI app with server-rendered pages and a JSON API.

``create_app(settings)`` builds one app on its own store connection (there is
no module-level engine).  ``dnsieve serve`` runs it with uvicorn; users and API
tokens are managed with ``dnsieve users``.  See ``docs/web.md``.
"""

from __future__ import annotations

from dnsieve.web.app import create_app
from dnsieve.web.security import WebSettings

__all__ = ["WebSettings", "create_app"]
