"""Django settings for the guard tests (configured once per process)."""

from __future__ import annotations


def configure(urlconf: str = __name__) -> None:
    import django
    from django.conf import settings

    if settings.configured:
        return
    settings.configure(
        DEBUG=False,
        SECRET_KEY="tests-only-not-secret",
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=urlconf,
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "rest_framework"],
        MIDDLEWARE=["tokenward.guard.django.GuardMiddleware"],
        DATABASES={},
        REST_FRAMEWORK={"UNAUTHENTICATED_USER": None},
    )
    django.setup()


urlpatterns: list[object] = []
