"""ClassroomRoster in a running hub: changes are picked up, broken files never lock people out."""

import logging
import os
import shutil

import pytest
from traitlets.config import Config

from classroom_spawner.roster import ClassroomRoster, Role, RosterError


def configured(path, check_interval=0):
    c = Config()
    c.ClassroomRoster.course_files = [path]
    c.ClassroomRoster.check_interval = check_interval
    return ClassroomRoster(config=c)


@pytest.fixture
def course_and_csv(write_file):
    csv = write_file("students.csv", "username\nalice\nbob\n")
    course = write_file(
        "courses.yaml", "courses:\n  - id: ds101\n    rosters: [{file: students.csv}]\n"
    )
    return course, csv


async def test_changes_on_disk_are_picked_up(course_and_csv, rewrite_file):
    course, csv = course_and_csv
    roster = configured(course)
    assert (await roster.current()).is_enrolled("bob")
    rewrite_file(csv, "username\nalice\ncarol\n")
    now = await roster.current()
    assert now.is_enrolled("carol") and not now.is_enrolled("bob")


async def test_unchanged_files_are_not_read_again(course_and_csv):
    course, _ = course_and_csv
    roster = configured(course)
    first = await roster.current()
    assert await roster.current() is first
    assert await roster.current() is first


async def test_check_interval_limits_how_often_files_are_looked_at(
    course_and_csv, rewrite_file
):
    course, csv = course_and_csv
    roster = configured(course, check_interval=3600)
    first = await roster.current()
    rewrite_file(csv, "username\ncarol\n")
    # within the interval: the snapshot in force is served without looking at disk
    assert await roster.current() is first
    # once the interval has passed, the change is picked up
    roster._state.checked_at -= 3600
    now = await roster.current()
    assert (
        now is not first and now.is_enrolled("carol") and not now.is_enrolled("alice")
    )


async def test_broken_roster_keeps_the_last_good_one(
    course_and_csv, caplog, rewrite_file
):
    course, csv = course_and_csv
    roster = configured(course)
    good = await roster.current()
    rewrite_file(csv, "username,role\nalice,student\nbob,sorcerer\n")
    with caplog.at_level(logging.ERROR):
        now = await roster.current()
    assert now is good
    assert now.is_enrolled("bob")
    assert f"{csv}:3: unknown role 'sorcerer'" in caplog.text
    assert "last good roster" in caplog.text
    assert roster.last_error is not None
    # the same broken file is not logged again on every check
    caplog.clear()
    await roster.current()
    assert "sorcerer" not in caplog.text
    # fixing the file puts the new roster in force
    rewrite_file(csv, "username,role\nalice,student\ndave,ta\n")
    fixed = await roster.current()
    assert fixed.memberships("dave")["ds101"] is Role.TA
    assert not fixed.is_enrolled("bob")
    assert roster.last_error is None


async def test_deleted_roster_file_keeps_the_last_good_one(course_and_csv, caplog):
    course, csv = course_and_csv
    roster = configured(course)
    await roster.current()
    os.remove(csv)
    with caplog.at_level(logging.ERROR):
        assert (await roster.current()).is_enrolled("alice")
    assert "cannot read roster file" in caplog.text


async def test_broken_course_file_keeps_the_last_good_one(course_and_csv, rewrite_file):
    course, _ = course_and_csv
    roster = configured(course)
    await roster.current()
    rewrite_file(course, "courses:\n  - id: ds101\n    rosters: [{file: students.csv\n")
    assert (await roster.current()).is_enrolled("alice")
    assert str(roster.last_error.problems[0]).startswith(f"{course}:")


async def test_broken_roster_at_start_is_an_error(write_file):
    course = write_file(
        "courses.yaml", "courses:\n  - id: ds101\n    students: [ok, 'not ok']\n"
    )
    roster = configured(course)
    with pytest.raises(RosterError) as info:
        roster.load()
    assert str(info.value.problems[0]).startswith(f"{course}:3: login 'not ok'")
    with pytest.raises(RosterError):
        await roster.current()


async def test_authenticator_and_spawner_share_one_snapshot(course_and_csv):
    course, _ = course_and_csv
    a, b = configured(course), configured(course)
    assert await a.current() is await b.current()


def test_course_files_accepts_a_single_path(course_and_csv):
    course, _ = course_and_csv
    c = Config()
    c.ClassroomRoster.course_files = course
    assert ClassroomRoster(config=c).course_files == [course]


async def test_an_unexpected_error_while_re_reading_is_logged_once_per_change(
    course_and_csv, caplog, rewrite_file, monkeypatch
):
    from classroom_spawner.roster import configurable

    course, csv = course_and_csv
    roster = configured(course)
    first = await roster.current()

    def crash(paths):  # a bug in a reader, say
        raise RuntimeError("reader bug")

    monkeypatch.setattr(configurable, "load_roster", crash)
    rewrite_file(csv, "username\ncarol\n")
    with caplog.at_level(logging.ERROR):
        for _ in range(5):
            assert await roster.current() is first  # the last good roster stays
    assert caplog.text.count("Unexpected error re-reading the roster") == 1
    rewrite_file(csv, "username\ndave\n")  # the next change is tried again
    with caplog.at_level(logging.ERROR):
        await roster.current()
    assert caplog.text.count("Unexpected error re-reading the roster") == 2


# -- warnings: in force with the roster, logged once per change -------------------


CANVAS = (
    "Student,ID,SIS User ID,SIS Login ID,Section\n"
    '"Lovelace, Ada",1,,ada@uni.edu,Lab A\n'
    '"Hopper, Grace",2,,,Lab A\n'
)


async def test_warnings_are_logged_once_per_change_of_the_files(
    write_file, rewrite_file, caplog
):
    export = write_file("canvas.csv", CANVAS)
    course = write_file(
        "courses.yaml",
        "courses:\n  - id: ds101\n    rosters: [{file: canvas.csv, format: canvas}]\n",
    )
    roster = configured(course)
    with caplog.at_level(logging.WARNING):
        roster.load()  # as the authenticator does at hub start
        for _ in range(3):
            assert (await roster.current()).is_enrolled("ada@uni.edu")
        configured(course).load()  # a second reader of the same, unchanged files
    assert [str(w) for w in roster.warnings] == [
        f"{export}:3: skipped 'Hopper, Grace': no login in column 'SIS Login ID'"
        " (they cannot log in until the export has one)"
    ]
    assert caplog.text.count("with 1 warning") == 1
    assert f"{export}:3: skipped 'Hopper, Grace'" in caplog.text
    # a change of the files: read again, and its warnings logged again
    caplog.clear()
    rewrite_file(export, CANVAS + '"Curie, Marie",3,,,Lab A\n')
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            await roster.current()
    assert caplog.text.count("with 2 warnings") == 1
    # fixed: no warnings in force, none logged
    caplog.clear()
    rewrite_file(export, CANVAS.replace(",,,Lab A", ",,grace@uni.edu,Lab A"))
    with caplog.at_level(logging.WARNING):
        assert (await roster.current()).is_enrolled("grace@uni.edu")
    assert roster.warnings == () and "warning" not in caplog.text


async def test_many_warnings_are_cut_in_the_log(write_file, caplog):
    rows = "".join(f'"Guest, {i}",{i},,,Lab A\n' for i in range(50))
    write_file("canvas.csv", CANVAS + rows)
    course = write_file(
        "courses.yaml",
        "courses:\n  - id: ds101\n    rosters: [{file: canvas.csv, format: canvas}]\n",
    )
    roster = configured(course)
    with caplog.at_level(logging.WARNING):
        await roster.current()
    assert len(roster.warnings) == 51
    assert "with 51 warnings" in caplog.text and "... and 31 more" in caplog.text
    assert "'Guest, 49'" not in caplog.text


# -- a Kubernetes ConfigMap volume (Zero to JupyterHub), swapped as the kubelet does ---


class ConfigMapVolume:
    """A directory laid out and updated the way the kubelet writes a ConfigMap
    volume mounted without subPath: each key is a symlink ``name -> ..data/name``,
    ``..data`` a symlink to a timestamped directory. An update writes a new
    timestamped directory, points a new ``..data_tmp`` symlink at it, renames that
    over ``..data`` (the atomic step), then removes the old directory."""

    def __init__(self, root):
        self.root = root
        self.versions = 0
        os.makedirs(root, exist_ok=True)

    def publish(self, files, mtime_ns=None):
        self.versions += 1
        stamp = f"..2026_12_01_20_00_{self.versions:02d}.123456789"
        new_dir = os.path.join(self.root, stamp)
        os.mkdir(new_dir)
        for name, text in files.items():
            with open(os.path.join(new_dir, name), "w") as f:
                f.write(text)
            if mtime_ns is not None:
                os.utime(os.path.join(new_dir, name), ns=(mtime_ns, mtime_ns))
        data = os.path.join(self.root, "..data")
        old_dir = os.path.realpath(data) if os.path.lexists(data) else None
        tmp = os.path.join(self.root, "..data_tmp")
        os.symlink(stamp, tmp)
        os.rename(tmp, data)
        for name in files:
            link = os.path.join(self.root, name)
            if not os.path.lexists(link):
                os.symlink(os.path.join("..data", name), link)
        if old_dir:
            shutil.rmtree(old_dir)

    def path(self, name):
        return os.path.join(self.root, name)


COURSES = "courses:\n  - id: ds101\n    rosters: [{file: students.csv}]\n"


async def test_a_configmap_volume_update_is_picked_up(tmp_path):
    volume = ConfigMapVolume(str(tmp_path / "courses"))
    volume.publish({"courses.yaml": COURSES, "students.csv": "username\nalice\n"})
    roster = configured(volume.path("courses.yaml"))
    assert (await roster.current()).is_enrolled("alice")
    # same sizes and the same mtime: only the swap says the content is new
    mtime = os.stat(volume.path("students.csv")).st_mtime_ns
    volume.publish(
        {"courses.yaml": COURSES, "students.csv": "username\nbobby\n"}, mtime
    )
    now = await roster.current()
    assert now.is_enrolled("bobby") and not now.is_enrolled("alice")


async def test_two_configmap_updates_between_checks_are_picked_up(tmp_path):
    """The kubelet removes the old directory after each swap, so the next
    version's files can get the inode numbers the version before had (ext4 hands
    them out again at once): sizes, mtimes and inodes may all match what the hub
    remembers, and only the resolved path tells the versions apart."""
    volume = ConfigMapVolume(str(tmp_path / "courses"))
    volume.publish({"courses.yaml": COURSES, "students.csv": "username\nalice\n"})
    mtime = os.stat(volume.path("students.csv")).st_mtime_ns
    os.utime(volume.path("courses.yaml"), ns=(mtime, mtime))
    roster = configured(volume.path("courses.yaml"), check_interval=3600)
    first = await roster.current()
    volume.publish(
        {"courses.yaml": COURSES, "students.csv": "username\nbobby\n"}, mtime
    )
    volume.publish(
        {"courses.yaml": COURSES, "students.csv": "username\ncarol\n"}, mtime
    )
    roster._state.checked_at -= 3600  # the next check is due
    now = await roster.current()
    assert now is not first
    assert now.is_enrolled("carol") and not now.is_enrolled("alice")


async def test_the_authenticator_admits_a_student_added_through_the_configmap(tmp_path):
    from classroom_spawner.auth import ClassroomOAuthenticator

    volume = ConfigMapVolume(str(tmp_path / "courses"))
    volume.publish({"courses.yaml": COURSES, "students.csv": "username\nalice\n"})
    mtime = os.stat(volume.path("students.csv")).st_mtime_ns
    os.utime(volume.path("courses.yaml"), ns=(mtime, mtime))
    c = Config()
    c.ClassroomRoster.course_files = [volume.path("courses.yaml")]
    c.ClassroomRoster.check_interval = 0
    auth = ClassroomOAuthenticator(config=c)
    assert await auth.check_allowed("alice", {"name": "alice", "admin": None})
    assert not await auth.check_allowed("carol", {"name": "carol", "admin": None})
    # two updates before the next login (as in the test above)
    volume.publish(
        {"courses.yaml": COURSES, "students.csv": "username\nbobby\n"}, mtime
    )
    volume.publish(
        {"courses.yaml": COURSES, "students.csv": "username\ncarol\n"}, mtime
    )
    assert await auth.check_allowed("carol", {"name": "carol", "admin": None})
    assert not await auth.check_allowed("alice", {"name": "alice", "admin": None})
