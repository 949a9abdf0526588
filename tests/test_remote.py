"""Sharing data through DVC remotes: the Google Drive remote's config and secrets, offline, and a full
push/pull round trip through a local remote in a temporary clone of the project."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from vlclean import remote
from vlclean.remote import RemoteSetupError

MAX_PUSHED_FILES = 20  # raw parquet shards + index + small tables + DVC's directory manifest
FOLDER = "1AbCdEfGhIjKlMnOpQrStUvWxYz_-0123"  # the shape of a Drive folder id (fake)
CLIENT_ID = "123456789012-abcdefghijklmnopqrstuvwxyz012345.apps.googleusercontent.com"
CLIENT_SECRET = "GOCSPX-" + "fake" * 7  # the shape of an OAuth client secret (fake)


def dvc(repo: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env.pop(remote.CREDENTIALS_ENV, None)
    proc = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=repo, env=env, capture_output=True, text=True,
                          check=False)
    if ok:
        assert proc.returncode == 0, f"dvc {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to resolve a host or open a connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network use attempted: {args[1:] or args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.delenv(remote.CREDENTIALS_ENV, raising=False)


@pytest.fixture
def fake_service_account(tmp_path: Path) -> Path:
    """A service-account key file in Google's format with a real (throwaway) RSA key, so parsing succeeds."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    email = "dvc-ci@fake-project.iam.gserviceaccount.com"
    info = {
        "type": "service_account", "project_id": "fake-project", "private_key_id": "0" * 40, "private_key": pem,
        "client_email": email, "client_id": "1" * 21, "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    path = tmp_path / "keys" / "ci-service-account.json"
    path.parent.mkdir()
    path.write_text(json.dumps(info))
    return path


def tracked_remote_config() -> dict:
    """The repository-level (git-tracked) DVC config only: no config.local, no user or system config."""
    from dvc.config import Config

    return Config(dvc_dir=str(REPO / ".dvc"), local_dvc_dir=None).load_one("repo")


# -- the tracked configuration ----------------------------------------------------------------------------------
def test_tracked_config_declares_the_gdrive_remote_with_a_placeholder_and_no_default() -> None:
    conf = tracked_remote_config()
    url = conf["remote"][remote.REMOTE_NAME]["url"]
    assert url.startswith("gdrive://")
    folder = url.removeprefix("gdrive://").split("/", 1)[0]
    if folder == remote.PLACEHOLDER_FOLDER_ID:
        # a placeholder must never be the default: a bare `dvc push` fails naming the missing remote
        assert conf["core"].get("remote") != remote.REMOTE_NAME
    else:
        assert remote.parse_folder_id(folder) == folder  # a team's real folder id
    assert str(conf["core"]["analytics"]).lower() == "false"


def test_tracked_config_holds_no_credentials() -> None:
    conf = tracked_remote_config()
    for name, section in conf["remote"].items():
        assert not section.keys() & remote.SECRET_OPTIONS, f"remote {name!r} holds credentials in .dvc/config"
    assert remote.tracked_secrets(REPO) == set()


def test_no_tracked_file_contains_a_credential() -> None:
    patterns = {
        "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
        "OAuth client secret": re.compile(r"GOCSPX-[A-Za-z0-9_-]{20,}"),
        "refresh token": re.compile(r"\"refresh_token\"\s*:\s*\"[^\"]{10,}"),
        "access token": re.compile(r"ya29\.[A-Za-z0-9_-]{20,}"),
    }
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, check=True, capture_output=True).stdout.decode()
    found = []
    for rel in filter(None, files.split("\0")):
        path = REPO / rel
        if not path.is_file() or path.stat().st_size > 2**21:
            continue
        text = path.read_text(errors="ignore")
        found += [f"{rel}: {what}" for what, rx in patterns.items() if rx.search(text)]
    assert not found, found


@pytest.mark.parametrize("path", [
    ".dvc/config.local",
    "client_secret_123-abc.apps.googleusercontent.com.json",  # Google Cloud's name for a downloaded OAuth client
    "gdrive-user-credentials.json",
    "credentials.json",
    "keys/team-service-account.json",
    "ci_service_account_key.json",
    "legacy-key.p12",
    ".env",
    ".env.production",
    "deploy/.envrc",
    "token.json",
    "gdrive_user_token.json",
    "tls/server.pem",
    "private.key",
    "keystore.jks",
    "id_rsa",
    "id_ed25519.pub",
    ".netrc",
])
def test_credential_files_are_git_ignored(path: str) -> None:
    proc = subprocess.run(["git", "check-ignore", "-q", "--no-index", path], cwd=REPO, check=False)
    assert proc.returncode == 0, f"{path} is not git-ignored"


# -- folder ids and the setup plan --------------------------------------------------------------------------------
@pytest.mark.parametrize("given", [
    FOLDER,
    f"gdrive://{FOLDER}",
    f"https://drive.google.com/drive/folders/{FOLDER}?usp=sharing",
    f"https://drive.google.com/drive/u/1/folders/{FOLDER}",
    f"https://drive.google.com/open?id={FOLDER}",
    f"  {FOLDER}\n",
])
def test_parse_folder_id_accepts_ids_and_drive_links(given: str) -> None:
    assert remote.parse_folder_id(given) == FOLDER


@pytest.mark.parametrize(("given", "message"), [
    (remote.PLACEHOLDER_FOLDER_ID, "is the placeholder"),
    (f"gdrive://{remote.PLACEHOLDER_FOLDER_ID}", "is the placeholder"),
    ("abc123", "'abc123' .* is not a Google Drive id"),
    ("1AbCdEf GhIjKlMn", "is not a Google Drive id"),
    ("1AbCdEfGh/../IjKlMn", "is not a Google Drive id"),
    ("https://drive.google.com/file/d/1AbCdEfGhIjKlMn/view", "is not a Google Drive folder link"),
])
def test_parse_folder_id_rejects_placeholder_and_malformed_ids(given: str, message: str) -> None:
    with pytest.raises(RemoteSetupError, match=message):
        remote.parse_folder_id(given)


def test_plan_puts_only_the_url_in_the_shared_config(tmp_path: Path) -> None:
    client = tmp_path / "client_secret_x.json"
    client.write_text(json.dumps({"installed": {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}}))
    plan = remote.plan_setup(FOLDER, client_json=client, acknowledge_abuse=True)
    assert plan.url == f"gdrive://{FOLDER}"
    assert plan.local == {"gdrive_client_id": CLIENT_ID, "gdrive_client_secret": CLIENT_SECRET,
                          "gdrive_acknowledge_abuse": "true"}
    commands = "\n".join(plan.commands())
    assert CLIENT_SECRET not in commands
    assert all("--local" in c for c in plan.commands() if "gdrive_client" in c)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"client_id": CLIENT_ID}, "go together"),
    ({"client_id": CLIENT_SECRET, "client_secret": CLIENT_ID}, "--client-id looks like an OAuth client secret"),
    ({"client_id": "123-abc.apps.example.com", "client_secret": CLIENT_SECRET}, "swapped"),
    ({"impersonate": "me@example.com"}, "--impersonate needs --service-account"),
])
def test_plan_rejects_inconsistent_credentials(kwargs: dict, message: str) -> None:
    with pytest.raises(RemoteSetupError, match=message):
        remote.plan_setup(FOLDER, **kwargs)


def test_plan_rejects_a_web_client_and_a_non_service_account_key(tmp_path: Path) -> None:
    web = tmp_path / "web.json"
    web.write_text(json.dumps({"web": {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}}))
    with pytest.raises(RemoteSetupError, match="Web application client.*Desktop app"):
        remote.plan_setup(FOLDER, client_json=web)
    user = tmp_path / "user.json"
    user.write_text(json.dumps({"type": "authorized_user", "refresh_token": "x"}))
    with pytest.raises(RemoteSetupError, match="'type' is 'authorized_user', expected 'service_account'"):
        remote.plan_setup(FOLDER, service_account=user)
    with pytest.raises(RemoteSetupError, match="does not exist"):
        remote.plan_setup(FOLDER, service_account=tmp_path / "missing.json")


def test_secret_options_are_never_written_to_the_tracked_config(repo_copy: Path) -> None:
    with pytest.raises(RemoteSetupError, match="refusing to write.*gdrive_client_secret"):
        remote._write(repo_copy, "repo", {"gdrive_client_secret": CLIENT_SECRET})
    assert CLIENT_SECRET not in (repo_copy / ".dvc" / "config").read_text()


# -- setup in a clone of the project ------------------------------------------------------------------------------
def git_status(repo: Path) -> str:
    return subprocess.run(["git", "status", "--porcelain"], cwd=repo, check=True, capture_output=True,
                          text=True).stdout


def test_setup_writes_the_url_to_config_and_secrets_only_to_config_local(repo_copy: Path, no_network) -> None:
    rc = remote.main(["--repo", str(repo_copy), "setup", "--folder-id",
                      f"https://drive.google.com/drive/folders/{FOLDER}", "--client-id", CLIENT_ID,
                      "--client-secret", CLIENT_SECRET, "--acknowledge-abuse"])
    assert rc == 0
    shared = (repo_copy / ".dvc" / "config").read_text()
    local = (repo_copy / ".dvc" / "config.local").read_text()
    assert f"gdrive://{FOLDER}" in shared and "remote = gdrive" in shared
    assert CLIENT_SECRET not in shared and CLIENT_ID not in shared and "gdrive_client" not in shared
    assert CLIENT_SECRET in local and CLIENT_ID in local and "gdrive_acknowledge_abuse = true" in local
    assert git_status(repo_copy).splitlines() == [" M .dvc/config"]  # config.local is ignored
    assert remote.check(repo_copy)[-1].startswith(f"sign-in: own OAuth client {CLIENT_ID}")


def test_setup_refuses_a_committable_key_inside_the_repo(repo_copy: Path, fake_service_account: Path) -> None:
    inside = repo_copy / "ci-key.json"
    shutil.copy(fake_service_account, inside)
    rc = remote.main(["--repo", str(repo_copy), "setup", "--folder-id", FOLDER, "--service-account", str(inside)])
    assert rc == 2
    assert remote.PLACEHOLDER_FOLDER_ID in (repo_copy / ".dvc" / "config").read_text()  # nothing written
    assert not (repo_copy / ".dvc" / "config.local").exists()


# Shapes of real credentials (fake values): what a hurried user pastes into the wrong option.
HOSTILE = {
    "an OAuth client secret": CLIENT_SECRET,
    "an OAuth access token": "ya29.a0AfB_" + "x1Y2z3" * 8,
    "an OAuth refresh token": "1//0gLmNoPqRsTuVwXyZ-" + "a1b2c3" * 6,
    "a private key": "-----BEGIN " + "PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END " + "PRIVATE KEY-----\n",
    "a Google API key": "AIza" + "SyD-" + "k" * 31,
    "a JSON key or token file's content": json.dumps({"type": "authorized_user", "refresh_token": "1//0g" + "z" * 30}),
}


@pytest.mark.parametrize(("option", "kind"), [("--folder-id", kind) for kind in HOSTILE]
                         + [("--client-id", "an OAuth access token"), ("--impersonate", "a private key")])
def test_setup_refuses_a_credential_where_an_id_belongs_without_echoing_it(
    repo_copy: Path, option: str, kind: str, capsys: pytest.CaptureFixture
) -> None:
    secret = HOSTILE[kind]
    args = {"--folder-id": FOLDER, option: secret}
    if option == "--client-id":
        args["--client-secret"] = CLIENT_SECRET
    before = (repo_copy / ".dvc" / "config").read_text()
    argv = ["--repo", str(repo_copy), "setup"] + [x for kv in args.items() for x in kv]
    assert remote.main(argv) == 2
    err = capsys.readouterr().err
    assert f"{option} looks like {kind}" in err and "rotate it" in err
    assert secret.strip()[:12] not in err  # never echoed
    assert (repo_copy / ".dvc" / "config").read_text() == before
    assert not (repo_copy / ".dvc" / "config.local").exists()


def test_setup_refuses_a_config_local_that_links_to_the_tracked_config(repo_copy: Path, capsys) -> None:
    local = repo_copy / ".dvc" / "config.local"
    local.symlink_to("config")
    before = (repo_copy / ".dvc" / "config").read_text()
    argv = ["--repo", str(repo_copy), "setup", "--folder-id", FOLDER, "--client-id", CLIENT_ID,
            "--client-secret", CLIENT_SECRET]
    assert remote.main(argv) == 2
    assert "is tracked by git: refusing to write credentials" in capsys.readouterr().err
    assert (repo_copy / ".dvc" / "config").read_text() == before and CLIENT_SECRET not in before


def test_setup_refuses_a_force_tracked_config_local(repo_copy: Path, capsys) -> None:
    local = repo_copy / ".dvc" / "config.local"
    local.write_text("")
    subprocess.run(["git", "add", "-f", ".dvc/config.local"], cwd=repo_copy, check=True)
    argv = ["--repo", str(repo_copy), "setup", "--folder-id", FOLDER, "--client-id", CLIENT_ID,
            "--client-secret", CLIENT_SECRET]
    assert remote.main(argv) == 2
    assert "config.local is tracked by git" in capsys.readouterr().err
    assert local.read_text() == ""


def test_setup_follows_a_config_local_link_out_of_the_repository(repo_copy: Path, tmp_path: Path) -> None:
    """A config.local kept outside the tree (a link to ~/.secrets/...) still works: git cannot commit it."""
    outside = tmp_path / "secrets" / "dvc-config.local"
    outside.parent.mkdir()
    outside.write_text("")
    (repo_copy / ".dvc" / "config.local").symlink_to(outside)
    argv = ["--repo", str(repo_copy), "setup", "--folder-id", FOLDER, "--client-id", CLIENT_ID,
            "--client-secret", CLIENT_SECRET]
    assert remote.main(argv) == 0
    assert CLIENT_SECRET in outside.read_text()
    assert CLIENT_SECRET not in (repo_copy / ".dvc" / "config").read_text()


def test_check_names_the_placeholder_and_the_setup_command(repo_copy: Path, no_network,
                                                           capsys: pytest.CaptureFixture) -> None:
    assert remote.main(["--repo", str(repo_copy), "check"]) == 2
    err = capsys.readouterr().err
    assert "still points at the placeholder" in err and "python -m vlclean.remote setup --folder-id" in err


def test_check_refuses_dvcs_blocked_default_oauth_client(repo_copy: Path, no_network) -> None:
    remote.apply_setup(repo_copy, remote.plan_setup(FOLDER))
    with pytest.raises(RemoteSetupError, match="This app is blocked"):
        remote.check(repo_copy)


def test_check_refuses_a_client_id_without_its_secret(repo_copy: Path, no_network) -> None:
    # dvc-gdrive would pair a lone client id with DVC's built-in secret, and Google would refuse both at sign-in
    remote.apply_setup(repo_copy, remote.plan_setup(FOLDER))
    remote._write(repo_copy, "local", {"gdrive_client_id": CLIENT_ID})
    with pytest.raises(RemoteSetupError, match="gdrive_client_id is set without gdrive_client_secret"):
        remote.check(repo_copy)


# -- dvc-gdrive's own validation, offline -------------------------------------------------------------------------
def test_dvc_gdrive_client_library_loads() -> None:
    remote.require_pydrive2()  # names the pins to fix when pyOpenSSL and cryptography do not fit together


def gdrive_fs_from_tracked_config(**local: object):
    """dvc-gdrive's filesystem built the way `dvc push -r gdrive` builds it, from the tracked config plus
    ``local`` options (what .dvc/config.local would add)."""
    from dvc.fs import get_cloud_fs
    from dvc_gdrive import GDriveFileSystem

    conf = tracked_remote_config()
    conf["remote"][remote.REMOTE_NAME] |= local
    cls, options, _ = get_cloud_fs(conf, name=remote.REMOTE_NAME)  # DVC's schema validation of the options
    assert cls is GDriveFileSystem
    return cls(**options)


@pytest.mark.parametrize("via", ["key_file", "env"])
def test_gdrive_filesystem_builds_with_a_service_account_without_network(
    via: str, fake_service_account: Path, no_network, monkeypatch: pytest.MonkeyPatch
) -> None:
    if via == "env":
        monkeypatch.setenv(remote.CREDENTIALS_ENV, fake_service_account.read_text())
        fs = gdrive_fs_from_tracked_config(gdrive_use_service_account=True)
    else:
        fs = gdrive_fs_from_tracked_config(gdrive_use_service_account=True,
                                           gdrive_service_account_json_file_path=str(fake_service_account))
    assert fs.unstrip_protocol(fs._path).startswith("gdrive://")
    drive = fs.fs  # pydrive2: ServiceAuth parses the key; the token is fetched on the first API call only
    assert drive.client.auth.credentials.service_account_email == "dvc-ci@fake-project.iam.gserviceaccount.com"
    assert drive.client.auth.credentials.access_token is None  # nothing was requested from Google


def test_gdrive_options_are_validated_before_any_network_call(no_network) -> None:
    from dvc.config import ConfigError as DvcConfigError  # DVC's schema check of remote options
    from dvc_objects.fs.errors import ConfigError  # dvc-gdrive's own checks

    with pytest.raises(ConfigError, match="To use service account, set `gdrive_service_account_json_file_path`"):
        gdrive_fs_from_tracked_config(gdrive_use_service_account=True)
    with pytest.raises(ConfigError, match="client ID and secret"):
        gdrive_fs_from_tracked_config(gdrive_client_id=CLIENT_ID, gdrive_client_secret="")
    with pytest.raises(DvcConfigError, match="extra keys not allowed.*gdrive_clientsecret"):
        gdrive_fs_from_tracked_config(gdrive_clientsecret=CLIENT_SECRET)  # a misspelt option is an error


def test_setup_with_a_service_account_then_check_offline(repo_copy: Path, fake_service_account: Path,
                                                         no_network) -> None:
    rc = remote.main(["--repo", str(repo_copy), "setup", "--folder-id", FOLDER, "--service-account",
                      str(fake_service_account)])
    assert rc == 0
    assert str(fake_service_account) not in (repo_copy / ".dvc" / "config").read_text()
    assert str(fake_service_account) in (repo_copy / ".dvc" / "config.local").read_text()
    notes = remote.check(repo_copy)  # builds DVC's remote and pydrive2's auth from the key: no network
    email = "dvc-ci@fake-project.iam.gserviceaccount.com"
    assert notes == [f"remote 'gdrive': gdrive://{FOLDER} (default)",
                     f"sign-in: service account {email} from {fake_service_account} (share the folder with it)"]


# -- a full round trip through a local remote ---------------------------------------------------------------------
def cached_outs(repo: Path, stage: str) -> list[str]:
    """The outputs of ``stage`` that DVC caches (and so pushes): not the ``cache: false`` metrics and plots."""
    spec = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"][stage]
    outs = []
    for out in spec.get("outs", []):
        path, opts = (out, {}) if isinstance(out, str) else next(iter(out.items()))
        if (opts or {}).get("cache", True):
            outs.append(path)
    return outs


def file_hashes(repo: Path, outs: list[str]) -> dict[str, str]:
    files = []
    for out in outs:
        path = repo / out
        files += sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return {str(p.relative_to(repo)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def commit_all(repo: Path, message: str) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    for cmd in (["git", "add", "-A"], ["git", "commit", "-q", "--allow-empty", "-m", message]):
        subprocess.run(cmd, cwd=repo, check=True, env=env, capture_output=True)


@pytest.mark.slow
def test_push_delete_pull_round_trip_through_a_local_remote(repo_copy: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    dvc(repo_copy, "repro", "download")
    outs = cached_outs(repo_copy, "download")
    before = file_hashes(repo_copy, outs)
    assert outs and before

    # With the placeholder remote not the default, a bare push fails naming the fix, and reaches no one.
    bare = dvc(repo_copy, "push", "download", ok=False)
    assert bare.returncode != 0 and "no remote specified" in bare.stderr

    dvc(repo_copy, "remote", "add", "--local", "localremote", str(store))
    started = time.perf_counter()
    pushed_msg = dvc(repo_copy, "push", "-r", "localremote", "download").stdout
    push_s = time.perf_counter() - started
    pushed = sorted(p for p in (store / "files" / "md5").rglob("*") if p.is_file())
    # every file of the outputs once, plus one directory manifest (.dir) per directory output
    n_dirs = sum((repo_copy / o).is_dir() for o in outs)
    assert len(pushed) == len(before) + n_dirs, (pushed_msg, pushed)
    assert f"{len(pushed)} files pushed" in pushed_msg
    assert len(pushed) <= MAX_PUSHED_FILES, f"the built-in dataset needs {len(pushed)} files on the remote"

    cache_dir = Path(dvc(repo_copy, "cache", "dir").stdout.strip())
    shutil.rmtree(cache_dir)
    for out in outs:
        path = repo_copy / out
        shutil.rmtree(path) if path.is_dir() else path.unlink()

    # Another project imports the dataset from the remote alone; the remote comes from a config file
    # outside both repositories (what keeps credentials out of the importer's .dvc file).
    commit_all(repo_copy, "dataset built and pushed")
    consumer = tmp_path / "consumer"
    consumer.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=consumer, check=True)
    dvc(consumer, "init", "-q")
    remote_conf = tmp_path / "team-remote.dvcconfig"
    remote_conf.write_text(f"[core]\n    remote = store\n['remote \"store\"']\n    url = {store}\n")
    raw = outs[0]
    (consumer / raw).parent.mkdir(parents=True, exist_ok=True)  # dvc import -o wants the parent folder
    dvc(consumer, "import", str(repo_copy), raw, "-o", raw, "--config", str(remote_conf))
    assert file_hashes(consumer, [raw]) == {k: v for k, v in before.items() if k.startswith(f"{raw}/")}
    assert str(store) not in (consumer / f"{raw}.dvc").read_text()  # only the config file's path is recorded

    started = time.perf_counter()
    dvc(repo_copy, "pull", "-r", "localremote", "download")
    pull_s = time.perf_counter() - started

    assert file_hashes(repo_copy, outs) == before  # byte-identical
    assert "Data and pipelines are up to date" in dvc(repo_copy, "status", "download").stdout
    assert "in sync" in dvc(repo_copy, "status", "--cloud", "-r", "localremote", "download").stdout
    assert "localremote" not in (repo_copy / ".dvc" / "config").read_text()  # the local remote stayed local
    print(f"\nround trip: {len(pushed)} files pushed in {push_s:.1f} s, pulled in {pull_s:.1f} s")
