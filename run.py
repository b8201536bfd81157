#!/usr/bin/env python3
"""The one entry point.

    python3 run.py serve     install what serving needs (once) and run everything
    python3 run.py test      install what the tests need (system packages included) and run them
    python3 run.py lock      refresh the lock files (requirements/*.txt) from pyproject.toml's ranges
                             (--upgrade: every pin to the newest release the ranges allow)

Python packages are installed from the lock files (exact versions, hash-checked), never from the
open ranges directly, so a new release elsewhere cannot change a fresh install overnight.

Only the standard library is used until the project's virtualenv (.venv) exists; the
script then re-executes itself inside it.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
VENV_PY = VENV / "bin" / "python"
SYSTEM_PACKAGES = {"redis-server": "redis-server", "chromium": "chromium"}
# Exact versions with their hashes, compiled from pyproject.toml's ranges by ``run.py lock``.
LOCKS = {None: ROOT / "requirements" / "serve.txt", "test": ROOT / "requirements" / "test.txt"}


def _run(cmd: list[str], **kw: object) -> None:
    print("+ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, **kw)  # type: ignore[call-overload]  # noqa: S603


def ensure_system_packages(names: list[str]) -> None:
    """apt-get install the commands the tests need, when missing."""
    missing = [pkg for cmd, pkg in SYSTEM_PACKAGES.items() if pkg in names and not shutil.which(cmd)]
    if not missing:
        return
    if not shutil.which("apt-get"):
        sys.exit(f"missing system packages {missing} and no apt-get to install them")
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    _run([*sudo, "apt-get", "update", "-q"], env=env)
    _run([*sudo, "apt-get", "install", "-y", "-q", "--no-install-recommends", *missing], env=env)


def ensure_venv(extra: str | None) -> None:
    """Create .venv and install the lock file's exact versions (hash-checked), once per lock change."""
    lock = LOCKS[extra]
    stamp = VENV / f".lock-{lock.stem}-{hashlib.sha256(lock.read_bytes()).hexdigest()[:16]}"
    if stamp.exists():
        return
    if not VENV_PY.exists():
        _run([sys.executable, "-m", "venv", str(VENV)])
    _run([str(VENV_PY), "-m", "pip", "install", "-q", "--disable-pip-version-check", "--require-hashes",
          "-r", str(lock)])  # fmt: skip
    stamp.touch()


def in_venv() -> bool:
    return Path(sys.prefix).resolve() == VENV.resolve()


def reexec_in_venv() -> None:
    os.execv(str(VENV_PY), [str(VENV_PY), str(ROOT / "run.py"), *sys.argv[1:]])  # noqa: S606


def cmd_serve(args: argparse.Namespace) -> int:
    from gateway import logs
    from gateway.settings import Settings
    from server.service import serve

    settings = Settings.from_env()
    logs.setup(settings.log_level, settings.secret_values())
    return serve(settings)


def cmd_demo_data(args: argparse.Namespace) -> int:
    from members.demo_data import generate

    counts = generate(args.members, Path(args.out), seed=args.seed)
    print("Fichiers écrits dans", args.out, ":", ", ".join(f"{n} {k}" for k, n in counts.items()))
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    import asyncio

    from gateway.redis_client import connect
    from gateway.redis_server import private_redis_url
    from gateway.settings import Settings
    from members.importer import import_directory

    settings = Settings.from_env()

    async def run(url: str) -> int:
        redis = connect(url)
        try:
            report = await import_directory(redis, Path(args.directory))
        finally:
            await redis.aclose()
        if report.errors:
            print(f"Import refusé : {len(report.errors)} erreur(s), rien n'a été écrit.", file=sys.stderr)
            for line in report.errors[:200]:
                print("  " + line, file=sys.stderr)
            return 1
        if report.resumed:
            print("L'import précédent avait été interrompu : il est maintenant complet.")
        print("Import terminé :", ", ".join(f"{n} {k}" for k, n in report.counts.items()))
        return 0

    with private_redis_url(settings) as url:
        return asyncio.run(run(url))


def cmd_apikey(args: argparse.Namespace) -> int:
    """API keys of back-office systems (members/apikeys.py): the key is printed once, only its digest kept."""
    import asyncio
    import datetime as dt

    from gateway.redis_client import connect
    from gateway.redis_server import private_redis_url
    from gateway.settings import Settings
    from members.apikeys import ApiKeyError, ApiKeys

    def when(ms: int) -> str:
        return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M UTC") if ms else ""

    async def run(url: str) -> int:
        redis = connect(url)
        try:
            store = ApiKeys(redis)
            if args.action == "create":
                if not args.name:
                    print("Nom de la clé manquant : run.py apikey create NOM --scope read|write", file=sys.stderr)
                    return 2
                try:
                    token = await store.create(args.name, args.scope)
                except ApiKeyError as exc:
                    print(f"Clé refusée : {exc}", file=sys.stderr)
                    return 1
                print(f"Clé {args.name.strip().lower()} ({args.scope}) créée. Elle ne sera plus jamais affichée :")
                print(token)
            elif args.action == "revoke":
                if not args.name or not await store.revoke(args.name):
                    print(f"Aucune clé active nommée {args.name!r}.", file=sys.stderr)
                    return 1
                print(f"Clé {args.name.strip().lower()} révoquée : elle est refusée dès maintenant.")
            else:
                for key in await store.list():
                    state = f"révoquée le {when(key.revoked_ms)}" if key.revoked_ms else "active"
                    print(f"{key.name}\t{key.scope}\tcréée le {when(key.created_ms)}\t{state}")
        finally:
            await redis.aclose()
        return 0

    with private_redis_url(Settings.from_env()) as url:
        return asyncio.run(run(url))


def cmd_create_user(args: argparse.Namespace) -> int:
    import asyncio
    import getpass

    from gateway.redis_client import connect
    from gateway.redis_server import private_redis_url
    from gateway.settings import Settings
    from staff.users import UserError, UserExists, Users

    refused = (
        "Utilisateur refusé : {exc}. Rien n'a été modifié ; pour le changer (mot de passe, rôle, compétences…), "
        "relancez la commande avec --update."
    )

    def read_password() -> str | None:
        if args.password_stdin:
            return sys.stdin.readline().rstrip("\n")
        password = getpass.getpass("Mot de passe (12 caractères au moins) : ")
        if getpass.getpass("Mot de passe, encore : ") != password:
            print("Les deux mots de passe diffèrent.", file=sys.stderr)
            return None
        return password

    async def run(url: str) -> int:
        redis = connect(url)
        try:
            users = Users(redis)
            existed = await users.exists(args.login)
            if existed and not args.update:  # said before the password is asked for
                print(refused.format(exc=f"l'identifiant {args.login.strip().lower()} existe déjà"), file=sys.stderr)
                return 1
            password = read_password()
            if password is None:
                return 1
            user = await users.create(
                args.login,
                password,
                first_name=args.first_name,
                role=args.role,
                skills=[s for s in args.skills.split(",") if s],
                capacity=args.capacity,
                title=args.title,
                update=args.update,
                phone=args.phone,
            )
        except UserExists as exc:  # created by someone else meanwhile
            print(refused.format(exc=exc), file=sys.stderr)
            return 1
        except UserError as exc:
            print(f"Utilisateur refusé : {exc}", file=sys.stderr)
            return 1
        finally:
            await redis.aclose()
        done = "mis à jour" if existed else "enregistré"
        print(f"Utilisateur {user.login} ({user.role}, compétences : {', '.join(user.skills) or 'aucune'}) {done}.")
        return 0

    with private_redis_url(Settings.from_env()) as url:
        return asyncio.run(run(url))


def cmd_proactive_preview(args: argparse.Namespace) -> int:
    """What each kind of message sent first says, per channel, from templates/proactive/ (a channel's own
    ``<kind>.<channel>.text.j2`` when there is one), with example values: for communications staff to
    read before a template change goes live."""
    from gateway.app import template_env
    from gateway.settings import Settings
    from members.proactive import preview

    channels = (args.channel,) if args.channel else ("sms", "email", "whatsapp")
    for item in preview(template_env(), channels, Settings.from_env().mutuelle_name):
        print(f"[{item['kind']} · {item['channel']}]")
        if "subject" in item:
            print(f"Objet : {item['subject']}")
        print(item["text"], end="\n\n")
    return 0


def cmd_set_phone(args: argparse.Namespace) -> int:
    """A supervisor or administrator sets an agent's phone (agents change their own in « Mon profil »)."""
    import asyncio

    from gateway.redis_client import connect
    from gateway.redis_server import private_redis_url
    from gateway.settings import Settings
    from staff.users import UserError, Users, phone_display

    async def run(url: str) -> int:
        redis = connect(url)
        try:
            user = await Users(redis).set_phone(args.login, args.phone)
        except UserError as exc:
            print(f"Téléphone refusé : {exc} Rien n'a été modifié.", file=sys.stderr)
            return 1
        finally:
            await redis.aclose()
        if user.phone:
            print(f"Téléphone de {user.login} enregistré : {phone_display(user.phone)}.")
        else:
            print(f"Téléphone de {user.login} retiré : ses appels ne peuvent plus sonner.")
        return 0

    with private_redis_url(Settings.from_env()) as url:
        return asyncio.run(run(url))


def cmd_role(args: argparse.Namespace) -> int:
    import asyncio

    from gateway import logs
    from gateway.settings import Settings
    from server.service import run_roles

    settings = Settings.from_env()
    logs.setup(settings.log_level, settings.secret_values())
    roles = {"web": {"web"}, "gateway": {"web"}, "worker": {"worker"}, "all": {"web", "worker"},
             "router": {"router"}, "dispatcher": {"dispatcher"}, "scheduler": {"scheduler"}}[args.command]  # fmt: skip
    try:
        import uvloop
    except ImportError:  # uvloop is optional (not on every platform)
        asyncio.run(run_roles(settings, frozenset(roles)))
    else:
        uvloop.run(run_roles(settings, frozenset(roles)))
    return 0


CAMPAIGN_ACTIONS = ("create", "list", "count", "preview", "schedule", "pause", "resume", "cancel", "report", "watch",
                    "proof")  # fmt: skip
NLU_MIN_F1 = 0.84  # 3-fold macro intent F1 the NLU data must keep (0.866 measured on 2026-12-07, bot/README.md)


def cmd_test(args: argparse.Namespace) -> int:
    py = sys.executable
    steps = [
        # The bot's own virtualenv (Rasa 3.6, pinned) and its model, both cached.
        ["python3", str(ROOT / "bot" / "manage.py"), "venv"],
        ["python3", str(ROOT / "bot" / "manage.py"), "train"],
        [py, "-m", "ruff", "check", "."],
        [py, "-m", "mypy"],
        [py, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args.pytest_args],
    ]
    if not args.pytest_args:  # the full run also cross-validates the bot's NLU data and prints intent F1
        steps.append(["python3", str(ROOT / "bot" / "manage.py"), "test-nlu", "--min-f1", str(NLU_MIN_F1)])
    for step in steps:
        print("+ " + " ".join(step), flush=True)
        rc = subprocess.run(step, cwd=ROOT, check=False).returncode  # noqa: S603
        if rc != 0:
            return rc
    return 0


def cmd_lock(args: argparse.Namespace) -> int:
    """Compile requirements/serve.txt and requirements/test.txt from pyproject.toml's ranges, with every
    file's hash, from PyPI itself rather than this machine's pip settings. Pinned versions are kept while
    the ranges allow them (a new dependency is simply added); ``--upgrade`` moves every pin to the newest."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") or k == "PIP_CERT"}
    env["PIP_CONFIG_FILE"] = os.devnull
    for extra, lock in LOCKS.items():
        cmd = [sys.executable, "-m", "piptools", "compile", "-q", *(["--upgrade"] if args.upgrade else []),
               "--generate-hashes", "--strip-extras",
               "--allow-unsafe", "--index-url", "https://pypi.org/simple", "--output-file",
               str(lock.relative_to(ROOT)), *(["--extra", extra] if extra else []), "pyproject.toml"]  # fmt: skip
        print("+ " + " ".join(cmd), flush=True)
        rc = subprocess.run(cmd, cwd=ROOT, env=env, check=False).returncode  # noqa: S603
        if rc != 0:
            return rc
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="run.py", description="Member assistant and messaging gateway")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="run everything with embedded defaults")
    sub.add_parser("web", help="run the web role only (webhooks, web chat, SMTP listener); needs REDIS_URL")
    sub.add_parser("worker", help="run the worker role only (router, dispatcher); needs REDIS_URL")
    sub.add_parser("all", help="run both roles in this one process; needs REDIS_URL")
    # One role per process, any number of copies on any machine that reaches REDIS_URL.
    sub.add_parser("gateway", help="same as web: webhooks, web chat, console, SMTP listener; needs REDIS_URL")
    sub.add_parser("router", help="inbound stream: contacts, conversations, the bot; needs REDIS_URL")
    sub.add_parser("dispatcher", help="outbound stream: sends, retries, provider limits; needs REDIS_URL")
    sub.add_parser("scheduler", help="campaigns, their watchdog, the retention purge; needs REDIS_URL")
    p_demo = sub.add_parser("demo-data", help="write a synthetic French member data set as CSV files")
    p_demo.add_argument("--members", type=int, default=1000)
    p_demo.add_argument("--out", default=str(ROOT / "var" / "demo"))
    p_demo.add_argument("--seed", type=int, default=2026)
    p_imp = sub.add_parser("import", help="load member records from a folder of CSV files (all or nothing)")
    p_imp.add_argument("directory")
    p_user = sub.add_parser("create-user", help="create a console user (agent, supervisor, communications); "
                            "an existing login is changed only with --update")  # fmt: skip
    p_user.add_argument("login")
    p_user.add_argument("--first-name", required=True, help="given to members: their identified interlocutor")
    p_user.add_argument("--role", choices=("agent", "supervisor", "communications"), default="agent")
    p_user.add_argument("--skills", default="benefits", help="comma-separated: benefits,quotes,complaints,sales")
    p_user.add_argument("--capacity", type=int, default=3, help="conversations held at once")
    p_user.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    p_user.add_argument("--title", default="conseiller", help="shown to members after the first name: "
                        "« Julie, conseillère »")  # fmt: skip
    p_user.add_argument("--phone", default="", help="the agent's phone (E.164, +336...): calls taken in the console "
                        "ring it")  # fmt: skip
    p_user.add_argument("--update", action="store_true", help="change an existing user (all fields, password too)")
    p_phone = sub.add_parser("set-phone", help="set a console user's phone (the one calls taken in the console "
                             "ring); agents change their own in « Mon profil »")  # fmt: skip
    p_phone.add_argument("login")
    p_phone.add_argument("phone", help="06 12 34 56 78, +33 6 12 34 56 78 or any +<country> number; '' removes it")
    p_pro = sub.add_parser("proactive", help="messages sent to members before they ask: preview shows what each "
                           "kind says on each channel (with example values and MUTUELLE_NAME)")  # fmt: skip
    p_pro.add_argument("action", choices=("preview",))
    p_pro.add_argument("--channel", choices=("sms", "email", "whatsapp"), help="only this channel")
    p_key = sub.add_parser("apikey", help="API keys of back-office systems: create (printed once), revoke, list")
    p_key.add_argument("action", choices=("create", "revoke", "list"))
    p_key.add_argument("name", nargs="?", help="the system's name, e.g. gestion")
    p_key.add_argument("--scope", choices=("read", "write"), default="read", help="create: read, or write (and read)")
    # Built with the standard library only: the parser runs before the virtualenv exists.
    p_camp = sub.add_parser("campaign", help="campaigns: create, list, count, preview, schedule, pause, resume, "
                            "cancel, report, watch, proof (see campaigns/cli.py)")  # fmt: skip
    p_camp.add_argument("action", choices=CAMPAIGN_ACTIONS)
    p_camp.add_argument("target", nargs="?", help="a campaign id (a JSON file for create)")
    p_camp.add_argument("--start", help="schedule: start (Europe/Paris), default now")
    p_camp.add_argument("--out", help="proof: file to write, CSV for French Excel (.csv) or a workbook (.xlsx)")
    p_camp.add_argument("--list", help="create: a file of member numbers (text or CSV) as the audience; extra "
                        "columns (nouvelle cotisation...) are each member's own values")  # fmt: skip
    p_member = sub.add_parser(
        "member", help="a member's data: export it as JSON, or erase it (see members/privacy_cli.py)"
    )
    p_member.add_argument("action", choices=("export", "erase"))
    p_member.add_argument("number", help="the member number")
    p_member.add_argument("--out", help="export: JSON file to write (default: standard output)")
    p_member.add_argument("--yes", action="store_true", help="erase: confirm (erasure cannot be undone)")
    p_member.add_argument("--by", help="erase: who asks (recorded in the audit trail), default the system user")
    sub.add_parser("test", help="install test dependencies and run lint, types and tests (extra args go to pytest)")
    p_lock = sub.add_parser("lock", help="refresh requirements/serve.txt and requirements/test.txt from pyproject.toml")
    p_lock.add_argument("--upgrade", action="store_true", help="move every pin to the newest version the ranges allow")
    args, extra = parser.parse_known_args()
    if extra and args.command != "test":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.pytest_args = extra

    if not in_venv():
        if args.command == "test":
            ensure_system_packages(list(SYSTEM_PACKAGES.values()))
            ensure_venv("test")
        elif args.command == "lock":
            ensure_venv("test")  # pip-tools is a test dependency
        else:
            ensure_venv(None)
        reexec_in_venv()

    sys.path.insert(0, str(ROOT))
    if args.command == "serve":
        return cmd_serve(args)
    if args.command == "test":
        return cmd_test(args)
    if args.command == "lock":
        return cmd_lock(args)
    if args.command == "demo-data":
        return cmd_demo_data(args)
    if args.command == "import":
        return cmd_import(args)
    if args.command == "create-user":
        return cmd_create_user(args)
    if args.command == "set-phone":
        return cmd_set_phone(args)
    if args.command == "apikey":
        return cmd_apikey(args)
    if args.command == "proactive":
        return cmd_proactive_preview(args)
    if args.command == "campaign":
        from campaigns.cli import run as campaign_run

        return campaign_run(args)
    if args.command == "member":
        from campaigns.privacy import CampaignNotices
        from members.privacy_cli import run as member_run

        return member_run(args, notices=CampaignNotices)
    return cmd_role(args)


if __name__ == "__main__":
    raise SystemExit(main())
