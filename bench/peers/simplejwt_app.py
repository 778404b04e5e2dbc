"""A minimal djangorestframework-simplejwt service doing the benchmark's flows.

Conventional set-up from simplejwt's docs: ES256 (``ALGORITHM`` with the PEM pair from
``BENCH_EC_KEY``, see ``_es256.py``), ``ROTATE_REFRESH_TOKENS`` and
``BLACKLIST_AFTER_ROTATION`` with the ``token_blacklist`` app (the closest simplejwt gets to
tokenward's rotation), Django's SQLite database, served by gunicorn sync workers.

* ``POST /api/token/``          TokenObtainPairView (sign-in: Django's default PBKDF2 hasher)
* ``POST /api/token/refresh/``  TokenRefreshView: rotates, blacklists the old refresh token
* ``POST /api/token/verify/``   TokenVerifyView: simplejwt's nearest thing to introspection
* ``GET  /userinfo``            a DRF view behind JWTAuthentication + IsAuthenticated
* ``POST /bench/session/``      set-up only: a pair for ``user0`` without the password hash

Run ``python simplejwt_app.py setup DB USERS`` once (migrate + users), then
``gunicorn -w 1 --chdir bench/peers simplejwt_app:application`` with ``BENCH_DB=DB``.
"""

from __future__ import annotations

import os
import sys

import django
from _es256 import key_pair_pem
from django.conf import settings

_PRIVATE_PEM, _PUBLIC_PEM = key_pair_pem()

settings.configure(
    DEBUG=False,
    SECRET_KEY="bench-only-secret-key-not-for-production-0123456789",
    ALLOWED_HOSTS=["*"],
    ROOT_URLCONF=__name__,
    DATABASES={
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("BENCH_DB", "/tmp/simplejwt-bench.sqlite3"),
            "OPTIONS": {"timeout": 20},
        }
    },
    INSTALLED_APPS=[
        "django.contrib.auth",
        "django.contrib.contenttypes",
        "rest_framework",
        "rest_framework_simplejwt.token_blacklist",
    ],
    MIDDLEWARE=[],
    USE_TZ=True,
    REST_FRAMEWORK={
        "DEFAULT_AUTHENTICATION_CLASSES": [
            "rest_framework_simplejwt.authentication.JWTAuthentication"
        ],
        "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
        "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    },
    SIMPLE_JWT={
        "ROTATE_REFRESH_TOKENS": True,
        "BLACKLIST_AFTER_ROTATION": True,
        "UPDATE_LAST_LOGIN": False,
        "ALGORITHM": "ES256",
        "SIGNING_KEY": _PRIVATE_PEM,
        "VERIFYING_KEY": _PUBLIC_PEM,
    },
)
django.setup()

from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.urls import path  # noqa: E402
from rest_framework.request import Request  # noqa: E402
from rest_framework.response import Response  # noqa: E402
from rest_framework.views import APIView  # noqa: E402
from rest_framework_simplejwt.views import (  # noqa: E402
    TokenObtainPairView,
    TokenRefreshView,
    TokenVerifyView,
)


class BenchSession(APIView):
    """Set-up only: a token pair for ``user0`` as ``TokenObtainPairView`` issues it (an
    outstanding-token row), without the password hash, so that the bench's sessions do not
    take seconds each; the sign-in flow measures ``TokenObtainPairView`` itself."""

    authentication_classes = ()
    permission_classes = ()

    def post(self, request: Request) -> Response:
        from django.contrib.auth.models import User
        from rest_framework_simplejwt.tokens import RefreshToken

        refresh = RefreshToken.for_user(User.objects.get(username="user0"))
        return Response({"refresh": str(refresh), "access": str(refresh.access_token)})


class UserInfo(APIView):
    def get(self, request: Request) -> Response:
        return Response({"sub": request.user.get_username()})


urlpatterns = [
    path("api/token/", TokenObtainPairView.as_view()),
    path("api/token/refresh/", TokenRefreshView.as_view()),
    path("api/token/verify/", TokenVerifyView.as_view()),
    path("userinfo", UserInfo.as_view()),
    path("bench/session/", BenchSession.as_view()),
]

application = get_wsgi_application()


def setup(users: int, password: str) -> None:
    from django.contrib.auth.models import User
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    for i in range(users):
        User.objects.create_user(f"user{i}", password=password)


if __name__ == "__main__" and sys.argv[1:2] == ["setup"]:
    setup(int(sys.argv[2]), sys.argv[3])
