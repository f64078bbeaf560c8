#!/usr/bin/env python3
"""A TPC-C-like write workload for benches/writes.sh (MYRR_BENCH_WORKLOAD=tpcc): the five
transactions — new-order 45 %, payment 43 %, order-status, delivery and stock-level 4 % each —
over one warehouse, through mysql-connector-python with server-side prepared statements
(binary protocol), as an application would run them: SELECT … FOR UPDATE, AUTO_INCREMENT keys
(orders, history), multi-row INSERTs (order lines), NOW(6) columns, DECIMAL money. Not the
TPC-C specification (no think times, no keying, one warehouse so sessions conflict often).

    python tpcc.py --host H --port P --user U --password W --db D --prepare
    python tpcc.py --host H --port P --user U --password W --db D --threads N --time S

Prints one line: transactions committed, deadlocks/lock waits rolled back, per kind. The
pure-Python connector from scripts/setup.sh's venv (target/clients/venv).
"""

import argparse
import random
import sys
import threading
import time

import mysql.connector

DISTRICTS = 10
CUSTOMERS = 30  # per district
ITEMS = 1000

SCHEMA = [
    "CREATE TABLE warehouse (w_id INT PRIMARY KEY, w_name VARCHAR(10), w_ytd DECIMAL(12,2))",
    "CREATE TABLE district (d_w_id INT, d_id INT, d_next_o_id INT, d_ytd DECIMAL(12,2), "
    "PRIMARY KEY (d_w_id, d_id))",
    "CREATE TABLE customer (c_w_id INT, c_d_id INT, c_id INT, c_last VARCHAR(16), "
    "c_balance DECIMAL(12,2), c_ytd_payment DECIMAL(12,2), c_payment_cnt INT, "
    "c_delivery_cnt INT, PRIMARY KEY (c_w_id, c_d_id, c_id))",
    "CREATE TABLE history (h_id INT AUTO_INCREMENT PRIMARY KEY, h_c_id INT, h_d_id INT, "
    "h_w_id INT, h_date DATETIME(6), h_amount DECIMAL(6,2), h_data VARCHAR(24))",
    "CREATE TABLE orders (o_pk INT AUTO_INCREMENT PRIMARY KEY, o_w_id INT, o_d_id INT, o_id INT, "
    "o_c_id INT, o_entry_d DATETIME(6), o_carrier_id INT, o_ol_cnt INT, "
    "UNIQUE KEY (o_w_id, o_d_id, o_id), KEY (o_w_id, o_d_id, o_c_id))",
    "CREATE TABLE new_order (no_o_pk INT PRIMARY KEY, no_w_id INT, no_d_id INT, "
    "KEY (no_w_id, no_d_id, no_o_pk))",
    "CREATE TABLE order_line (ol_o_pk INT, ol_number INT, ol_i_id INT, ol_quantity INT, "
    "ol_amount DECIMAL(6,2), ol_delivery_d DATETIME(6), PRIMARY KEY (ol_o_pk, ol_number))",
    "CREATE TABLE item (i_id INT PRIMARY KEY, i_name VARCHAR(24), i_price DECIMAL(5,2))",
    "CREATE TABLE stock (s_w_id INT, s_i_id INT, s_quantity INT, s_ytd INT, s_order_cnt INT, "
    "PRIMARY KEY (s_w_id, s_i_id))",
]
TABLES = ["warehouse", "district", "customer", "history", "orders", "new_order", "order_line",
          "item", "stock"]


def connect(o):
    c = mysql.connector.connect(host=o.host, port=o.port, user=o.user, password=o.password,
                                database=o.db, use_pure=True, autocommit=True)
    return c


def prepare(o):
    c = connect(o)
    cur = c.cursor()
    for t in TABLES:
        cur.execute(f"DROP TABLE IF EXISTS {t}")
    for s in SCHEMA:
        cur.execute(s)
    rnd = random.Random(7)
    cur.execute("INSERT INTO warehouse VALUES (1, 'w1', 0)")
    cur.executemany("INSERT INTO district VALUES (1, %s, 1, 0)",
                    [(d,) for d in range(1, DISTRICTS + 1)])
    cur.executemany(
        "INSERT INTO customer VALUES (1, %s, %s, %s, -10.00, 10.00, 1, 0)",
        [(d, i, f"last{i % 10}") for d in range(1, DISTRICTS + 1)
         for i in range(1, CUSTOMERS + 1)])
    cur.executemany("INSERT INTO item VALUES (%s, %s, %s)",
                    [(i, f"item{i}", round(rnd.uniform(1, 100), 2))
                     for i in range(1, ITEMS + 1)])
    cur.executemany("INSERT INTO stock VALUES (1, %s, %s, 0, 0)",
                    [(i, rnd.randint(10, 100)) for i in range(1, ITEMS + 1)])
    c.close()


class Worker:
    def __init__(self, o, n):
        self.c = connect(o)
        # A prepared cursor per statement: the connector keeps one prepared statement per
        # cursor, and preparing again on every call cost ~40 ms each (a delayed ACK).
        self.cursors = {}
        self.rnd = random.Random(1000 + n)
        self.done = {}
        self.rolled_back = 0

    def q(self, sql, *args):
        cur = self.cursors.get(sql)
        if cur is None:
            cur = self.cursors[sql] = self.c.cursor(prepared=True)
        cur.execute(sql, args)
        self.last = cur
        return cur.fetchall() if cur.with_rows else None

    def new_order(self):
        d = self.rnd.randint(1, DISTRICTS)
        c = self.rnd.randint(1, CUSTOMERS)
        (o_id,), = self.q("SELECT d_next_o_id FROM district WHERE d_w_id = 1 AND d_id = ? "
                          "FOR UPDATE", d)
        self.q("UPDATE district SET d_next_o_id = d_next_o_id + 1 WHERE d_w_id = 1 AND d_id = ?", d)
        lines = [(self.rnd.randint(1, ITEMS), self.rnd.randint(1, 10))
                 for _ in range(self.rnd.randint(5, 10))]
        self.q("INSERT INTO orders (o_w_id, o_d_id, o_id, o_c_id, o_entry_d, o_ol_cnt) "
               "VALUES (1, ?, ?, ?, NOW(6), ?)", d, o_id, c, len(lines))
        o_pk = self.last.lastrowid
        self.q("INSERT INTO new_order VALUES (?, 1, ?)", o_pk, d)
        rows = []
        for n, (i, qty) in enumerate(lines, 1):
            (price,), = self.q("SELECT i_price FROM item WHERE i_id = ?", i)
            (s_qty,), = self.q("SELECT s_quantity FROM stock WHERE s_w_id = 1 AND s_i_id = ? "
                               "FOR UPDATE", i)
            new_qty = s_qty - qty if s_qty - qty >= 10 else s_qty - qty + 91
            self.q("UPDATE stock SET s_quantity = ?, s_ytd = s_ytd + ?, "
                   "s_order_cnt = s_order_cnt + 1 WHERE s_w_id = 1 AND s_i_id = ?",
                   new_qty, qty, i)
            rows.append((o_pk, n, i, qty, price * qty))
        # One multi-row INSERT (the text protocol: its length varies with the order).
        values = ", ".join(f"({a}, {b}, {i}, {q}, {amt})" for a, b, i, q, amt in rows)
        self.c.cursor().execute(
            "INSERT INTO order_line (ol_o_pk, ol_number, ol_i_id, ol_quantity, ol_amount) "
            f"VALUES {values}")

    def payment(self):
        d = self.rnd.randint(1, DISTRICTS)
        c = self.rnd.randint(1, CUSTOMERS)
        amount = round(self.rnd.uniform(1, 5000), 2)
        self.q("UPDATE warehouse SET w_ytd = w_ytd + ? WHERE w_id = 1", amount)
        self.q("UPDATE district SET d_ytd = d_ytd + ? WHERE d_w_id = 1 AND d_id = ?", amount, d)
        self.q("SELECT c_balance FROM customer WHERE c_w_id = 1 AND c_d_id = ? AND c_id = ? "
               "FOR UPDATE", d, c)
        self.q("UPDATE customer SET c_balance = c_balance - ?, c_ytd_payment = c_ytd_payment + ?, "
               "c_payment_cnt = c_payment_cnt + 1 WHERE c_w_id = 1 AND c_d_id = ? AND c_id = ?",
               amount, amount, d, c)
        self.q("INSERT INTO history (h_c_id, h_d_id, h_w_id, h_date, h_amount, h_data) "
               "VALUES (?, ?, 1, NOW(6), ?, 'payment')", c, d, amount)

    def order_status(self):
        d = self.rnd.randint(1, DISTRICTS)
        c = self.rnd.randint(1, CUSTOMERS)
        self.q("SELECT c_last, c_balance FROM customer WHERE c_w_id = 1 AND c_d_id = ? "
               "AND c_id = ?", d, c)
        last = self.q("SELECT o_pk, o_id, o_entry_d, o_carrier_id FROM orders WHERE o_w_id = 1 "
                      "AND o_d_id = ? AND o_c_id = ? ORDER BY o_pk DESC LIMIT 1", d, c)
        if last:
            self.q("SELECT ol_i_id, ol_quantity, ol_amount, ol_delivery_d FROM order_line "
                   "WHERE ol_o_pk = ? ORDER BY ol_number", last[0][0])

    def delivery(self):
        carrier = self.rnd.randint(1, 10)
        for d in range(1, DISTRICTS + 1):
            row = self.q("SELECT no_o_pk FROM new_order WHERE no_w_id = 1 AND no_d_id = ? "
                         "ORDER BY no_o_pk LIMIT 1 FOR UPDATE", d)
            if not row:
                continue
            o_pk = row[0][0]
            self.q("DELETE FROM new_order WHERE no_o_pk = ?", o_pk)
            # Locking reads: the order may be newer than this transaction's view.
            (c,), = self.q("SELECT o_c_id FROM orders WHERE o_pk = ? FOR UPDATE", o_pk)
            self.q("UPDATE orders SET o_carrier_id = ? WHERE o_pk = ?", carrier, o_pk)
            self.q("UPDATE order_line SET ol_delivery_d = NOW(6) WHERE ol_o_pk = ?", o_pk)
            (total,), = self.q("SELECT SUM(ol_amount) FROM order_line WHERE ol_o_pk = ? "
                               "LOCK IN SHARE MODE", o_pk)
            self.q("UPDATE customer SET c_balance = c_balance + ?, "
                   "c_delivery_cnt = c_delivery_cnt + 1 "
                   "WHERE c_w_id = 1 AND c_d_id = ? AND c_id = ?", total or 0, d, c)

    def stock_level(self):
        d = self.rnd.randint(1, DISTRICTS)
        (next_o,), = self.q("SELECT d_next_o_id FROM district WHERE d_w_id = 1 AND d_id = ?", d)
        self.q("SELECT COUNT(DISTINCT s.s_i_id) FROM orders o "
               "JOIN order_line ol ON ol.ol_o_pk = o.o_pk "
               "JOIN stock s ON s.s_w_id = 1 AND s.s_i_id = ol.ol_i_id "
               "WHERE o.o_w_id = 1 AND o.o_d_id = ? AND o.o_id >= ? AND s.s_quantity < ?",
               d, next_o - 20, self.rnd.randint(10, 20))

    def run(self, until):
        kinds = [(45, self.new_order), (43, self.payment), (4, self.order_status),
                 (4, self.delivery), (4, self.stock_level)]
        while time.monotonic() < until:
            r = self.rnd.randint(1, 100)
            for weight, tx in kinds:
                if r <= weight:
                    break
                r -= weight
            try:
                self.c.start_transaction()
                tx()
                self.c.commit()
                self.done[tx.__name__] = self.done.get(tx.__name__, 0) + 1
            except mysql.connector.Error as e:
                # Deadlock (1213) or lock wait timeout (1205): the transaction is rolled back.
                if e.errno not in (1205, 1213):
                    raise
                self.c.rollback()
                self.rolled_back += 1
        self.c.close()


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for a in ("host", "user", "password", "db"):
        p.add_argument(f"--{a}", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--prepare", action="store_true")
    p.add_argument("--threads", type=int, default=8)
    p.add_argument("--time", type=float, default=10)
    o = p.parse_args(argv)
    if o.prepare:
        prepare(o)
        return 0
    workers = [Worker(o, n) for n in range(o.threads)]
    until = time.monotonic() + o.time
    threads = [threading.Thread(target=w.run, args=(until,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done = {}
    for w in workers:
        for k, v in w.done.items():
            done[k] = done.get(k, 0) + v
    print(f"transactions: {sum(done.values())} committed, "
          f"{sum(w.rolled_back for w in workers)} rolled back (deadlock or lock wait); "
          + ", ".join(f"{k} {v}" for k, v in sorted(done.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
