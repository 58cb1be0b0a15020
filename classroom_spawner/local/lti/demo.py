"""The classroom demo, logging in from a local LMS (LTI 1.3) instead of the OIDC provider.

:class:`LMSDemo` is :class:`~classroom_spawner.local.demo.Demo` (the stand-in,
ClassroomSpawner, the lesson repos) with the hub's login switched to
``ClassroomLTI13Authenticator`` and a local LTI platform next to it. The
platform has a course the hub serves, *Machine Learning 201*, whose roster
comes only from the platform (its entry in ``lms-courses.yaml`` lists no one),
with a launch link that opens a lesson notebook, and a course the hub does not
serve. Run it with ``python -m classroom_spawner.local.lti.demo`` and open the
course page it prints. (The OpenID Connect provider of the plain demo still
starts, unused.) Test and demo tool only.
"""

from __future__ import annotations

import asyncio
import sys
import textwrap

from ..demo import DEFAULT_PORT, DEFAULT_WORKDIR, ROSTER_CONTACT, Demo
from ..hub import free_port
from . import LTIPlatform, new_key, private_pem

#: the platform's courses: context id -> (title, {user: roles})
LMS_COURSES = {
    "lms-ml201": (
        "Machine Learning 201",
        {
            "katherine": ["Learner"],
            "dorothy": ["Learner"],
            "hedy": ["Instructor"],
            "annie": ["Instructor", "membership/Instructor#TeachingAssistant"],
        },
    ),
    # on the platform, but not a course of this hub: a launch is refused
    "lms-art300": ("Art History 300", {"vera": ["Learner"], "katherine": ["Learner"]}),
}
LESSON_LINK = ("Lesson 1: Welcome", {"lesson": "ml201", "notebook": "01-welcome.ipynb"})


def lms_course_file_text(lesson_url: str) -> str:
    return textwrap.dedent(f"""\
        # Courses launched from the local LMS (classroom_spawner.local.lti.demo).
        # No one is listed: the roster comes from the LMS (NRPS) at launches.
        courses:
          - id: ml201
            title: Machine Learning 201
            description: Its roster comes only from the LMS.
            lms_contexts: [lms-ml201]
            lessons:
              - url: {lesson_url}
                target: ml201
        """)


class LMSDemo(Demo):
    """The demo with a local LMS; ``lms_port``: the platform's port (0: a free one)."""

    def __init__(self, workdir=DEFAULT_WORKDIR, *, lms_port: int = 0, **kwargs):
        super().__init__(workdir, **kwargs)
        self.lms_port = lms_port
        self.lms: LTIPlatform | None = None
        self.lms_course_file = self.workdir / "lms-courses.yaml"
        self.tool_key_file = self.workdir / "tool-key.pem"
        self._tool_key = new_key()

    async def start(self) -> LMSDemo:
        if self.port is None:
            self.port = free_port(self.ip)
        self.lms = LTIPlatform(
            tool_url=f"http://{self.ip}:{self.port}/",
            tool_public_key=self._tool_key.public_key(),
            host=self.ip,
            port=self.lms_port,
        )
        for context, (title, members) in LMS_COURSES.items():
            self.lms.add_course(context, title)
            for user, roles in members.items():
                self.lms.add_member(context, user, roles, name=user.title())
        self.lms.add_link("lms-ml201", LESSON_LINK[0], **LESSON_LINK[1])
        await self.lms.start()
        try:
            await super().start()
        except BaseException:
            await self.lms.stop()
            raise
        return self

    async def stop(self) -> list[int]:
        leftovers = await super().stop()
        lms, self.lms = self.lms, None
        if lms is not None:
            await lms.stop()
        return leftovers

    def _hub_config(self, oauth: dict) -> str:
        # the work directory exists now (start() recreated it): the LMS course file
        # and the tool's key go next to the demo's course file
        self.lms_course_file.write_text(
            lms_course_file_text(self.repos["ds101-lessons"].url)
        )
        self.tool_key_file.write_text(private_pem(self._tool_key))
        self.tool_key_file.chmod(0o600)
        lti = {**self.lms.authenticator_config()}
        return super()._hub_config(oauth) + textwrap.dedent(f"""
            # ---- logging in from the local LMS (classroom_spawner.local.lti.demo) ----
            c.JupyterHub.authenticator_class = "classroom-lti13"
            c.ClassroomRoster.course_files = [{str(self.course_file)!r}, {str(self.lms_course_file)!r}]
            c.ClassroomLTI13Authenticator.update({lti!r})
            c.ClassroomLTI13Authenticator.username_key = "sub"
            c.ClassroomLTI13Authenticator.tool_private_key_file = {str(self.tool_key_file)!r}
            c.ClassroomLTI13Authenticator.nrps_sync_interval = 30
            c.ClassroomLTI13Authenticator.roster_contact = {ROSTER_CONTACT!r}
            c.ClassroomLTI13Authenticator.manage_groups = True
            c.ClassroomLTI13Authenticator.manage_roles = True
            c.ClassroomLTI13Authenticator.enable_auth_state = True
            """)

    def banner(self) -> str:
        return "\n".join(
            [
                "",
                f"The classroom demo is running: {self.hub_url}, logging in from a local LMS.",
                "",
                f"Open the LMS's course page and click a launch link: {self.lms.url}/",
                "  Machine Learning 201 (ml201): its roster comes only from the LMS;",
                f"  '{LESSON_LINK[0]}' opens {LESSON_LINK[1]['notebook']} in JupyterLab.",
                "  Art History 300: not a course of this hub (the launch is refused).",
                "",
                "Logs: " + ", ".join(self._display_path(p) for p in self.log_paths()),
                "Press Ctrl-C to stop.",
                "",
            ]
        )


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m classroom_spawner.local.lti.demo", description=__doc__
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--lms-port", type=int, default=8001)
    parser.add_argument("--workdir", default=DEFAULT_WORKDIR + "-lms")
    args = parser.parse_args(argv)
    return asyncio.run(
        LMSDemo(args.workdir, port=args.port, lms_port=args.lms_port).run()
    )


if __name__ == "__main__":
    sys.exit(main())
