"""Other hosts for tests and benchmarks of several machines: Linux network namespaces, each
joined to this one by its own veth pair, with addresses only on that private link.

This machine's end of the first link is the *service address*: servers the hosts need (Redis,
PostgreSQL, the Kafka-protocol broker) listen there, and every host reaches it through its link
(a host's only route points at this machine, where the address is local). Nothing else is
reachable from a host: it has its loopback and its link. Processes in a host share this
machine's file system (the shared data folder of a real deployment) and process table (so a
test can kill a host's processes), not its network.

Needs root and ``ip`` (iproute2); :class:`HostsUnavailable` says why not where either is
missing or refused.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass


class HostsUnavailable(RuntimeError):
    """Network namespaces cannot be made here (not root, no ``ip``, or refused)."""


@dataclass(frozen=True)
class Host:
    name: str  # the network namespace
    address: str  # its end of its link

    def command(self, args: list[str]) -> list[str]:
        """``args`` run inside this host's network namespace."""
        return ["ip", "netns", "exec", self.name, *args]


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise HostsUnavailable(f"ip {' '.join(args)}: {result.stderr.strip()}")


@contextmanager
def hosts(count: int) -> Iterator[tuple[str, list[Host]]]:
    """``count`` hosts; yields (the service address on this machine, the hosts). Everything
    made is removed on exit."""
    if shutil.which("ip") is None:
        raise HostsUnavailable("`ip` (iproute2) is not installed")
    if os.geteuid() != 0:
        raise HostsUnavailable("network namespaces need root")
    tag = f"{random.randrange(16**4):04x}"
    net = random.randrange(100, 250)
    made: list[tuple[str, str]] = []
    try:
        found = []
        for n in range(1, count + 1):
            name, outer, inner = f"an{tag}h{n}", f"an{tag}o{n}", f"an{tag}i{n}"
            _ip("netns", "add", name)
            made.append((name, outer))
            _ip("link", "add", outer, "type", "veth", "peer", "name", inner)
            _ip("link", "set", inner, "netns", name)
            _ip("addr", "add", f"10.{net}.{n}.1/30", "dev", outer)
            _ip("link", "set", outer, "up")
            inside = ("-n", name)
            _ip(*inside, "addr", "add", f"10.{net}.{n}.2/30", "dev", inner)
            _ip(*inside, "link", "set", inner, "up")
            _ip(*inside, "link", "set", "lo", "up")
            _ip(*inside, "route", "add", "default", "via", f"10.{net}.{n}.1")
            found.append(Host(name, f"10.{net}.{n}.2"))
        yield f"10.{net}.1.1", found
    finally:
        for name, outer in made:
            with suppress(HostsUnavailable):
                _ip("netns", "del", name)  # takes its end of the pair, and so the pair
            with suppress(HostsUnavailable):
                _ip("link", "del", outer)
