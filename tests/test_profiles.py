"""Course profiles and the server-side check of submitted options (no hub, no cluster)."""

import re

import pytest

from classroom_spawner.profiles import (
    InvalidOptions,
    NoProfiles,
    check_admin_profiles,
    course_profile,
    images_of,
    options_from_form,
    profiles_for,
    resolve_user_options,
)
from classroom_spawner.roster.model import Course, LessonRepo, Role

COURSES = {
    "ds101": Course(
        id="ds101",
        title="Data Science 101",
        description="Pandas",
        image="example.org/ds101:1",
        cpu_guarantee=0.5,
        cpu_limit=2,
        mem_guarantee="1G",
        mem_limit="2G",
        lessons=(LessonRepo(url="https://example.org/l.git", target="ds101-lessons"),),
        kubespawner_override={"node_selector": {"pool": "teaching"}, "cpu_limit": 3},
    ),
    "phys210": Course(id="phys210", title="Physics", image="example.org/phys:2"),
    "hist1": Course(id="hist1", title="History"),
}

ADMIN_EXTRA = {
    "display_name": "Admin: any image",
    "slug": "admin-any",
    "kubespawner_override": {"cpu_limit": 8},
    "profile_options": {
        "image": {
            "display_name": "Image",
            "choices": {
                "base": {
                    "display_name": "Base",
                    "kubespawner_override": {"image": "example.org/base:1"},
                },
                "gpu": {
                    "display_name": "GPU",
                    "kubespawner_override": {"image": "example.org/gpu:1"},
                },
            },
            "unlisted_choice": {
                "enabled": True,
                "validation_regex": r"example\.org/[a-z0-9-]+:[a-z0-9.]+",
                "validation_message": "an example.org image with a tag",
                "kubespawner_override": {"image": "{value}"},
            },
        }
    },
}


def student_profiles():
    return profiles_for({"ds101": Role.STUDENT, "phys210": Role.TA}, COURSES)


def admin_profiles():
    return profiles_for({}, COURSES, admin=True, admin_profiles=[ADMIN_EXTRA])


def test_course_profile_carries_image_resources_and_course_override():
    profile = course_profile(COURSES["ds101"], Role.STUDENT)
    assert profile["slug"] == "ds101"
    assert profile["display_name"] == "Data Science 101"
    # the course's own kubespawner_override wins over its resource fields
    assert profile["kubespawner_override"] == {
        "image": "example.org/ds101:1",
        "cpu_guarantee": 0.5,
        "cpu_limit": 3,
        "mem_guarantee": "1G",
        "mem_limit": "2G",
        "node_selector": {"pool": "teaching"},
    }
    assert profile["classroom"]["resources"] == "0.5–2 CPUs, 1G–2G memory"
    assert profile["classroom"]["lessons"] == ["ds101-lessons"]
    assert profile["classroom"]["role"] == "student"


def test_a_student_sees_exactly_their_courses_first_is_default():
    profiles = student_profiles()
    assert [p["slug"] for p in profiles] == ["ds101", "phys210"]
    assert [p["default"] for p in profiles] == [True, False]


def test_an_admin_sees_every_course_and_admin_profiles():
    profiles = profiles_for(
        {"phys210": Role.INSTRUCTOR}, COURSES, admin=True, admin_profiles=[ADMIN_EXTRA]
    )
    assert [p["slug"] for p in profiles] == ["phys210", "ds101", "hist1", "admin-any"]
    assert profiles[-1]["classroom"]["admin_only"] is True


def test_admin_profiles_are_never_offered_to_students():
    profiles = profiles_for(
        {"ds101": Role.STUDENT}, COURSES, admin_profiles=[ADMIN_EXTRA]
    )
    assert [p["slug"] for p in profiles] == ["ds101"]


def test_no_course_no_admin_means_no_profiles():
    with pytest.raises(NoProfiles):
        profiles_for({}, COURSES)


def test_the_profile_list_is_a_copy():
    profiles = admin_profiles()
    profiles[-1]["kubespawner_override"]["cpu_limit"] = 99
    assert ADMIN_EXTRA["kubespawner_override"]["cpu_limit"] == 8


# -- checking submitted options ----------------------------------------------------


@pytest.mark.parametrize(
    "options, expected",
    [
        ({"profile": "ds101"}, {"profile": "ds101"}),
        ({"profile": "phys210"}, {"profile": "phys210"}),
        ({}, {"profile": "ds101"}),
        (None, {"profile": "ds101"}),
        ({"profile": ""}, {"profile": "ds101"}),
    ],
)
def test_own_profiles_are_accepted(options, expected):
    assert resolve_user_options(options, student_profiles()) == expected


@pytest.mark.parametrize(
    "options, message",
    [
        (
            {"profile": "hist1"},
            "profile 'hist1' is not available to you; choose one of: ds101, phys210",
        ),
        ({"profile": "admin-any"}, "profile 'admin-any' is not available to you"),
        ({"profile": ["ds101"]}, "is not available to you"),
        (
            {"profile": "ds101", "image": "gpu"},
            "unknown server option 'image' for profile 'ds101'",
        ),
        # the KubeSpawner gap: an unlisted choice with no profile key
        (
            {"image--unlisted-choice": "evil/img"},
            "unknown server option 'image--unlisted-choice'",
        ),
        ({"cpu_limit": 64}, "unknown server option 'cpu_limit'"),
        ("ds101", "must be a JSON object"),
    ],
)
def test_other_courses_and_tampering_are_refused(options, message):
    with pytest.raises(InvalidOptions) as info:
        resolve_user_options(options, student_profiles())
    assert message in str(info.value)


@pytest.mark.parametrize(
    "options, expected",
    [
        (
            {"profile": "admin-any", "image": "gpu"},
            {"profile": "admin-any", "image": "gpu"},
        ),
        ({"profile": "admin-any"}, {"profile": "admin-any"}),
        (
            {
                "profile": "admin-any",
                "image--unlisted-choice": "example.org/custom:2.1",
            },
            {
                "profile": "admin-any",
                "image--unlisted-choice": "example.org/custom:2.1",
            },
        ),
        (
            {
                "profile": "admin-any",
                "image": "unlisted-choice",
                "image--unlisted-choice": "example.org/x:1",
            },
            {"profile": "admin-any", "image--unlisted-choice": "example.org/x:1"},
        ),
        ({"profile": "hist1"}, {"profile": "hist1"}),
    ],
)
def test_admin_options(options, expected):
    assert resolve_user_options(options, admin_profiles()) == expected


@pytest.mark.parametrize(
    "options, message",
    [
        (
            {"profile": "admin-any", "image": "tpu"},
            "option 'image': 'tpu' is not one of the choices (base, gpu)",
        ),
        ({"profile": "admin-any", "image": {"$ne": 1}}, "is not one of the choices"),
        # re.match would accept this prefix match; the whole value must match
        (
            {
                "profile": "admin-any",
                "image--unlisted-choice": "example.org/ok:1; rm -rf /",
            },
            "is not accepted (an example.org image with a tag)",
        ),
        (
            {"profile": "admin-any", "image--unlisted-choice": "evil.org/img:1"},
            "is not accepted",
        ),
        (
            {
                "profile": "admin-any",
                "image": "gpu",
                "image--unlisted-choice": "example.org/x:1",
            },
            "either a listed choice or a custom value, not both",
        ),
        (
            {"profile": "admin-any", "image": "unlisted-choice"},
            "the custom value is empty",
        ),
        ({"profile": "admin-any", "color": "red"}, "unknown server option 'color'"),
    ],
)
def test_bad_choices_are_refused(options, message):
    with pytest.raises(InvalidOptions) as info:
        resolve_user_options(options, admin_profiles())
    assert message in str(info.value)


def test_unlisted_choice_without_profile_key_is_checked_against_the_default():
    # the default profile (admin-any first) has an unlisted choice: the regex still runs
    profiles = profiles_for({}, {}, admin=True, admin_profiles=[ADMIN_EXTRA])
    with pytest.raises(InvalidOptions):
        resolve_user_options({"image--unlisted-choice": "evil/img"}, profiles)
    assert resolve_user_options(
        {"image--unlisted-choice": "example.org/a:1"}, profiles
    ) == {
        "profile": "admin-any",
        "image--unlisted-choice": "example.org/a:1",
    }


def test_disabled_unlisted_choice_is_refused():
    extra = {
        **ADMIN_EXTRA,
        "profile_options": {
            "image": {
                **ADMIN_EXTRA["profile_options"]["image"],
                "unlisted_choice": {"enabled": False},
            }
        },
    }
    profiles = profiles_for({}, {}, admin=True, admin_profiles=[extra])
    with pytest.raises(InvalidOptions, match="does not accept a custom value"):
        resolve_user_options(
            {"profile": "admin-any", "image--unlisted-choice": "example.org/a:1"},
            profiles,
        )


# -- the form -----------------------------------------------------------------------


def test_form_fields_become_options():
    assert options_from_form({"profile": ["ds101"]}) == {"profile": "ds101"}
    assert options_from_form({}) == {}
    assert options_from_form(
        {
            "profile": ["admin-any"],
            "profile-option-admin-any--image": ["gpu"],
            "profile-option-admin-any--image--unlisted-choice": [
                "ignored unless Other"
            ],
            "profile-option-ds101--image": ["not this profile's"],
        }
    ) == {"profile": "admin-any", "image": "gpu"}
    assert options_from_form(
        {
            "profile": ["admin-any"],
            "profile-option-admin-any--image": ["unlisted-choice"],
            "profile-option-admin-any--image--unlisted-choice": ["example.org/a:1"],
        }
    ) == {"profile": "admin-any", "image--unlisted-choice": "example.org/a:1"}


def test_images_of_a_profile():
    assert images_of(admin_profiles()[-1]) == {
        "example.org/base:1",
        "example.org/gpu:1",
    }
    assert images_of(course_profile(COURSES["hist1"])) == set()


def test_admin_profiles_get_a_slug_from_their_name():
    given = [
        {
            "display_name": "Admin: Large server!",
            "kubespawner_override": {"cpu_limit": 8},
        }
    ]
    (checked,) = check_admin_profiles(given)
    assert checked["slug"] == "admin-large-server"
    assert "slug" not in given[0]  # the config itself is left as written


@pytest.mark.parametrize(
    "entries, message",
    [
        (["admin-large"], "entry 1 must be a dict"),
        ([{"slug": "x"}], "entry 1 needs a display_name"),
        ([{"display_name": "!!!"}], "entry 1 ('!!!') needs a slug"),
        (
            [{"display_name": "A", "slug": "a"}, {"display_name": "B", "slug": "a"}],
            "entry 2 ('B'): slug 'a' is used twice",
        ),
        (
            [{"display_name": "A", "profile_options": ["image"]}],
            "entry 1 ('A'): profile_options must be a dict",
        ),
        (
            [{"display_name": "A", "kubespawner_override": "big"}],
            "kubespawner_override must be a dict",
        ),
    ],
)
def test_unusable_admin_profiles_are_named(entries, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        check_admin_profiles(entries)


# -- select: one checked choice per spawn ------------------------------------------------

from classroom_spawner.profiles import select  # noqa: E402


def enrolled_in(*course_ids):
    return profiles_for({c: Role.STUDENT for c in course_ids}, COURSES)


def test_a_submitted_choice_is_checked_and_settles_profile_and_course():
    profiles = enrolled_in("ds101", "phys210")
    selection = select({"profile": "phys210"}, profiles, COURSES, submitted=True)
    assert selection.options == {"profile": "phys210"}
    assert (
        selection.profile["slug"] == "phys210"
        and selection.course is COURSES["phys210"]
    )
    assert selection.notice is None and [p["slug"] for p in selection.profiles] == [
        "ds101",
        "phys210",
    ]
    # no profile named: the first one
    assert select({}, profiles, COURSES, submitted=True).course is COURSES["ds101"]


@pytest.mark.parametrize(
    "options",
    [
        {"profile": "hist1"},
        {"profile": "ds101", "image": "x"},
        ["ds101"],
        {"profile": 3},
    ],
)
def test_a_submitted_choice_that_is_not_the_users_is_refused(options):
    with pytest.raises(InvalidOptions):
        select(options, enrolled_in("ds101", "phys210"), COURSES, submitted=True)


def test_a_saved_course_the_student_left_falls_back_to_the_first_with_a_true_notice():
    selection = select(
        {"profile": "hist1"}, enrolled_in("ds101", "phys210"), COURSES, submitted=False
    )
    assert (
        selection.options == {"profile": "ds101"}
        and selection.course is COURSES["ds101"]
    )
    assert selection.notice == (
        "Your last choice ('hist1') is not available to you any more; starting Data Science 101 instead."
    )


def test_a_saved_option_that_went_away_keeps_the_course_and_says_only_that():
    selection = select(
        {"profile": "phys210", "size": "xl"},
        enrolled_in("ds101", "phys210"),
        COURSES,
        submitted=False,
    )
    assert (
        selection.options == {"profile": "phys210"}
        and selection.course is COURSES["phys210"]
    )
    assert selection.notice.startswith(
        "Your last options for Physics are not available any more ("
    )
    assert selection.notice.endswith("); starting it with its default options.")
    assert "not available to you" not in selection.notice  # the course still is


def test_a_saved_value_is_quoted_cut_in_the_notice():
    huge = "x" * 10_000
    selection = select(
        {"profile": huge}, enrolled_in("ds101"), COURSES, submitted=False
    )
    assert len(selection.notice) < 300 and "(cut, 10000 characters)" in selection.notice


def test_an_admin_only_profile_has_no_course():
    profiles = profiles_for(
        {}, COURSES, admin=True, admin_profiles=check_admin_profiles([ADMIN_EXTRA])
    )
    selection = select({"profile": "admin-any"}, profiles, COURSES, submitted=True)
    assert selection.course is None and selection.profile["slug"] == "admin-any"
