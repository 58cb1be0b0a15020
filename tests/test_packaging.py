"""The built wheel, installed, is the whole product: code, templates, the lesson script,
the node scripts, and the entry points JupyterHub looks up."""

import os
import subprocess
import sys
import zipfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--wheel-dir",
            str(out),
            REPO,
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    (path,) = out.glob("classroom_spawner-*.whl")
    return path


def test_wheel_carries_every_file_the_product_needs(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in [
        "classroom_spawner/templates/classroom_form.html",
        "classroom_spawner/lessons/sync.py",
        "classroom_spawner/local/oidc/provider.mjs",
        "classroom_spawner/spawner.py",
        "classroom_spawner/auth.py",
    ]:
        assert needed in names
    assert not any(n.startswith(("tests/", "node_modules/", ".venv")) for n in names)
    (entry_points,) = (n for n in names if n.endswith(".dist-info/entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert (
        "[jupyterhub.spawners]\nclassroom = classroom_spawner.spawner:ClassroomSpawner"
        in text
    )
    assert "classroom = classroom_spawner.auth:ClassroomOAuthenticator" in text
    assert "classroom-spawner = classroom_spawner.cli:main" in text


def test_installed_wheel_checks_the_reference_config(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    # the installed copy, not the source tree, must be what runs
    env = dict(os.environ, PYTHONPATH=str(target))
    code = (
        "import sys, classroom_spawner, classroom_spawner.lessons.initcontainer as ic;"
        "print(classroom_spawner.__file__);"
        "print(len(ic.sync_script()));"
        "from classroom_spawner.cli import main;"
        f"sys.exit(main(['check', '-f', {os.path.join(REPO, 'jupyterhub_config.py')!r}]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(str(target))
    assert (
        int(lines[1]) > 10_000
    )  # the lesson script was read from the installed package
    assert "Roster: 2 courses" in result.stdout and lines[-1] == "OK"
