"""Verifying tokens that arrive from outside: the issuer's keys, or introspection.

``TokenVerifier`` is the service around the pure checks of ``_verification``: it reads
the issuer's keys (``KeyCache``: cached, refetched once for an unknown ``kid``, single
flight, rate limited) and asks the introspection endpoint (RFC 7662) about tokens it
cannot check itself. It borrows the plugin's HTTP client, so nothing blocks the event
loop, and it never trusts a token on a failure: an unreachable key or introspection
endpoint is ``VerificationUnavailable`` (a 503), never a pass.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import httpx

from ._config import ClientCredentials, VerificationPolicy
from ._discovery import Discovery
from ._errors import InvalidToken, VerificationUnavailable
from ._metadata import ProviderMetadata
from ._protocol import introspection_request
from ._verification import (
    KeySet,
    TokenRules,
    VerifiedToken,
    access_token_profile,
    check_access_token,
    check_id_token,
    check_introspection,
    jws_header,
    verify_signature,
)

__all__ = ["KeyCache", "TokenVerifier"]

logger = logging.getLogger("fastapi_corpauth.verify")

_MAX_RESPONSE_BYTES = 256 * 1024
#: Tokens whose verified signature is remembered (about 2 KB each).
VERIFIED_TOKENS_REMEMBERED = 1024


class KeysNotPublished(VerificationUnavailable):
    """The issuer answers 404 for its JWKS URL: it publishes no keys there."""


class KeyCache:
    """The issuer's signing keys, fetched when first needed and kept ``keys_max_age``.

    A token signed with a key id the cache does not know makes it fetch the keys again
    (the issuer rotated them): the first such token does at once, later ones at most
    once every ``key_refetch_interval`` seconds whatever their number, so a flood of
    random ``kid`` values costs a handful of requests. A failed read is not retried
    within that interval either. Concurrent callers share one request. Once read, keys
    outlive a failed refresh: tokens keep verifying while the issuer is briefly
    unreachable.
    """

    def __init__(
        self,
        *,
        http: httpx.AsyncClient,
        policy: VerificationPolicy,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._http = http
        self._policy = policy
        self._clock = clock
        self._keys: KeySet | None = None
        self._url: str | None = None
        self._loaded_at = 0.0
        self._refetched_at: float | None = None
        self._failed_at: float | None = None
        self._fetch: asyncio.Task[KeySet] | None = None
        #: JWKS documents requested, for metrics and tests.
        self.requests_sent = 0

    def __repr__(self) -> str:
        return f"KeyCache(keys={self._keys!r})"

    async def keys(self, url: str) -> KeySet:
        """The keys published at ``url``, reading them when missing or too old.

        Raises:
            VerificationUnavailable: no keys were ever read and the URL cannot be read now
                (``KeysNotPublished`` when it answers 404).
        """
        if self._fetch is not None:
            return await self._read_or_keep(url)
        now = self._clock()
        known = self._keys if self._url == url else None
        if known is not None and now < self._loaded_at + self._policy.keys_max_age:
            return known
        if self._within(self._failed_at, now):
            if known is not None:
                return known
            raise VerificationUnavailable("the issuer's signing keys are unavailable")
        return await self._read_or_keep(url)

    async def refetch(self, url: str) -> KeySet:
        """Read the keys again because a token named an unknown key id (rate limited).

        Raises:
            VerificationUnavailable: the keys cannot be read now, so whether the issuer
                published that key cannot be told.
        """
        if self._fetch is None:
            now = self._clock()
            if self._within(self._failed_at, now):
                raise VerificationUnavailable("the issuer's signing keys are unavailable")
            if self._within(self._refetched_at, now):
                return await self.keys(url)
            self._refetched_at = now
        return await self._shared_read(url)

    def _within(self, moment: float | None, now: float) -> bool:
        return moment is not None and now < moment + self._policy.key_refetch_interval

    async def _shared_read(self, url: str) -> KeySet:
        """Read the keys, joining a read under way."""
        if self._fetch is None:
            self._fetch = asyncio.create_task(self._read(url))
            self._fetch.add_done_callback(self._fetch_done)
        return await asyncio.shield(self._fetch)

    async def _read_or_keep(self, url: str) -> KeySet:
        """Read the keys (joining a read under way); keep the old ones if it fails."""
        try:
            return await self._shared_read(url)
        except VerificationUnavailable:
            if self._keys is None or self._url != url:
                raise
            return self._keys

    def _fetch_done(self, task: asyncio.Task[KeySet]) -> None:
        self._fetch = None
        if not task.cancelled():
            task.exception()

    async def _read(self, url: str) -> KeySet:
        self.requests_sent += 1
        try:
            keys = await self._download(url)
        except VerificationUnavailable:
            self._failed_at = self._clock()
            raise
        if self._url != url or len(keys) != len(self._keys or ()):
            logger.info("read %d signing key(s) of the issuer", len(keys))
        self._keys, self._url = keys, url
        self._loaded_at, self._failed_at = self._clock(), None
        return keys

    async def _download(self, url: str) -> KeySet:
        try:
            response = await self._http.get(url, headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            logger.warning("the issuer's signing keys are unreachable (%s)", type(exc).__name__)
            raise VerificationUnavailable("the issuer's signing keys are unreachable") from exc
        if response.status_code == 404:
            raise KeysNotPublished("the issuer publishes no signing keys at its JWKS URL")
        try:
            if response.status_code != 200 or len(response.content) > _MAX_RESPONSE_BYTES:
                raise ValueError(f"HTTP {response.status_code}")
            return KeySet.from_jwks(
                json.loads(response.content), algorithms=self._policy.algorithms
            )
        except (ValueError, RecursionError) as exc:
            logger.warning("the issuer's signing keys could not be read (%s)", exc)
            raise VerificationUnavailable("the issuer's signing keys are unusable") from exc


class TokenVerifier:
    """Decides whether the bank vouches for a token, as an access token of one of
    ``client_ids``.

    ``policy.mode`` picks the method: ``jwt`` checks the signature against the issuer's
    keys and the claims locally; ``introspection`` asks the issuer (RFC 7662, with this
    client's credentials); ``auto`` checks a JWS locally and introspects anything else
    (an opaque token, a JWT of no access-token profile, a server that publishes no keys).
    """

    def __init__(
        self,
        *,
        http: httpx.AsyncClient,
        discovery: Discovery,
        credentials: ClientCredentials,
        policy: VerificationPolicy,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._http = http
        self._discovery = discovery
        self._credentials = credentials
        self._policy = policy
        self._clock = clock
        self.keys = KeyCache(http=http, policy=policy, clock=clock)
        # token -> (the key set that verified it, its claims): see ``_verified_claims``.
        self._verified: OrderedDict[str, tuple[KeySet, Mapping[str, Any]]] = OrderedDict()
        #: Introspection requests sent, for metrics and tests.
        self.introspections = 0
        #: Signatures checked (not answered from what was verified before), for tests.
        self.signatures_checked = 0

    def __repr__(self) -> str:
        return f"TokenVerifier(mode={self._policy.mode!r}, keys={self.keys!r})"

    async def verify_access_token(self, token: str, *, client_ids: frozenset[str]) -> VerifiedToken:
        """The verified token, if the issuer vouches for it as a customer's access token
        issued to one of ``client_ids``.

        Raises:
            InvalidToken: it does not (``reason`` says which check failed).
            VerificationUnavailable: the keys or the introspection endpoint are
                unreachable, so nothing can be decided now.
        """
        metadata = await self._discovery.metadata()
        rules = TokenRules(
            issuer=metadata.issuer, client_ids=client_ids, leeway=self._policy.leeway
        )
        mode = self._policy.mode
        if mode == "introspection":
            return await self._introspect(token, metadata, rules)
        header = jws_header(token)
        local = header is not None and metadata.jwks_uri is not None
        if mode == "auto" and not local:
            if metadata.introspection_endpoint is not None:
                return await self._introspect(token, metadata, rules)
        if header is None:
            raise InvalidToken("the token is not a signed JWT", reason="malformed")
        try:
            claims = await self._verified_claims(token, header, metadata)
        except KeysNotPublished:
            if mode == "auto" and metadata.introspection_endpoint is not None:
                return await self._introspect(token, metadata, rules)
            raise
        if mode == "auto" and metadata.introspection_endpoint is not None:
            if access_token_profile(header, claims) is None:
                # Signed by the issuer but of no known access-token profile: it alone
                # can say whether this is an access token.
                return await self._introspect(token, metadata, rules)
        return check_access_token(header, claims, rules=rules, now=self._clock())

    async def verify_id_token(
        self,
        id_token: str,
        *,
        access: VerifiedToken,
        access_token: str,
        nonce: str | None,
    ) -> None:
        """Check the ID token of a code-flow sign-in against ``access`` and ``nonce``.

        Raises:
            InvalidToken: not an ID token of this sign-in (``nonce``, ``id_token``...).
            VerificationUnavailable: the issuer's keys are unreachable.
        """
        metadata = await self._discovery.metadata()
        header = jws_header(id_token)
        if header is None:
            raise InvalidToken("the ID token is not a signed JWT", reason="id_token")
        claims = await self._verified_claims(id_token, header, metadata)
        check_id_token(
            header,
            claims,
            rules=TokenRules(issuer=metadata.issuer, client_ids=frozenset({access.client_id})),
            client_id=self._credentials.client_id,
            nonce=nonce,
            access_token=access_token,
            subject=access.subject,
            now=self._clock(),
        )

    async def _verified_claims(
        self, token: str, header: Mapping[str, Any], metadata: ProviderMetadata
    ) -> dict[str, Any]:
        algorithms = self._policy.algorithms
        if header.get("alg") not in algorithms:
            raise InvalidToken("the token's algorithm is not allowed", reason="algorithm")
        if metadata.jwks_uri is None:
            raise VerificationUnavailable("the issuer publishes no signing keys")
        keys = await self.keys.keys(metadata.jwks_uri)
        # A signature verified with these very keys holds as long as they are the keys
        # held (a re-read, a rotation or a refetch replaces the set): a customer's
        # backend sends the same token with every request, and checking its signature
        # again each time would cost more than the rest of the request. The claims are
        # still checked against the clock and the rules by the caller on every use.
        remembered = self._verified.get(token)
        if remembered is not None and remembered[0] is keys:
            self._verified.move_to_end(token)
            return dict(remembered[1])
        candidates = keys.candidates(header)
        if candidates is None:
            keys = await self.keys.refetch(metadata.jwks_uri)
            candidates = keys.candidates(header)
        if candidates is None:
            raise InvalidToken(
                "the token names a key the issuer does not publish", reason="unknown_key"
            )
        if not candidates:
            raise InvalidToken("the token's algorithm does not match its key", reason="algorithm")
        failure: InvalidToken | None = None
        for key in candidates:
            self.signatures_checked += 1
            try:
                claims = verify_signature(token, key, algorithms=algorithms)
            except InvalidToken as exc:
                failure = exc
                continue
            self._verified[token] = (keys, MappingProxyType(dict(claims)))
            if len(self._verified) > VERIFIED_TOKENS_REMEMBERED:
                self._verified.popitem(last=False)
            return claims
        assert failure is not None
        raise failure

    async def _introspect(
        self, token: str, metadata: ProviderMetadata, rules: TokenRules
    ) -> VerifiedToken:
        url = metadata.introspection_endpoint
        if url is None:
            raise VerificationUnavailable("the issuer offers no introspection endpoint")
        request = introspection_request(url=url, credentials=self._credentials, token=token)
        self.introspections += 1
        try:
            response = await self._http.send(request)
        except httpx.HTTPError as exc:
            logger.warning("the introspection endpoint is unreachable (%s)", type(exc).__name__)
            raise VerificationUnavailable("the introspection endpoint is unreachable") from exc
        answer = _json_object(response)
        if response.status_code != 200 or answer is None:
            logger.warning(
                "the introspection endpoint answered HTTP %d%s",
                response.status_code,
                " (check the client credentials)"
                if response.status_code in (400, 401, 403)
                else "",
            )
            raise VerificationUnavailable("the introspection endpoint failed")
        return check_introspection(answer, rules=rules, now=self._clock())


def _json_object(response: httpx.Response) -> dict[str, Any] | None:
    if len(response.content) > _MAX_RESPONSE_BYTES:
        return None
    try:
        data = json.loads(response.content)
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None
