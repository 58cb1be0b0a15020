"""Course rosters from the LMS: LTI Advantage's Names and Role Provisioning Service.

A launch from a course page may carry the NRPS claim, the URL of the course's
membership list. With it the hub asks the LMS for everyone in the course:

1. it signs a JWT with the tool's private key (``iss`` = ``sub`` = the tool's
   client id, ``aud`` = the platform's token endpoint) and trades it at the
   platform's token endpoint for an access token (the client-credentials grant
   of LTI Advantage, scope ``contextmembership.readonly``);
2. it GETs the membership URL with that token, following ``Link: <...>;
   rel="next"`` from page to page.

:class:`LMSRosters` keeps one list per course: fetched at the launches that
name it and every :attr:`~LMSRosters.interval` seconds, the last good one kept
when the LMS fails (and saved to a JSON file, so a restarted hub has it), and
handed to :class:`~classroom_spawner.roster.ClassroomRoster` as another source
next to the course files. Everything is async (tornado's HTTP client); the
state file is read and written off the event loop.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

import jwt
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from .model import Role

NRPS_SCOPE = "https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly"
NRPS_MEDIA_TYPE = "application/vnd.ims.lti-nrps.v2.membershipcontainer+json"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

_LINK_NEXT = re.compile(r'<([^>]+)>\s*;[^,]*\brel="?next"?', re.IGNORECASE)


class NRPSError(Exception):
    """The LMS did not give a usable membership list; the message says why (no secrets)."""


def client_assertion(
    client_id: str, audience: str, private_key: Any, kid: str, lifetime: int = 300
) -> str:
    """The signed JWT the tool presents at the platform's token endpoint."""
    now = int(time.time())
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": audience,
        "iat": now,
        "exp": now + lifetime,
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, private_key, algorithm="RS256", headers={"kid": kid})


def next_link(header: str | None) -> str | None:
    """The ``rel="next"`` URL of a ``Link`` header, if any."""
    if not header:
        return None
    match = _LINK_NEXT.search(header)
    return match.group(1) if match else None


def _short(body: bytes) -> str:
    text = body[:80].decode("utf8", "replace")
    return re.sub(r"\s+", " ", text).strip()


@dataclass
class TokenEndpoint:
    """How the tool gets access tokens from one platform."""

    url: str
    client_id: str
    private_key: Any  # a cryptography private key, or PEM text
    kid: str
    audience: str = ""  # default: the token endpoint's URL
    timeout: float = 20
    _token: str = ""
    _expires: float = 0

    async def token(self, http: AsyncHTTPClient) -> str:
        if self._token and time.monotonic() < self._expires - 30:
            return self._token
        body = urlencode(
            {
                "grant_type": "client_credentials",
                "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": client_assertion(
                    self.client_id,
                    self.audience or self.url,
                    self.private_key,
                    self.kid,
                ),
                "scope": NRPS_SCOPE,
            }
        )
        try:
            response = await http.fetch(
                HTTPRequest(
                    self.url,
                    method="POST",
                    body=body,
                    headers={
                        "Content-Type": "application/x-www-form-urlencoded",
                        "Accept": "application/json",
                    },
                    request_timeout=self.timeout,
                )
            )
        except HTTPClientError as e:
            detail = (
                _short(e.response.body)
                if e.response is not None and e.response.body
                else ""
            )
            raise NRPSError(
                f"token endpoint {self.url} refused the tool's key: HTTP {e.code} {detail}"
            ) from None
        except (OSError, asyncio.TimeoutError) as e:
            raise NRPSError(f"token endpoint {self.url} unreachable: {e}") from None
        try:
            answer = json.loads(response.body)
            token = answer["access_token"]
            lifetime = float(answer.get("expires_in") or 3600)
        except (ValueError, KeyError, TypeError):
            raise NRPSError(
                f"token endpoint {self.url} answered something that is not an access token:"
                f" {_short(response.body)!r}"
            ) from None
        if not isinstance(token, str) or not token:
            raise NRPSError(f"token endpoint {self.url} gave an empty access token")
        self._token, self._expires = token, time.monotonic() + lifetime
        return token


async def fetch_members(
    http: AsyncHTTPClient,
    url: str,
    token: str,
    *,
    max_pages: int = 1000,
    timeout: float = 20,
) -> list[dict]:
    """Every member of a course's NRPS membership list, following the pages."""
    members: list[dict] = []
    seen: set[str] = set()
    page_url: str | None = url
    pages = 0
    while page_url:
        if page_url in seen or pages >= max_pages:
            raise NRPSError(
                f"membership list {url}: more than {max_pages} pages, or the pages loop"
            )
        seen.add(page_url)
        pages += 1
        try:
            response = await http.fetch(
                HTTPRequest(
                    page_url,
                    headers={
                        "Authorization": f"Bearer {token}",
                        "Accept": NRPS_MEDIA_TYPE,
                    },
                    request_timeout=timeout,
                )
            )
        except HTTPClientError as e:
            raise NRPSError(f"membership list {page_url}: HTTP {e.code}") from None
        except (OSError, asyncio.TimeoutError) as e:
            raise NRPSError(f"membership list {page_url} unreachable: {e}") from None
        try:
            page = json.loads(response.body)
        except ValueError:
            raise NRPSError(
                f"membership list {page_url} (page {pages}) is not JSON: starts {_short(response.body)!r}"
            ) from None
        if not isinstance(page, Mapping) or not isinstance(page.get("members"), list):
            raise NRPSError(
                f"membership list {page_url} (page {pages}) has no 'members' list"
            )
        members.extend(m for m in page["members"] if isinstance(m, Mapping))
        page_url = next_link(response.headers.get("Link"))
        if page_url and _origin(page_url) != _origin(url):
            # the access token goes with every page: never to another host
            scheme, host = _origin(page_url)
            raise NRPSError(
                f"membership list {url}: the next page is on another host ({scheme}://{host[:80]})"
            )
    return members


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc


def member_roster(
    members: list[Mapping[str, Any]],
    username: Callable[[Mapping[str, Any]], str | None],
    role: Callable[[Any], Role | None],
) -> tuple[dict[str, Role], int, int]:
    """``{username: Role}`` of the active members, how many were left out
    (inactive, no usable username, or no role we map), and how many of the
    active ones had no usable username."""
    roster: dict[str, Role] = {}
    skipped = unnamed = 0
    for member in members:
        if str(member.get("status") or "Active").lower() != "active":
            skipped += 1
            continue
        name = username(member)
        their_role = role(member.get("roles"))
        if not name or their_role is None:
            skipped += 1
            unnamed += not name
            continue
        if name not in roster or their_role.rank > roster[name].rank:
            roster[name] = their_role
    return roster, skipped, unnamed


def implausible(
    roster: Mapping[str, Role], unnamed: int, before: Mapping[str, Role] | None
) -> str | None:
    """Why a freshly fetched list must not replace the last good one, if it must not.

    A list in which no one has a usable username (the LMS's privacy settings
    hide the field ``username_key`` names), or an empty list where the last good
    one had people (an LMS glitch), would lock the whole course out at the next
    refresh; the last good list stays instead.
    """
    if not roster and unnamed:
        return (
            f"none of its {unnamed} active members has a usable username (is the field"
            " username_key names shared with the tool? check the LMS's privacy settings)"
        )
    if not roster and before:
        return (
            f"it lists no one, the last good one had {len(before)} people (remove the course's"
            " lms_contexts to stop using the LMS's list)"
        )
    return None


@dataclass
class CourseList:
    """One course's membership list from the LMS."""

    url: str
    members: dict[str, Role] = field(default_factory=dict)
    synced_at: float | None = None  # wall clock of the last good fetch
    error: str | None = None  # why the last fetch failed, if it did
    skipped: int = 0

    def as_json(self) -> dict:
        return {
            "url": self.url,
            "members": {
                name: role.value for name, role in sorted(self.members.items())
            },
            "synced_at": self.synced_at,
            "error": self.error,
            "skipped": self.skipped,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CourseList:
        members = {}
        for name, role in (data.get("members") or {}).items():
            try:
                members[str(name)] = Role(role)
            except ValueError:
                continue
        return cls(
            url=str(data["url"]),
            members=members,
            synced_at=data.get("synced_at"),
            error=data.get("error"),
            skipped=int(data.get("skipped") or 0),
        )


def read_state(path: str) -> dict[str, CourseList]:
    """The saved course lists (blocking; run it in an executor). Empty if none."""
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        return {}
    courses = {}
    for course, entry in (data.get("courses") or {}).items():
        try:
            courses[course] = CourseList.from_json(entry)
        except (KeyError, TypeError, ValueError):
            continue
    return courses


def write_state(path: str, courses: Mapping[str, CourseList]) -> None:
    """Save the course lists atomically (blocking; run it in an executor)."""
    tmp = f"{path}.tmp-{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(
            {"courses": {c: entry.as_json() for c, entry in sorted(courses.items())}},
            f,
            indent=1,
        )
    os.replace(tmp, path)


class LMSRosters:
    """Every course's membership list from the LMS, kept up to date.

    ``publish(course_lists)`` is called with ``{course: {username: Role}}``
    whenever a list changes (the authenticator hands it to ClassroomRoster).
    """

    def __init__(
        self,
        endpoint: TokenEndpoint,
        *,
        username: Callable[[Mapping[str, Any]], str | None],
        role: Callable[[Any], Role | None],
        publish: Callable[[Mapping[str, Mapping[str, Role]]], None],
        log,
        state_file: str = "",
        interval: float = 600,
        min_interval: float = 10,
    ):
        self.endpoint = endpoint
        self.username = username
        self.role = role
        self.publish = publish
        self.log = log
        self.state_file = state_file
        self.interval = interval
        self.min_interval = min_interval
        self.courses: dict[str, CourseList] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._attempted: dict[str, float] = {}
        self._task: asyncio.Task | None = None
        self._http: AsyncHTTPClient | None = None

    # -- state -------------------------------------------------------------

    async def load_state(self) -> None:
        if not self.state_file:
            return
        loop = asyncio.get_running_loop()
        try:
            saved = await loop.run_in_executor(None, read_state, self.state_file)
        except (OSError, ValueError) as e:
            self.log.error(
                "Cannot read the saved LMS rosters %s (%s); starting without them",
                self.state_file,
                e,
            )
            return
        for course, entry in saved.items():
            self.courses.setdefault(course, entry)
        if saved:
            self.log.info(
                "LMS rosters: read %d courses from %s", len(saved), self.state_file
            )
            self._publish()

    async def _save(self) -> None:
        if not self.state_file:
            return
        snapshot = dict(self.courses)
        try:
            await asyncio.get_running_loop().run_in_executor(
                None, write_state, self.state_file, snapshot
            )
        except OSError as e:
            self.log.error("Cannot save the LMS rosters to %s: %s", self.state_file, e)

    def _publish(self) -> None:
        self.publish(
            {
                c: dict(entry.members)
                for c, entry in self.courses.items()
                if entry.synced_at
            }
        )

    def synced_at(self, course: str) -> float | None:
        """When the course's list was last fetched (wall clock), None if never."""
        entry = self.courses.get(course)
        return entry.synced_at if entry else None

    # -- syncing -----------------------------------------------------------

    async def launched(self, course: str, url: str) -> None:
        """A launch named the course's membership URL: remember it, and sync
        unless that was just done (at most once per :attr:`min_interval`)."""
        entry = self.courses.get(course)
        if entry is None or entry.url != url:
            if entry is not None:
                self.log.info("LMS roster of %s: the membership URL changed", course)
            self.courses[course] = CourseList(
                url=url, members=entry.members if entry else {}
            )
            self._attempted.pop(course, None)
        if time.monotonic() - self._attempted.get(course, -1e9) < self.min_interval:
            return
        await self.sync(course)

    async def sync(self, course: str) -> bool:
        """Fetch one course's list now. True if it worked; on failure the last
        good list stays in force and the reason is logged."""
        lock = self._locks.setdefault(course, asyncio.Lock())
        async with lock:
            entry = self.courses.get(course)
            if entry is None:
                return False
            self._attempted[course] = time.monotonic()
            if self._http is None:
                self._http = AsyncHTTPClient()
            try:
                token = await self.endpoint.token(self._http)
                members = await fetch_members(
                    self._http, entry.url, token, timeout=self.endpoint.timeout
                )
                roster, skipped, unnamed = member_roster(
                    members, self.username, self.role
                )
                why = implausible(
                    roster, unnamed, entry.members if entry.synced_at else None
                )
                if why:
                    raise NRPSError(f"membership list {entry.url}: {why}")
            except NRPSError as e:
                if entry.error != str(e):
                    self.log.error(
                        "LMS roster of %s not updated, %s stays in force: %s",
                        course,
                        (
                            f"the last good one ({len(entry.members)} people)"
                            if entry.synced_at
                            else "no list"
                        ),
                        e,
                    )
                entry.error = str(e)
                await self._save()
                return False
            changed = roster != entry.members or entry.synced_at is None
            entry.members, entry.skipped, entry.error = roster, skipped, None
            entry.synced_at = time.time()
            self.log.info(
                "LMS roster of %s: %d people%s",
                course,
                len(roster),
                f" ({skipped} left out)" if skipped else "",
            )
        if changed:
            self._publish()
        await self._save()
        return True

    async def sync_all(self) -> None:
        for course in list(self.courses):
            await self.sync(course)

    def start(self) -> None:
        """Sync every known course every :attr:`interval` seconds (0: never)."""
        if self._task is None and self.interval > 0:
            self._task = asyncio.ensure_future(self._loop())

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.sync_all()
            except Exception:  # never let the schedule die
                self.log.exception("LMS roster sync failed")

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
