"""The node's image store: which images are present, and simulated pulls."""

import asyncio
import hashlib
import time


class PullError(Exception):
    pass


class NeverPullError(Exception):
    pass


def image_id(image):
    digest = hashlib.sha256(image.encode()).hexdigest()
    repo = (
        image.split("@")[0].rsplit(":", 1)[0]
        if ":" in image.rsplit("/", 1)[-1]
        else image
    )
    return f"{repo}@sha256:{digest}"


class ImageStore:
    def __init__(self, faults, present=()):
        self.faults = faults
        self.present = set(present)
        self._pulls = {}

    async def ensure(self, image, policy):
        """Make ``image`` present. Returns None if no pull happened, else (pull s, total s)."""
        if image in self.faults.faults.fail_images:
            raise PullError(
                f'rpc error: code = NotFound desc = failed to pull and unpack image "{image}":'
                f' failed to resolve reference "{image}": not found'
            )
        if policy == "Never":
            if image not in self.present:
                raise NeverPullError(image)
            return None
        if policy == "IfNotPresent" and image in self.present:
            return None
        started = time.monotonic()
        pull = self._pulls.get(image)
        if pull is None:
            delay = (
                0.0 if image in self.present else self.faults.faults.image_pull_delay
            )
            pull = asyncio.ensure_future(self._pull(image, delay))
            self._pulls[image] = pull
            pull.add_done_callback(lambda f: self._pulls.pop(image, None))
        pulled_in = await asyncio.shield(pull)
        return pulled_in, time.monotonic() - started

    async def _pull(self, image, delay):
        started = time.monotonic()
        if delay:
            await asyncio.sleep(delay)
        self.present.add(image)
        return time.monotonic() - started
