"""The pure authorization decision: granted scope and audience (every branch, plus a property:
the grant is always inside what was asked, what the client may have and what the user holds)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenward.errors import InvalidGrant, InvalidScope, InvalidTarget
from tokenward.server.authorization import (
    OIDC_SCOPES,
    Catalog,
    authorize,
    entitlement,
    reauthorize,
    session_resources,
)
from tokenward.store.base import Client, Resource, Role

ISS = "https://auth.example"
ORDERS = "https://orders.example"
BILLING = "https://billing.example"

CATALOG = Catalog(
    [
        Resource(
            ORDERS,
            "orders",
            0.0,
            scopes={"orders:read": "read", "orders:write": "write", "orders:delete": "delete"},
            default_scopes=("orders:read",),
        ),
        Resource(BILLING, "billing", 0.0, scopes={"billing:read": "r"}, default_scopes=()),
    ],
    issuer=ISS,
)
SPA = Client(
    "spa",
    0.0,
    grants=("password", "refresh_token"),
    scopes=("orders:read", "orders:write", "billing:read", "openid"),
    resources=(ORDERS, BILLING),
)
ROLES = {"clerk": Role("clerk", 0.0, scopes=("orders:read", "orders:write"))}
CLERK = entitlement(["clerk"], ROLES)


def grant(scope: str | None, resources: list[str] | None = None, **kw: object):  # type: ignore[no-untyped-def]
    args: dict[str, object] = {
        "scope": scope,
        "resources": resources if resources is not None else [ORDERS],
        "client": SPA,
        "entitled": CLERK,
        "catalog": CATALOG,
        "default_resource": None,
    }
    args.update(kw)
    return authorize(**args)  # type: ignore[arg-type]


def test_requested_scopes_within_all_three_sets_are_granted_for_the_resource() -> None:
    g = grant("orders:read orders:write")
    assert g.scope == ("orders:read", "orders:write")
    assert g.audience() == ORDERS


def test_rfc6749_5_2_scope_no_resource_defines_is_invalid_scope() -> None:
    with pytest.raises(InvalidScope, match="no resource defines"):
        grant("write")


def test_rfc6749_5_2_scope_the_client_may_not_receive_is_invalid_scope() -> None:
    with pytest.raises(InvalidScope, match="not allowed for this client"):
        grant("orders:read orders:delete")


def test_scope_of_another_resource_than_the_requested_one_is_invalid_scope() -> None:
    with pytest.raises(InvalidScope, match="another resource"):
        grant("billing:read", [ORDERS])


def test_rfc6749_3_3_scope_the_user_lacks_is_dropped_silently() -> None:
    reader = entitlement(["reader"], {"reader": Role("reader", 0.0, scopes=("orders:read",))})
    g = grant("orders:read orders:write", entitled=reader)
    assert g.scope == ("orders:read",)


def test_nothing_granted_is_invalid_scope() -> None:
    with pytest.raises(InvalidScope, match="none of the requested"):
        grant("orders:write", entitled=entitlement([], ROLES))


def test_no_scope_gets_resource_defaults_within_client_and_entitlement() -> None:
    assert grant(None).scope == ("orders:read",)
    with pytest.raises(InvalidScope, match="no default scope"):
        grant(None, entitled=entitlement([], ROLES))
    with pytest.raises(InvalidScope, match="no default scope"):
        grant(None, [BILLING])  # billing has no default scopes


def test_defaults_are_limited_by_the_client() -> None:
    narrow = Client("c", 0.0, scopes=("orders:write",), resources=(ORDERS,))
    with pytest.raises(InvalidScope):
        grant(None, client=narrow)


def test_a_client_with_no_scopes_gets_nothing() -> None:
    empty = Client("c", 0.0, scopes=(), resources=(ORDERS,))
    with pytest.raises(InvalidScope, match="not allowed"):
        grant("orders:read", client=empty)
    with pytest.raises(InvalidScope):
        grant(None, client=empty)


def test_rfc8707_2_several_resources_at_token_endpoint_is_invalid_target() -> None:
    with pytest.raises(InvalidTarget, match="at most 1"):
        grant("orders:read", [ORDERS, BILLING])


def test_several_resources_allowed_where_the_caller_says_so() -> None:
    g = grant("orders:read billing:read", [ORDERS, BILLING], max_resources=None, entitled=None)
    assert g.resources == (ORDERS, BILLING)
    assert g.scope == ("orders:read", "billing:read")


def test_rfc8707_2_unknown_resource_is_invalid_target() -> None:
    with pytest.raises(InvalidTarget, match="unknown resource"):
        grant("orders:read", ["https://nope.example"])


def test_rfc8707_2_resource_the_client_may_not_ask_for_is_invalid_target() -> None:
    with pytest.raises(InvalidTarget, match="may not ask"):
        grant("openid", [ISS])


def test_no_resource_uses_the_default_resource() -> None:
    assert grant("orders:read", [], default_resource=ORDERS).resource == ORDERS


def test_no_resource_and_no_default_is_invalid_target() -> None:
    with pytest.raises(InvalidTarget, match="no default resource"):
        grant(None, [], default_resource=None)
    with pytest.raises(InvalidTarget, match="no default resource"):
        grant("openid", [], default_resource=None)


def test_no_resource_uses_the_one_resource_that_defines_the_requested_scopes() -> None:
    g = grant("billing:read openid", [], default_resource=ORDERS, entitled=None)
    assert (g.resource, g.audience()) == (BILLING, [BILLING, ISS])


def test_no_resource_and_scopes_of_several_resources_is_invalid_target() -> None:
    with pytest.raises(InvalidTarget, match="several resources"):
        grant("orders:read billing:read", [], default_resource=ORDERS)


def test_openid_adds_the_issuer_to_the_audience() -> None:
    g = grant("orders:read openid")
    assert g.audience() == [ORDERS, ISS]


def test_client_credentials_uses_the_clients_own_scopes() -> None:
    g = grant("orders:read orders:write", entitled=None)
    assert g.scope == ("orders:read", "orders:write")


def test_reserved_scopes_come_from_roles_only() -> None:
    console = Client("console", 0.0, scopes=("admin", "openid", "profile"), resources=(ISS,))
    admin_roles = {"admin": Role("admin", 0.0, scopes=("admin",))}
    user = grant("admin openid", [ISS], client=console, entitled=entitlement([], admin_roles))
    assert user.scope == ("openid",)
    admin = entitlement(["admin"], admin_roles)
    assert grant("admin openid", [ISS], client=console, entitled=admin).audience() == ISS


def test_refresh_keeps_the_scope_while_still_entitled() -> None:
    g = reauthorize(
        granted_scope="orders:read orders:write",
        scope=None,
        resource=None,
        client=SPA,
        entitled=CLERK,
        catalog=CATALOG,
    )
    assert g.scope == ("orders:read", "orders:write")
    assert g.audience() == ORDERS


def test_refresh_narrows_to_the_current_entitlement() -> None:
    reader = entitlement(["r"], {"r": Role("r", 0.0, scopes=("orders:read",))})
    g = reauthorize(
        granted_scope="orders:read orders:write",
        scope=None,
        resource=None,
        client=SPA,
        entitled=reader,
        catalog=CATALOG,
    )
    assert g.scope == ("orders:read",)


def test_refresh_with_nothing_left_is_invalid_grant() -> None:
    with pytest.raises(InvalidGrant):
        reauthorize(
            granted_scope="orders:read orders:write",
            scope=None,
            resource=None,
            client=SPA,
            entitled=entitlement([], ROLES),
            catalog=CATALOG,
        )


def test_refresh_narrows_to_the_clients_current_permissions() -> None:
    narrowed = Client("spa", 0.0, scopes=("orders:read",), resources=(ORDERS,))
    g = reauthorize(
        granted_scope="orders:read orders:write",
        scope=None,
        resource=None,
        client=narrowed,
        entitled=CLERK,
        catalog=CATALOG,
    )
    assert g.scope == ("orders:read",)


def test_refresh_never_widens() -> None:
    with pytest.raises(InvalidScope, match="exceeds"):
        reauthorize(
            granted_scope="orders:read",
            scope="orders:read orders:write",
            resource=None,
            client=SPA,
            entitled=CLERK,
            catalog=CATALOG,
        )


def test_refresh_may_down_scope_per_resource() -> None:
    both = entitlement(["x"], {"x": Role("x", 0.0, scopes=("orders:read", "billing:read"))})
    g = reauthorize(
        granted_scope="orders:read billing:read",
        scope=None,
        resource=BILLING,
        client=SPA,
        entitled=both,
        catalog=CATALOG,
    )
    assert (g.scope, g.audience()) == (("billing:read",), BILLING)
    with pytest.raises(InvalidTarget):
        reauthorize(
            granted_scope="orders:read",
            scope=None,
            resource=BILLING,
            client=SPA,
            entitled=both,
            catalog=CATALOG,
        )


def test_session_with_only_oidc_scopes_is_for_the_server() -> None:
    assert session_resources(["openid", "profile"], CATALOG) == (ISS,)
    assert session_resources(["openid", "orders:read"], CATALOG) == (ORDERS,)


_ALL = sorted(CATALOG.owner)
_subsets = st.lists(st.sampled_from(_ALL), unique=True)


@settings(max_examples=300, deadline=None)
@given(
    requested=_subsets,
    client_scopes=_subsets,
    entitled=_subsets,
    resource=st.sampled_from([ORDERS, BILLING, ISS]),
    use_default=st.booleans(),
)
def test_property_granted_is_a_subset_of_requested_client_and_entitled(
    requested: list[str],
    client_scopes: list[str],
    entitled: list[str],
    resource: str,
    use_default: bool,
) -> None:
    client = Client("c", 0.0, scopes=tuple(client_scopes), resources=(ORDERS, BILLING, ISS))
    user = frozenset(entitled)
    try:
        g = authorize(
            scope=None if use_default else " ".join(requested),
            resources=[resource],
            client=client,
            entitled=user,
            catalog=CATALOG,
            default_resource=None,
        )
    except (InvalidScope, InvalidTarget):
        return
    granted = set(g.scope)
    assert granted
    assert granted <= set(client_scopes)
    assert granted <= user
    if not use_default and requested:
        assert granted <= set(requested)
    for s in granted:
        assert CATALOG.owner[s] == resource or s in OIDC_SCOPES
    # and a refresh never returns more than the grant
    r = reauthorize(
        granted_scope=g.scope_text,
        scope=None,
        resource=None,
        client=client,
        entitled=user,
        catalog=CATALOG,
    )
    assert set(r.scope) <= granted
