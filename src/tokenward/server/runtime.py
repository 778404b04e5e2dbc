"""Everything one server instance holds: store, keys, issuer, sessions, verifier, users,
clients, the login throttle and metrics; started and stopped by the app's lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import secrets
import signal
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from argon2 import PasswordHasher

from ..clock import Clock, system_clock
from ..errors import AlreadyExists, ConfigurationError, TokenwardError
from ..feed import RevocationEvent, RevocationKind
from ..issuer import Issuer
from ..keys import KeyRing
from ..mirror import RevocationMirror, StoreFeedSource
from ..sessions import AccessSpec, SessionManager
from ..store.base import Client, Family, Store, User
from ..store.fanout import FeedFanout
from ..verifier import Verifier
from .addresses import address_prefix, parse_trusted_proxies
from .authorization import Catalog, Grant
from .authz import CONSOLE_SCOPES, Authorizer, ResourceRegistry, RoleRegistry
from .authz_changes import upgrade_authorization_model
from .cache import RecordCache, StoreHealth, watch_writes
from .clients import ClientRegistry
from .credentials import family_check
from .dpop import DPoPService
from .feed_limits import StreamSlots
from .idtoken import IdTokenService
from .keystore import kek_for_store, load_or_create_keyring, rotate_if_due
from .metrics import Metrics, instrument_store
from .outbox import Outbox
from .ratelimit import LoginThrottle, storage_url_for
from .risk import RiskEngine
from .riskwire import policy_from_settings, refresh_check
from .settings import Settings
from .signin import SigninSessions
from .stores import open_store
from .usernames import USERNAME_RULE, username_report
from .users import UserService, generate_password, hasher_from_settings

if TYPE_CHECKING:
    from collections.abc import Iterable

    from ..jwe import TokenEncryption

__all__ = [
    "BootstrapReport",
    "Runtime",
    "ServerAudiences",
    "admin_password_shown",
    "begin_shutdown",
    "bootstrap",
    "chain_stop_signals",
]

log = logging.getLogger("tokenward.server")

_KEY_CHECK_INTERVAL = 60.0
T = TypeVar("T")

#: The runtimes started in this process, told when a SIGTERM/SIGINT arrives.
_LIVE: set[Runtime] = set()


def begin_shutdown() -> None:
    """The process is stopping: every running app ends its streams and long-polls now (SSE
    clients get ``event: reconnect``, long-polls an empty answer), so the server can exit
    without waiting for them. Safe to call from a signal handler."""
    for rt in list(_LIVE):
        rt.begin_shutdown()


@dataclass(frozen=True, slots=True)
class BootstrapReport:
    keys_created: bool
    console_client_created: bool
    admin_username: str | None = None
    admin_password: str | None = None  # only when generated here: print it once
    clients_without_scopes: list[str] = field(default_factory=list)


class ServerAudiences:
    """The audiences this server's own endpoints accept: any of its resources (the issuer,
    the default resource and every registered one; the set is refreshed as the server
    reads its resources). The scopes then decide what a token may do here."""

    def __init__(self, *always: str) -> None:
        self._always = frozenset(always)
        self.known: frozenset[str] = frozenset()

    def __contains__(self, aud: object) -> bool:
        return aud in self._always or aud in self.known

    def __bool__(self) -> bool:
        return True


async def bootstrap(
    settings: Settings,
    store: Store,
    *,
    clock: Clock = system_clock,
    hasher: PasswordHasher | None = None,
    generate_admin: bool = False,
    kek: bytes | None = None,
) -> BootstrapReport:
    """First start: keys, the console's public client and (when there is no user yet) an
    ``admin`` user with ``TOKENWARD_ADMIN_PASSWORD`` or, with ``generate_admin``, a one-time
    password returned in the report. Idempotent."""
    kek = kek if kek is not None else await kek_for_store(settings, store)
    _ring, created = await load_or_create_keyring(store, kek, alg=settings.signing_alg, clock=clock)
    clients = ClientRegistry(store, clock=clock)
    console = False
    if await clients.get(settings.console_client_id) is None:
        with contextlib.suppress(AlreadyExists):  # a concurrent first start won
            await clients.create(
                settings.console_client_id,
                public=True,
                grants=("password", "refresh_token"),
                name="tokenward console",
                scopes=CONSOLE_SCOPES,
                resources=(settings.issuer,),
            )
            console = True
    bare = await upgrade_authorization_model(
        store,
        issuer=settings.issuer,
        default_resource=settings.default_resource,
        console_client_id=settings.console_client_id,
    )
    admin_name: str | None = None
    admin_password: str | None = None
    users = UserService(store, hasher=hasher or hasher_from_settings(settings), clock=clock)
    if not await store.list_users():
        given = settings.admin_password.get_secret_value() if settings.admin_password else None
        password = given or (generate_password() if generate_admin else None)
        if password is not None:
            with contextlib.suppress(AlreadyExists):  # a concurrent first start won
                await users.create("admin", password, is_admin=True)
                admin_name = "admin"
                admin_password = None if given else password
            if admin_password is not None:  # generated: unseen until the server announces it
                await _flag_admin_password(store, unshown=True)
    elif generate_admin:
        admin = await store.get_user("admin")
        if admin is not None and admin.attributes.get(_UNSHOWN):
            # the one-time password of an earlier start was never shown (that start failed
            # before it was up): a new one, shown on this start
            admin_password = generate_password()
            await users.set_password("admin", admin_password)
            admin_name = "admin"
    return BootstrapReport(created, console, admin_name, admin_password, bare)


#: User attribute: the admin's generated one-time password has not been shown yet.
_UNSHOWN = "one_time_password_unshown"


async def _flag_admin_password(store: Store, *, unshown: bool) -> None:
    admin = await store.get_user("admin")
    if admin is None or bool(admin.attributes.get(_UNSHOWN)) == unshown:
        return
    attributes = {k: v for k, v in admin.attributes.items() if k != _UNSHOWN}
    if unshown:
        attributes[_UNSHOWN] = True
    await store.update_user(dataclasses.replace(admin, attributes=attributes))


async def admin_password_shown(store: Store) -> None:
    """The server is up and printed the one-time admin password: the next start need not
    generate a new one."""
    await _flag_admin_password(store, unshown=False)


def chain_stop_signals() -> Callable[[], None]:
    """On SIGTERM/SIGINT call :func:`begin_shutdown`, then the handler already installed (the
    server's: uvicorn stops accepting and waits for open requests, which now end at once).
    Returns the function that puts the previous handlers back. Main thread only (elsewhere,
    e.g. under a test client, it does nothing)."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous: dict[int, Any] = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        before = signal.getsignal(sig)
        previous[sig] = before

        def handler(signum: int, frame: Any, before: Any = before) -> None:
            begin_shutdown()
            if callable(before):
                before(signum, frame)
            elif before == signal.SIG_DFL:
                signal.default_int_handler(signum, frame)

        signal.signal(sig, handler)

    def restore() -> None:
        for sig, before in previous.items():
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(sig, before)

    return restore


class _Mirror(RevocationMirror):
    """The server's mirror: a revoked subject also drops its cached user record, a reload
    (the feed went backwards) every cached user."""

    def __init__(self, *args: Any, users: RecordCache[str, User], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._users = users

    def apply(self, events: Iterable[RevocationEvent]) -> int:
        events = list(events)
        n = super().apply(events)
        for event in events:
            if event.kind == RevocationKind.SUB:
                self._users.invalidate(event.value)
        return n

    def reset(self, reason: str) -> None:
        super().reset(reason)
        self._users.clear()


class Runtime:
    """The live objects of one app; ``await start()`` / ``await stop()``."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: Store | None = None,
        clock: Clock | None = None,
        hasher: PasswordHasher | None = None,
        generate_admin: bool = False,
        on_bootstrap: Callable[[BootstrapReport], None] | None = None,
    ) -> None:
        self.settings = settings
        self._generate_admin = generate_admin
        self._on_bootstrap = on_bootstrap
        self.clock: Clock = clock or system_clock
        self.store: Store = store if store is not None else open_store(settings)
        self.hasher = hasher or hasher_from_settings(settings)
        self.metrics = Metrics()
        instrument_store(self.store, self.metrics.store_latency)
        # the hot paths' records (tokenward.server.cache): dropped on this process's writes
        self.user_cache: RecordCache[str, User] = RecordCache(ttl=settings.record_cache_ttl)
        self.client_cache: RecordCache[str, Client] = RecordCache(ttl=settings.record_cache_ttl)
        watch_writes(self.store, users=self.user_cache, clients=self.client_cache)
        self.health = StoreHealth(self.store.ping)
        self.users = UserService(self.store, hasher=self.hasher, clock=self.clock)
        self.clients = ClientRegistry(self.store, clock=self.clock, cache=self.client_cache)
        self.audiences = ServerAudiences(settings.issuer, settings.default_resource)
        self.authorizer = Authorizer(
            self.store, settings.issuer, settings.default_resource, settings.console_client_id
        )
        self.resources = ResourceRegistry(
            self.store,
            issuer=settings.issuer,
            default_resource=settings.default_resource,
            max_ttl=settings.access_token_ttl,
        )
        self.roles = RoleRegistry(self.store, issuer=settings.issuer)
        self._encryptions: dict[str, TokenEncryption] = {}
        self.trusted_proxies = parse_trusted_proxies(settings.trusted_proxies)
        self._credentials_check = family_check(self.store)
        # every feed subscriber of this process waits here: one store follower behind them
        self.feed = FeedFanout(self.store)
        self.feed_streams = StreamSlots(
            settings.feed_max_streams, settings.feed_max_streams_per_client
        )
        self.throttle = LoginThrottle(
            per_account=settings.login_limit_per_account,
            per_ip=settings.login_limit_per_ip,
            account_ceiling=settings.login_limit_per_account_ceiling,
            prefix=partial(
                address_prefix, v4=settings.address_prefix_v4, v6=settings.address_prefix_v6
            ),
            storage_url=storage_url_for(settings.store_url, settings.ratelimit_url),
            store=self.store,
        )
        # the risk engine (None with risk_enabled = false); made at start (its key is stored)
        self.risk: RiskEngine | None = None
        self._kek: bytes | None = None
        self._issuer: Issuer | None = None
        self._sessions: SessionManager | None = None
        self._verifier: Verifier | None = None
        self._mirror: RevocationMirror | None = None
        self._id_tokens: IdTokenService | None = None
        self.outbox = Outbox(
            self.store, clock=self.clock, allow_private=settings.outbound_allow_private
        )
        self.signins = SigninSessions(
            self.store,
            clock=self.clock,
            idle=settings.signin_idle_ttl,
            absolute=settings.signin_absolute_ttl,
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._key_lock = asyncio.Lock()
        self.csrf_secret = b""
        self.dpop = DPoPService(self)
        self.stopping = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    def begin_shutdown(self) -> None:
        """End streams and long-polls (see :func:`begin_shutdown`); thread- and signal-safe."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        loop.call_soon_threadsafe(self.stopping.set)

    async def until_stopping(self, awaitable: Awaitable[T]) -> T | None:
        """``await awaitable``, or ``None`` as soon as the process begins to shut down."""
        if self.stopping.is_set():
            if asyncio.iscoroutine(awaitable):
                awaitable.close()
            return None
        task = asyncio.ensure_future(awaitable)
        stop = asyncio.ensure_future(self.stopping.wait())
        try:
            await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if task.done():
            return task.result()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        return None

    # the objects routes use ----------------------------------------------------------------
    @property
    def issuer(self) -> Issuer:
        if self._issuer is None:
            raise ConfigurationError("the server is not started")
        return self._issuer

    @property
    def sessions(self) -> SessionManager:
        if self._sessions is None:
            raise ConfigurationError("the server is not started")
        return self._sessions

    @property
    def verifier(self) -> Verifier:
        if self._verifier is None:
            raise ConfigurationError("the server is not started")
        return self._verifier

    @property
    def id_tokens(self) -> IdTokenService:
        if self._id_tokens is None:
            raise ConfigurationError("the server is not started")
        return self._id_tokens

    @property
    def keyring(self) -> KeyRing:
        return self.issuer.keyring

    async def end_user_sessions(self, sub: str) -> int:
        """Log a user out everywhere: every refresh family (with its access tokens) and every
        sign-in session at this server. Returns the number of refresh families revoked."""
        from .routes.logout import notify_ended

        n = await self.sessions.revoke_subject(sub)
        await notify_ended(self, await self.signins.end_all(sub), reason="subject_revoked")
        return n

    # life cycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        s = self.settings
        self._loop = asyncio.get_running_loop()
        self.stopping = asyncio.Event()
        _LIVE.add(self)
        await self.store.open()
        self._kek = await kek_for_store(s, self.store)
        report = await bootstrap(
            s,
            self.store,
            clock=self.clock,
            hasher=self.hasher,
            kek=self._kek,
            generate_admin=self._generate_admin,
        )
        if self._on_bootstrap is not None:
            self._on_bootstrap(report)
        if report.clients_without_scopes:
            log.warning(
                "clients with no scopes get no tokens (tokenward client set ID --resources "
                "… --scopes …): %s",
                ", ".join(report.clients_without_scopes),
            )
        await self._report_usernames()
        ring, _ = await load_or_create_keyring(
            self.store, self._kek, alg=s.signing_alg, clock=self.clock
        )
        encryption = s.token_encryption()  # TOKENWARD_JWE: access tokens wrapped in JWE
        self._issuer = Issuer(
            ring,
            issuer=s.issuer,
            audience=s.default_resource,
            access_token_ttl=s.access_token_ttl,
            clock=self.clock,
            encryption=encryption,
        )
        # the one revocation mirror (the same class the guard uses), over the store's feed:
        # past revocation_max_staleness without a read, verification answers 503
        mirror = _Mirror(
            StoreFeedSource(self.store),
            clock=self.clock,
            max_staleness=s.revocation_max_staleness,
            users=self.user_cache,
        )
        denylist = mirror.denylist
        self._sessions = SessionManager(
            self._issuer,
            self.store,
            clock=self.clock,
            grace_period=s.refresh_grace_seconds,
            idle_timeout=s.refresh_idle_ttl,
            absolute_lifetime=s.refresh_absolute_ttl,
            retention_margin=s.retention_margin,
            # a verifier accepts a token until exp + leeway: its revocation must last as long
            revocation_margin=s.leeway,
            denylist=denylist,
            family_check=self._family_check,
        )
        await mirror.step()  # the snapshot, before the first request
        self._verifier = Verifier(
            ring,
            issuer=s.issuer,
            audience=self.audiences,
            leeway=s.leeway,
            clock=self.clock,
            revocation=mirror,
            encryption=encryption,
        )
        self._id_tokens = await IdTokenService.load(
            self.store, self._kek, issuer=s.issuer, ttl=s.access_token_ttl, clock=self.clock
        )
        self.csrf_secret = await self.store.get_or_create_secret(
            "csrf", lambda: secrets.token_bytes(32)
        )
        if s.risk_enabled:
            risk_key = await self.store.get_or_create_secret(
                "risk", lambda: secrets.token_bytes(32)
            )
            self.risk = RiskEngine(
                policy_from_settings(s),
                secret=risk_key,
                clock=self.clock,
                prefix=partial(address_prefix, v4=s.address_prefix_v4, v6=s.address_prefix_v6),
            )
        self.learn_resources(await self.authorizer.catalog())
        await self.dpop.start()
        self._mirror = mirror
        mirror.start()
        self._tasks = [
            asyncio.create_task(self._key_loop(), name="tokenward-keys"),
            asyncio.create_task(self._purge_loop(), name="tokenward-purge"),
            asyncio.create_task(self.outbox.run(), name="tokenward-outbox"),
        ]

    async def _family_check(self, family: Family) -> None:
        """Before every rotation: the credential watermark, then the risk engine."""
        await self._credentials_check(family)
        await refresh_check(self, family)

    async def stop(self) -> None:
        _LIVE.discard(self)
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks = []
        if self._mirror is not None:
            with contextlib.suppress(Exception):
                await self._mirror.stop()
            self._mirror = None
        await self.feed.close()
        await self.store.close()

    async def cached_user(self, username: str) -> User | None:
        """The user record for a hot path: at most ``record_cache_ttl`` old (see
        :mod:`tokenward.server.cache`)."""
        return await self.user_cache.get(username, self.users.get)

    # authorization ------------------------------------------------------------------------------
    def learn_resources(self, catalog: Catalog) -> None:
        """Let this server's endpoints accept tokens for every resource it knows of."""
        self.audiences.known = frozenset(catalog.resources)

    def access_spec(self, grant: Grant, catalog: Catalog) -> AccessSpec:
        """The access token of ``grant``: its scope, ``aud``, the resource's lifetime (never
        above the server's) and, for a resource with an encryption key, JWE to that key."""
        self.learn_resources(catalog)
        resource = catalog.resources[grant.resource]
        ttl = resource.access_token_ttl
        if ttl is not None:
            ttl = min(ttl, self.settings.access_token_ttl)
        encryption: Any = True
        if resource.encryption_key:
            encryption = self._encryption_for(resource.identifier, resource.encryption_key)
        return AccessSpec(grant.scope_text, grant.audience(), ttl, encryption)

    def _encryption_for(self, identifier: str, jwk: dict[str, Any]) -> TokenEncryption:
        import orjson

        from ..jwe import TokenEncryption

        cache_key = identifier + "\x00" + orjson.dumps(jwk, option=orjson.OPT_SORT_KEYS).decode()
        found = self._encryptions.get(cache_key)
        if found is None:
            if len(self._encryptions) > 256:
                self._encryptions.clear()
            found = self._encryptions[cache_key] = TokenEncryption.ecdh_es(jwk)
        return found

    # keys --------------------------------------------------------------------------------------
    def _use_ring(self, ring: KeyRing) -> None:
        if ring is not self.issuer.keyring:
            self.issuer.keyring = ring
            self.verifier.set_keys(ring)

    async def check_keys(self, *, force: bool = False) -> bool:
        """Reload the stored key set and rotate when due (or ``force``); True if rotated here."""
        assert self._kek is not None
        async with self._key_lock:
            ring, rotated = await rotate_if_due(
                self.store,
                self._kek,
                self.issuer.keyring,
                self.settings,
                clock=self.clock,
                force=force,
            )
            if rotated:
                # the ring object was rotated in place: refresh the verifier's key map
                self.verifier.set_keys(ring)
            self._use_ring(ring)
            return rotated

    async def _report_usernames(self) -> list[str]:
        """Warn about stored usernames from before the username rule: names that break it,
        and names equal after NFKC + case folding (each still signs in by its exact name)."""
        invalid, collisions = username_report(u.username for u in await self.store.list_users())
        lines = [f"username {n!r} breaks the rule ({USERNAME_RULE})" for n in invalid]
        lines += [
            f"usernames {', '.join(repr(n) for n in g)} are one name after case folding: "
            "each signs in by its exact name only; rename or remove all but one"
            for g in collisions
        ]
        for line in lines:
            log.warning("%s", line)
        return lines

    async def _key_loop(self) -> None:
        while True:
            await asyncio.sleep(_KEY_CHECK_INTERVAL)
            try:
                await self.check_keys()
            except TokenwardError as exc:
                log.warning("key check failed: %s", exc)
            with contextlib.suppress(TokenwardError):  # resources registered elsewhere
                self.learn_resources(await self.authorizer.catalog())

    async def _purge_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.purge_interval)
            try:
                await self.sessions.purge()
                await self.store.purge_records(now=self.clock.now())
                if self.risk is not None:  # what the risk engine keeps, past its keeping time
                    self.risk.purge()
            except TokenwardError as exc:
                log.warning("purge failed: %s", exc)
