"""Measure 2: ``Depends(corpauth.current_user)`` with a valid session, against the bare
endpoint and against Starlette's ``SessionMiddleware`` holding the same user record."""

from __future__ import annotations

import time

import httpx

from .common import (
    SESSION_SECRET,
    Devserver,
    Profile,
    Report,
    alternate,
    load_figure,
    load_summary,
    paired_ratio,
    processes,
    relayed_callback,
    start_devserver,
    start_uvicorn,
    throughput,
)

COOKIE = "corpauth_session"


def sign_in(app: str, dev: Devserver, client: httpx.Client | None = None) -> str:
    """One sign-in through the plugin's router, as the fragment relay does it.

    ``GET /auth/login`` sets the browser cookie and names the state; the relay page then
    POSTs the fragment with the ``corpauth_relay=fragment`` marker. The access token is a
    real one from the devserver. Returns the signed session cookie value.
    """
    token = dev.user_token()
    return sign_in_with(app, token, client)


def sign_in_with(app: str, token: dict[str, object], client: httpx.Client | None = None) -> str:
    own = client is None
    http = client or httpx.Client(timeout=10)
    try:
        http.cookies.clear()
        login = http.get(app + "/auth/login?next=/me")
        done = http.post(app + "/auth/callback", data=relayed_callback(login, token))
        if done.status_code != 303:
            raise RuntimeError(f"/auth/callback answered {done.status_code}")
        cookie = http.cookies.get(COOKIE)
        if cookie is None:
            raise RuntimeError("no session cookie after the callback")
        return cookie
    finally:
        if own:
            http.close()


def run(profile: Profile, report: Report) -> None:
    rounds = profile.pick(7, 3)
    seconds = profile.pick(3, 1)
    with processes() as started:
        dev = start_devserver(started, token_lifetime=3600)
        app = start_uvicorn(started, "bench.apps:plugin_app", env=dev.corpauth_env())
        starlette = start_uvicorn(
            started,
            "bench.apps:starlette_session_app",
            env={"BENCH_SESSION_SECRET": SESSION_SECRET},
        )
        token = dev.user_token()
        cookie = sign_in_with(app.url, token)
        me = httpx.get(app.url + "/me", headers={"Cookie": f"{COOKIE}={cookie}"}, timeout=10)
        me.raise_for_status()
        # The Starlette baseline keeps the same user record in its signed cookie.
        record = {
            "access_token": token["access_token"],
            "expires_at": time.time() + float(token["expires_in"]),
            "scope": str(token["scope"]).split(),
            "profile": {"preferred_username": "service-account-corp-app"},
        }
        with httpx.Client(timeout=10) as http:
            http.post(starlette.url + "/set", json=record).raise_for_status()
            st_cookie = http.cookies["session"]
            http.get(starlette.url + "/session").raise_for_status()
        print(
            f"  cookie sizes: corpauth_session {len(cookie)} B, "
            f"Starlette session {len(st_cookie)} B"
        )
        variants = {
            "bare": lambda: throughput(app.url + "/bare", server_pid=app.pid, seconds=seconds),
            "current_user": lambda: throughput(
                app.url + "/me",
                server_pid=app.pid,
                seconds=seconds,
                headers={"Cookie": f"{COOKIE}={cookie}"},
            ),
            "SessionMiddleware": lambda: throughput(
                starlette.url + "/session",
                server_pid=starlette.pid,
                seconds=seconds,
                headers={"Cookie": f"session={st_cookie}"},
            ),
        }
        for run_once in variants.values():
            run_once()  # warm-up
        results = alternate(variants, rounds=rounds)
    for name, loads in results.items():
        print(load_summary(name, loads))
    bare, user, mw = (results[n] for n in ("bare", "current_user", "SessionMiddleware"))
    report.add(
        "2. current_user (valid session) vs bare endpoint",
        load_figure(user),
        load_figure(bare),
        paired_ratio(user, bare),
        "–",
        None,
    )
    r = paired_ratio(user, mw)
    report.add(
        "2. current_user vs Starlette SessionMiddleware (same user record)",
        load_figure(user),
        load_figure(mw),
        r,
        "≥ 1.00 (no slower; 2 % noise allowed)",
        r >= 0.98,
    )
