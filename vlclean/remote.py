"""The team's DVC remote on Google Drive: point it at a folder, keep every secret out of git.

The tracked ``.dvc/config`` declares the remote ``gdrive`` with a placeholder folder id and no
default remote, so nothing can reach Google until a team sets its folder. Two subcommands::

    python -m vlclean.remote setup --folder-id ID_OR_DRIVE_URL
        [--client-json client_secret_*.json | --client-id ID --client-secret SECRET]
        [--service-account KEY.json [--impersonate USER@DOMAIN]] [--acknowledge-abuse] [--no-default]
    python -m vlclean.remote check

``setup`` writes only the folder url (and ``core.remote = gdrive``) to the tracked ``.dvc/config``;
client id and secret, the service-account key path and the other per-machine options go to the
git-ignored ``.dvc/config.local``, exactly where ``dvc remote modify --local`` puts them, through
the same ``dvc.config.Config.edit`` call (no subprocess; with ``--client-json`` the secret never
appears on a command line at all). ``check``
validates the configuration the way ``dvc push`` will, without any network call. Neither command
talks to Google: ``--dry-run`` prints the equivalent ``dvc remote`` commands instead of writing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from vlclean import cli
from vlclean.errors import VLCleanError

REMOTE_NAME = "gdrive"
PLACEHOLDER_FOLDER_ID = "REPLACE_WITH_TEAM_FOLDER_ID"
CREDENTIALS_ENV = "GDRIVE_CREDENTIALS_DATA"  # read by dvc-gdrive: a service-account key or saved user token, as JSON
FOLDER_ID = re.compile(r"^[A-Za-z0-9_-]{10,}$")
CLIENT_ID = re.compile(r"^[0-9]+-[a-z0-9]+\.apps\.googleusercontent\.com$")

# Options that hold or point to credentials: allowed in .dvc/config.local only, never in .dvc/config.
SECRET_OPTIONS = frozenset({
    "gdrive_client_id",
    "gdrive_client_secret",
    "gdrive_user_credentials_file",
    "gdrive_service_account_json_file_path",
    "gdrive_service_account_user_email",
})
# Options that choose how this machine signs in; replaced together whenever setup is given credentials.
AUTH_OPTIONS = SECRET_OPTIONS | {"gdrive_use_service_account"}


# Credentials that are easy to paste where an id belongs, by shape (never echoed back in errors).
CREDENTIAL_SHAPES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("a JSON key or token file's content", re.compile(r"^\s*\{")),
    ("an OAuth client secret", re.compile(r"GOCSPX-")),
    ("an OAuth access token", re.compile(r"ya29\.")),
    ("an OAuth refresh token", re.compile(r"1//[0-9A-Za-z_-]{20,}")),
    ("a private key", re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----|\bPRIVATE KEY\b")),
    ("a Google API key", re.compile(r"AIza[0-9A-Za-z_-]{35}")),
    ("a signed token (JWT)", re.compile(r"eyJ[0-9A-Za-z_-]{8,}\.[0-9A-Za-z_-]{8,}\.")),
)


def refuse_credential(option: str, value: str | None) -> None:
    """Raise when ``value``, given for the non-secret ``option`` (an id, an e-mail), looks like a credential.

    The message names the option and the kind of credential, never the value itself (it would land in
    terminals, logs and CI output), and says to rotate it: it may already be in shell history.
    """
    if not value:
        return
    for kind, shape in CREDENTIAL_SHAPES:
        if shape.search(value):
            raise RemoteSetupError(f"{option} looks like {kind}, not an id: refusing to write it anywhere. Pass the "
                                   "value the option asks for; if the secret was typed on a command line, rotate it")


class RemoteSetupError(VLCleanError):
    """The Google Drive remote cannot be configured as asked (bad folder id, key file, secret placement)."""


@dataclass(frozen=True)
class RemotePlan:
    """What setup writes: ``url`` (and the default) to the tracked .dvc/config, ``local`` to .dvc/config.local."""

    url: str
    make_default: bool = True
    local: dict[str, str] = field(default_factory=dict)

    def commands(self) -> list[str]:
        """The equivalent ``dvc remote`` commands, secrets masked (for --dry-run and the docs)."""
        cmds = [f"dvc remote add --force {REMOTE_NAME} {self.url}"]
        if self.make_default:
            cmds.append(f"dvc remote default {REMOTE_NAME}")
        for key, value in self.local.items():
            shown = "<hidden>" if key == "gdrive_client_secret" else value
            cmds.append(f"dvc remote modify --local {REMOTE_NAME} {key} {shown}")
        return cmds


def parse_folder_id(value: str) -> str:
    """The Drive folder id in ``value``: a bare id, ``gdrive://ID`` or a Drive folder link.

    Accepted links: ``https://drive.google.com/drive/folders/ID`` (also ``/drive/u/N/folders/ID`` and
    ``?usp=sharing``) and ``...?id=ID``. Ids are 10+ characters of ``[A-Za-z0-9_-]``; the placeholder
    of the tracked config is refused.
    """
    text = value.strip()
    candidate = text
    if text.startswith("gdrive://"):
        candidate = text[len("gdrive://"):].split("/", 1)[0]
    elif text.startswith(("http://", "https://")):
        url = urlparse(text)
        found = re.search(r"/folders/([^/?#]+)", url.path)
        ids = parse_qs(url.query).get("id", [])
        if found:
            candidate = found.group(1)
        elif ids:
            candidate = ids[0]
        else:
            raise RemoteSetupError(f"{value!r} is not a Google Drive folder link (expected .../folders/<id>)")
    if candidate == PLACEHOLDER_FOLDER_ID:
        raise RemoteSetupError(f"{value!r} is the placeholder; pass your team's folder id (the part of the "
                               "folder's Drive link after /folders/)")
    if not FOLDER_ID.fullmatch(candidate):
        raise RemoteSetupError(f"folder id {candidate!r} (from {value!r}) is not a Google Drive id: expected at "
                               "least 10 characters of letters, digits, '-' and '_'")
    return candidate


def read_client_json(path: str | Path) -> tuple[str, str]:
    """``(client_id, client_secret)`` from the JSON that Google Cloud Console downloads for an OAuth client."""
    data = _read_json(path, "OAuth client file")
    if "installed" not in data:
        kind = "a Web application client" if "web" in data else "not an OAuth client file"
        raise RemoteSetupError(f"{path}: {kind}; create an OAuth client of type 'Desktop app' and download its JSON")
    section = data["installed"]
    missing = [k for k in ("client_id", "client_secret") if not section.get(k)]
    if missing:
        raise RemoteSetupError(f"{path}: 'installed' lacks {missing}")
    return section["client_id"], section["client_secret"]


def check_service_account_key(path: str | Path) -> str:
    """Validate a service-account key file; return the account's e-mail (share the Drive folder with it)."""
    data = _read_json(path, "service-account key")
    if data.get("type") != "service_account":
        raise RemoteSetupError(f"{path}: 'type' is {data.get('type')!r}, expected 'service_account' (create a JSON "
                               "key under IAM > Service accounts > Keys)")
    missing = [k for k in ("client_email", "private_key", "token_uri") if not data.get(k)]
    if missing:
        raise RemoteSetupError(f"{path}: service-account key lacks {missing}")
    return str(data["client_email"])


def plan_setup(
    folder: str,
    *,
    client_id: str | None = None,
    client_secret: str | None = None,
    client_json: str | Path | None = None,
    service_account: str | Path | None = None,
    impersonate: str | None = None,
    acknowledge_abuse: bool = False,
    make_default: bool = True,
) -> RemotePlan:
    """Check the arguments and decide what goes where (nothing is written)."""
    refuse_credential("--folder-id", folder)
    refuse_credential("--client-id", client_id)
    refuse_credential("--impersonate", impersonate)
    url = f"gdrive://{parse_folder_id(folder)}"
    if client_json is not None:
        if client_id or client_secret:
            raise RemoteSetupError("give either --client-json or --client-id/--client-secret, not both")
        client_id, client_secret = read_client_json(client_json)
    if bool(client_id) != bool(client_secret):
        raise RemoteSetupError("--client-id and --client-secret go together (both come from the same OAuth client)")
    refuse_credential("the client id in --client-json", client_id)
    if client_id and not CLIENT_ID.fullmatch(client_id):
        raise RemoteSetupError(f"client id {client_id!r} does not look like <number>-<code>.apps.googleusercontent.com"
                               " (were id and secret swapped?)")
    if service_account is not None and client_id:
        raise RemoteSetupError("choose one sign-in: a service account (--service-account) or an OAuth client")
    if impersonate and service_account is None:
        raise RemoteSetupError("--impersonate needs --service-account (domain-wide delegation)")
    local: dict[str, str] = {}
    if client_id:
        local |= {"gdrive_client_id": client_id, "gdrive_client_secret": str(client_secret)}
    if service_account is not None:
        check_service_account_key(service_account)
        local |= {"gdrive_use_service_account": "true",
                  "gdrive_service_account_json_file_path": str(Path(service_account).expanduser().resolve())}
        if impersonate:
            local["gdrive_service_account_user_email"] = impersonate
    if acknowledge_abuse:
        local["gdrive_acknowledge_abuse"] = "true"
    return RemotePlan(url=url, make_default=make_default, local=local)


def apply_setup(root: str | Path, plan: RemotePlan) -> None:
    """Write ``plan``: the url (and default) to .dvc/config, everything else to .dvc/config.local."""
    root = Path(root)
    key = plan.local.get("gdrive_service_account_json_file_path")
    if key:
        _refuse_committable(root, Path(key))
    leaked = tracked_secrets(root)
    if leaked:
        raise RemoteSetupError(f"{root / '.dvc' / 'config'} (tracked by git) holds {sorted(leaked)}: remove them with "
                               f"`dvc remote modify --unset {REMOTE_NAME} <option>` and rotate those credentials first")
    if plan.local:
        _refuse_tracked_destination(root, root / ".dvc" / "config.local")
    _write(root, "repo", {"url": plan.url}, default=plan.make_default)
    if plan.local:
        replace = AUTH_OPTIONS if plan.local.keys() & AUTH_OPTIONS else frozenset()
        _write(root, "local", plan.local, drop=replace)


def tracked_secrets(root: str | Path) -> set[str]:
    """Credential options present in the tracked .dvc/config (any remote): must be empty."""
    conf = _config(root).load_one("repo")
    return {k for section in conf.get("remote", {}).values() for k in section if k in SECRET_OPTIONS}


def check(root: str | Path) -> list[str]:
    """Validate the remote as ``dvc push`` would, offline. Returns notes; raises on what blocks a push."""
    from dvc.repo import Repo

    root = Path(root)
    leaked = tracked_secrets(root)
    if leaked:
        raise RemoteSetupError(f"{root / '.dvc' / 'config'} is tracked by git and holds {sorted(leaked)}: move them "
                               "with `dvc remote modify --local` and rotate them")
    with Repo(str(root)) as repo:
        remote_conf = repo.config.get("remote", {}).get(REMOTE_NAME)
        if remote_conf is None:
            raise RemoteSetupError(f"no remote {REMOTE_NAME!r} in {root / '.dvc' / 'config'}")
        if remote_conf["url"].removeprefix("gdrive://").split("/", 1)[0] == PLACEHOLDER_FOLDER_ID:
            raise RemoteSetupError(f"remote {REMOTE_NAME!r} still points at the placeholder {remote_conf['url']}: "
                                   "run `python -m vlclean.remote setup --folder-id <your team's folder id>` "
                                   "(docs/gdrive.md)")
        require_pydrive2()
        remote = repo.cloud.get_remote(REMOTE_NAME)  # dvc-gdrive validates its options here, without network
        notes = [f"remote {REMOTE_NAME!r}: {remote_conf['url']}"
                 + (" (default)" if repo.config["core"].get("remote") == REMOTE_NAME else " (not the default: use -r)")]
        use_service_account = str(remote_conf.get("gdrive_use_service_account", "false")).lower() == "true"
        client_id = remote_conf.get("gdrive_client_id")
        if bool(client_id) != bool(remote_conf.get("gdrive_client_secret")):
            have, lack = (("gdrive_client_id", "gdrive_client_secret") if client_id
                          else ("gdrive_client_secret", "gdrive_client_id"))
            raise RemoteSetupError(f"{have} is set without {lack}: dvc-gdrive would pair it with DVC's built-in "
                                   "client, which Google refuses; run setup with --client-json")
        if use_service_account:
            # pydrive2 parses the key now (offline); a token is only requested on the first API call
            email = remote.fs.fs.client.auth.credentials.service_account_email
            source = remote_conf.get("gdrive_service_account_json_file_path") or f"${CREDENTIALS_ENV}"
            notes.append(f"sign-in: service account {email} from {source} (share the folder with it)")
        elif not client_id:
            raise RemoteSetupError("no OAuth client configured: DVC's built-in client is blocked by Google ('This app "
                                   "is blocked'); run setup with --client-json (docs/gdrive.md)")
        elif os.environ.get(CREDENTIALS_ENV):
            notes.append(f"sign-in: own OAuth client {client_id}, saved user token from ${CREDENTIALS_ENV}")
        else:
            notes.append(f"sign-in: own OAuth client {client_id} (a browser opens on the first push/pull)")
    return notes


def require_pydrive2() -> None:
    """Fail clearly when dvc-gdrive's client library cannot load (every push and pull to Drive would crash)."""
    try:
        import pydrive2.fs  # noqa: F401
    except (ImportError, AttributeError) as err:  # a pyOpenSSL older than its cryptography dies with AttributeError
        raise RemoteSetupError(
            f"dvc-gdrive cannot load pydrive2 ({type(err).__name__}: {err}); PyDrive2 needs pyOpenSSL<=24.2.1, which "
            "needs cryptography<44: pin pyOpenSSL==24.2.1, cryptography==43.0.3 (and asyncssh==2.23.1) in "
            "requirements.txt"
        ) from err


# -- internals -----------------------------------------------------------------------------------------------
def _config(root: str | Path):
    from dvc.config import Config

    return Config(dvc_dir=str(Path(root) / ".dvc"))


def _write(root: str | Path, level: str, options: Mapping[str, str], *, default: bool = False,
           drop: frozenset[str] = frozenset()) -> None:
    if level != "local" and options.keys() & SECRET_OPTIONS:
        raise RemoteSetupError(f"refusing to write {sorted(options.keys() & SECRET_OPTIONS)} to the tracked "
                               ".dvc/config: credentials go to .dvc/config.local")
    with _config(root).edit(level) as conf:
        section = conf["remote"].setdefault(REMOTE_NAME, {})
        for key in drop:
            section.pop(key, None)
        section.update(options)
        if default:
            conf["core"]["remote"] = REMOTE_NAME


def _refuse_committable(root: Path, key: Path) -> None:
    """A key file inside the working tree must be git-ignored (better: kept outside the repository)."""
    try:
        key.resolve().relative_to(root.resolve())
    except ValueError:
        return
    proc = subprocess.run(["git", "check-ignore", "-q", str(key)], cwd=root, capture_output=True, check=False)
    if proc.returncode == 1:
        raise RemoteSetupError(f"{key} is inside the repository and not git-ignored: move it outside (e.g. "
                               "~/.config/gdrive/) or name it *service-account*.json")


def _git(root: Path, *args: str) -> int | None:
    """``git <args>``'s exit status in ``root``; None when git is missing or ``root`` is no repository."""
    try:
        proc = subprocess.run(["git", *args], cwd=root, capture_output=True, check=False)
    except OSError:
        return None
    return None if proc.returncode == 128 else proc.returncode


def _refuse_tracked_destination(root: Path, path: Path) -> None:
    """Secrets go to ``path`` (inside ``root``) only when neither it nor, for a symlink, the file it resolves
    to inside the repository is tracked by git (even force-added) or committable (not git-ignored)."""
    checks = [(path.absolute().relative_to(root.absolute()), str(path))]
    try:
        checks.append((path.resolve().relative_to(root.resolve()), f"{path} (a link to {path.resolve()})"))
    except ValueError:
        pass  # resolves outside the repository: nothing git could commit from here
    for rel, shown in checks:
        if _git(root, "ls-files", "--error-unmatch", "--", str(rel)) == 0:
            raise RemoteSetupError(f"{shown} is tracked by git: refusing to write credentials to it. Run "
                                   f"`git rm --cached {rel}` and make {path.name} a plain, git-ignored file")
        if _git(root, "check-ignore", "-q", "--", str(rel)) == 1:
            raise RemoteSetupError(f"{shown} is not git-ignored: refusing to write credentials to it")


def _read_json(path: str | Path, what: str) -> dict:
    try:
        data = json.loads(Path(path).expanduser().read_text())
    except FileNotFoundError as err:
        raise RemoteSetupError(f"{what} {path} does not exist") from err
    except (OSError, json.JSONDecodeError) as err:
        raise RemoteSetupError(f"{what} {path} is not readable JSON: {err}") from err
    if not isinstance(data, dict):
        raise RemoteSetupError(f"{what} {path}: expected a JSON object")
    return data


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m vlclean.remote", description=__doc__.strip().splitlines()[0])
    p.add_argument("--repo", default=".", help="repository root (default: current directory)")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("setup", help="point the gdrive remote at a folder; credentials to .dvc/config.local")
    s.add_argument("--folder-id", required=True, help="Drive folder id, or the folder's link")
    s.add_argument("--client-json", help="OAuth client JSON downloaded from Google Cloud (Desktop app)")
    s.add_argument("--client-id", help="OAuth client id (or use --client-json)")
    s.add_argument("--client-secret", help="OAuth client secret (or use --client-json: keeps it out of shell history)")
    s.add_argument("--service-account", help="service-account JSON key (CI, headless machines)")
    s.add_argument("--impersonate", help="with --service-account: act as this Workspace user (domain-wide delegation)")
    s.add_argument("--acknowledge-abuse", action="store_true", help="allow downloading files Drive flags as abusive")
    s.add_argument("--no-default", action="store_true", help="do not make gdrive the default remote")
    s.add_argument("--dry-run", action="store_true", help="print the equivalent dvc commands, write nothing")
    sub.add_parser("check", help="validate the remote as dvc push would, offline")

    def body(args: argparse.Namespace) -> int:
        root = Path(args.repo)
        if args.command == "check":
            for note in check(root):
                print(note)
            return 0
        plan = plan_setup(args.folder_id, client_id=args.client_id, client_secret=args.client_secret,
                          client_json=args.client_json, service_account=args.service_account,
                          impersonate=args.impersonate, acknowledge_abuse=args.acknowledge_abuse,
                          make_default=not args.no_default)
        if args.dry_run:
            print("\n".join(plan.commands()))
            return 0
        apply_setup(root, plan)
        print(f".dvc/config: remote {REMOTE_NAME} = {plan.url}" + (" (default)" if plan.make_default else ""))
        if plan.local:
            print(f".dvc/config.local (git-ignored): {', '.join(plan.local)}")
        if args.service_account:
            email = check_service_account_key(args.service_account)
            print(f"share the Drive folder with {email} (Content manager on a Shared Drive, Editor on a folder)")
        print("commit .dvc/config; keep .dvc/config.local to yourself")
        return 0

    return cli.run(body, p, argv)


if __name__ == "__main__":
    raise SystemExit(main())
