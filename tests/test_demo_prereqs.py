"""``classroom-spawner demo`` without its Node and Python helpers says exactly what to
install, instead of a Node ERR_MODULE_NOT_FOUND traceback (classroom_spawner.local.prereqs).
"""

import importlib.util
import json
import os
import shutil
import subprocess
import sys

from classroom_spawner.local import prereqs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLASSROOM_")}
    env.update(extra)
    return env


def run_demo(args, cwd, env):
    exe = os.path.join(os.path.dirname(sys.executable), "classroom-spawner")
    return subprocess.run(
        [exe, "demo", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
    )


def test_npm_packages_are_the_ones_the_repository_pins():
    with open(os.path.join(REPO, "package.json")) as f:
        assert prereqs.NPM_PACKAGES == json.load(f)["dependencies"]


def test_the_checkout_has_everything():
    assert prereqs.demo_problems() == []


def test_demo_without_oidc_provider_says_what_to_install(tmp_path):
    empty = tmp_path / "node_modules"
    empty.mkdir()
    result = run_demo(
        ["--workdir", str(tmp_path / "demo")],
        cwd=tmp_path,
        env=clean_env(CLASSROOM_NODE_MODULES=str(empty)),
    )
    assert result.returncode == 1
    assert "ERR_MODULE_NOT_FOUND" not in result.stderr + result.stdout
    assert f"oidc-provider (not found in {empty}" in result.stderr
    assert prereqs.npm_install_command() in result.stderr
    assert (
        "configurable-http-proxy" not in result.stderr.split("Install them")[0]
    )  # found in the checkout
    assert not (tmp_path / "demo").exists()  # nothing was started or written


def test_missing_proxy_and_python_packages_are_named(monkeypatch):
    monkeypatch.setenv("CLASSROOM_CHP", "/nonexistent/configurable-http-proxy")
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "jupyterlab" else real_find_spec(name, *a),
    )
    npm, python = prereqs.demo_problems()
    assert "configurable-http-proxy (or set CLASSROOM_CHP to its path)" in npm
    assert "oidc-provider (not found" not in npm
    assert python == (
        "the demo's Python packages are missing (jupyterlab): pip install 'classroom-spawner[demo]'"
    )


def test_installed_package_without_node_modules_says_what_to_install(tmp_path):
    """What a plain ``pip install classroom-spawner`` gives: the package away from the
    checkout's node_modules, run from a directory that has none."""
    wheels = tmp_path / "wheel"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--wheel-dir",
            str(wheels),
            REPO,
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    (wheel,) = wheels.glob("classroom_spawner-*.whl")
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
    home = tmp_path / "home"
    home.mkdir()
    node = shutil.which("node")
    assert node, "the tests need Node.js"
    path = os.pathsep.join(
        [os.path.dirname(sys.executable), os.path.dirname(node), "/usr/bin", "/bin"]
    )
    env = clean_env(PYTHONPATH=str(target), PATH=path)
    code = "import sys; from classroom_spawner.cli import main; sys.exit(main(sys.argv[1:]))"
    result = subprocess.run(
        [sys.executable, "-c", code, "demo", "--workdir", str(home / "demo")],
        capture_output=True,
        text=True,
        cwd=home,
        env=env,
        timeout=120,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "ERR_MODULE_NOT_FOUND" not in result.stderr + result.stdout
    assert "oidc-provider (not found" in result.stderr
    assert "configurable-http-proxy (or set CLASSROOM_CHP" in result.stderr
    assert prereqs.npm_install_command() in result.stderr
