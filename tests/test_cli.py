"""The classroom-spawner command, run as a user runs it (a subprocess), and the entry points."""

import json
import os
import subprocess
import sys
import textwrap
from importlib.metadata import entry_points

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REFERENCE_CONFIG = os.path.join(REPO, "jupyterhub_config.py")


def cli(*args, cwd=None):
    exe = os.path.join(os.path.dirname(sys.executable), "classroom-spawner")
    return subprocess.run(
        [exe, *args], capture_output=True, text=True, cwd=cwd or REPO, timeout=120
    )


def test_check_reference_config():
    result = cli("check", "-f", REFERENCE_CONFIG)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Roster: 2 courses" in out
    # the sample Canvas export has 4 students (Test Student skipped), plus
    # emmy.noether@... who is also in phys210's roster
    ds101 = next(line for line in out.splitlines() if line.strip().startswith("ds101"))
    assert ds101.split()[-5:-1] == ["4", "1", "1", "1"]
    assert out.rstrip().endswith("OK")


def test_check_defaults_to_jupyterhub_config_in_the_current_directory():
    result = cli("check")
    assert result.returncode == 0, result.stderr
    assert "Config: jupyterhub_config.py" in result.stdout


def test_check_reports_every_problem_with_file_and_line(tmp_path):
    (tmp_path / "courses.yaml").write_text(
        "courses:\n  - id: c1\n    rosters: [{file: r.csv}]\n  - id: c1\n"
    )
    (tmp_path / "r.csv").write_text("username,role\nalice,student\nbob,boss\n")
    (tmp_path / "jupyterhub_config.py").write_text(
        "c.ClassroomRoster.course_files = ['courses.yaml']\n"
    )
    result = cli("check", cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert (
        f"{tmp_path}/courses.yaml:4: duplicate course id 'c1' (first defined at {tmp_path}/courses.yaml:2)"
        in lines
    )
    assert any(
        line.startswith(f"{tmp_path}/r.csv:3: unknown role 'boss'") for line in lines
    )
    assert lines[-1] == "2 problems found."


def test_check_missing_config_file(tmp_path):
    result = cli("check", "-f", str(tmp_path / "nope.py"))
    assert result.returncode == 1
    assert "no such config file" in result.stderr


def test_check_config_file_that_raises(tmp_path):
    (tmp_path / "jupyterhub_config.py").write_text("c.JupyterHub.ip = undefined_name\n")
    result = cli("check", cwd=tmp_path)
    assert result.returncode == 1
    assert "error while executing the config file" in result.stderr
    assert "undefined_name" in result.stderr


@pytest.mark.parametrize(
    "user", ["Marie.Curie@uni.example.edu", " marie.curie@uni.example.edu "]
)
def test_profiles_json(user):
    result = cli("profiles", user, "--json", "-f", REFERENCE_CONFIG)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["user"] == "marie.curie@uni.example.edu"
    assert {(c["id"], c["role"]) for c in data["courses"]} == {
        ("ds101", "student"),
        ("phys210", "ta"),
    }
    assert [(p["slug"], p["default"]) for p in data["profiles"]] == [
        ("ds101", True),
        ("phys210", False),
    ]
    assert (
        data["profiles"][0]["kubespawner_override"]["image"]
        == "quay.io/jupyter/scipy-notebook:2025-06-02"
    )


def test_profiles_as_admin_lists_every_course():
    result = cli(
        "profiles",
        "someone@uni.example.edu",
        "--admin",
        "--json",
        "-f",
        REFERENCE_CONFIG,
    )
    assert result.returncode == 0, result.stderr
    assert [p["slug"] for p in json.loads(result.stdout)["profiles"]] == [
        "ds101",
        "phys210",
        "admin-large",
    ]


def test_images_lists_every_image_for_prepulling():
    result = cli("images", "-f", REFERENCE_CONFIG)
    assert result.returncode == 0, result.stderr
    assert "quay.io/jupyter/scipy-notebook:2025-06-02" in result.stdout.split()
    result = cli("images", "--z2jh", "-f", REFERENCE_CONFIG)
    import yaml

    extra = yaml.safe_load(result.stdout)["prePuller"]["extraImages"]
    assert {
        "name": "quay.io/jupyter/scipy-notebook",
        "tag": "2025-06-02",
    } in extra.values()


def test_profiles_of_someone_not_on_a_roster():
    result = cli("profiles", "stranger@elsewhere.org", "-f", REFERENCE_CONFIG)
    assert result.returncode == 1
    assert "no profiles" in result.stdout
    assert "You are not enrolled in any course" in result.stdout


@pytest.mark.parametrize(
    "group, name, qualname",
    [
        ("jupyterhub.spawners", "classroom", "ClassroomSpawner"),
        ("jupyterhub.authenticators", "classroom", "ClassroomOAuthenticator"),
        (
            "jupyterhub.authenticators",
            "classroom-github",
            "ClassroomGitHubOAuthenticator",
        ),
    ],
)
def test_entry_points_resolve(group, name, qualname):
    (ep,) = (ep for ep in entry_points(group=group) if ep.name == name)
    assert ep.load().__qualname__ == qualname


def test_jupyterhub_resolves_classroom_by_name():
    # the same lookup JupyterHub does for c.JupyterHub.spawner_class = "classroom"
    code = textwrap.dedent("""
        from jupyterhub.app import JupyterHub
        hub = JupyterHub(spawner_class="classroom", authenticator_class="classroom")
        print(hub.spawner_class.__name__, hub.authenticator_class.__name__)
        """)
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.stdout.split() == [
        "ClassroomSpawner",
        "ClassroomOAuthenticator",
    ], result.stderr


def test_check_warns_when_jupyterhubs_spawn_limit_would_defeat_the_queue(tmp_path):
    (tmp_path / "courses.yaml").write_text("courses:\n  - id: c1\n    students: [a]\n")
    config = tmp_path / "jupyterhub_config.py"
    config.write_text(
        "c.JupyterHub.spawner_class = 'classroom'\n"
        "c.ClassroomRoster.course_files = ['courses.yaml']\n"
        "c.JupyterHub.concurrent_spawn_limit = 64\n"
    )
    result = cli("check", cwd=tmp_path)
    assert result.returncode == 3  # readable, with warnings
    assert "warning: c.JupyterHub.concurrent_spawn_limit is 64" in result.stdout
    assert result.stdout.rstrip().endswith("OK (1 warning)")
    config.write_text(config.read_text() + "c.JupyterHub.concurrent_spawn_limit = 0\n")
    again = cli("check", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "warning" not in again.stdout
    assert again.stdout.rstrip().endswith("OK"), again.stdout


def test_check_reports_authenticator_settings_that_would_stop_the_hub(tmp_path):
    (tmp_path / "courses.yaml").write_text("courses:\n  - id: c1\n    students: [a]\n")
    (tmp_path / "jupyterhub_config.py").write_text(
        "c.JupyterHub.authenticator_class = 'classroom'\n"
        "c.ClassroomRoster.course_files = ['courses.yaml']\n"
        "c.ClassroomOAuthenticator.enable_auth_state = True\n"
        "c.ClassroomOAuthenticator.course_claim_groups = {'idp-ds': 'ds999'}\n"
    )
    result = cli("check", cwd=tmp_path)
    assert result.returncode == 1
    assert (
        "error: ClassroomOAuthenticator.course_claim_groups['idp-ds'] names course 'ds999',"
        " which is not on the roster"
    ) in result.stderr


def test_check_shows_roster_warnings_and_exits_3(tmp_path):
    (tmp_path / "courses.yaml").write_text(
        "courses:\n  - id: c1\n    rosters:\n"
        "      - file: canvas.csv\n        format: canvas\n        sections: [Lab A, Lab Z]\n"
    )
    (tmp_path / "canvas.csv").write_text(
        "Student,ID,SIS User ID,SIS Login ID,Section\n"
        '"Lovelace, Ada",1,,ada@uni.edu,Lab A\n'
        '"Hopper, Grace",2,,,Lab A\n'
    )
    (tmp_path / "jupyterhub_config.py").write_text(
        "c.ClassroomRoster.course_files = ['courses.yaml']\n"
    )
    result = cli("check", cwd=tmp_path)
    assert result.returncode == 3, result.stderr
    lines = result.stdout.splitlines()
    assert (
        f"warning: {tmp_path}/canvas.csv:3: skipped 'Hopper, Grace': no login in column 'SIS Login ID'"
        " (they cannot log in until the export has one)" in lines
    )
    assert (
        f"warning: {tmp_path}/courses.yaml:6: section 'Lab Z' matches no student in"
        f" {tmp_path}/canvas.csv (its Section cells: 'Lab A')"
    ) in lines
    assert lines[-1] == "OK (2 warnings)"
    c1 = next(line for line in lines if line.strip().startswith("c1"))
    assert c1.split()[1:3] == ["c1", "1"]  # title defaults to the id; one student


ESC = "\x1b"


def test_check_prints_text_from_files_with_control_characters_escaped(tmp_path):
    # a file name is the admin's, but may come from anywhere (an LMS download, an archive)
    export = f"gradebook{ESC}]0;pwned{chr(7)}.csv"
    (tmp_path / export).write_text(
        "Student,ID,SIS User ID,SIS Login ID,Section\n\"A, A\",1,,a@uni.edu,Lab A\n"
    )
    (tmp_path / "courses.yaml").write_text(
        "courses:\n  - id: c1\n    rosters:\n"
        '      - {file: "gradebook\\e]0;pwned\\a.csv", format: canvas, sections: [Lab B]}\n'
        '      - {file: "missing\\e[2J.csv"}\n'
    )
    (tmp_path / "jupyterhub_config.py").write_text(
        "c.ClassroomRoster.course_files = ['courses.yaml']\n"
    )
    result = cli("check", cwd=tmp_path)
    assert result.returncode == 1
    assert ESC not in result.stderr and chr(7) not in result.stderr
    assert f"{tmp_path}/missing\\x1b[2J.csv: cannot read roster file" in result.stderr
    # the warning about the (readable) export came along with the problem
    assert (
        f"warning: {tmp_path}/courses.yaml:4: section 'Lab B' matches no student in"
        f" {tmp_path}/gradebook\\x1b]0;pwned\\x07.csv" in result.stderr
    )
    (tmp_path / f"missing{ESC}[2J.csv").write_text("username\nb\n")
    result = cli("check", cwd=tmp_path)
    assert result.returncode == 3, result.stderr
    assert (
        ESC not in result.stdout and "gradebook\\x1b]0;pwned\\x07.csv" in result.stdout
    )


def test_a_course_title_with_a_control_character_is_a_problem(tmp_path):
    (tmp_path / "courses.yaml").write_text(
        'courses:\n  - id: c1\n    title: "Intro\\e[2J"\n'
    )
    (tmp_path / "jupyterhub_config.py").write_text(
        "c.ClassroomRoster.course_files = ['courses.yaml']\n"
    )
    result = cli("check", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith(
        f"{tmp_path}/courses.yaml:3: title contains the control character '\\x1b' (as character 6)"
    ), result.stderr


def test_profiles_prints_display_names_with_control_characters_escaped(tmp_path):
    (tmp_path / "courses.yaml").write_text("courses:\n  - id: c1\n    students: [a]\n")
    (tmp_path / "jupyterhub_config.py").write_text(
        "c.JupyterHub.spawner_class = 'classroom'\n"
        "c.ClassroomRoster.course_files = ['courses.yaml']\n"
        "c.ClassroomSpawner.admin_profiles = [\n"
        "    {'display_name': 'Big\\x1b[2J\\u202eserver', 'slug': 'big',"
        " 'kubespawner_override': {'image': 'img:1\\x1b[31m'}},\n"
        "]\n"
    )
    result = cli("profiles", "admin", "--admin", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert ESC not in result.stdout and "\u202e" not in result.stdout
    assert "Big\\x1b[2J\\u202eserver" in result.stdout


@pytest.mark.parametrize(
    "body",
    [b"<html><body>Sign in</body></html>", b'{"detail": "something else"}'],
    ids=["html", "other-json"],
)
def test_queue_against_something_that_is_not_the_queue_api_says_so(body):
    """A wrong --hub-api-url (a login page, another API) is a clear error, not a traceback."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    class Page(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hub/api"
        result = cli("queue", "--hub-api-url", url, "--token", "t0k3n")
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 1
    assert "did not answer with the spawn queue" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("shape", ["list", "dict"])
def test_check_says_what_a_courses_volumes_give_its_servers(
    tmp_path, z2jh_config, shape
):
    # the hub's volumes as the chart writes them (dicts); the course adds one as a list or dict
    if shape == "list":
        override = "volumes: [{name: datasets, emptyDir: {}}]\n      volume_mounts: [{name: datasets, mountPath: /srv/datasets, readOnly: true}]"
    else:
        override = "volumes: {datasets: {name: datasets, emptyDir: {}}}\n      volume_mounts: {datasets: {name: datasets, mountPath: /srv/datasets, readOnly: true}}"
    (tmp_path / "courses.yaml").write_text(
        "courses:\n  - id: c1\n    students: [a]\n    kubespawner_override:\n      "
        + override
        + "\n"
    )
    config = z2jh_config(
        {
            "hub": {"concurrentSpawnLimit": 0},
            "singleuser": {"cloudMetadata": {"blockWithIptables": False}},
        },
        culler_command=["true"],
        extra="""
            c.JupyterHub.spawner_class = "classroom"
            c.ClassroomRoster.course_files = ["courses.yaml"]
            """,
    )
    (tmp_path / "jupyterhub_config.py").write_text(config)
    result = cli("check", cwd=tmp_path)
    assert result.returncode in (0, 3), result.stderr
    assert (
        "c1: volumes volume-{user_server} (persistentVolumeClaim) at /home/jovyan;"
        " datasets (emptyDir) at /srv/datasets read-only"
    ) in result.stdout, result.stdout
