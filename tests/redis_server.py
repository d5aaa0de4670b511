"""Real Redis for the tests: one server, a six-node cluster, or Sentinel with a replica.

Every process runs on a free loopback port, without persistence, and is always stopped.
``scripts/test`` installs Debian's ``redis-server`` (Sentinel is the same binary with
``--sentinel``). Without it the Redis tests are skipped with a message, except under CI
(``CI`` set), where a missing server fails.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import ExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import redis

from fastapi_corpauth._redis import RedisLayer

BINARY = "redis-server"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _free_ports(n: int) -> list[int]:
    """``n`` distinct free loopback ports: all held open while chosen, so none twice."""
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(n)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


def require_binary() -> str:
    """The redis-server path; skips the test (fails it under CI) when it is missing."""
    import pytest  # here: bench/ uses this module too, without pytest installed

    path = shutil.which(BINARY)
    if path is None:
        message = "redis-server is not installed (./scripts/test installs Debian's package)"
        if os.environ.get("CI"):
            pytest.fail(message + "; CI must run the Redis tests")
        pytest.skip(message)
    return path


class RedisServer:
    """One redis-server process that can be stopped, killed, paused and started again.

    ``args`` are added to the command line (cluster options, ``--replicaof``); with
    ``sentinel_config`` it runs as a Sentinel with that configuration (Sentinel writes
    its state back into the file, which lives in the server's own directory).
    """

    def __init__(
        self,
        binary: str,
        port: int | None = None,
        *,
        args: Sequence[str] = (),
        sentinel_config: str | None = None,
    ) -> None:
        self.binary = binary
        self.port = port or _free_port()
        self.args = list(args)
        self.process: subprocess.Popen[bytes] | None = None
        self._dir = tempfile.mkdtemp(prefix="corpauth-redis-")
        self._config: str | None = None
        if sentinel_config is not None:
            self._config = str(Path(self._dir) / "sentinel.conf")
            Path(self._config).write_text(sentinel_config, encoding="utf-8")

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2)

    def start(self) -> None:
        assert self.process is None, "already running"
        config = [self._config, "--sentinel"] if self._config else []
        self.process = subprocess.Popen(
            [
                self.binary,
                *config,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self._dir,
                "--daemonize",
                "no",
                "--loglevel",
                "warning",
                # A replica's sync starts at once (the default waits 5 s for others).
                "--repl-diskless-sync-delay",
                "0",
                *self.args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with code {self.process.returncode}")
            try:
                with self.client() as client:
                    pid = int(client.info("server")["process_id"])
                if pid != self.process.pid:  # another program took the port meanwhile
                    raise RuntimeError(f"port {self.port} is answered by another server")
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            os.kill(process.pid, signal.SIGCONT)  # in case it was paused
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def wait_replicated(self) -> None:
        """Until every replica of this master has all that was written to it so far."""
        with self.client() as client:
            written = int(client.info("replication")["master_repl_offset"])

            def caught_up() -> bool:
                info = client.info("replication")
                replicas = [v for k, v in info.items() if k.startswith("slave")]
                return bool(replicas) and all(int(r["offset"]) >= written for r in replicas)

            wait_for(caught_up, "replication to the replicas")

    def kill(self) -> None:
        """Crash the server (SIGKILL): no shutdown, as when its machine dies."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Freeze the server (SIGSTOP): connections hang instead of being refused."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(self.process.pid, signal.SIGCONT)

    def flush(self) -> None:
        with self.client() as client:
            client.flushall()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)


@contextmanager
def redis_server() -> Iterator[RedisServer]:
    """A started redis-server, stopped and cleaned up when the block ends."""
    server = RedisServer(require_binary())
    try:
        server.start()
        yield server
    finally:
        server.close()


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    """Poll ``condition`` (errors count as "not yet") until it holds, or fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return
        except (redis.RedisError, OSError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"Redis set-up: {what} did not happen within {timeout:.0f}s")
        time.sleep(0.05)


#: Milliseconds without an answer before a cluster node (or, for Sentinel, a master)
#: counts as failed; low, so that a failover in a test takes seconds.
NODE_TIMEOUT_MS = 1000
SLOTS = 16384


class RedisClusterServers:
    """Six cluster nodes on loopback: three masters with one replica each.

    The cluster bus port of each node is chosen free and set explicitly (the default,
    port + 10000, overflows for high ports). The cluster is built with ``CLUSTER``
    commands rather than ``redis-cli --cluster create``, which waits in one-second
    steps. ``kill`` crashes a node; ``heal`` restarts what was killed (it rejoins as a
    replica of its promoted replica) and waits until the cluster is whole again.
    """

    def __init__(self, binary: str) -> None:
        ports = _free_ports(12)
        self.nodes = [
            RedisServer(
                binary,
                ports[i],
                args=[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    str(NODE_TIMEOUT_MS),
                    "--cluster-port",
                    str(ports[6 + i]),
                ],
            )
            for i in range(6)
        ]
        self.killed: list[RedisServer] = []

    def urls(self) -> list[str]:
        return [f"redis://127.0.0.1:{node.port}/0" for node in self.nodes]

    @property
    def url(self) -> str:
        return self.urls()[0]

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        clients = [node.client() for node in self.nodes]
        try:
            masters, replicas = clients[:3], clients[3:]
            for i, client in enumerate(masters):
                _command(client, "CLUSTER ADDSLOTSRANGE", i * SLOTS // 3, (i + 1) * SLOTS // 3 - 1)
            for epoch, client in enumerate(clients, start=1):
                _command(client, "CLUSTER SET-CONFIG-EPOCH", epoch)
            for node in self.nodes[1:]:
                _command(clients[0], "CLUSTER MEET", "127.0.0.1", node.port, _bus_port(node))
            wait_for(
                lambda: all(_known_nodes(client) == 6 for client in clients),
                "the six nodes meeting",
            )
            for master, replica in zip(masters, replicas, strict=True):
                _command(replica, "CLUSTER REPLICATE", _command(master, "CLUSTER MYID"))
        finally:
            for client in clients:
                client.close()
        self.wait_healthy()

    def wait_healthy(self, timeout: float = 20.0) -> None:
        """Until every node is up, agrees the cluster is ok, and each master has a replica."""
        wait_for(self._healthy, "a healthy cluster (3 masters, 3 replicas)", timeout)

    def _healthy(self) -> bool:
        masters = 0
        for node in self.nodes:
            if node.process is None:
                return False
            with node.client() as client:
                info = client.cluster("info")
                if info["cluster_state"] != "ok" or int(info["cluster_known_nodes"]) != 6:
                    return False
                if any("fail" in node["flags"] for node in _cluster_nodes(client)):
                    return False
                replication = client.info("replication")
                if replication["role"] == "master":
                    masters += 1
                    if replication["connected_slaves"] != 1:
                        return False
                elif replication["master_link_status"] != "up":
                    return False
        return masters == 3

    def masters(self) -> list[RedisServer]:
        """The nodes that are masters now (a failover swaps a master and its replica)."""
        masters = []
        for node in self.nodes:
            with node.client() as client:
                if client.info("replication")["role"] == "master":
                    masters.append(node)
        return masters

    def master_for(self, key: str) -> RedisServer:
        """The node that holds ``key``'s slot now."""
        with self.nodes[0].client() as client:
            slot = int(_command(client, "CLUSTER KEYSLOT", key))
            for low, high, master, *_ in _command(client, "CLUSTER SLOTS"):
                if low <= slot <= high:
                    port = int(master[1])
                    return next(node for node in self.nodes if node.port == port)
        raise LookupError(key)

    def kill(self, node: RedisServer) -> None:
        node.kill()
        self.killed.append(node)

    def heal(self) -> None:
        while self.killed:
            self.killed.pop().start()
        self.wait_healthy()

    def flush(self) -> None:
        for node in self.nodes:
            with node.client() as client:
                if client.info("replication")["role"] == "master":
                    client.flushall()

    def close(self) -> None:
        for node in self.nodes:
            node.close()


class SentinelServers:
    """A master, its replica and three Sentinels monitoring them as ``SERVICE``.

    ``kill_master`` crashes whichever server is the master now; the Sentinels agree it
    is down after ``NODE_TIMEOUT_MS`` and promote the replica. ``heal`` restarts the
    killed server as a replica of the new master and waits until the Sentinels see it.
    """

    SERVICE = "corpauth"

    def __init__(self, binary: str) -> None:
        self.binary = binary
        ports = _free_ports(5)
        first = RedisServer(binary, ports[0])
        self.servers = [
            first,
            RedisServer(binary, ports[1], args=["--replicaof", "127.0.0.1", str(first.port)]),
        ]
        config = (
            "bind 127.0.0.1\n"
            f"sentinel monitor {self.SERVICE} 127.0.0.1 {first.port} 2\n"
            f"sentinel down-after-milliseconds {self.SERVICE} {NODE_TIMEOUT_MS}\n"
            f"sentinel failover-timeout {self.SERVICE} 5000\n"
        )
        self.sentinels = [RedisServer(binary, port, sentinel_config=config) for port in ports[2:]]
        self.killed: list[RedisServer] = []

    @property
    def addresses(self) -> list[tuple[str, int]]:
        return [sentinel.address for sentinel in self.sentinels]

    @property
    def sentinels_setting(self) -> str:
        """The value for ``CORPAUTH_REDIS_SENTINELS``."""
        return ",".join(f"{host}:{port}" for host, port in self.addresses)

    def start(self) -> None:
        for server in self.servers:
            server.start()
        wait_for(lambda: self._link_up(self.servers[1]), "the replica's first sync")
        for sentinel in self.sentinels:
            sentinel.start()
        self.wait_healthy()

    def master(self) -> RedisServer:
        """The server the Sentinels name as master now."""
        with self.sentinels[0].client() as client:
            _, port = client.sentinel_get_master_addr_by_name(self.SERVICE)
        return next(server for server in self.servers if server.port == int(port))

    def wait_healthy(self, timeout: float = 20.0) -> None:
        """Until each Sentinel knows the other two, the master and one live replica."""
        wait_for(self._healthy, "Sentinel seeing a master, a replica and each other", timeout)

    def _healthy(self) -> bool:
        if any(server.process is None for server in self.servers):
            return False
        masters = set()
        for sentinel in self.sentinels:
            with sentinel.client() as client:
                state = client.sentinel_master(self.SERVICE)
                replicas = client.sentinel_slaves(self.SERVICE)
            masters.add(int(state["port"]))
            if state["num-other-sentinels"] != 2 or state["is_sdown"] or state["is_odown"]:
                return False
            if state.get("failover_state") not in (None, "", "none"):
                return False
            live = [r for r in replicas if not (r["is_sdown"] or r["is_odown"])]
            if len(live) != 1 or live[0]["master-link-status"] != "ok":
                return False
        if len(masters) != 1:
            return False
        (port,) = masters
        return self._link_up(next(s for s in self.servers if s.port != port))

    @staticmethod
    def _link_up(replica: RedisServer) -> bool:
        with replica.client() as client:
            info = client.info("replication")
        return bool(info["role"] == "slave" and info["master_link_status"] == "up")

    def kill_server(self, server: RedisServer) -> None:
        server.kill()
        self.killed.append(server)

    def kill_master(self) -> RedisServer:
        master = self.master()
        self.kill_server(master)
        return master

    def wait_failover(self, old: RedisServer, timeout: float = 20.0) -> None:
        """Until the Sentinels name another master than ``old``, and it accepts writes."""

        def promoted() -> bool:
            master = self.master()
            if master is old:
                return False
            with master.client() as client:
                return bool(client.info("replication")["role"] == "master")

        wait_for(promoted, "the Sentinel failover", timeout)

    def heal(self) -> None:
        while self.killed:
            server = self.killed.pop()
            master = self.master()
            server.args = ["--replicaof", "127.0.0.1", str(master.port)]
            server.start()
        self.wait_healthy()

    def flush(self) -> None:
        with self.master().client() as client:
            client.flushall()

    def close(self) -> None:
        for server in (*self.sentinels, *self.servers):
            server.close()


def _command(client: redis.Redis, *args: Any) -> Any:
    execute: Any = client.execute_command  # untyped in redis-py
    return execute(*args)


def _bus_port(node: RedisServer) -> int:
    return int(node.args[node.args.index("--cluster-port") + 1])


def _cluster_nodes(client: redis.Redis) -> list[dict[str, Any]]:
    nodes: dict[str, dict[str, Any]] = _command(client, "CLUSTER NODES")
    return list(nodes.values())


def _known_nodes(client: redis.Redis) -> int:
    flags = [node["flags"] for node in _cluster_nodes(client)]
    return sum(1 for f in flags if "handshake" not in f and "noaddr" not in f)


@contextmanager
def redis_cluster() -> Iterator[RedisClusterServers]:
    """A started six-node cluster, stopped and cleaned up when the block ends."""
    cluster = RedisClusterServers(require_binary())
    with ExitStack() as stack:
        stack.callback(cluster.close)
        cluster.start()
        yield cluster


@contextmanager
def redis_sentinel() -> Iterator[SentinelServers]:
    """A started master, replica and three Sentinels, stopped when the block ends."""
    servers = SentinelServers(require_binary())
    with ExitStack() as stack:
        stack.callback(servers.close)
        servers.start()
        yield servers


#: Redis command timeout for tests about behaviour, not about timeouts: generous, so
#: that a loaded machine (the cluster and Sentinel clients do more work per command
#: than the one-server client) does not turn a test into an outage.
BEHAVIOUR_TIMEOUT = 2.0


@dataclass(frozen=True)
class RedisTarget:
    """One Redis deployment as the settings name it: a mode and the ways in.

    ``urls`` are the entry points (every node of a cluster, so that processes can
    each enter through another); ``raw`` gives a synchronous redis-py client that sees
    every key (a ``RedisCluster`` for a cluster, the current master under Sentinel).
    """

    mode: Literal["standalone", "cluster", "sentinel"]
    raw: Callable[[], redis.Redis | redis.RedisCluster]
    urls: tuple[str, ...] = ()
    sentinels: tuple[tuple[str, int], ...] = ()
    service: str | None = None

    def settings(self, entry: int = 0) -> dict[str, Any]:
        """``CorpAuthSettings`` keyword arguments, entering through ``urls[entry]``."""
        if self.mode == "sentinel":
            return {
                "redis_mode": "sentinel",
                "redis_sentinels": ",".join(f"{h}:{p}" for h, p in self.sentinels),
                "redis_service": self.service,
            }
        return {"redis_mode": self.mode, "redis_url": self.urls[entry % len(self.urls)]}

    def env(self, entry: int = 0) -> dict[str, str]:
        """The same as ``CORPAUTH_*`` variables, for a worker process."""
        return {f"CORPAUTH_{k.upper()}": str(v) for k, v in self.settings(entry).items()}

    def layer(
        self, *, entry: int = 0, prefix: str = "corpauth", timeout: float = BEHAVIOUR_TIMEOUT
    ) -> RedisLayer:
        """A ``RedisLayer`` (client and guard), as ``CorpAuth`` builds it from settings."""
        return RedisLayer(
            mode=self.mode,
            url=self.urls[entry % len(self.urls)] if self.urls else None,
            sentinels=self.sentinels,
            service=self.service,
            prefix=prefix,
            timeout=timeout,
        )

    @asynccontextmanager
    async def open(
        self,
        *,
        entry: int = 0,
        prefix: str = "corpauth",
        command_timeout: float = BEHAVIOUR_TIMEOUT,
    ) -> AsyncIterator[RedisLayer]:
        """A started ``RedisLayer``, closed afterwards: what ``CorpAuth``'s lifespan does."""
        layer = self.layer(entry=entry, prefix=prefix, timeout=command_timeout)
        await layer.start()
        try:
            yield layer
        finally:
            await layer.aclose()

    def keys(self) -> list[bytes]:
        """Every key stored, sorted."""
        client = self.raw()
        try:
            if isinstance(client, redis.RedisCluster):  # KEYS goes to one node by default
                keys = client.keys("*", target_nodes=redis.RedisCluster.PRIMARIES)
            else:
                keys = client.keys("*")
            return sorted(k if isinstance(k, bytes) else k.encode() for k in keys)
        finally:
            client.close()


def standalone_target(server: RedisServer) -> RedisTarget:
    return RedisTarget(mode="standalone", raw=server.client, urls=(server.url,))


def cluster_target(cluster: RedisClusterServers) -> RedisTarget:
    def raw() -> redis.RedisCluster:
        return redis.RedisCluster.from_url(cluster.url, socket_timeout=2)

    return RedisTarget(mode="cluster", raw=raw, urls=tuple(cluster.urls()))


def sentinel_target(servers: SentinelServers) -> RedisTarget:
    return RedisTarget(
        mode="sentinel",
        raw=lambda: servers.master().client(),
        sentinels=tuple(servers.addresses),
        service=servers.SERVICE,
    )
