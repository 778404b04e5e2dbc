"""A real local Redis Cluster for tests: 3 masters + 3 replicas on free loopback ports.

Started with ``redis-server --cluster-enabled yes --cluster-node-timeout 1000`` and joined with
``redis-cli --cluster create ... --cluster-replicas 1 --cluster-yes``; stopped by the process ids
it started. Missing ``redis-server``/``redis-cli`` skip (or fail under
``TOKENWARD_REQUIRE_SERVICES=1``).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from support.env import service_missing

NODES = 6


def _free_ports(n: int) -> list[int]:
    """``n`` distinct loopback ports that were free a moment ago, each with its cluster bus
    port (``port + 10000``) free too."""
    held: list[socket.socket] = []
    ports: list[int] = []
    try:
        for port in random.sample(range(20000, 30000), 200):
            pair = [socket.socket(), socket.socket()]
            try:
                pair[0].bind(("127.0.0.1", port))
                pair[1].bind(("127.0.0.1", port + 10000))
            except OSError:
                for sock in pair:
                    sock.close()
                continue
            held += pair
            ports.append(port)
            if len(ports) == n:
                return ports
        raise RuntimeError("no free loopback ports for a Redis Cluster")
    finally:
        for sock in held:
            sock.close()


class LocalCluster:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.ports: list[int] = []
        self.procs: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports[:3])

    def start(self) -> LocalCluster:
        server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
        if server is None or cli is None:
            service_missing("redis-server and redis-cli are needed for the Redis Cluster tests")
        assert server is not None and cli is not None
        for port in _free_ports(NODES):
            node = self.root / str(port)
            node.mkdir(parents=True)
            self.ports.append(port)
            argv = [server, "--port", str(port), "--bind", "127.0.0.1"]
            argv += ["--cluster-enabled", "yes", "--cluster-node-timeout", "1000"]
            argv += ["--cluster-config-file", "nodes.conf", "--save", "", "--appendonly", "no"]
            # replicas sync at once (no diskless delay), so that the cluster is ready for a
            # failover as soon as ``start`` returns
            argv += ["--logfile", "redis.log", "--repl-diskless-sync-delay", "0"]
            self.procs.append(
                subprocess.Popen(
                    argv, cwd=node, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                )
            )
        for port in self.ports:
            self._wait(cli, port, "PING", b"PONG")
        create = [cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in self.ports)]
        create += ["--cluster-replicas", "1", "--cluster-yes"]
        done = subprocess.run(create, capture_output=True, timeout=60, check=False)
        if done.returncode != 0:
            self.stop()
            raise RuntimeError(f"redis-cli --cluster create failed: {done.stdout[-500:]!r}")
        for port in self.ports:
            self._wait(cli, port, "CLUSTER INFO", b"cluster_state:ok")
        # a replica whose first sync never finished cannot be promoted ("disconnected from
        # master for longer than allowed"): wait until every replica's link is up
        for port in self.ports:
            role = subprocess.run([cli, "-p", str(port), "ROLE"], capture_output=True).stdout
            if role.startswith(b"slave"):
                self._wait(cli, port, "INFO replication", b"master_link_status:up")
        return self

    def masters(self) -> list[int]:
        """The ports of the nodes that are masters now."""
        cli = shutil.which("redis-cli")
        assert cli is not None
        out: list[int] = []
        for port in self.alive():
            role = subprocess.run([cli, "-p", str(port), "ROLE"], capture_output=True).stdout
            if role.startswith(b"master"):
                out.append(port)
        return out

    def alive(self) -> list[int]:
        return [p for p, proc in zip(self.ports, self.procs, strict=True) if proc.poll() is None]

    def pid(self, port: int) -> int:
        return self.procs[self.ports.index(port)].pid

    def replica_of(self, master: int) -> int:
        """The port of the (live) replica of the master on port ``master``."""
        cli = shutil.which("redis-cli")
        assert cli is not None
        for port in self.alive():
            info = subprocess.run(
                [cli, "-p", str(port), "INFO", "replication"], capture_output=True
            ).stdout
            if b"role:slave" in info and f"master_port:{master}\r".encode() in info:
                return port
        raise LookupError(f"no replica of {master}")

    def pause(self, port: int) -> None:
        """SIGSTOP the node (it takes no replication stream until :meth:`resume`)."""
        os.kill(self.pid(port), signal.SIGSTOP)

    def resume(self, port: int) -> None:
        """SIGCONT the node; for a replica, wait until its master sees it acknowledge again
        (so that the next test's revocations on that master are acknowledged)."""
        os.kill(self.pid(port), signal.SIGCONT)
        cli = shutil.which("redis-cli")
        assert cli is not None
        info = subprocess.run([cli, "-p", str(port), "INFO", "replication"], capture_output=True)
        if b"role:slave" not in info.stdout:
            return
        self._wait(cli, port, "INFO replication", b"master_link_status:up")
        master = info.stdout.split(b"master_port:", 1)[1].split(b"\r", 1)[0].decode()
        self._wait(cli, int(master), "WAIT 1 200", b"1")

    def kill(self, port: int) -> None:
        """SIGKILL the node on ``port`` (no shutdown, no last replication)."""
        proc = self.procs[self.ports.index(port)]
        proc.kill()
        proc.wait(10)

    @staticmethod
    def _wait(cli: str, port: int, command: str, expect: bytes) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            out = subprocess.run(
                [cli, "-p", str(port), *command.split()], capture_output=True, check=False
            ).stdout
            if expect in out:
                return
            time.sleep(0.1)
        raise RuntimeError(f"redis node {port}: no {expect!r} after {command}")

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        self.procs.clear()
