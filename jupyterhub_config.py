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
import sys

c = get_config()  # noqa: F821 (provided by JupyterHub's config loader)
here = os.path.dirname(os.path.abspath(__file__))

# -- Who is in which course ----------------------------------------------------
#
# One YAML course file lists the courses (title, image, CPU and memory, lesson
# repos, shared folders, what staff get instead, server choices), their staff,
# and the roster exports (CSV, Canvas gradebook) that add students. Edit the files while the hub runs: changes are picked up within
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
# Each course is a profile (image, CPU, memory from the course file); a student
# sees only their courses' profiles, an admin sees every course plus these:
c.ClassroomSpawner.admin_profiles = [
    {
        "display_name": "Admin: large server",
        "slug": "admin-large",
        "kubespawner_override": {"cpu_limit": 8, "mem_limit": "32G"},
    },
]
# servers that are not in a course's file: the image and limits KubeSpawner uses
c.KubeSpawner.image = "quay.io/jupyter/minimal-notebook:2025-06-02"
c.KubeSpawner.cpu_limit = 2
c.KubeSpawner.mem_limit = "2G"

# Storage: one volume per user, mounted as the home directory; it is NOT deleted
# when the user is deleted (ClassroomSpawner's delete_pvc default is False).
c.KubeSpawner.storage_capacity = "10Gi"
# c.KubeSpawner.storage_class = "standard-rwo"

# Lessons: the course file's lesson repos are cloned into the home on every
# start (merged without losing students' changes). A token for private repos
# comes from a Kubernetes Secret, never from the pod spec:
#   kubectl create secret generic lesson-git-token --from-literal=token=...
# c.ClassroomSpawner.lesson_token_secret = "lesson-git-token"
# c.ClassroomSpawner.lesson_token_username = "oauth2"   # GitLab tokens need a user name
c.ClassroomSpawner.lesson_sync_timeout = 120
# a repo with large files needs more than the sync's default 512Mi:
# c.ClassroomSpawner.lesson_sync_resources = {"limits": {"cpu": "1", "memory": "2Gi"}}
# The sync program itself comes from a Secret the hub creates once
# (classroom-lesson-sync-<version>), so a pod with lessons stays a few KB.

# -- A lecture hall logging in at once -----------------------------------------
#
# First spawns (no volume yet: a disk to provision, an image to pull, a full
# clone) are the expensive ones. At most first_spawn_limit run at once; the
# others wait in line and see their place on the spawn page. Waiting does not
# count against start_timeout. spawn_limit (default 64) paces all starts, first
# and returning, in a line of its own: with concurrent_spawn_limit = 0 below, it is
# what keeps a hall of returning students from flooding the hub. (With one shared
# NFS home instead of a volume each, no spawn is a first spawn; spawn_limit paces all.)
c.ClassroomSpawner.first_spawn_limit = 20
c.ClassroomSpawner.spawn_limit = 64
c.ClassroomSpawner.spawn_queue_max_wait = 1800
c.KubeSpawner.start_timeout = 300
# JupyterHub's own limit would answer "429 Too many users" to students the
# queue would have served: leave the limiting to the queue.
c.JupyterHub.concurrent_spawn_limit = 0

# -- Idle servers --------------------------------------------------------------
#
# jupyterhub-idle-culler (pip install jupyterhub-idle-culler) runs as a hub
# service and stops servers idle for an hour, with a role of only the scopes it
# needs. On Zero to JupyterHub leave this out: the chart runs the same service
# (cull.* in its values). How culling meets classroom-spawner:
# - a culled server's volume stays: stopping a server never deletes its PVC (and
#   deleting the user does not either, delete_pvc is off);
# - its user is a returning user next time: the volume exists, so that start is
#   not a first spawn and never waits in the first-spawn queue; the lessons are
#   merged into the home again on that start.
c.JupyterHub.services.append(
    {
        "name": "jupyterhub-idle-culler",
        "command": [
            sys.executable,
            "-m",
            "jupyterhub_idle_culler",
            "--timeout=3600",
            "--cull-every=600",
            "--concurrency=10",
        ],
    }
)
c.JupyterHub.load_roles.append(
    {
        "name": "jupyterhub-idle-culler",
        "scopes": [
            "list:users",
            "read:users:activity",
            "read:servers",
            "delete:servers",
        ],
        "services": ["jupyterhub-idle-culler"],
    }
)
