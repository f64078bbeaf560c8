#!/usr/bin/env python3
"""A pooled application for myrr's end-to-end tests: mysql-connector-python, a connection pool
and `cursor(prepared=True)` (server-side prepared statements, binary protocol). The same
workload, arguments and protocol as tests/clients/app.js (read its header); one thread per
worker. tests/common/clients.rs drives both.

    python app.py --url mysql://user:pass@host:port/db [--host H --port P --user U
                  --password W --db D] --connections N --iterations M [--tls 1.2|1.3]

--tls V: connect over TLS version V (the server's certificate is not verified).

The connector runs in its pure-Python implementation (use_pure=True): the C extension in the
wheel needs OpenSSL 3.2 and Debian 12 has 3.0, so it does not load here. scripts/setup.sh
installs the connector into the venv target/clients/venv.
"""

import argparse
import datetime
import sys
import threading
import urllib.parse

import mysql.connector.pooling

SQL = {
    "select": "SELECT id, owner, balance, note, updated FROM accounts WHERE id = ?",
    "update": "UPDATE accounts SET balance = balance + ?, note = ?, updated = ? WHERE id = ?",
    "insert": "INSERT INTO events (worker, seq, kind, amount, at) VALUES (?, ?, ?, ?, ?)",
    "delete": "DELETE FROM events WHERE worker = ? AND seq = ?",
}
KINDS = ["deposit", "withdraw", "fee", "refund"]


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--user")
    p.add_argument("--password")
    p.add_argument("--db")
    p.add_argument("--connections", type=int, default=4)
    p.add_argument("--iterations", type=int, default=50)
    p.add_argument("--tls", choices=["1.2", "1.3"])
    o = p.parse_args(argv)
    if o.url:
        u = urllib.parse.urlsplit(o.url)
        o.host = o.host or u.hostname
        o.port = o.port or u.port or 3306
        o.user = o.user or urllib.parse.unquote(u.username or "")
        o.password = o.password or urllib.parse.unquote(u.password or "")
        o.db = o.db or urllib.parse.unquote(u.path.lstrip("/")) or None
    if not o.host or not o.db:
        p.error("need --url or --host and --db")
    return o


def money(cents):
    """Integer cents as a DECIMAL string ("-3.05"), without floating point."""
    a = abs(cents)
    return f"{'-' if cents < 0 else ''}{a // 100}.{a % 100:02d}"


def step(w, i):
    """The values of worker w's iteration i (0 is the setup); app.js's step()."""
    cents = (w * 37 + i * 101) % 2001 - 1000
    at = datetime.datetime(2024, 1, 1 + w, 0, 0, i % 60, (i % 1000) * 1000)
    return {
        "account": w * 100 + i % 4,
        "delta": money(cents),
        "note": None if i % 3 == 0 else f"w{w}-i{i}",
        "at": at,
        "kind": KINDS[i % 4],
        "amount": None if i % 7 == 0 else money(cents),
    }


class Worker:
    """Worker w on its own pooled connection, one prepared cursor per statement (a prepared
    cursor re-prepares whenever it is given other SQL)."""

    def __init__(self, conn, w):
        self.conn = conn
        self.w = w
        self.cursors = {name: conn.cursor(prepared=True) for name in SQL}
        self.counts = dict.fromkeys(SQL, 0)

    def execute(self, name, params):
        cur = self.cursors[name]
        cur.execute(SQL[name], params)
        return cur.fetchall() if cur.with_rows else None

    def setup(self):
        """Prepares every statement and executes each once, changing nothing but adding the
        worker's event 0."""
        w, s = self.w, step(self.w, 0)
        self.conn.start_transaction()
        self.execute("select", (s["account"],))
        self.execute("update", ("0.00", "setup", s["at"], 0))
        self.execute("insert", (w, 0, "open", "0.00", s["at"]))
        self.execute("delete", (w, -1))
        self.conn.commit()

    def work(self, iterations):
        w = self.w
        for i in range(1, iterations + 1):
            s = step(w, i)
            self.conn.start_transaction()
            rows = self.execute("select", (s["account"],))
            if len(rows) != 1:
                raise RuntimeError(f"worker {w}: account {s['account']} not found")
            self.counts["select"] += 1
            self.execute("update", (s["delta"], s["note"], s["at"], s["account"]))
            self.counts["update"] += 1
            self.execute("insert", (w, i, s["kind"], s["amount"], s["at"]))
            self.counts["insert"] += 1
            if i % 5 == 0 and i > 3:
                self.execute("delete", (w, i - 3))
                self.counts["delete"] += 1
            self.conn.commit()

    def close(self):
        for cur in self.cursors.values():
            cur.close()
        self.conn.close()  # back to the pool, which resets the session


def run_threads(workers, fn):
    errors = []

    def guarded(worker):
        try:
            fn(worker)
        except Exception as e:  # reported by the main thread
            errors.append(f"worker {worker.w}: {e!r}")

    threads = [threading.Thread(target=guarded, args=(wk,)) for wk in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError("; ".join(errors))


def tls_options(version):
    if version is None:
        return {"ssl_disabled": True}
    return {
        "ssl_disabled": False,
        "ssl_verify_cert": False,
        "tls_versions": [f"TLSv{version}"],
    }


def main(argv):
    o = parse_args(argv)
    pool = mysql.connector.pooling.MySQLConnectionPool(
        pool_name="myrr-app",
        pool_size=o.connections,
        host=o.host,
        port=o.port,
        user=o.user,
        password=o.password,
        database=o.db,
        use_pure=True,
        **tls_options(o.tls),
    )
    # One connection per worker, held for the whole run, so that each connection prepares its
    # own statements.
    workers = [Worker(pool.get_connection(), w) for w in range(1, o.connections + 1)]
    run_threads(workers, Worker.setup)
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() == "go":
            break
    else:
        raise RuntimeError('stdin closed before "go"')
    run_threads(workers, lambda wk: wk.work(o.iterations))
    counts = dict.fromkeys(SQL, 0)
    for wk in workers:
        for k, v in wk.counts.items():
            counts[k] += v
        wk.close()
    # The pool has no public way to close its idle connections (they would otherwise end
    # without COM_QUIT when the process exits).
    pool._remove_connections()
    print("done " + " ".join(f"{k}={v}" for k, v in counts.items()), flush=True)


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except Exception as e:
        print(f"app.py: {e!r}", file=sys.stderr)
        sys.exit(1)
