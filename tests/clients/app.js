#!/usr/bin/env node
// A pooled application for myrr's end-to-end tests: node's mysql2, `pool.execute()` (server-side
// prepared statements, binary protocol). tests/clients/app.py does the same with
// mysql-connector-python; tests/common/clients.rs drives both.
//
//   node app.js --url mysql://user:pass@host:port/db [--host H --port P --user U --password W
//               --db D] --connections N --iterations M [--reconnect-every K] [--tls 1.2|1.3]
//
// --tls V: connect over TLS version V (the server's certificate is not verified).
//
// --reconnect-every K: a worker closes its connection after every K iterations and takes a
// new one from the pool, which prepares its statements again (a pool's maximum lifetime).
//
// Protocol with the test: open N connections (one per worker, worker ids 1..N), prepare every
// statement on each and execute each once (the driver binds parameter types on a statement's
// first EXECUTE), print `ready`, wait for a line `go` on stdin, run M iterations per worker,
// close the pool, print `done select=… update=… insert=… delete=…` (EXECUTEs of the workload,
// setup left out) and exit 0. Any error: a message on stderr and exit 1.
//
// The final tables depend only on N and M, never on how sessions interleave: worker w touches
// only its own rows (accounts w*100 .. w*100+3, events (w, *)) and every value it writes comes
// from (w, i) — no NOW(), no AUTO_INCREMENT. The tables are made by the test (see clients.rs).
//
// mysql2 is installed by scripts/setup.sh into target/clients/node; the test puts its
// node_modules on NODE_PATH.
'use strict';

const readline = require('readline');
const mysql = require('mysql2/promise');

const SQL = {
  select: 'SELECT id, owner, balance, note, updated FROM accounts WHERE id = ?',
  update: 'UPDATE accounts SET balance = balance + ?, note = ?, updated = ? WHERE id = ?',
  insert: 'INSERT INTO events (worker, seq, kind, amount, at) VALUES (?, ?, ?, ?, ?)',
  delete: 'DELETE FROM events WHERE worker = ? AND seq = ?',
};
const KINDS = ['deposit', 'withdraw', 'fee', 'refund'];

function parseArgs(argv) {
  const o = { connections: 4, iterations: 50, reconnectEvery: 0 };
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i].replace(/^--/, '');
    const value = argv[i + 1];
    if (value === undefined) throw new Error(`missing value for ${argv[i]}`);
    if (key === 'url') {
      const u = new URL(value);
      o.host ??= u.hostname;
      o.port ??= Number(u.port || 3306);
      o.user ??= decodeURIComponent(u.username);
      o.password ??= decodeURIComponent(u.password);
      if (u.pathname.length > 1) o.db ??= decodeURIComponent(u.pathname.slice(1));
    } else if (['host', 'user', 'password', 'db'].includes(key)) {
      o[key] = value;
    } else if (['port', 'connections', 'iterations'].includes(key)) {
      o[key] = Number(value);
    } else if (key === 'reconnect-every') {
      o.reconnectEvery = Number(value);
    } else if (key === 'tls') {
      if (!['1.2', '1.3'].includes(value)) throw new Error(`--tls 1.2 or 1.3, not ${value}`);
      o.tls = value;
    } else {
      throw new Error(`unknown argument ${argv[i]}`);
    }
  }
  if (!o.host || !o.db) throw new Error('need --url or --host and --db');
  return o;
}

// Integer cents as a DECIMAL string ("-3.05"), without floating point.
function money(cents) {
  const a = Math.abs(cents);
  return `${cents < 0 ? '-' : ''}${Math.floor(a / 100)}.${String(a % 100).padStart(2, '0')}`;
}

// The values of worker w's iteration i (0 is the setup).
function step(w, i) {
  const cents = ((w * 37 + i * 101) % 2001) - 1000;
  // A DATETIME(6) column, milliseconds only (a JS Date has no microseconds).
  const at = new Date(Date.UTC(2024, 0, 1 + w, 0, 0, i % 60, i % 1000));
  return {
    account: w * 100 + (i % 4),
    delta: money(cents),
    note: i % 3 === 0 ? null : `w${w}-i${i}`,
    at,
    kind: KINDS[i % 4],
    amount: i % 7 === 0 ? null : money(cents),
  };
}

// Prepares every statement on the worker's connection and executes each once, changing
// nothing but adding the worker's event 0.
async function setup(conn, w) {
  const s = step(w, 0);
  await conn.beginTransaction();
  await conn.execute(SQL.select, [s.account]);
  await conn.execute(SQL.update, ['0.00', 'setup', s.at, 0]);
  await conn.execute(SQL.insert, [w, 0, 'open', '0.00', s.at]);
  await conn.execute(SQL.delete, [w, -1]);
  await conn.commit();
}

async function work(pool, conn, w, o, counts) {
  for (let i = 1; i <= o.iterations; i++) {
    if (o.reconnectEvery > 0 && i > 1 && (i - 1) % o.reconnectEvery === 0) {
      conn.destroy(); // closed, not returned: the pool opens a new connection
      conn = await pool.getConnection();
      counts.reconnects++;
    }
    const s = step(w, i);
    await conn.beginTransaction();
    const [rows] = await conn.execute(SQL.select, [s.account]);
    if (rows.length !== 1) throw new Error(`worker ${w}: account ${s.account} not found`);
    counts.select++;
    await conn.execute(SQL.update, [s.delta, s.note, s.at, s.account]);
    counts.update++;
    await conn.execute(SQL.insert, [w, i, s.kind, s.amount, s.at]);
    counts.insert++;
    if (i % 5 === 0 && i > 3) {
      await conn.execute(SQL.delete, [w, i - 3]);
      counts.delete++;
    }
    await conn.commit();
  }
  return conn;
}

function waitForGo() {
  return new Promise((resolve, reject) => {
    const rl = readline.createInterface({ input: process.stdin });
    rl.on('line', (line) => {
      if (line.trim() === 'go') {
        resolve(); // first: closing emits 'close'
        rl.close();
      }
    });
    rl.on('close', () => reject(new Error('stdin closed before "go"')));
  });
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const pool = mysql.createPool({
    host: o.host,
    port: o.port,
    user: o.user,
    password: o.password,
    database: o.db,
    connectionLimit: o.connections,
    waitForConnections: true,
    ssl: o.tls
      ? { rejectUnauthorized: false, minVersion: `TLSv${o.tls}`, maxVersion: `TLSv${o.tls}` }
      : undefined,
  });
  // One connection per worker, held for the whole run: every connection prepares its own
  // statements (a pool that handed them around would prepare lazily, anywhere).
  const conns = await Promise.all(
    Array.from({ length: o.connections }, () => pool.getConnection()),
  );
  await Promise.all(conns.map((c, k) => setup(c, k + 1)));
  process.stdout.write('ready\n');
  await waitForGo();
  const counts = { select: 0, update: 0, insert: 0, delete: 0, reconnects: 0 };
  const last = await Promise.all(conns.map((c, k) => work(pool, c, k + 1, o, counts)));
  last.forEach((c) => c.release());
  await pool.end();
  if (counts.reconnects === 0) delete counts.reconnects;
  const summary = Object.entries(counts)
    .map(([k, v]) => `${k}=${v}`)
    .join(' ');
  process.stdout.write(`done ${summary}\n`);
}

main().then(
  () => process.exit(0),
  (e) => {
    process.stderr.write(`app.js: ${e.stack || e}\n`);
    process.exit(1);
  },
);
