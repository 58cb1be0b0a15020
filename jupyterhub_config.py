# Reference configuration for a classroom JupyterHub on Kubernetes.
#
# Copy this file next to your hub (or into Z2JH's hub.extraConfig, minus the
# lines Z2JH already sets) and adapt the marked values. Check it with:
#
#     classroom-spawner check -f jupyterhub_config.py
#
# Every option below is documented in the configuration reference
# (docs/reference.md, generated from the traits' help text).
import os

c = get_config()  # noqa: F821 (provided by JupyterHub's config loader)
here = os.path.dirname(os.path.abspath(__file__))

# -- Who is in which course ----------------------------------------------------
#
# One YAML course file lists the courses (title, image, CPU and memory, lesson
# repos), their staff, and the roster exports (CSV, Canvas gradebook) that add
# students. Edit the files while the hub runs: changes are picked up within
# check_interval seconds; a file that breaks keeps the last good roster in force.
c.ClassroomRoster.course_files = [os.path.join(here, "examples", "courses.yaml")]
c.ClassroomRoster.check_interval = 10

# -- Login ---------------------------------------------------------------------
#
# "classroom" is ClassroomOAuthenticator: OpenID Connect login (Keycloak, Azure
# AD, Google, CILogon, ...) that admits the people on a roster. Use
# "classroom-github" for GitHub login instead. The OAuth client settings come
# from the environment here; set them directly if you prefer.
c.JupyterHub.authenticator_class = "classroom"
c.ClassroomOAuthenticator.client_id = os.environ.get("OAUTH_CLIENT_ID", "classroom-hub")
c.ClassroomOAuthenticator.client_secret = os.environ.get("OAUTH_CLIENT_SECRET", "")
c.ClassroomOAuthenticator.oauth_callback_url = os.environ.get(
    "OAUTH_CALLBACK_URL", "https://hub.uni.example.edu/hub/oauth_callback"
)
c.ClassroomOAuthenticator.authorize_url = os.environ.get(
    "OAUTH2_AUTHORIZE_URL", "https://login.uni.example.edu/oauth2/authorize"
)
c.ClassroomOAuthenticator.token_url = os.environ.get(
    "OAUTH2_TOKEN_URL", "https://login.uni.example.edu/oauth2/token"
)
c.ClassroomOAuthenticator.userdata_url = os.environ.get(
    "OAUTH2_USERDATA_URL", "https://login.uni.example.edu/oauth2/userinfo"
)
c.ClassroomOAuthenticator.scope = ["openid", "profile", "email"]
# the claim that matches the logins in your rosters (often "email" or "preferred_username")
c.ClassroomOAuthenticator.username_claim = "email"
c.ClassroomOAuthenticator.login_service = "University login"
# hub admins are admins whether or not they are on a roster
c.ClassroomOAuthenticator.admin_users = {"it-admin@uni.example.edu"}
# everyone on a course roster may log in (additive, like allowed_users); the
# others see a 403 page that tells them whom to contact
c.ClassroomOAuthenticator.roster_contact = "jupyter-support@uni.example.edu"
# courses become groups (ds101 = its students, ds101-instructors, ds101-tas) and
# instructors/TAs get a role per course over that course's students only
c.ClassroomOAuthenticator.manage_groups = True
c.ClassroomOAuthenticator.manage_roles = True
# c.ClassroomOAuthenticator.nbgrader_groups = True  # + nbgrader-<course>, formgrade-<course>
# courses the identity provider asserts in its "groups" claim (needs auth_state):
# c.ClassroomOAuthenticator.course_claim_groups = {"uni-ds101-students": "ds101"}
# auth_state keeps the provider's tokens and the user's courses (encrypted) for
# refreshes and the spawner. It needs JUPYTERHUB_CRYPT_KEY (openssl rand -hex 32);
# without it the roster is still re-checked at every refresh.
c.ClassroomOAuthenticator.enable_auth_state = "JUPYTERHUB_CRYPT_KEY" in os.environ

# -- Servers -------------------------------------------------------------------
#
# "classroom" is ClassroomSpawner, a KubeSpawner: everything KubeSpawner
# supports still applies (c.KubeSpawner.* settings are inherited, so a Z2JH
# chart's settings keep working).
c.JupyterHub.spawner_class = "classroom"
