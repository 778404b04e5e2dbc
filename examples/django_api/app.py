"""A single-file Django + DRF API protected by tokenward.guard. Run: see README.md."""

from __future__ import annotations

import os
import sys
from typing import Any

import django
from django.conf import settings


def settings_from_env() -> dict[str, Any]:
    base = os.environ.get("TOKENWARD_URL", "http://127.0.0.1:8000").rstrip("/")
    return {
        "DEBUG": False,
        "SECRET_KEY": os.environ.get("DJANGO_SECRET_KEY", "example-only-change-me"),
        "ALLOWED_HOSTS": ["127.0.0.1", "localhost"],
        "ROOT_URLCONF": __name__,
        "INSTALLED_APPS": ["django.contrib.contenttypes", "django.contrib.auth", "rest_framework"],
        "MIDDLEWARE": ["tokenward.guard.django.GuardMiddleware"],
        "DATABASES": {},
        "REST_FRAMEWORK": {"UNAUTHENTICATED_USER": None},
        "TOKENWARD_GUARD_REALM": "orders",
        "TOKENWARD_GUARD": {
            "jwks_url": f"{base}/.well-known/jwks.json",
            "issuer": os.environ.get("TOKENWARD_ISSUER", base),
            "audience": os.environ.get("TOKENWARD_AUDIENCE", "api"),
            "revocations_url": f"{base}/revocations",
            "client_id": os.environ.get("TOKENWARD_CLIENT_ID", ""),
            "client_secret": os.environ.get("TOKENWARD_CLIENT_SECRET", ""),
        },
    }


if not settings.configured:
    settings.configure(**settings_from_env())
    django.setup()

from django.http import HttpRequest, JsonResponse  # noqa: E402
from django.urls import path  # noqa: E402
from rest_framework.request import Request  # noqa: E402
from rest_framework.response import Response  # noqa: E402
from rest_framework.views import APIView  # noqa: E402

from tokenward.guard import django as guard  # noqa: E402


@guard.require_token(scopes=["read"])
def orders(request: HttpRequest) -> JsonResponse:
    """A plain Django view."""
    claims = request.token_claims  # type: ignore[attr-defined]
    return JsonResponse({"sub": claims.sub, "orders": [{"id": 1, "item": "passport"}]})


class OrdersAPI(APIView):
    """The same resource through Django REST Framework."""

    authentication_classes = (guard.TokenwardAuthentication,)
    permission_classes = (guard.HasScopes,)
    required_scopes = ("read",)

    def get(self, request: Request) -> Response:
        return Response({"sub": request.user.username, "orders": [{"id": 1, "item": "passport"}]})


urlpatterns = [path("orders", orders), path("api/orders", OrdersAPI.as_view())]


def create_app(verifier: Any) -> Any:
    """The WSGI application, using ``verifier`` instead of one built from settings."""
    from django.core.wsgi import get_wsgi_application

    guard.set_verifier(verifier)
    return get_wsgi_application()


if __name__ == "__main__":
    from django.core.management import execute_from_command_line

    execute_from_command_line([sys.argv[0], "runserver", "127.0.0.1:8003", "--noreload"])
