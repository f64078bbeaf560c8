#!/usr/bin/env node
// A TLS client for myrr's key log tests (tests/tls_keylog.rs): node's mysql2 over TLS, one
// connection per variant, then a second that resumes its TLS session (TLS version and cipher suite forced client-side), each running the
// same statements with its own table. Run it as `node --tls-keylog=FILE tls.js PORT [VARIANT…]`
// so that node writes the session secrets in the NSS key log format.
//
// Prints one JSON line per connection:
//   {"variant": "...", "connection_id": N, "protocol": "TLSv1.3", "cipher": "...",
//    "statements": [{"sql": "...", "kind": "rows"|"ok"|"err"|"execute", "rows": N,
//                    "affected": N, "code": N}, ...]}
// Any unexpected error: a message on stderr and exit 1.
//
// mysql2 is installed by scripts/setup.sh into target/clients/node; the test puts its
// node_modules on NODE_PATH.
'use strict';

const mysql = require('mysql2/promise');

// TLS 1.2 suites are OpenSSL's names, TLS 1.3 ones IANA's (node takes both in `ciphers`).
const VARIANTS = {
  tls12_aes128gcm: { maxVersion: 'TLSv1.2', ciphers: 'ECDHE-RSA-AES128-GCM-SHA256' },
  tls12_aes256gcm: { maxVersion: 'TLSv1.2', ciphers: 'ECDHE-RSA-AES256-GCM-SHA384' },
  tls12_chacha: { maxVersion: 'TLSv1.2', ciphers: 'ECDHE-RSA-CHACHA20-POLY1305' },
  tls12_cbc: { maxVersion: 'TLSv1.2', ciphers: 'ECDHE-RSA-AES128-SHA' },
  tls13_aes128gcm: { minVersion: 'TLSv1.3', ciphers: 'TLS_AES_128_GCM_SHA256' },
  tls13_aes256gcm: { minVersion: 'TLSv1.3', ciphers: 'TLS_AES_256_GCM_SHA384' },
  tls13_chacha: { minVersion: 'TLSv1.3', ciphers: 'TLS_CHACHA20_POLY1305_SHA256' },
};

function statements(tag) {
  const t = `myrr_tls.t_${tag}`;
  return [
    `SELECT '${tag}' AS variant, @@version`,
    'CREATE DATABASE IF NOT EXISTS myrr_tls',
    `DROP TABLE IF EXISTS ${t}`,
    `CREATE TABLE ${t} (id INT PRIMARY KEY, v VARCHAR(200))`,
    `INSERT INTO ${t} VALUES (1,'a'),(2,'b'),(3,'c')`,
    `SELECT * FROM ${t} ORDER BY id`,
    `SELECT * FROM myrr_tls.no_such_table_${tag}`,
    // About 160 KB of rows: many TLS records, each across TCP segments.
    `SELECT seq, REPEAT('${tag}', 40) FROM myrr_tls.seq_1_to_300`,
    `UPDATE ${t} SET v = 'z' WHERE id < 3`,
  ];
}

async function run(port, variant, ssl) {
  const conn = await mysql.createConnection({
    host: '127.0.0.1',
    port,
    user: 'myrr_tls',
    password: 'myrr',
    ssl,
  });
  const socket = conn.connection.stream;
  const out = {
    variant,
    connection_id: conn.connection.threadId,
    protocol: socket.getProtocol ? socket.getProtocol() : null,
    cipher: socket.getCipher ? socket.getCipher().standardName : null,
    resumed: socket.isSessionReused ? socket.isSessionReused() : null,
    statements: [],
  };
  for (const sql of statements(variant)) {
    try {
      const [res] = await conn.query(sql);
      if (Array.isArray(res)) {
        out.statements.push({ sql, kind: 'rows', rows: res.length });
      } else {
        out.statements.push({ sql, kind: 'ok', affected: res.affectedRows });
      }
    } catch (e) {
      if (!e.errno) throw e;
      out.statements.push({ sql, kind: 'err', code: e.errno });
    }
  }
  const sql = `SELECT v FROM myrr_tls.t_${variant} WHERE id >= ?`;
  const [rows] = await conn.execute(sql, [2]);
  out.statements.push({ sql, kind: 'execute', rows: rows.length });
  await conn.end();
  return out;
}

async function main() {
  const [port, ...names] = process.argv.slice(2);
  const list = names.length ? names : Object.keys(VARIANTS);
  for (const v of list) {
    if (!VARIANTS[v]) throw new Error(`unknown variant ${v}`);
    // A second connection with the same TLS options resumes the first one's TLS session
    // (mysql2 keeps it): an abbreviated handshake, with its own secrets in the key log.
    const ssl = { rejectUnauthorized: false, ...VARIANTS[v] };
    for (let i = 0; i < 2; i++) {
      console.log(JSON.stringify(await run(Number(port), v, ssl)));
    }
  }
}

main().catch((e) => {
  console.error(e && e.stack ? e.stack : String(e));
  process.exit(1);
});
