"""Course storage and role-aware servers without a hub: the course file's shared
folders, staff settings, options and staff-see-homes (every mistake named by file and
line), and the profile each role gets from them."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from classroom_spawner.coursestorage import hub_storage, storage_problems
from classroom_spawner.profiles import (
    InvalidOptions,
    course_profile,
    profiles_for,
    resolve_user_options,
)
from classroom_spawner.roster import Role
from classroom_spawner.roster.loader import load_roster

COURSE = """\
courses:
  - id: ds101
    image: example.org/ds101:1
    cpu_limit: 1
    mem_limit: 2G
    students: [alice, bob]
    tas: [tina]
    instructors: [ian]
    shared_folders:
      - name: data
        pvc: ds101-data
      - name: answers
        nfs: {server: nfs.uni.edu, path: /exports/ds101/answers}
        students: none
      - name: notes
        home_subpath: _courses/ds101/notes
        mount_path: /srv/notes
    staff:
      image: example.org/ds101-staff:1
      cpu_limit: 4
      mem_limit: 8G
      kubespawner_override:
        environment: {ROLE: staff}
    options:
      size:
        display_name: Server size
        choices:
          small: {display_name: Small, default: true}
          large:
            display_name: Large
            staff_only: true
            kubespawner_override: {mem_limit: 16G}
    staff_see_student_homes: true
  - id: phys210
    students: [zed, tina]
    tas: [tom]
"""

# the hub's volumes as Zero to JupyterHub writes them
SHARED_HOME = hub_storage(
    {"home": {"name": "home", "persistentVolumeClaim": {"claimName": "home-nfs"}}},
    {"home": {"name": "home", "mountPath": "/home/jovyan", "subPath": "{username}"}},
    "/home/jovyan",
)
DISK_PER_USER = hub_storage(
    {
        "home": {
            "name": "volume-{user_server}",
            "persistentVolumeClaim": {"claimName": "{pvc_name}"},
        }
    },
    {"home": {"name": "volume-{user_server}", "mountPath": "/home/jovyan"}},
    "/home/jovyan",
)


def write(write_file, text):
    return write_file("courses.yaml", textwrap.dedent(text))


@pytest.fixture
def roster(write_file):
    return load_roster([write(write_file, COURSE)]).roster


def mounts_of(profile):
    return {m["mountPath"]: m for m in profile["kubespawner_override"]["volume_mounts"]}


def test_the_course_file_reads_folders_staff_options_and_homes(roster):
    course = roster.course("ds101")
    assert [f.name for f in course.shared_folders] == ["data", "answers", "notes"]
    data, answers, notes = course.shared_folders
    assert data.pvc == "ds101-data" and data.students == "read-only"
    assert (answers.nfs_server, answers.nfs_path) == (
        "nfs.uni.edu",
        "/exports/ds101/answers",
    )
    assert answers.students == "none"
    assert notes.home_subpath == "_courses/ds101/notes"
    assert notes.mount_path == "/srv/notes"
    assert data.origin.endswith("courses.yaml:10")
    assert course.staff.image == "example.org/ds101-staff:1"
    assert (course.staff.cpu_limit, course.staff.mem_limit) == (4.0, "8G")
    assert course.options["size"]["choices"]["large"]["staff_only"] is True
    assert course.staff_see_student_homes is True
    other = roster.course("phys210")
    assert other.shared_folders == () and other.staff is None
    assert dict(other.options) == {} and other.staff_see_student_homes is False


def test_a_student_gets_the_folders_read_only_and_the_students_settings(roster):
    profile = course_profile(roster.course("ds101"), Role.STUDENT, storage=SHARED_HOME)
    override = profile["kubespawner_override"]
    assert override["image"] == "example.org/ds101:1"
    assert (override["cpu_limit"], override["mem_limit"]) == (1.0, "2G")
    assert "environment" not in override
    mounts = mounts_of(profile)
    # no answers folder for students; every folder read-only; no one's home
    assert set(mounts) == {"/home/jovyan/shared/data", "/srv/notes"}
    assert all(m["readOnly"] is True for m in mounts.values())
    assert mounts["/srv/notes"] == {
        "name": "home",
        "mountPath": "/srv/notes",
        "subPath": "_courses/ds101/notes",
        "readOnly": True,
    }
    assert override["volumes"] == [
        {"name": "shared-data", "persistentVolumeClaim": {"claimName": "ds101-data"}}
    ]
    assert list(profile["profile_options"]["size"]["choices"]) == ["small"]


@pytest.mark.parametrize("role", [Role.TA, Role.INSTRUCTOR])
def test_staff_get_their_settings_the_folders_read_write_and_their_students_homes(
    roster, role
):
    course = roster.course("ds101")
    profile = course_profile(
        course, role, storage=SHARED_HOME, students=["bob", "alice"]
    )
    override = profile["kubespawner_override"]
    assert override["image"] == "example.org/ds101-staff:1"
    assert (override["cpu_limit"], override["mem_limit"]) == (4.0, "8G")
    assert override["environment"] == {"ROLE": "staff"}
    mounts = mounts_of(profile)
    for path in (
        "/home/jovyan/shared/data",
        "/home/jovyan/shared/answers",
        "/srv/notes",
    ):
        assert mounts[path]["readOnly"] is False, path
    assert {v["name"]: v for v in override["volumes"]}["shared-answers"] == {
        "name": "shared-answers",
        "nfs": {"server": "nfs.uni.edu", "path": "/exports/ds101/answers"},
    }
    for student in ("alice", "bob"):
        assert mounts[f"/home/jovyan/students/{student}"] == {
            "name": "home",
            "mountPath": f"/home/jovyan/students/{student}",
            "subPath": student,
            "readOnly": True,
        }
    assert profile["classroom"]["student_homes"] == 2
    assert list(profile["profile_options"]["size"]["choices"]) == ["small", "large"]
    assert "staff_only" not in profile["profile_options"]["size"]["choices"]["large"]


def test_profiles_for_gives_staff_only_their_own_courses_students(roster):
    asked = []

    def students_of(course_id):
        asked.append(course_id)
        return [u for u, r in roster.members(course_id).items() if r is Role.STUDENT]

    # tina is a TA of ds101 and a student of phys210
    profiles = profiles_for(
        roster.memberships("tina"),
        roster.courses,
        storage=SHARED_HOME,
        students_of=students_of,
    )
    ds101, phys210 = profiles
    homes = [p for p in mounts_of(ds101) if p.startswith("/home/jovyan/students/")]
    assert homes == ["/home/jovyan/students/alice", "/home/jovyan/students/bob"]
    assert "volume_mounts" not in phys210["kubespawner_override"]
    # the roster is asked only for the course tina is staff of
    assert asked == ["ds101"]
    # a student of ds101 is never given anyone's home
    alice = profiles_for(
        roster.memberships("alice"),
        roster.courses,
        storage=SHARED_HOME,
        students_of=students_of,
    )
    assert not [p for p in mounts_of(alice[0]) if "/students/" in p]
    assert asked == ["ds101"]


def test_an_admin_outside_the_course_gets_the_students_view(roster):
    profile = course_profile(roster.course("ds101"), None, storage=SHARED_HOME)
    assert all(m["readOnly"] for m in mounts_of(profile).values())
    assert list(profile["profile_options"]["size"]["choices"]) == ["small"]


def test_a_forged_staff_only_choice_is_refused_like_any_unknown_choice(roster):
    student = [course_profile(roster.course("ds101"), Role.STUDENT)]
    with pytest.raises(InvalidOptions, match=r"'large' is not one of the choices"):
        resolve_user_options({"profile": "ds101", "size": "large"}, student)
    assert resolve_user_options({"profile": "ds101", "size": "small"}, student) == {
        "profile": "ds101",
        "size": "small",
    }
    ta = [course_profile(roster.course("ds101"), Role.TA)]
    assert resolve_user_options({"profile": "ds101", "size": "large"}, ta)["size"] == (
        "large"
    )


def test_a_students_only_default_choice_when_the_default_is_staff_only(write_file):
    path = write(
        write_file,
        """\
        courses:
          - id: c1
            options:
              gpu:
                choices:
                  cpu: {}
                  a100: {default: true, staff_only: true}
        """,
    )
    course = load_roster([path]).roster.course("c1")
    student = course_profile(course, Role.STUDENT)["profile_options"]["gpu"]
    assert student == {
        "display_name": "gpu",
        "choices": {"cpu": {"display_name": "cpu", "default": True}},
    }
    staff = course_profile(course, Role.TA)["profile_options"]["gpu"]["choices"]
    assert [n for n, c in staff.items() if c.get("default")] == ["a100"]


def test_without_a_shared_home_the_home_folders_are_left_out_and_check_says_why(
    roster,
):
    course = roster.course("ds101")
    profile = course_profile(course, Role.TA, storage=DISK_PER_USER, students=["alice"])
    mounts = mounts_of(profile)
    assert set(mounts) == {"/home/jovyan/shared/data", "/home/jovyan/shared/answers"}
    problems = storage_problems(course, DISK_PER_USER)
    assert len(problems) == 2
    assert (
        "courses.yaml:15: course ds101, shared folder 'notes': home_subpath needs a"
        in (problems[0])
    )
    assert "disk per user" in problems[0]
    assert "courses.yaml:2: course ds101: staff_see_student_homes needs a shared" in (
        problems[1]
    )
    assert "ReadWriteOnce" in problems[1]
    assert storage_problems(course, SHARED_HOME) == []


def test_a_course_volume_list_and_the_folders_are_merged(write_file):
    path = write(
        write_file,
        """\
        courses:
          - id: c1
            kubespawner_override:
              volumes: [{name: scratch, emptyDir: {}}]
              volume_mounts: [{name: scratch, mountPath: /scratch}]
            staff:
              kubespawner_override:
                volumes: [{name: grading, emptyDir: {}}]
                volume_mounts: [{name: grading, mountPath: /grading}]
            shared_folders:
              - {name: data, pvc: c1-data}
        """,
    )
    course = load_roster([path]).roster.course("c1")
    student = course_profile(course, Role.STUDENT)["kubespawner_override"]
    assert [v["name"] for v in student["volumes"]] == ["scratch", "shared-data"]
    staff = course_profile(course, Role.TA)["kubespawner_override"]
    assert [v["name"] for v in staff["volumes"]] == [
        "scratch",
        "grading",
        "shared-data",
    ]
    assert [m["mountPath"] for m in staff["volume_mounts"]] == [
        "/scratch",
        "/grading",
        "/home/jovyan/shared/data",
    ]


def test_hub_storage_finds_the_shared_home_in_lists_and_dicts():
    listed = hub_storage(
        [{"name": "home", "nfs": {"server": "nfs", "path": "/homes"}}],
        [{"name": "home", "mountPath": "/home/jovyan", "subPath": "homes/{username}"}],
        "/home/jovyan",
    )
    assert listed.shared_home.volume == "home"
    # {username} as KubeSpawner expands it for that user
    assert (
        listed.shared_home.sub_path_of("alice@uni.edu")
        == "homes/alice-uni-edu---01b8dabb"
    )
    assert (
        listed.shared_home.sub_path_of("alice@uni.edu", "escape")
        == "homes/alice-40uni-2eedu"
    )
    assert SHARED_HOME.shared_home.sub_path_of("alice") == "alice"
    assert DISK_PER_USER.shared_home is None
    no_sub = hub_storage(
        [{"name": "home", "persistentVolumeClaim": {"claimName": "home-nfs"}}],
        [{"name": "home", "mountPath": "/home/jovyan"}],
        "/home/jovyan",
    )
    assert no_sub.shared_home is None and "does not name the user" in (
        no_sub.no_shared_home
    )


PROBLEMS = [
    (
        "shared_folders: [{name: Data!, pvc: x}]",
        "shared folder name 'Data!' must be 1-50 lower-case letters",
    ),
    (
        "shared_folders: [{name: data}]",
        "shared folder 'data' needs exactly one of pvc, nfs or home_subpath",
    ),
    (
        "shared_folders: [{name: data, pvc: x, home_subpath: y}]",
        "needs exactly one of pvc, nfs or home_subpath (it has pvc and home_subpath)",
    ),
    (
        "shared_folders: [{name: data, home_subpath: ../alice}]",
        "home_subpath '../alice' must be a relative folder",
    ),
    (
        "shared_folders: [{name: data, home_subpath: /etc}]",
        "home_subpath '/etc' must be a relative folder",
    ),
    (
        "shared_folders: [{name: data, pvc: x, mount_path: srv/data}]",
        "mount_path 'srv/data' must be an absolute path",
    ),
    (
        "shared_folders: [{name: a, pvc: x, mount_path: /srv}, {name: b, pvc: y,"
        " mount_path: /srv/b}]",
        "shared folder 'b': mount path '/srv/b' overlaps '/srv', already used",
    ),
    (
        "shared_folders: [{name: a, pvc: x}, {name: a, pvc: y}]",
        "shared folder 'a' is already defined on line 3",
    ),
    (
        "shared_folders: [{name: a, nfs: {server: nfs}}]",
        "nfs needs both 'server' and 'path'",
    ),
    (
        "shared_folders: [{name: a, pvc: Bad_Claim}]",
        "pvc 'Bad_Claim' is not a PersistentVolumeClaim name",
    ),
    (
        "shared_folders: [{name: a, pvc: x, students: read-write}]",
        "students: 'read-write' must be read-only or none",
    ),
    (
        "shared_folders: [{name: a, pvc: x, readonly: true}]",
        "unknown key 'readonly' in a shared folder",
    ),
    ("staff: {image: x, gpu: 1}", "unknown key 'gpu' in staff"),
    ("staff: {cpu_limit: lots}", "staff cpu_limit must be a positive number"),
    (
        "staff: {kubespawner_override: {node_selecter: {}}}",
        "'node_selecter' is not a KubeSpawner setting (did you mean 'node_selector'?)",
    ),
    (
        "options: {size: {choices: {big: {staff_only: true}}}}",
        "option 'size': every choice is staff_only, so students would have none",
    ),
    (
        "options: {size: {choices: {a: {default: true}, b: {default: true}}}}",
        "option 'size' has more than one default choice",
    ),
    ("options: {size: {display_name: Size}}", "option 'size' has no 'choices'"),
    (
        "options: {Size: {choices: {a: {}}}}",
        "option name 'Size' must be 1-63 lower-case letters",
    ),
    (
        "options: {size: {choices: {a: {kubespawner_override: {mem_limit: []}}}}}",
        "kubespawner_override: mem_limit:",
    ),
    (
        "options: {size: {choices: {a: {staff: true}}}}",
        "unknown key 'staff' in choice 'a'",
    ),
    ("staff_see_student_homes: yes please", "staff_see_student_homes must be true"),
]


@pytest.mark.parametrize("text,expected", PROBLEMS)
def test_each_mistake_is_named_with_its_line(
    write_file, roster_problems, text, expected
):
    path = write(write_file, f"courses:\n  - id: c1\n    {text}\n")
    problems = roster_problems([path])
    assert any(p.startswith(f"{path}:3") and expected in p for p in problems), problems


def test_staff_limits_below_the_course_guarantee_are_a_problem(
    write_file, roster_problems
):
    path = write(
        write_file,
        """\
        courses:
          - id: c1
            mem_guarantee: 4G
            staff:
              mem_limit: 2G
        """,
    )
    assert roster_problems([path]) == [
        f"{path}:5: staff get mem_guarantee 4G above mem_limit 2G"
    ]


def test_staff_see_homes_of_a_300_student_course_fits_in_a_pod(roster):
    course = roster.course("ds101")
    students = [f"student{i:03d}@uni.edu" for i in range(300)]
    profile = course_profile(course, Role.TA, storage=SHARED_HOME, students=students)
    homes = [m for m in mounts_of(profile) if "/students/" in m]
    assert len(homes) == 300
    # one mount is about 120 bytes of JSON: far below what etcd and the API take
    size = len(json.dumps(profile["kubespawner_override"]["volume_mounts"]))
    assert size < 300 * 200, size


def run_cli(*args, tmp_path):
    exe = os.path.join(os.path.dirname(sys.executable), "classroom-spawner")
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    env["HOME"] = str(tmp_path)  # no cluster needed
    return subprocess.run(
        [exe, *args], capture_output=True, text=True, env=env, timeout=120
    )


def hub_config_file(write_file, z2jh_config, storage):
    course_file = write(write_file, COURSE)
    static = {"static": {"pvcName": "home-nfs"}} if storage == "static" else {}
    text = z2jh_config(
        {"singleuser": {"storage": {"type": storage, **static}}},
        extra=f"""
            c.JupyterHub.spawner_class = "classroom"
            c.ClassroomRoster.course_files = [{str(course_file)!r}]
            """,
    )
    return write_file(f"jupyterhub_config_{storage}.py", text)


def test_render_shows_a_students_and_a_tas_volumes(write_file, z2jh_config, tmp_path):
    import kubernetes_validate

    config = hub_config_file(write_file, z2jh_config, "static")
    pods = {}
    for user in ("alice", "tina"):
        result = run_cli(
            "render",
            user,
            "--profile",
            "ds101",
            "--json",
            "-f",
            config,
            tmp_path=tmp_path,
        )
        assert result.returncode == 0, result.stderr
        (pod,) = json.loads(result.stdout)["items"]
        kubernetes_validate.validate(
            pod, kubernetes_validate.latest_version(), strict=True
        )
        pods[user] = pod
    student, ta = (pods[u]["spec"] for u in ("alice", "tina"))
    mounts = {m["mountPath"]: m for m in student["containers"][0]["volumeMounts"]}
    assert mounts["/home/jovyan"]["subPath"] == "alice"
    assert mounts["/home/jovyan/shared/data"]["readOnly"] is True
    assert mounts["/srv/notes"] == {
        "mountPath": "/srv/notes",
        "name": "home",
        "readOnly": True,
        "subPath": "_courses/ds101/notes",
    }
    assert "/home/jovyan/shared/answers" not in mounts
    assert not [p for p in mounts if "/students/" in p]
    assert student["containers"][0]["image"] == "example.org/ds101:1"
    mounts = {m["mountPath"]: m for m in ta["containers"][0]["volumeMounts"]}
    assert mounts["/home/jovyan"]["subPath"] == "tina"
    assert not mounts["/home/jovyan/shared/data"]["readOnly"]
    assert not mounts["/home/jovyan/shared/answers"]["readOnly"]
    homes = {p: m["subPath"] for p, m in mounts.items() if "/students/" in p}
    # ds101's students only: not zed of phys210, where tina is a student herself
    assert homes == {
        "/home/jovyan/students/alice": "alice",
        "/home/jovyan/students/bob": "bob",
    }
    assert all(mounts[p]["readOnly"] for p in homes)
    assert ta["containers"][0]["image"] == "example.org/ds101-staff:1"
    assert ta["containers"][0]["resources"]["limits"]["memory"] == 8 * 1024**3
    volumes = {v["name"]: v for v in ta["volumes"]}
    assert volumes["shared-data"]["persistentVolumeClaim"]["claimName"] == "ds101-data"
    assert volumes["home"]["persistentVolumeClaim"]["claimName"] == "home-nfs"


def test_check_says_what_a_disk_per_student_hub_cannot_do(
    write_file, z2jh_config, tmp_path
):
    config = hub_config_file(write_file, z2jh_config, "dynamic")
    result = run_cli("check", "-f", config, tmp_path=tmp_path)
    assert result.returncode == 3, result.stdout + result.stderr
    assert (
        "courses.yaml:15: course ds101, shared folder 'notes': home_subpath needs a"
        " shared home volume, but homes are a disk per user"
    ) in result.stdout
    assert (
        "courses.yaml:2: course ds101: staff_see_student_homes needs a shared home volume"
    ) in result.stdout
    config = hub_config_file(write_file, z2jh_config, "static")
    result = run_cli("check", "-f", config, tmp_path=tmp_path)
    assert "shared home volume" not in result.stdout, result.stdout


def test_images_lists_the_staff_image_for_prepulling(write_file, z2jh_config, tmp_path):
    config = hub_config_file(write_file, z2jh_config, "static")
    result = run_cli("images", "-f", config, tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    assert {"example.org/ds101:1", "example.org/ds101-staff:1"} <= set(
        result.stdout.split()
    )


def test_check_warns_of_a_folder_over_the_home_or_a_hub_mount(write_file):
    path = write(
        write_file,
        """\
        courses:
          - id: c1
            shared_folders:
              - {name: over-home, pvc: a, mount_path: /home}
              - {name: over-hub, pvc: b, mount_path: /srv/datasets}
              - {name: fine, pvc: c}
            staff_see_student_homes: true
          - id: c2
            shared_folders:
              - {name: students, pvc: d, mount_path: /home/jovyan/students}
            staff_see_student_homes: true
        """,
    )
    roster = load_roster([path]).roster
    storage = hub_storage(
        [
            {"name": "home", "persistentVolumeClaim": {"claimName": "home-nfs"}},
            {"name": "datasets", "emptyDir": {}},
        ],
        [
            {"name": "home", "mountPath": "/home/jovyan", "subPath": "{username}"},
            {"name": "datasets", "mountPath": "/srv/datasets"},
        ],
        "/home/jovyan",
    )
    assert storage_problems(roster.course("c1"), storage) == [
        f"{path}:4: course c1, shared folder 'over-home': mount path /home would hide"
        " the home (/home/jovyan)",
        f"{path}:5: course c1, shared folder 'over-hub': mount path /srv/datasets is"
        " where the hub's own configuration mounts a volume; the folder replaces that"
        " mount in this course's servers",
    ]
    (problem,) = storage_problems(roster.course("c2"), storage)
    assert problem.startswith(f"{path}:10: course c2, shared folder 'students'")
    assert "is where staff see their students' homes" in problem


def test_a_home_subpath_naming_more_than_the_user_gives_no_homes(roster):
    storage = hub_storage(
        [{"name": "home", "persistentVolumeClaim": {"claimName": "home-nfs"}}],
        [
            {
                "name": "home",
                "mountPath": "/home/jovyan",
                "subPath": "{username}/{servername}",
            }
        ],
        "/home/jovyan",
    )
    assert storage.shared_home.sub_path_of("alice") is None
    course = roster.course("ds101")
    profile = course_profile(course, Role.TA, storage=storage, students=["alice"])
    assert not [p for p in mounts_of(profile) if "/students/" in p]
    (problem,) = (
        p for p in storage_problems(course, storage) if "students' homes" in p
    )
    assert "uses more than the username" in problem


def test_the_spawn_form_shows_a_student_no_staff_only_choice(roster):
    from classroom_spawner.profiles import UNLISTED
    from classroom_spawner.spawner import _FORM_TEMPLATE

    def form(role):
        profile = course_profile(roster.course("ds101"), role)
        return _FORM_TEMPLATE.render(
            profile_list=[profile], user_options={}, unlisted=UNLISTED
        )

    student, ta = form(Role.STUDENT), form(Role.TA)
    assert "Server size" in student and 'value="small"' in student
    assert 'value="large"' not in student
    assert 'value="large"' in ta


def test_check_warns_of_a_home_subpath_inside_someones_home(write_file):
    path = write(
        write_file,
        """\
        courses:
          - id: c1
            shared_folders:
              - {name: notes, home_subpath: tina/notes}
        """,
    )
    course = load_roster([path]).roster.course("c1")
    assert storage_problems(course, SHARED_HOME, ["alice", "tina"]) == [
        f"{path}:4: course c1, shared folder 'notes': home_subpath tina/notes is inside"
        " the home of tina, who could change what the course's students read; put"
        " course folders beside the homes, e.g. _courses/..."
    ]
    assert storage_problems(course, SHARED_HOME, ["alice", "bob"]) == []
