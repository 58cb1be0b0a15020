"""Pod IPs: one loopback address per pod, so every pod can listen on the same
port (8888) like pods on a real cluster network.

Linux routes all of 127.0.0.0/8 to the loopback interface, so any 127.x.y.z
can be bound without configuration. The pool never hands out 127.0.0.x (where
127.0.0.1 lives), skips addresses that already have a listening socket (for
example another stand-in on the same machine), and hands released addresses
out again only after the rest of the pool has been used.
"""

import collections
import ipaddress
import random

from .procutil import listening_ipv4


def random_pod_cidr():
    """A /16 inside 127.0.0.0/8 other than 127.0.0.0/16."""
    return f"127.{random.randint(1, 254)}.0.0/16"


class IPPool:
    def __init__(self, cidr=None):
        self.cidr = cidr or random_pod_cidr()
        net = ipaddress.ip_network(self.cidr)
        if not net.subnet_of(ipaddress.ip_network("127.0.0.0/8")):
            raise ValueError(f"pod CIDR {self.cidr} must be inside 127.0.0.0/8")
        self._base = int(net.network_address)
        self._size = net.num_addresses
        self._next = 1  # offsets never handed out start here
        self._released = collections.deque()
        self._used = set()

    def _usable(self, offset):
        ip = ipaddress.IPv4Address(self._base + offset)
        last = int(ip) & 0xFF
        return last not in (0, 255) and (int(ip) >> 8) != (127 << 16)

    def _candidates(self):
        while self._next < self._size - 1:
            offset = self._next
            self._next += 1
            if self._usable(offset):
                yield str(ipaddress.IPv4Address(self._base + offset))
        for _ in range(len(self._released)):
            yield self._released.popleft()

    def allocate(self):
        busy = listening_ipv4()
        skipped = []
        try:
            for ip in self._candidates():
                if ip in busy or ip in self._used:
                    skipped.append(ip)
                    continue
                self._used.add(ip)
                return ip
        finally:
            self._released.extend(ip for ip in skipped if ip not in self._used)
        raise RuntimeError(f"no free pod IPs left in {self.cidr}")

    def release(self, ip):
        if ip in self._used:
            self._used.remove(ip)
            self._released.append(ip)

    @property
    def in_use(self):
        return len(self._used)
