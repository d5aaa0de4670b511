from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from itsdangerous import BadData, SignatureExpired, URLSafeTimedSerializer
from pydantic import SecretStr

from fastapi_corpauth._errors import CorpAuthError
from fastapi_corpauth._signing import (
    CookieExpired,
    CookieInvalid,
    CookieSigner,
    new_session_id,
)
from tests.support import FakeClock

SALT = "fastapi_corpauth.session"
OLD_KEY = "old-key-0123456789abcdef"
NEW_KEY = "new-key-fedcba9876543210"
SESSION_ID = "Zm9vYmFyLXNlc3Npb24taWQtZm9yLXRlc3Rz_-"
URL_SAFE = re.compile(r"^[A-Za-z0-9_.-]+$")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_signer(
    clock: FakeClock,
    keys: Sequence[str | SecretStr] = (OLD_KEY,),
    *,
    salt: str = SALT,
    max_age: float = 3600,
) -> CookieSigner:
    return CookieSigner(secret_keys=keys, salt=salt, max_age=max_age, clock=clock)


def invalid_cause(signer: CookieSigner, value: str) -> BaseException | None:
    with pytest.raises(CookieInvalid) as info:
        signer.unsign(value)
    assert value not in str(info.value) or len(value) < 3
    assert signer.load(value) is None
    return info.value.__cause__


def test_round_trip(clock: FakeClock) -> None:
    signer = make_signer(clock)
    signed = signer.sign(SESSION_ID)
    assert signed != SESSION_ID
    assert URL_SAFE.match(signed)
    assert signer.unsign(signed) == SESSION_ID
    assert signer.load(signed) == SESSION_ID


def test_signature_is_sha256(clock: FakeClock) -> None:
    signature = make_signer(clock).sign(SESSION_ID).rsplit(".", 1)[1]
    assert len(signature) == 43  # 32 bytes, base64 without padding (SHA-1 would be 27)


def test_new_session_id_is_random_and_url_safe() -> None:
    ids = {new_session_id() for _ in range(100)}
    assert len(ids) == 100
    for session_id in ids:
        assert len(session_id) == 43
        assert URL_SAFE.match(session_id)


def test_rotation(clock: FakeClock) -> None:
    signed_old = make_signer(clock, [OLD_KEY]).sign(SESSION_ID)
    rotated = make_signer(clock, [OLD_KEY, NEW_KEY])
    assert rotated.unsign(signed_old) == SESSION_ID  # nobody is signed out

    signed_new = rotated.sign(SESSION_ID)  # the newest key signs
    assert make_signer(clock, [NEW_KEY]).unsign(signed_new) == SESSION_ID
    invalid_cause(make_signer(clock, [OLD_KEY]), signed_new)

    retired = make_signer(clock, [NEW_KEY])
    assert isinstance(invalid_cause(retired, signed_old), BadData)


def test_secret_str_and_str_keys_are_the_same_key(clock: FakeClock) -> None:
    signed = make_signer(clock, [SecretStr(OLD_KEY)]).sign(SESSION_ID)
    assert make_signer(clock, [OLD_KEY]).unsign(signed) == SESSION_ID


def test_wrong_salt_is_invalid(clock: FakeClock) -> None:
    signed = make_signer(clock, salt="fastapi_corpauth.state").sign(SESSION_ID)
    invalid_cause(make_signer(clock), signed)


def test_forged_with_another_key_is_invalid(clock: FakeClock) -> None:
    forged = make_signer(clock, ["attacker-key"]).sign(SESSION_ID)
    invalid_cause(make_signer(clock), forged)


def test_tampered_anywhere_is_invalid(clock: FakeClock) -> None:
    signer = make_signer(clock)
    signed = signer.sign(SESSION_ID)
    payload, timestamp, signature = signed.split(".")

    def change(part: str) -> str:
        # A middle character: the last one of a base64 part may carry ignored bits.
        middle = len(part) // 2
        return part[:middle] + ("A" if part[middle] != "A" else "B") + part[middle + 1 :]

    tampered = [
        ".".join([change(payload), timestamp, signature]),
        ".".join([payload, change(timestamp), signature]),
        ".".join([payload, timestamp, change(signature)]),
        # Another session id with the original signature.
        ".".join([make_signer(clock, ["x"]).sign("other").split(".")[0], timestamp, signature]),
    ]
    for value in tampered:
        assert value != signed
        assert isinstance(invalid_cause(signer, value), BadData)


@pytest.mark.parametrize("cut", [1, 10, 44, 50])
def test_truncated_is_invalid(clock: FakeClock, cut: int) -> None:
    signer = make_signer(clock)
    invalid_cause(signer, signer.sign(SESSION_ID)[:-cut])


@pytest.mark.parametrize(
    "garbage",
    ["", ".", "..", "...", "abc", "a.b", "a.b.c", "%%%.!!!.???", "null", "e30.AAAA.AAAA"],
)
def test_garbage_is_invalid(clock: FakeClock, garbage: str) -> None:
    assert isinstance(invalid_cause(make_signer(clock), garbage), BadData)


def test_non_ascii_is_invalid(clock: FakeClock) -> None:
    signer = make_signer(clock)
    signed = signer.sign(SESSION_ID)
    # Rejected before itsdangerous sees it, like an oversized value.
    assert invalid_cause(signer, signed[:5] + "ü" + signed[6:]) is None
    assert invalid_cause(signer, signed + "\u200b") is None


def test_oversized_is_rejected_before_parsing(clock: FakeClock) -> None:
    signer = make_signer(clock)
    oversized = signer.sign("".join(new_session_id() for _ in range(100)))  # incompressible
    assert len(oversized) > 4096
    assert invalid_cause(signer, oversized) is None  # itsdangerous never saw it


def test_signed_value_that_is_not_a_string_is_invalid() -> None:
    serializer = URLSafeTimedSerializer(
        [OLD_KEY], salt=SALT, signer_kwargs={"digest_method": hashlib.sha256}
    )
    signer = make_signer(FakeClock(time.time()))  # the serializer signs at the real time
    assert signer.unsign(serializer.dumps("genuine")) == "genuine"  # same scheme...
    invalid_cause(signer, serializer.dumps({"sid": SESSION_ID}))  # ...but not a str


def test_expiry_follows_the_injected_clock(clock: FakeClock) -> None:
    signed_at = clock.now
    signer = make_signer(clock, max_age=60)
    signed = signer.sign(SESSION_ID)
    clock.advance(60)
    assert signer.unsign(signed) == SESSION_ID
    clock.advance(1)
    with pytest.raises(CookieExpired) as info:
        signer.unsign(signed)
    error = info.value
    assert not isinstance(error, CookieInvalid)
    assert isinstance(error, CorpAuthError)
    assert isinstance(error.__cause__, SignatureExpired)
    assert error.signed_at == signed_at  # the fake clock also drove signing
    assert signed not in str(error)
    assert signer.load(signed) is None


def test_fractional_max_age(clock: FakeClock) -> None:
    signer = make_signer(clock, max_age=1.5)
    signed = signer.sign(SESSION_ID)
    clock.advance(1)
    assert signer.unsign(signed) == SESSION_ID
    clock.advance(1)
    with pytest.raises(CookieExpired):
        signer.unsign(signed)


def test_signed_in_the_future_counts_as_expired(clock: FakeClock) -> None:
    signer = make_signer(clock)
    clock.advance(120)
    signed = signer.sign(SESSION_ID)
    clock.advance(-120)
    with pytest.raises(CookieExpired):
        signer.unsign(signed)


def test_error_codes() -> None:
    assert CookieExpired.code == "session_expired"
    assert CookieInvalid.code == "session_invalid"
    assert issubclass(CookieInvalid, CorpAuthError)


def test_load_missing_is_none(clock: FakeClock) -> None:
    assert make_signer(clock).load(None) is None


def test_repr_hides_keys(clock: FakeClock) -> None:
    plain = make_signer(clock, [OLD_KEY, NEW_KEY])
    secret = make_signer(clock, [SecretStr(OLD_KEY), SecretStr(NEW_KEY)])
    for signer in (plain, secret):
        text = repr(signer) + str(signer)
        assert repr(signer) == "CookieSigner(keys=2, salt='fastapi_corpauth.session')"
        for key in (OLD_KEY, NEW_KEY, OLD_KEY[:8], NEW_KEY[-8:]):
            assert key not in text


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"secret_keys": []}, "at least one key"),
        ({"secret_keys": [OLD_KEY, ""]}, "empty key"),
        ({"secret_keys": [SecretStr("")]}, "empty key"),
        ({"secret_keys": OLD_KEY}, "list of keys"),
        ({"secret_keys": SecretStr(OLD_KEY)}, "list of keys"),
        ({"salt": ""}, "salt"),
        ({"max_age": 0}, "max_age"),
        ({"max_age": -1}, "max_age"),
        ({"max_age": float("nan")}, "max_age"),
    ],
)
def test_rejects_bad_configuration(kwargs: dict[str, Any], match: str) -> None:
    arguments: dict[str, Any] = {"secret_keys": [OLD_KEY], "salt": SALT, "max_age": 60}
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=match) as info:
        CookieSigner(**arguments)
    assert OLD_KEY not in str(info.value)


@hypothesis_settings(database=None, max_examples=300)
@given(st.text(max_size=5000))
def test_arbitrary_input_is_invalid_never_a_crash(value: str) -> None:
    signer = CookieSigner(secret_keys=[OLD_KEY], salt=SALT, max_age=60, clock=FakeClock())
    with pytest.raises(CookieInvalid):
        signer.unsign(value)
    assert signer.load(value) is None


@hypothesis_settings(database=None, max_examples=300)
@given(st.integers(min_value=0), st.characters(codec="ascii"))
def test_no_one_character_change_yields_another_value(position: int, replacement: str) -> None:
    signer = CookieSigner(secret_keys=[OLD_KEY], salt=SALT, max_age=60, clock=FakeClock())
    signed = signer.sign(SESSION_ID)
    position %= len(signed)
    value = signed[:position] + replacement + signed[position + 1 :]
    # Either rejected, or (a change in the ignored low bits of a base64 part's last
    # character) the very same session id: never another value.
    assert signer.load(value) in (None, SESSION_ID)


def test_a_remembered_cookie_still_expires() -> None:
    """Verified cookies are remembered for speed, but their age is checked every time."""
    from tests.support import FakeClock

    clock = FakeClock()
    signer = CookieSigner(secret_keys=["k" * 32], salt="s", max_age=60, clock=clock)
    cookie = signer.sign("session-id")
    assert signer.unsign(cookie) == "session-id"
    clock.advance(30)
    assert signer.unsign(cookie) == "session-id"  # served from the verified cache
    clock.advance(31)
    with pytest.raises(CookieExpired):
        signer.unsign(cookie)
    with pytest.raises(CookieExpired):
        signer.unsign(cookie)


def test_a_remembered_cookie_is_not_valid_for_another_signer() -> None:
    from tests.support import FakeClock

    clock = FakeClock()
    old = CookieSigner(secret_keys=["k" * 32], salt="s", max_age=60, clock=clock)
    new = CookieSigner(secret_keys=["n" * 32], salt="s", max_age=60, clock=clock)
    cookie = old.sign("session-id")
    assert old.unsign(cookie) == "session-id"
    with pytest.raises(CookieInvalid):
        new.unsign(cookie)


def test_only_the_canonical_spelling_verifies(clock: FakeClock) -> None:
    """itsdangerous also decodes padded base64 and non-zero spare bits: both are refused."""
    signer = make_signer(clock)
    signed = signer.sign(SESSION_ID)
    assert isinstance(invalid_cause(signer, signed + "="), BadData)
    assert isinstance(invalid_cause(signer, signed + "=="), BadData)
    # The signature's last character carries two spare bits; flipping one keeps the
    # decoded bytes, and must still not verify.
    last = signed[-1]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    flipped = alphabet[alphabet.index(last) ^ 1]
    invalid_cause(signer, signed[:-1] + flipped)
    assert signer.unsign(signed) == SESSION_ID


class CountingLoads:
    """Counts how often the signer really verifies (HMAC and decoding) a cookie."""

    def __init__(self, signer: CookieSigner) -> None:
        self.calls = 0
        serializer = signer._serializer
        loads = serializer.loads

        def counting(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return loads(*args, **kwargs)

        serializer.loads = counting  # type: ignore[method-assign]


def test_a_verified_cookie_is_not_verified_again_within_its_age(clock: FakeClock) -> None:
    signer = make_signer(clock, max_age=60)
    verifications = CountingLoads(signer)
    cookie = signer.sign(SESSION_ID)
    assert signer.unsign(cookie) == SESSION_ID
    assert signer.unsign(cookie) == SESSION_ID  # age 0
    clock.advance(60)
    assert signer.unsign(cookie) == SESSION_ID  # age max_age, the last valid second
    assert verifications.calls == 1
    clock.advance(1)
    with pytest.raises(CookieExpired):
        signer.unsign(cookie)
    assert verifications.calls == 2


def test_the_cache_of_verified_cookies_is_bounded_and_least_recently_used(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("fastapi_corpauth._signing.VERIFIED_CACHE_SIZE", 2)
    signer = make_signer(clock)
    verifications = CountingLoads(signer)
    first, second, third = (signer.sign(f"session-{n}") for n in range(3))
    signer.unsign(first)
    signer.unsign(second)
    signer.unsign(first)  # now the most recently used
    signer.unsign(second)
    signer.unsign(first)
    assert verifications.calls == 2  # both fit
    signer.unsign(third)  # evicts the least recently used: second
    assert verifications.calls == 3
    signer.unsign(first)
    signer.unsign(third)
    assert verifications.calls == 3
    signer.unsign(second)
    assert verifications.calls == 4


def test_an_expired_cookie_leaves_the_cache(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("fastapi_corpauth._signing.VERIFIED_CACHE_SIZE", 2)
    signer = make_signer(clock, max_age=10)
    verifications = CountingLoads(signer)
    older = signer.sign("older")
    clock.advance(5)
    younger = signer.sign("younger")
    signer.unsign(younger)
    signer.unsign(older)  # cache, least recent first: younger, older
    clock.advance(7)  # older is 12 s old, younger 7 s
    with pytest.raises(CookieExpired):
        signer.unsign(older)  # found, too old: forgotten
    signer.unsign(signer.sign("newest"))  # fits beside younger: nothing evicted
    calls = verifications.calls
    assert signer.unsign(younger) == "younger"
    assert verifications.calls == calls


def test_cookie_expired_keeps_its_message() -> None:
    error = CookieExpired("session cookie expired", signed_at=5.0)
    assert str(error) == "session cookie expired"
    assert repr(error) == "CookieExpired('session cookie expired')"
    assert error.signed_at == 5.0


def test_a_max_age_below_one_second_is_allowed(clock: FakeClock) -> None:
    # Timestamps are whole seconds: a cookie is valid in the second it was signed.
    signer = make_signer(clock, max_age=0.5)
    signed = signer.sign(SESSION_ID)
    assert signer.unsign(signed) == SESSION_ID
    clock.advance(1)
    with pytest.raises(CookieExpired):
        signer.unsign(signed)
