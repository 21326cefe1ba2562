"""Processes of one benchmark session: a throwaway PostgreSQL cluster, PgBouncer
and pgsluice, each started in the foreground with its own config in a temp dir,
and stopped (with the temp dir removed) by Session.close().

Only the standard library is used. When run as root, PostgreSQL and the
poolers run as the `postgres` OS user (PostgreSQL and PgBouncer refuse root).
"""

from __future__ import annotations

import glob
import os
import pwd
import resource
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def pg_bindir() -> Path:
    """Directory of initdb/postgres/pgbench, newest Debian version first."""
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                  key=lambda d: [int(x) for x in Path(d).parent.name.split(".") if x.isdigit()])
    for d in reversed(dirs):
        if os.access(os.path.join(d, "initdb"), os.X_OK):
            return Path(d)
    initdb = shutil.which("initdb")
    if initdb:
        return Path(os.path.realpath(initdb)).parent
    raise SystemExit("initdb not found: install postgresql")


def pgbouncer_bin() -> str:
    """PGBOUNCER_BIN (PgBouncer 1.25.2 built by benches/lib/common.sh), else
    Debian's package."""
    for cand in (os.environ.get("PGBOUNCER_BIN"), shutil.which("pgbouncer"), "/usr/sbin/pgbouncer"):
        if cand and os.access(cand, os.X_OK):
            return cand
    raise SystemExit("pgbouncer not found: install pgbouncer")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raise_nofile() -> None:
    """Raise the open-file limit to the hard limit (inherited by children)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def cpu_split(pid: int) -> tuple[int, int]:
    """(utime, stime) of the whole process (all threads), in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    # comm may contain spaces: fields start after the last ')'.
    rest = data[data.rindex(")") + 2:].split()
    return int(rest[11]), int(rest[12])  # fields 14 and 15


def voluntary_switches(pid: int) -> int:
    """Voluntary context switches of all the process's threads (each time a
    thread went to sleep: in a pooler, mostly waiting in epoll)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches:"):
                        total += int(line.split()[1])
        except OSError:
            pass  # a thread that ended meanwhile
    return total


def machine_busy_ticks() -> int:
    """CPU time spent by the whole machine (every process and the kernel,
    all cores; not idle, not iowait), in clock ticks, from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal guest guest_nice
    return sum(fields[:8]) - fields[3] - fields[4]


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def wait_port(port: int, proc: subprocess.Popen | None, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


@dataclass
class Target:
    """Something pgbench can connect to: direct PostgreSQL or a pooler."""
    name: str          # "direct", "pgbouncer", "pgsluice"
    port: int
    proc: subprocess.Popen | None = None   # the pooler process (None for direct)
    log_path: Path | None = None
    error: str | None = None               # why it is unusable, if it is

    @property
    def ok(self) -> bool:
        return self.error is None and (self.proc is None or self.proc.poll() is None)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def why_down(self) -> str:
        if self.error:
            return self.error
        if self.proc is not None and self.proc.poll() is not None:
            return f"exited with status {self.proc.returncode}"
        return ""


@dataclass
class Session:
    """Temp dir, cluster and poolers. Use as a context manager."""
    dbname: str = "bench"
    user: str = "postgres"
    tmp: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="poolbench-")))
    procs: list = field(default_factory=list)
    pg_port: int = 0
    targets: dict = field(default_factory=dict)
    incidents: list = field(default_factory=list)   # outside interference seen during the run
    # pgsluice only: the pooled database's connection string (default: the
    # primary started here) and more [pgbouncer] lines.
    pgsluice_conn: str = ""
    pgsluice_ini: str = ""

    def __post_init__(self) -> None:
        # TLS=1: both poolers take clients over TLS (client_tls_sslmode =
        # require, a self-signed certificate made here) and every pgbench
        # asks for it (PGSSLMODE=prefer: direct PostgreSQL stays plaintext).
        self.tls = os.environ.get("TLS") == "1"
        if self.tls:
            os.environ["PGSSLMODE"] = "prefer"
        self.bindir = pg_bindir()
        self.as_root = os.geteuid() == 0
        self.run_user = "postgres" if self.as_root else pwd.getpwuid(os.geteuid()).pw_name
        if self.as_root:
            pw = pwd.getpwnam("postgres")
            os.chown(self.tmp, pw.pw_uid, pw.pw_gid)
        os.chmod(self.tmp, 0o755)
        raise_nofile()

    # -- process plumbing -------------------------------------------------
    def _popen(self, argv: list[str], logname: str, as_service_user: bool = True) -> subprocess.Popen:
        logf = open(self.tmp / logname, "ab")
        kw: dict = {}
        if self.as_root and as_service_user:
            kw.update(user="postgres", group="postgres", extra_groups=[])
        p = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             cwd=self.tmp, start_new_session=True, **kw)
        logf.close()
        self.procs.append(p)
        return p

    def run_as_service_user(self, argv: list[str], **kw) -> subprocess.CompletedProcess:
        if self.as_root:
            kw.update(user="postgres", group="postgres", extra_groups=[])
        return subprocess.run(argv, cwd=self.tmp, **kw)

    def _chown(self, path: Path) -> None:
        if self.as_root:
            pw = pwd.getpwnam("postgres")
            os.chown(path, pw.pw_uid, pw.pw_gid)

    @staticmethod
    def stop(p: subprocess.Popen, sig: int = signal.SIGINT, timeout: float = 10.0) -> None:
        if p.poll() is not None:
            return
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            return
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()

    def close(self) -> None:
        # Poolers first, PostgreSQL (first started) last.
        for p in reversed(self.procs):
            self.stop(p)
        if os.environ.get("KEEP_TMP") == "1":
            log(f"kept temp dir {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- PostgreSQL -------------------------------------------------------
    def start_postgres(self, scale: int = 10) -> Target:
        self.pg_port = free_port()
        data = self.tmp / "data"
        log(f"initdb in {data}")
        self.run_as_service_user(
            [str(self.bindir / "initdb"), "-D", str(data), "-U", self.user, "--auth=trust",
             "-E", "UTF8", "--locale=C", "--no-sync"],
            check=True, stdout=subprocess.DEVNULL)
        # PostgreSQL defaults except max_connections and shared_buffers.
        argv = [str(self.bindir / "postgres"), "-D", str(data),
                "-c", f"port={self.pg_port}", "-c", "listen_addresses=127.0.0.1",
                "-c", f"unix_socket_directories={self.tmp}",
                "-c", "max_connections=1100", "-c", "shared_buffers=128MB"]
        self.pg_argv = argv
        p = self.pg_proc = self._popen(argv, "postgres.log")
        if not wait_port(self.pg_port, p):
            raise SystemExit(f"PostgreSQL did not start; see {self.tmp}/postgres.log:\n"
                             + (self.tmp / "postgres.log").read_text()[-2000:])
        # Wait until it accepts queries, not just the port.
        psql = [str(self.bindir / "psql"), "-X", "-q", "-h", "127.0.0.1", "-p", str(self.pg_port),
                "-U", self.user]
        for _ in range(100):
            if subprocess.run(psql + ["-d", "postgres", "-c", "select 1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0:
                break
            time.sleep(0.1)
        subprocess.run(psql + ["-d", "postgres", "-c", f"create database {self.dbname}"], check=True)
        log(f"pgbench -i -s {scale}")
        subprocess.run([str(self.bindir / "pgbench"), "-i", "-q", "-s", str(scale), "-h", "127.0.0.1",
                        "-p", str(self.pg_port), "-U", self.user, self.dbname],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        subprocess.run(psql + ["-d", self.dbname, "-c", "checkpoint"], check=True)
        t = Target("direct", self.pg_port)
        self.targets["direct"] = t
        return t

    def ensure_postgres(self) -> bool:
        """Restart PostgreSQL if something outside stopped it. True if it was restarted."""
        if self.pg_proc.poll() is None:
            return False
        msg = f"PostgreSQL exited (status {self.pg_proc.returncode}) during the run; restarted it"
        log("warning: " + msg)
        self.incidents.append(msg)
        time.sleep(1.0)
        self.pg_proc = self._popen(self.pg_argv, "postgres.log")
        if not wait_port(self.pg_port, self.pg_proc, timeout=60):
            raise SystemExit("PostgreSQL could not be restarted; see postgres.log")
        return True

    # -- poolers ----------------------------------------------------------
    def write_pooler_ini(self, name: str, port: int, pool_size: int = 20,
                         max_client_conn: int = 6000) -> Path:
        userlist = self.tmp / "userlist.txt"
        if not userlist.exists():
            userlist.write_text(f'"{self.user}" ""\n')
            self._chown(userlist)
        ini = self.tmp / f"{name}.ini"
        tls = ""
        if self.tls:
            key, cert = self.tls_files()
            tls = (f"client_tls_sslmode = require\nclient_tls_key_file = {key}\n"
                   f"client_tls_cert_file = {cert}\n")
        # PGSLUICE_DB_OPTIONS: more connection-string keys for pgsluice's
        # database entry (e.g. read_write_split=1; PgBouncer would refuse them).
        extra = os.environ.get("PGSLUICE_DB_OPTIONS", "") if name == "pgsluice" else ""
        conn = f"host=127.0.0.1 port={self.pg_port} dbname={self.dbname}"
        if name == "pgsluice":
            conn = self.pgsluice_conn or conn
            tls += self.pgsluice_ini
        ini.write_text(
            "[databases]\n"
            f"{self.dbname} = {conn} {extra}\n"
            "\n[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {port}\n"
            "unix_socket_dir =\n"
            "auth_type = trust\n"
            f"auth_file = {userlist}\n"
            "pool_mode = transaction\n"
            f"default_pool_size = {pool_size}\n"
            f"max_client_conn = {max_client_conn}\n" + tls)
        self._chown(ini)
        return ini

    def tls_files(self) -> tuple[Path, Path]:
        """A self-signed ECDSA P-256 key and certificate for localhost (made once)."""
        key, cert = self.tmp / "pooler.key", self.tmp / "pooler.crt"
        if not cert.exists():
            subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                            "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key),
                            "-out", str(cert), "-days", "30", "-subj", "/CN=localhost",
                            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for p in (key, cert):
                self._chown(p)
            os.chmod(key, 0o600)
        return key, cert

    def start_pooler(self, name: str, binary: str | None, extra_args: list[str] | None = None,
                     wrapper: list[str] | None = None) -> Target:
        """Start a pooler (replacing a running one of that name)."""
        old = self.targets.get(name)
        if old is not None and old.proc is not None:
            self.stop(old.proc)
        port = free_port()
        t = Target(name, port)
        self.targets[name] = t
        if binary is None:
            t.error = "not built"
            return t
        ini = self.write_pooler_ini(name, port)
        if self.as_root and name == "pgsluice":
            # Copy into the temp dir so the postgres user can run it, and
            # so the binary cannot change under a running benchmark.
            local = self.tmp / "pgsluice"
            if not local.exists():
                shutil.copy2(binary, local)
                self._chown(local)
            binary = str(local)
        argv = (wrapper or []) + [binary] + (extra_args or []) + [str(ini)]
        t.log_path = self.tmp / f"{name}.log"
        t.proc = self._popen(argv, t.log_path.name)
        if not wait_port(port, t.proc, timeout=120 if wrapper else 15):
            t.error = ("exited with status %s" % t.proc.returncode) if t.proc.poll() is not None \
                else "did not listen within the time limit"
            tail = t.log_path.read_text(errors="replace")[-800:] if t.log_path.exists() else ""
            log(f"{name} failed to start: {t.error}\n{tail}")
            self.stop(t.proc)
        return t
