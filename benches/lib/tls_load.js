#!/usr/bin/env node
// The workload of benches/keylog.sh: N connections of node's mysql2 running point and range
// SELECTs (text protocol) for S seconds, in the clear or over TLS. Run over TLS as
// `node --tls-keylog=FILE tls_load.js ...` so the secrets are in a key log.
//
//   node tls_load.js PORT tls|plain SECONDS CONNECTIONS
//
// Prints `queries N` at the end. The table bench_keylog.t (1000 rows) is made if missing.
'use strict';

const mysql = require('mysql2/promise');

async function main() {
  const [port, mode, seconds, conns] = process.argv.slice(2);
  const cfg = {
    host: '127.0.0.1',
    port: Number(port),
    user: mode === 'tls' ? 'myrr_tls' : 'myrr',
    password: 'myrr',
    ssl: mode === 'tls' ? { rejectUnauthorized: false } : undefined,
  };
  const setup = await mysql.createConnection(cfg);
  await setup.query('CREATE DATABASE IF NOT EXISTS bench_keylog');
  await setup.query(
    'CREATE TABLE IF NOT EXISTS bench_keylog.t (id INT PRIMARY KEY, k INT, c CHAR(120), pad CHAR(60))'
  );
  const [[{ n }]] = await setup.query('SELECT COUNT(*) AS n FROM bench_keylog.t');
  if (n < 1000) {
    await setup.query('DELETE FROM bench_keylog.t');
    const rows = [];
    for (let i = 1; i <= 1000; i++) rows.push(`(${i}, ${(i * 7919) % 1000}, REPEAT('c', 120), REPEAT('p', 60))`);
    await setup.query(`INSERT INTO bench_keylog.t VALUES ${rows.join(',')}`);
  }
  await setup.end();
  const end = Date.now() + Number(seconds) * 1000;
  let queries = 0;
  let seed = 1;
  const rnd = () => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed;
  };
  const worker = async () => {
    const c = await mysql.createConnection(cfg);
    while (Date.now() < end) {
      for (let i = 0; i < 10; i++) {
        await c.query(`SELECT c FROM bench_keylog.t WHERE id = ${1 + (rnd() % 1000)}`);
      }
      const a = 1 + (rnd() % 900);
      await c.query(`SELECT id, k, c, pad FROM bench_keylog.t WHERE id BETWEEN ${a} AND ${a + 99}`);
      queries += 11;
    }
    await c.end();
  };
  await Promise.all(Array.from({ length: Number(conns) }, worker));
  console.log(`queries ${queries}`);
}

main().catch((e) => {
  console.error(e && e.stack ? e.stack : String(e));
  process.exit(1);
});
