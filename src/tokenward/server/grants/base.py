"""The shape of a grant type: a :class:`Grant` subclass handles one ``grant_type``."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from fastapi import Request

    from ...store.base import Client
    from ..errors import JSON
    from ..runtime import Runtime

__all__ = ["Grant", "GrantContext"]


@dataclass(frozen=True, slots=True)
class GrantContext:
    """One token request: the client is authenticated and registered for the grant."""

    runtime: Runtime
    request: Request
    client: Client
    form: dict[str, str]
    #: the RFC 7638 thumbprint of the request's verified DPoP proof (RFC 9449 §5): the grant
    #: binds the tokens it issues to it (``cnf.jkt``, ``token_type: DPoP``)
    dpop_jkt: str | None = None


class Grant(ABC):
    """One grant type of ``POST /token`` (RFC 6749 §4)."""

    #: the ``grant_type`` value; must equal its key in the registry (a test checks it)
    name: ClassVar[str]
    #: public clients may not use it; must equal the registry's flag (a test checks it)
    confidential_only: ClassVar[bool] = False
    #: the form fields the grant reads, for the OpenAPI description of ``POST /token``
    form_fields: ClassVar[dict[str, dict[str, Any]]] = {}

    @abstractmethod
    async def handle(self, ctx: GrantContext) -> JSON:
        """The token response (``no-store``), or raise a :class:`TokenwardError`."""
