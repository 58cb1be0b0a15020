"""ClassroomRoster in a running hub: changes are picked up, broken files never lock people out."""

import logging
import os

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
    course = write_file("courses.yaml", "courses:\n  - id: ds101\n    rosters: [{file: students.csv}]\n")
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


async def test_check_interval_limits_how_often_files_are_looked_at(course_and_csv, rewrite_file):
    course, csv = course_and_csv
    roster = configured(course, check_interval=3600)
    first = await roster.current()
    rewrite_file(csv, "username\ncarol\n")
    # within the interval: the snapshot in force is served without looking at disk
    assert await roster.current() is first
    # once the interval has passed, the change is picked up
    roster._state.checked_at -= 3600
    now = await roster.current()
    assert now is not first and now.is_enrolled("carol") and not now.is_enrolled("alice")


async def test_broken_roster_keeps_the_last_good_one(course_and_csv, caplog, rewrite_file):
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
    course = write_file("courses.yaml", "courses:\n  - id: ds101\n    students: [ok, 'not ok']\n")
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
