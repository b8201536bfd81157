#!/usr/bin/env python3
"""The bot's own tooling, standard library only (Rasa 3.6 lives in its own virtualenv).

python3 bot/manage.py venv          create bot/.venv from bot/requirements.txt (once per change)
python3 bot/manage.py train         train unless a model for the current files is cached
python3 bot/manage.py model-path    print the cached model for the current files (exit 1 if none)
python3 bot/manage.py run --port P  serve the model over HTTP (REST channel + API), with its
                                    action server (bot/actions) on a loopback port of its own
python3 bot/manage.py actions --port P   the action server alone
python3 bot/manage.py test-nlu      cross-validate the NLU data and print intent F1
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

BOT = Path(__file__).resolve().parent
VENV = BOT / ".venv"
RASA = VENV / "bin" / "rasa"
PYTHON = VENV / "bin" / "python"
# Runs Rasa and the action server with logs that never hold a member's words (see its docstring).
LOGSAFE = BOT / "logsafe.py"
MODELS = BOT / "models"
REQUIREMENTS = BOT / "requirements.txt"


def content_hash() -> str:
    """A hash of everything the model depends on."""
    digest = hashlib.sha256()
    files = [BOT / "config.yml", BOT / "domain.yml", *sorted((BOT / "data").rglob("*.yml"))]
    for path in files:
        digest.update(path.relative_to(BOT).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def venv() -> int:
    stamp = VENV / f".requirements-{hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()[:16]}"
    if stamp.exists() and RASA.exists():
        print(f"bot virtualenv up to date ({VENV})")
        return 0
    if not (VENV / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)  # noqa: S603
    started = time.monotonic()
    subprocess.run(  # noqa: S603
        [str(VENV / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", "--no-deps",
         "--ignore-requires-python", "-r", str(REQUIREMENTS)],
        check=True,
    )  # fmt: skip
    stamp.touch()
    print(f"bot virtualenv built in {time.monotonic() - started:.0f} s")
    return 0


def model_path() -> Path:
    return MODELS / f"{content_hash()}.tar.gz"


def train() -> int:
    target = model_path()
    if target.exists():
        print(f"model up to date: {target}")
        return 0
    MODELS.mkdir(exist_ok=True)
    started = time.monotonic()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    subprocess.run(  # noqa: S603
        [str(RASA), "train", "--fixed-model-name", target.name.removesuffix(".tar.gz"), "--out", str(MODELS)],
        cwd=BOT,
        check=True,
        env=env,
    )
    print(f"trained in {time.monotonic() - started:.0f} s: {target}")
    return 0


def endpoints_file(redis_url: str, actions_url: str, name: str = "endpoints.yml") -> Path:
    """The action server, and tracker and lock stores in the product's Redis, so no conversation
    state lives only in Rasa."""
    parts = urlsplit(redis_url)
    db = (parts.path or "/0").lstrip("/") or "0"
    out = BOT / ".rasa" / name
    out.parent.mkdir(exist_ok=True)
    lines = ["action_endpoint:", f'  url: "{actions_url}/webhook"']
    for store, prefix in (("tracker_store", "rasa"), ("lock_store", "rasa")):
        lines += [
            f"{store}:",
            "  type: redis",
            f"  url: {parts.hostname or '127.0.0.1'}",
            f"  port: {parts.port or 6379}",
            f"  db: {db}",
            f'  key_prefix: "{prefix}"',
        ]
        if parts.password:
            lines.append(f"  password: {json.dumps(parts.password)}")
    out.write_text("\n".join(lines) + "\n")
    return out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def actions_env() -> dict[str, str]:
    """The actions import the gateway's key and record layout (stdlib + redis only) from the repository."""
    return {**os.environ, "PYTHONPATH": str(BOT.parent), "SANIC_HOST": "127.0.0.1", "TF_CPP_MIN_LOG_LEVEL": "3"}


def actions_args(port: int) -> list[str]:
    return [str(PYTHON), str(LOGSAFE), "rasa_sdk", "--actions", "actions", "--port", str(port)]


def _die_with_parent() -> None:
    """The action server ends with the Rasa server that started it (Linux)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def actions(port: int) -> int:
    os.chdir(BOT)
    os.execve(actions_args(port)[0], actions_args(port), actions_env())  # noqa: S606


def run(port: int, actions_port: int = 0, *, own_actions: bool = True) -> int:
    target = model_path()
    if not target.exists():
        print("no model for the current files: run `python3 bot/manage.py train`", file=sys.stderr)
        return 1
    os.chdir(BOT)
    actions_port = actions_port or free_port()
    if own_actions:
        # Started first and tied to this process, which becomes the Rasa server below (exec keeps the pid).
        subprocess.Popen(actions_args(actions_port), env=actions_env(), preexec_fn=_die_with_parent)  # noqa: S603
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    # Rasa 3.6's Redis tracker and lock stores speak to one standalone Redis: with the product on a
    # Redis Cluster, TRACKER_REDIS_URL names that Redis (the actions still use REDIS_URL).
    tracker_url = os.environ.get("TRACKER_REDIS_URL") or redis_url
    if "+cluster://" in tracker_url:
        print("the product's Redis is a cluster: set TRACKER_REDIS_URL to a standalone Redis for Rasa's trackers",
              file=sys.stderr)  # fmt: skip
        return 2
    endpoints = endpoints_file(tracker_url, f"http://127.0.0.1:{actions_port}", f"endpoints-{port}.yml")
    args = [str(PYTHON), str(LOGSAFE), "rasa", "run", "--enable-api", "-m", str(target), "--port", str(port), "-i", "127.0.0.1",
            "--credentials", "credentials.yml", "--endpoints", str(endpoints)]  # fmt: skip
    os.execv(str(PYTHON), args)  # noqa: S606


def test_nlu(folds: int, min_f1: float) -> int:
    out = BOT / ".rasa" / "nlu-report"
    started = time.monotonic()
    done = subprocess.run(  # noqa: S603
        [str(RASA), "test", "nlu", "--nlu", "data/nlu.yml", "--config", "config.yml", "--cross-validation",
         "--folds", str(folds), "--out", str(out)],
        cwd=BOT,
        capture_output=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )  # fmt: skip
    if done.returncode != 0:
        sys.stderr.write(done.stdout.decode(errors="replace")[-4000:] + done.stderr.decode(errors="replace")[-4000:])
        return done.returncode
    print(f"NLU cross-validation ({folds} folds) took {time.monotonic() - started:.0f} s; report in {out}")
    report = json.loads((out / "intent_report.json").read_text())
    print(f"intent F1 ({folds}-fold cross-validation): macro {report['macro avg']['f1-score']:.3f}, "
          f"weighted {report['weighted avg']['f1-score']:.3f}")  # fmt: skip
    worst = sorted((v["f1-score"], k) for k, v in report.items() if isinstance(v, dict) and "support" in v
                   and not k.endswith("avg") and k != "accuracy")[:5]  # fmt: skip
    print("weakest intents: " + ", ".join(f"{name} {f1:.2f}" for f1, name in worst))
    if report["macro avg"]["f1-score"] < min_f1:
        print(f"intent F1 below the floor of {min_f1:.2f}", file=sys.stderr)
        return 1
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("venv")
    sub.add_parser("train")
    sub.add_parser("model-path")
    p_run = sub.add_parser("run")
    p_run.add_argument("--port", type=int, default=5005)
    p_run.add_argument("--actions-port", type=int, default=0, help="the action server's port (default: a free one)")
    p_run.add_argument("--no-actions", action="store_true",
                       help="the action server on --actions-port is run by someone else (run.py serve runs both)")  # fmt: skip
    p_actions = sub.add_parser("actions")
    p_actions.add_argument("--port", type=int, default=5055)
    p_test = sub.add_parser("test-nlu")
    p_test.add_argument("--folds", type=int, default=3)
    p_test.add_argument("--min-f1", type=float, default=0.0, help="fail below this macro intent F1")
    args = ap.parse_args()
    if args.cmd == "venv":
        return venv()
    if args.cmd == "train":
        return train()
    if args.cmd == "model-path":
        path = model_path()
        if not path.exists():
            return 1
        print(path)
        return 0
    if args.cmd == "run":
        return run(args.port, args.actions_port, own_actions=not args.no_actions)
    if args.cmd == "actions":
        return actions(args.port)
    return test_nlu(args.folds, args.min_f1)


if __name__ == "__main__":
    raise SystemExit(main())
