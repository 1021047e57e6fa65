"""The bundled demo e-service that Kansli's web-form robot fills in (Starlette + Jinja2)."""

from __future__ import annotations

from demo.site.app import SiteConfig, create_app
from demo.site.faults import FaultConfig
from demo.site.server import RunningSite, serve

__all__ = ["FaultConfig", "RunningSite", "SiteConfig", "create_app", "serve"]
