"""Where development mode may run: on this machine only."""

from __future__ import annotations

import ipaddress


def on_this_machine(host: str | None) -> bool:
    """Whether ``host`` names this machine (localhost or a loopback address)."""
    if not host:
        return False
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
