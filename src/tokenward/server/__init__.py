"""The tokenward authorization server (FastAPI): ``create_app(settings)``."""

from __future__ import annotations

from .app import create_app, create_app_from_env

__all__ = ["create_app", "create_app_from_env"]
