"""The local OpenID Connect provider (classroom_spawner.local.oidc), for real.

Node's ``oidc-provider`` runs as a subprocess; the tests act as the OAuth
client (authorization code + PKCE, token exchange, id_token verified against
the JWKS, userinfo, refresh, revocation) and as the user (the HTML login
form, without a browser). The last tests start a real JupyterHub process with
plain ``GenericOAuthenticator`` and log in through the browserless driver.
"""

import base64
import hashlib
import itertools
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time

import jwt
import pytest
import requests

from classroom_spawner.local.oidc import (
    DEFAULT_TITLE,
    OIDCProvider,
    OIDCProviderError,
    find_node_modules,
)
from classroom_spawner.local.oidc.browserless import authorize, login, parse_login_form

CLIENT_REDIRECT = "http://127.0.0.1:9/test-client/callback"  # never requested
_names = itertools.count()


@pytest.fixture(scope="module")
def idp():
    with OIDCProvider(
        redirect_uris=[CLIENT_REDIRECT], hint="Try alice / alice-pw"
    ) as provider:
        yield provider


@pytest.fixture
def user(idp):
    """A fresh account per test, so tests sharing the provider stay independent."""
    name = f"student{next(_names)}"
    password = secrets.token_urlsafe(8)
    idp.add_account(
        name,
        password,
        name=f"Student {name}",
        email=f"{name}@example.org",
        email_verified=True,
        groups=["intro-101", "intro-101-students"],
    )
    return name, password


def pkce_pair():
    verifier = secrets.token_urlsafe(32)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def auth_params(idp, challenge, scope="openid profile email groups", **extra):
    return {
        "client_id": idp.client_id,
        "response_type": "code",
        "redirect_uri": CLIENT_REDIRECT,
        "scope": scope,
        "state": secrets.token_urlsafe(8),
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **extra,
    }


def token_request(idp, **params):
    return requests.post(
        idp.token_url,
        data={"client_id": idp.client_id, "client_secret": idp.client_secret, **params},
        timeout=30,
    )


def log_in_as_client(idp, username, password, scope="openid profile email groups"):
    """Authorization code + PKCE flow; returns the token response (dict)."""
    verifier, challenge = pkce_pair()
    params = auth_params(idp, challenge, scope=scope)
    result = authorize(
        requests.Session(), idp.authorize_url, params, username, password
    )
    assert result.code, (result.login_error, result.params, idp.log_tail())
    assert result.params["state"] == params["state"]
    assert result.params["iss"] == idp.issuer
    response = token_request(
        idp,
        grant_type="authorization_code",
        code=result.code,
        redirect_uri=CLIENT_REDIRECT,
        code_verifier=verifier,
    )
    assert response.status_code == 200, response.text
    return response.json()


def userinfo(idp, access_token):
    return requests.get(
        idp.userinfo_url,
        headers={"Authorization": f"Bearer {access_token}"},
        timeout=30,
    )


# ----------------------------------------------------------------- protocol
def test_discovery_document(idp):
    doc = requests.get(idp.discovery_url, timeout=30).json()
    assert doc["issuer"] == idp.issuer
    assert idp.issuer.startswith("http://127.0.0.1:")
    for key, url in [
        ("authorization_endpoint", idp.authorize_url),
        ("token_endpoint", idp.token_url),
        ("userinfo_endpoint", idp.userinfo_url),
        ("jwks_uri", idp.jwks_url),
    ]:
        assert doc[key] == url and url.startswith(idp.issuer + "/")
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert doc["response_types_supported"] == ["code"]
    assert {"openid", "profile", "email", "groups", "offline_access"} <= set(
        doc["scopes_supported"]
    )
    assert {"groups", "email", "preferred_username"} <= set(doc["claims_supported"])
    keys = requests.get(idp.jwks_url, timeout=30).json()["keys"]
    assert [k["kty"] for k in keys] == ["RSA"] and "d" not in keys[0]


def test_login_page_is_a_usable_form(idp):
    _, challenge = pkce_pair()
    session = requests.Session()
    page = session.get(
        idp.authorize_url, params=auth_params(idp, challenge), timeout=30
    )
    assert page.status_code == 200
    assert f"<title>{DEFAULT_TITLE} — sign in</title>" in page.text
    for snippet in [
        'id="login-form" method="post"',
        '<label for="username">',
        'id="username" name="username" type="text"',
        '<label for="password">',
        'id="password" name="password" type="password"',
        '<button id="submit" type="submit">',
        "Try alice / alice-pw",
    ]:
        assert snippet in page.text
    form = parse_login_form(page.text, page.url)
    assert (form.username_field, form.password_field, form.method) == (
        "username",
        "password",
        "post",
    )
    assert form.action == page.url + "/login"
    assert form.error is None


def test_code_flow_with_pkce_id_token_and_userinfo(idp, user):
    name, password = user
    tokens = log_in_as_client(idp, name, password)
    assert tokens["token_type"] == "Bearer"
    assert set(tokens["scope"].split()) == {"openid", "profile", "email", "groups"}
    assert tokens["refresh_token"]

    # id_token: signature checked against the published JWKS
    signing_key = jwt.PyJWKClient(idp.jwks_url).get_signing_key_from_jwt(
        tokens["id_token"]
    )
    claims = jwt.decode(
        tokens["id_token"],
        signing_key.key,
        algorithms=["RS256"],
        audience=idp.client_id,
        issuer=idp.issuer,
    )
    assert claims["sub"] == name
    assert claims["preferred_username"] == name
    assert claims["groups"] == ["intro-101", "intro-101-students"]
    assert claims["email"] == f"{name}@example.org"

    info = userinfo(idp, tokens["access_token"]).json()
    assert info == {
        "sub": name,
        "name": f"Student {name}",
        "preferred_username": name,
        "email": f"{name}@example.org",
        "email_verified": True,
        "groups": ["intro-101", "intro-101-students"],
    }


def test_claims_follow_the_requested_scopes(idp, user):
    name, password = user
    info = userinfo(
        idp, log_in_as_client(idp, name, password, "openid email")["access_token"]
    ).json()
    assert info == {"sub": name, "email": f"{name}@example.org", "email_verified": True}
    # `groups` alone releases the groups claim; `profile` releases it too (tested above)
    info = userinfo(
        idp, log_in_as_client(idp, name, password, "openid groups")["access_token"]
    ).json()
    assert info == {"sub": name, "groups": ["intro-101", "intro-101-students"]}


def test_pkce_is_required_and_checked(idp, user):
    name, password = user
    session = requests.Session()
    # no code_challenge: the provider refuses the request (redirect with an error)
    params = auth_params(idp, "unused")
    del params["code_challenge"], params["code_challenge_method"]
    result = authorize(session, idp.authorize_url, params, name, password)
    assert result.params["error"] == "invalid_request"
    assert "PKCE" in result.params["error_description"]

    # a wrong code_verifier at the token endpoint
    verifier, challenge = pkce_pair()
    result = authorize(
        session, idp.authorize_url, auth_params(idp, challenge), name, password
    )
    response = token_request(
        idp,
        grant_type="authorization_code",
        code=result.code,
        redirect_uri=CLIENT_REDIRECT,
        code_verifier=pkce_pair()[0],
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_wrong_password_shows_the_form_again_with_an_error(idp, user):
    name, password = user
    _, challenge = pkce_pair()
    session = requests.Session()
    result = authorize(
        session, idp.authorize_url, auth_params(idp, challenge), name, "nope"
    )
    assert result.code is None and result.redirect is None
    assert result.login_error == "Invalid username or password."
    page = result.response
    assert page.status_code == 200
    assert (
        '<p id="error" class="error" role="alert">Invalid username or password.</p>'
        in page.text
    )
    assert f'value="{name}"' in page.text  # username kept, password not
    # the same form then accepts the right password
    form = parse_login_form(page.text, page.url)
    response = session.post(
        form.action, data=form.fill(name, password), allow_redirects=False, timeout=30
    )
    while not response.headers["Location"].startswith(CLIENT_REDIRECT):
        assert response.status_code == 303
        response = session.get(
            requests.compat.urljoin(response.url, response.headers["Location"]),
            allow_redirects=False,
            timeout=30,
        )
    assert response.headers["Location"].startswith(CLIENT_REDIRECT + "?code=")

    unknown = authorize(
        requests.Session(),
        idp.authorize_url,
        auth_params(idp, challenge),
        "nobody",
        "x",
    )
    assert unknown.login_error == "Invalid username or password."


def test_provider_session_skips_the_form_unless_prompt_login(idp, user):
    """Like a real identity provider: signed in once, the browser is not asked again."""
    name, password = user
    session = requests.Session()
    _, challenge = pkce_pair()
    first = authorize(
        session, idp.authorize_url, auth_params(idp, challenge), name, password
    )
    assert first.code
    # same browser: no form, straight back with a code (the password is not needed)
    again = authorize(
        session, idp.authorize_url, auth_params(idp, challenge), name, "not-used"
    )
    assert again.code and again.login_error is None
    # prompt=login forces the form
    forced = authorize(
        session,
        idp.authorize_url,
        auth_params(idp, challenge, prompt="login"),
        name,
        "wrong",
    )
    assert forced.code is None and forced.login_error == "Invalid username or password."


def test_refresh_token_works_until_revoked(idp, user):
    name, password = user
    tokens = log_in_as_client(idp, name, password)
    refreshed = token_request(
        idp, grant_type="refresh_token", refresh_token=tokens["refresh_token"]
    )
    assert refreshed.status_code == 200, refreshed.text
    fresh = refreshed.json()
    assert fresh["access_token"] != tokens["access_token"]
    assert jwt.decode(fresh["id_token"], options={"verify_signature": False})[
        "groups"
    ] == [
        "intro-101",
        "intro-101-students",
    ]
    assert userinfo(idp, fresh["access_token"]).status_code == 200

    revoked = idp.revoke(name)
    assert (
        revoked["Grant"] == 1
        and revoked["RefreshToken"] == 1
        and revoked["Session"] == 1
    )

    # what OAuthenticator.refresh_user sees: userinfo 401, then refresh fails
    assert userinfo(idp, fresh["access_token"]).status_code == 401
    again = token_request(
        idp, grant_type="refresh_token", refresh_token=tokens["refresh_token"]
    )
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"
    # and the user can log in again (with the password: the session is gone)
    assert log_in_as_client(idp, name, password)["access_token"]


def test_account_changes_at_runtime(idp, user):
    name, password = user
    tokens = log_in_as_client(idp, name, password)

    # a changed groups claim is visible at once, with the existing access token
    idp.update_claims(name, groups=["intro-101", "intro-101-tas"])
    assert userinfo(idp, tokens["access_token"]).json()["groups"] == [
        "intro-101",
        "intro-101-tas",
    ]
    refreshed = token_request(
        idp, grant_type="refresh_token", refresh_token=tokens["refresh_token"]
    ).json()
    id_token = jwt.decode(refreshed["id_token"], options={"verify_signature": False})
    assert id_token["groups"] == ["intro-101", "intro-101-tas"]

    # a new account can log in; usernames are case-insensitive at the form
    newcomer = f"{name}-late"
    idp.add_account(newcomer, "pw2", sub=f"uid-{newcomer}", groups=[])
    late = log_in_as_client(idp, newcomer.upper(), "pw2")
    assert userinfo(idp, late["access_token"]).json()["sub"] == f"uid-{newcomer}"
    listed = {a["username"]: a for a in idp.list_accounts()}
    assert listed[newcomer]["claims"] == {"groups": [], "preferred_username": newcomer}
    assert "password" not in listed[newcomer]

    # a removed account loses its tokens and can no longer log in
    idp.remove_account(newcomer)
    assert userinfo(idp, late["access_token"]).status_code == 401
    refused = token_request(
        idp, grant_type="refresh_token", refresh_token=late["refresh_token"]
    )
    assert refused.json()["error"] == "invalid_grant"
    _, challenge = pkce_pair()
    again = authorize(
        requests.Session(),
        idp.authorize_url,
        auth_params(idp, challenge),
        newcomer,
        "pw2",
    )
    assert again.login_error == "Invalid username or password."


def test_admin_api_needs_the_secret(idp):
    url = f"{idp.issuer}/admin/accounts"
    assert requests.get(url, timeout=30).status_code == 401
    assert (
        requests.get(
            url, headers={"Authorization": "Bearer wrong"}, timeout=30
        ).status_code
        == 401
    )
    good = requests.get(
        url, headers={"Authorization": f"Bearer {idp.admin_secret}"}, timeout=30
    )
    assert good.status_code == 200
    with pytest.raises(OIDCProviderError, match="404"):
        idp.revoke("no-such-user")


# ---------------------------------------------------------------- lifecycle
def _pid_alive(pid):
    """True while the process exists and is not a zombie (an exited child
    whose parent has not reaped it yet counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


async def test_async_context_manager_starts_and_stops_node():
    async with OIDCProvider(
        [{"username": "ada", "password": "pw", "groups": ["g"]}],
        redirect_uris=[CLIENT_REDIRECT],
        title="Test university",
    ) as provider:
        pid = provider._proc.pid
        assert provider.running and _pid_alive(pid)
        assert provider.list_accounts() == [
            {
                "username": "ada",
                "sub": "ada",
                "claims": {"groups": ["g"], "preferred_username": "ada"},
            }
        ]
        page = requests.get(provider.issuer + "/", timeout=30)
        assert "<title>Test university — OpenID Connect provider</title>" in page.text
        assert "READY" not in provider.log_tail()  # stdout is not mixed into the log
        assert "Unsupported runtime" not in provider.log_tail()
    assert not provider.running
    assert not _pid_alive(pid)


def test_node_exits_when_its_parent_goes_away(tmp_path):
    """The provider never outlives a parent that died without calling stop()."""
    script = textwrap.dedent("""
        import sys
        from classroom_spawner.local.oidc import OIDCProvider
        p = OIDCProvider().start()
        print(p._proc.pid, flush=True)
        sys.stdin.read()
        """)
    parent = subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    node_pid = int(parent.stdout.readline())
    assert _pid_alive(node_pid)
    parent.send_signal(signal.SIGKILL)  # no atexit, no stop(): only the closed pipe
    parent.wait()
    deadline = time.monotonic() + 30  # a readiness bound, not a timing assertion
    while _pid_alive(node_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _pid_alive(node_pid)


def test_start_failure_reports_the_provider_log():
    bad = OIDCProvider(
        clients=[
            {"client_id": "x", "client_secret": "y", "redirect_uris": ["not a url"]}
        ]
    )
    with pytest.raises(OIDCProviderError, match="redirect_uris") as excinfo:
        bad.start()
    assert "exited with status" in str(excinfo.value)
    assert not bad.running


# -------------------------------------------------------- real JupyterHub
def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def hub(idp, tmp_path_factory):
    """A real JupyterHub (+ configurable-http-proxy) with GenericOAuthenticator.

    Minimal on purpose; to be replaced by the shared launcher
    (classroom_spawner.local.hub) once it exists.
    """
    tmp = tmp_path_factory.mktemp("hub")
    node_modules = find_node_modules()
    chp = node_modules / ".bin" / "configurable-http-proxy"
    assert chp.exists(), chp
    port, hub_port, proxy_api_port = free_port(), free_port(), free_port()
    hub_url = f"http://127.0.0.1:{port}/"
    auth = idp.oauthenticator_config(hub_url=hub_url)
    (tmp / "jupyterhub_config.py").write_text(textwrap.dedent(f"""
            import json
            c = get_config()  # noqa
            c.JupyterHub.ip = "127.0.0.1"
            c.JupyterHub.port = {port}
            c.JupyterHub.hub_ip = "127.0.0.1"
            c.JupyterHub.hub_port = {hub_port}
            c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api_port}"
            c.ConfigurableHTTPProxy.command = [{str(chp)!r}]
            c.ConfigurableHTTPProxy.pid_file = {str(tmp / "proxy.pid")!r}
            c.JupyterHub.db_url = "sqlite:///{tmp / "jupyterhub.sqlite"}"
            c.JupyterHub.cookie_secret_file = {str(tmp / "cookie_secret")!r}
            c.JupyterHub.redirect_to_server = False
            c.JupyterHub.authenticator_class = "generic-oauth"
            c.GenericOAuthenticator.update(json.loads({json.dumps(json.dumps(auth))}))
            c.GenericOAuthenticator.allowed_users = {{"alice"}}
            c.GenericOAuthenticator.enable_auth_state = True
            c.GenericOAuthenticator.manage_groups = True
            c.GenericOAuthenticator.auth_state_groups_key = "oauth_user.groups"
            """))
    env = {
        **os.environ,
        "JUPYTERHUB_CRYPT_KEY": secrets.token_hex(32),
        "CONFIGPROXY_AUTH_TOKEN": secrets.token_hex(16),
    }
    log_path = tmp / "jupyterhub.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jupyterhub",
                "-f",
                str(tmp / "jupyterhub_config.py"),
            ],
            cwd=tmp,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60  # readiness bound, not a timing assertion
        while True:
            assert proc.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, log_path.read_text()[-3000:]
            try:
                if requests.get(hub_url + "hub/api/", timeout=5).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        yield hub_url, log_path
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.mark.hub
def test_hub_login_through_the_real_flow(idp, hub):
    hub_url, log_path = hub
    idp.add_account(
        "alice", "alice-pw", name="Alice", groups=["intro-101", "intro-101-tas"]
    )

    result = login(hub_url, "alice", "alice-pw", next_url="/hub/home")
    assert result.ok, result.describe() + "\n" + log_path.read_text()[-3000:]
    assert result.url == hub_url + "hub/home"
    assert any(u.startswith(idp.issuer + "/interaction/") for u in result.history)
    assert any(
        u.startswith(hub_url + "hub/oauth_callback?code=") for u in result.history
    )

    me = result.api("GET", "user")
    assert me.status_code == 200, me.text
    assert me.json()["name"] == "alice"
    assert sorted(me.json()["groups"]) == ["intro-101", "intro-101-tas"]
    # a state-changing API call with the cookie needs the _xsrf token
    token = result.api(
        "POST", "users/alice/tokens", json={"note": "test", "expires_in": 600}
    )
    assert token.status_code == 201, token.text

    # groups changed at the provider: the next login brings them to the hub
    idp.update_claims("alice", groups=["intro-101"])
    second = login(hub_url, "alice", "alice-pw", next_url="/hub/home")
    assert second.ok, second.describe()
    assert second.api("GET", "user").json()["groups"] == ["intro-101"]


@pytest.mark.hub
def test_hub_refuses_a_user_it_does_not_allow(idp, hub):
    hub_url, _ = hub
    idp.add_account("mallory", "m-pw", groups=["intro-101"])
    result = login(hub_url, "mallory", "m-pw", next_url="/hub/home")
    assert result.status == 403, result.describe()
    assert result.url.startswith(hub_url + "hub/oauth_callback")
    assert result.login_error is None
    assert result.api("GET", "user").status_code == 403  # not logged in


@pytest.mark.hub
def test_hub_login_with_a_wrong_password_stays_at_the_provider(idp, hub):
    hub_url, _ = hub
    idp.add_account("alice", "alice-pw", name="Alice", groups=["intro-101"])
    result = login(hub_url, "alice", "wrong", next_url="/hub/home")
    assert not result.ok
    assert result.login_error == "Invalid username or password."
    assert result.url.startswith(idp.issuer + "/interaction/")


@pytest.mark.hub
@pytest.mark.browser
def test_hub_login_in_headless_chromium(idp, hub):
    """The same login page, filled in by a real browser (Debian's chromium)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        # locally a missing browser is a skip; in CI (CI=true) an error
        (pytest.fail if os.environ.get("CI") else pytest.skip)("no chromium executable")
    from playwright import sync_api

    hub_url, log_path = hub
    idp.add_account("alice", "alice-pw", name="Alice", groups=["intro-101"])
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.goto(hub_url + "hub/oauth_login?next=%2Fhub%2Fhome")
            assert page.title() == f"{DEFAULT_TITLE} — sign in"
            page.get_by_label("Username").fill("alice")
            page.get_by_label("Password").fill("wrong")
            page.get_by_role("button", name="Sign in").click()
            assert (
                page.locator("#error").inner_text() == "Invalid username or password."
            )
            page.fill("#password", "alice-pw")
            page.click("#submit")
            page.wait_for_url(hub_url + "hub/home")
            assert "alice" in page.content(), log_path.read_text()[-3000:]
        finally:
            browser.close()
