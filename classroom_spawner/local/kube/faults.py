"""Latency and fault injection, configurable at start and changed at runtime.

Everything here can be set on the command line, passed to
:class:`~classroom_spawner.local.kube.standin.KubeStandin` as a :class:`Faults`,
or changed while the stand-in runs with ``PUT /_standin/faults`` (a JSON
object of the fields to change; ``{"outage": 5}`` opens a 5 s outage now).
With a ``seed`` every random decision (API errors, failed provisions) is
reproducible for the same sequence of requests.
"""

import dataclasses
import logging
import random
import time
from dataclasses import dataclass, field

from . import errors

log = logging.getLogger(__name__)

OUTAGE_MODES = ("503", "refuse")


@dataclass
class Faults:
    """Latency model and injected faults.

    Latency:

    - ``provision_delay``: seconds a PVC takes to be provisioned and bound.
    - ``provision_max_in_flight``: provisions running at once (0 = no limit);
      the rest wait in FIFO order, like a CSI driver with limited workers.
    - ``image_pull_delay``: seconds to pull an image not yet on the node.
    - ``container_start_delay``: extra seconds between Created and Started.

    Faults:

    - ``provision_fail_rate``: fraction of provision attempts that fail
      (1.0: a provisioner that always fails; PVCs stay Pending with
      ProvisioningFailed events and are retried with back-off).
    - ``api_error_rate``: fraction of API requests answered with an error,
      the code drawn from ``api_error_codes`` (500, 503, 429 with a Status
      body; 429 with ``Retry-After``). Watch requests are exempt unless
      ``api_error_watch``.
    - ``outages``: ``[(start, duration), ...]`` seconds after the stand-in
      started during which the API is down; ``outage_mode`` ``"503"`` answers
      every request with 503, ``"refuse"`` closes the listening socket so
      connections are refused. Open watches are cut when an outage starts.
    - ``fail_init_containers``: names of init containers that exit 1 at once
      instead of running (restartPolicy then decides: back-off or Failed).
    - ``fail_images``: images whose pull fails (ErrImagePull, ImagePullBackOff).
    """

    seed: int = None
    provision_delay: float = 0.0
    provision_max_in_flight: int = 0
    image_pull_delay: float = 0.0
    container_start_delay: float = 0.0
    provision_fail_rate: float = 0.0
    api_error_rate: float = 0.0
    api_error_codes: list = field(default_factory=lambda: [500, 503, 429])
    api_error_watch: bool = False
    outages: list = field(default_factory=list)
    outage_mode: str = "503"
    fail_init_containers: list = field(default_factory=list)
    fail_images: list = field(default_factory=list)

    def __post_init__(self):
        self.check()

    def check(self):
        for name in ("provision_fail_rate", "api_error_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(
                    f"Faults.{name} must be between 0 and 1, not {value!r}"
                )
        for name in ("provision_delay", "image_pull_delay", "container_start_delay"):
            if getattr(self, name) < 0:
                raise ValueError(f"Faults.{name} must not be negative")
        if self.provision_max_in_flight < 0:
            raise ValueError("Faults.provision_max_in_flight must not be negative")
        if self.outage_mode not in OUTAGE_MODES:
            raise ValueError(
                f"Faults.outage_mode must be one of {OUTAGE_MODES}, not {self.outage_mode!r}"
            )
        for code in self.api_error_codes:
            if code not in (429, 500, 502, 503, 504):
                raise ValueError(f"Faults.api_error_codes: unsupported code {code!r}")
        self.outages = [tuple(float(x) for x in w) for w in self.outages]

    def to_dict(self):
        d = dataclasses.asdict(self)
        d["outages"] = [list(w) for w in self.outages]
        return d


class FaultInjector:
    """Applies a :class:`Faults` to requests and controllers; keeps the RNG."""

    def __init__(self, faults=None, clock=time.monotonic):
        self.faults = faults or Faults()
        self.clock = clock
        self.started = clock()
        self._rng = random.Random(self.faults.seed)
        self._outage_until = 0.0
        self.injected = {
            "api_errors": 0,
            "outage_rejections": 0,
            "provision_failures": 0,
        }

    def update(self, changes):
        """Change fields at runtime; ``outage`` (seconds) opens an outage now."""
        changes = dict(changes)
        outage = changes.pop("outage", None)
        unknown = set(changes) - {f.name for f in dataclasses.fields(Faults)}
        if unknown:
            raise ValueError(f"unknown fault settings: {sorted(unknown)}")
        new = dataclasses.replace(self.faults, **changes)
        new.check()
        if "seed" in changes:
            self._rng = random.Random(new.seed)
        self.faults = new
        if outage:
            self.open_outage(float(outage))
        log.info("faults now %s", self.faults.to_dict())
        return self.faults

    def open_outage(self, seconds):
        self._outage_until = max(self._outage_until, self.clock() + seconds)

    def end_outage(self):
        self._outage_until = 0.0
        elapsed = self.clock() - self.started
        self.faults.outages = [w for w in self.faults.outages if w[0] + w[1] <= elapsed]

    def in_outage(self):
        now = self.clock()
        if now < self._outage_until:
            return True
        elapsed = now - self.started
        return any(
            start <= elapsed < start + length for start, length in self.faults.outages
        )

    def outage_remaining(self):
        now = self.clock()
        remaining = max(0.0, self._outage_until - now)
        elapsed = now - self.started
        for start, length in self.faults.outages:
            if start <= elapsed < start + length:
                remaining = max(remaining, start + length - elapsed)
        return remaining

    def check_request(self, is_watch):
        """Raise the ApiError to answer a request with, if a fault applies."""
        if self.in_outage():
            self.injected["outage_rejections"] += 1
            raise errors.service_unavailable()
        f = self.faults
        if f.api_error_rate and (f.api_error_watch or not is_watch):
            if self._rng.random() < f.api_error_rate:
                self.injected["api_errors"] += 1
                code = self._rng.choice(f.api_error_codes)
                if code == 429:
                    raise errors.too_many_requests(1)
                if code == 503:
                    raise errors.service_unavailable()
                if code == 500:
                    raise errors.internal_error("injected fault")
                if code == 504:
                    raise errors.timeout(
                        "the server was unable to return a response in the time allotted"
                    )
                raise errors.ApiError(code, "InternalError", "injected fault")

    def provision_fails(self):
        rate = self.faults.provision_fail_rate
        failed = bool(rate) and (rate >= 1.0 or self._rng.random() < rate)
        if failed:
            self.injected["provision_failures"] += 1
        return failed
