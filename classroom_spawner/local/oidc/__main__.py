"""Run the local OpenID Connect provider by hand (tests/demo tool only).

    python -m classroom_spawner.local.oidc --accounts accounts.yaml \\
        --hub-url http://127.0.0.1:8000/

    python -m classroom_spawner.local.oidc --account alice:alice-pw:intro-101,staff

Prints the issuer, the endpoints and the GenericOAuthenticator settings for
the hub, then runs until Ctrl-C. The provider's log goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from . import DEFAULT_TITLE, OIDCProvider


def load_accounts_file(path: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Accounts (and optional clients) from a JSON or YAML file.

    Either a list of accounts, or a mapping ``{"accounts": [...], "clients": [...]}``.
    """
    text = Path(path).read_text()
    if path.endswith((".yaml", ".yml")):
        import yaml

        data = yaml.safe_load(text)
    else:
        data = json.loads(text)
    if isinstance(data, list):
        return data, []
    if isinstance(data, dict):
        return list(data.get("accounts") or []), list(data.get("clients") or [])
    raise SystemExit(
        f"{path}: expected a list of accounts or a mapping with 'accounts'"
    )


def parse_account(spec: str) -> dict[str, Any]:
    """``USER:PASSWORD[:GROUP,GROUP...]``"""
    parts = spec.split(":", 2)
    if len(parts) < 2 or not parts[0]:
        raise argparse.ArgumentTypeError(
            f"expected USER:PASSWORD[:GROUPS], got {spec!r}"
        )
    groups = [g for g in parts[2].split(",") if g] if len(parts) == 3 else []
    return {"username": parts[0], "password": parts[1], "claims": {"groups": groups}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m classroom_spawner.local.oidc",
        description="Local OpenID Connect provider for tests and demos (never for production).",
    )
    parser.add_argument(
        "--accounts", metavar="FILE", help="accounts file (JSON or YAML)"
    )
    parser.add_argument(
        "--account",
        metavar="USER:PASSWORD[:GROUPS]",
        type=parse_account,
        action="append",
        default=[],
        help="add an account (repeatable); GROUPS is comma-separated",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--port", type=int, default=0, help="0 = any free port (default)"
    )
    parser.add_argument("--title", default=DEFAULT_TITLE)
    parser.add_argument("--hint", help="text shown under the login form")
    parser.add_argument("--client-id", default="jupyterhub")
    parser.add_argument("--client-secret", help="default: random")
    parser.add_argument(
        "--redirect-uri",
        action="append",
        default=[],
        help="allowed redirect URI (repeatable)",
    )
    parser.add_argument(
        "--hub-url", help="the hub's public URL; allows its /hub/oauth_callback"
    )
    parser.add_argument("--admin-secret", help="secret for /admin/* (default: random)")
    parser.add_argument("--no-pkce", action="store_true", help="do not require PKCE")
    args = parser.parse_args(argv)

    accounts, clients = load_accounts_file(args.accounts) if args.accounts else ([], [])
    accounts += args.account
    redirect_uris = list(args.redirect_uri)
    if args.hub_url:
        redirect_uris.append(args.hub_url.rstrip("/") + "/hub/oauth_callback")

    provider = OIDCProvider(
        accounts,
        clients=clients,
        client_id=args.client_id,
        client_secret=args.client_secret,
        redirect_uris=redirect_uris,
        host=args.host,
        port=args.port,
        title=args.title,
        hint=args.hint,
        admin_secret=args.admin_secret,
        require_pkce=not args.no_pkce,
        echo_logs=True,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with provider:
        print(f"issuer:        {provider.issuer}")
        print(f"discovery:     {provider.discovery_url}")
        print(f"authorize:     {provider.authorize_url}")
        print(f"token:         {provider.token_url}")
        print(f"userinfo:      {provider.userinfo_url}")
        print(f"admin secret:  {provider.admin_secret}")
        names = ", ".join(a["username"] for a in provider.list_accounts())
        print(f"accounts:      {names or '(none)'}")
        if redirect_uris:
            config = provider.oauthenticator_config(redirect_uris[0], register=False)
            print("\n# jupyterhub_config.py")
            print('c.JupyterHub.authenticator_class = "generic-oauth"')
            print(f"c.GenericOAuthenticator.update({json.dumps(config, indent=4)})")
        else:
            print(
                f"\nclient {provider.client_id!r} not registered: give --hub-url or --redirect-uri"
            )
        sys.stdout.flush()
        try:
            while not stop.wait(1):
                if not provider.running:
                    print("provider exited", file=sys.stderr)
                    return 1
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
