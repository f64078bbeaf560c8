//! TLS sessions recorded on loopback with tcpdump and read back with the clients' key logs:
//! node's mysql2 (`tests/clients/tls.js`, `node --tls-keylog`) over TLS 1.2 and 1.3 with
//! AES-GCM, ChaCha20-Poly1305 and AES-CBC forced client-side, each connection followed by one
//! that resumes its TLS session; and `openssl s_client -starttls mysql` sending KeyUpdates.
//! Against the project's `tls` MariaDB server (`scripts/db.sh start tls`).

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{db, myrr, read_events, root, tempdir, Tcpdump};
use myrr_recording::{Command as Cmd, Event, Exchange, Login, Response};
use serde_json::Value;

/// The tests record the same server port: one at a time.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

fn tls_port() -> u16 {
    db().env["MYRR_TLS_PORT"].parse().unwrap()
}

/// `myrr capture -r pcap --port P --json -o out` with `extra`: the JSON summary and events.
fn capture(pcap: &Path, port: u16, extra: &[&str], out: &Path) -> (Value, Vec<Event>) {
    let res = myrr()
        .args(["capture", "-r"])
        .arg(pcap)
        .args(["--port", &port.to_string(), "--json"])
        .args(extra)
        .arg("-o")
        .arg(out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert!(res.status.success(), "{stderr}");
    let summary = stderr
        .lines()
        .find_map(|l| serde_json::from_str::<Value>(l).ok())
        .unwrap_or_else(|| panic!("no JSON summary in:\n{stderr}"));
    (summary, read_events(out))
}

/// The mysql2 TLS client's connections, as it reported them.
fn node_tls_client(port: u16, keylog: &Path) -> Vec<Value> {
    let node_modules = root().join("target/clients/node/node_modules");
    assert!(
        node_modules.join("mysql2").exists(),
        "mysql2 is not installed; run `bash scripts/setup.sh`"
    );
    let out = Command::new("node")
        .arg(format!("--tls-keylog={}", keylog.display()))
        .arg(root().join("tests/clients/tls.js"))
        .arg(port.to_string())
        .env("NODE_PATH", node_modules)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tls.js failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Exchanges by session, and each session's connection id (no gaps allowed).
fn sessions(events: &[Event]) -> HashMap<u32, (u64, Vec<&Exchange>)> {
    let mut conn_of = HashMap::new();
    let mut by_session: HashMap<u64, Vec<&Exchange>> = HashMap::new();
    for e in events {
        match e {
            Event::SessionStart(s) => {
                assert!(s.encrypted && !s.mid_stream, "{s:?}");
                conn_of.insert(s.session, s.connection_id.expect("greeting seen"));
            }
            Event::Exchange(x) => by_session.entry(x.session).or_default().push(x),
            Event::Gap(g) => panic!("gap in a loopback capture: {g:?}"),
            _ => {}
        }
    }
    conn_of
        .into_iter()
        .map(|(s, c)| (c, (s, by_session.remove(&s).unwrap_or_default())))
        .collect()
}

/// Every statement the client ran is in its session, in order, with the same SQL and answer.
fn check_against_client(client: &[Value], events: &[Event]) {
    let by_conn = sessions(events);
    assert_eq!(by_conn.len(), client.len(), "one session per connection");
    check_sessions(client, &by_conn);
}

fn check_sessions(client: &[Value], by_conn: &HashMap<u32, (u64, Vec<&Exchange>)>) {
    for c in client {
        let id = c["connection_id"].as_u64().unwrap() as u32;
        let variant = c["variant"].as_str().unwrap();
        let (_, xs) = by_conn
            .get(&id)
            .unwrap_or_else(|| panic!("{variant}: connection {id} not recorded"));
        let mut xs = xs.iter();
        for st in c["statements"].as_array().unwrap() {
            let sql = st["sql"].as_str().unwrap();
            let x = xs
                .next()
                .unwrap_or_else(|| panic!("{variant}: {sql:?} not recorded"));
            let what = format!("{variant}: {sql:?}: {:?} {:?}", x.command, x.response);
            match st["kind"].as_str().unwrap() {
                "execute" => {
                    assert!(
                        matches!(&x.command, Cmd::Prepare { sql: s } if s == sql.as_bytes()),
                        "{what}"
                    );
                    let e = xs.next().expect("the EXECUTE");
                    assert!(matches!(e.command, Cmd::Execute { .. }), "{variant}: {e:?}");
                    assert_eq!(e.total_rows(), st["rows"].as_u64().unwrap(), "{variant}");
                    continue;
                }
                kind => {
                    assert_eq!(x.command.sql(), Some(sql.as_bytes()), "{what}");
                    match (kind, &x.response) {
                        ("rows", Response::Rows(_)) => {
                            assert_eq!(x.total_rows(), st["rows"].as_u64().unwrap(), "{what}")
                        }
                        ("ok", Response::Ok(ok)) => {
                            assert_eq!(ok.affected_rows, st["affected"].as_u64().unwrap(), "{what}")
                        }
                        ("err", Response::Err(e)) => {
                            assert_eq!(u64::from(e.code), st["code"].as_u64().unwrap(), "{what}")
                        }
                        _ => panic!("{what}: the client saw {st}"),
                    }
                }
            }
        }
        // mysql2 closes with COM_QUIT; nothing else was sent.
        let rest: Vec<_> = xs.collect();
        assert!(
            rest.len() == 1 && matches!(rest[0].command, Cmd::Quit),
            "{variant}: {rest:?}"
        );
    }
}

#[test]
fn tls_sessions_of_a_real_client_decode_with_its_key_log() {
    let _serial = serial();
    let port = tls_port();
    let dir = tempdir();
    let pcap = dir.join("tls.pcap");
    let keylog = dir.join("keys.log");
    let dump = Tcpdump::start(port, &pcap);
    let client = node_tls_client(port, &keylog);
    dump.stop();
    // What the client negotiated: every variant, and each second connection resumed.
    let mut suites: Vec<(String, String, bool)> = client
        .iter()
        .map(|c| {
            (
                c["protocol"].as_str().unwrap().to_string(),
                c["cipher"].as_str().unwrap().to_string(),
                c["resumed"].as_bool().unwrap(),
            )
        })
        .collect();
    suites.sort();
    suites.dedup();
    assert_eq!(suites.len(), 14, "{suites:?}");

    // With the key log: everything the client did.
    let keys = keylog.to_str().unwrap();
    let (summary, events) = capture(&pcap, port, &["--keylog", keys], &dir.join("k.myrr"));
    let tls = &summary["tls"];
    assert_eq!(summary["sessions"]["tls_read"], 14, "{summary}");
    assert_eq!(summary["sessions"]["encrypted"], 0, "{summary}");
    assert_eq!(tls["sessions_decrypted"], 14, "{tls}");
    assert_eq!(tls["failures"], serde_json::json!({}), "{tls}");
    assert_eq!(tls["keylog"]["bad_lines"], 0, "{tls}");
    let read: Vec<&String> = tls["suites"].as_object().unwrap().keys().collect();
    assert_eq!(
        read,
        [
            "TLS 1.2 TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
            "TLS 1.2 TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
            "TLS 1.2 TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
            "TLS 1.2 TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
            "TLS 1.3 TLS_AES_128_GCM_SHA256",
            "TLS 1.3 TLS_AES_256_GCM_SHA384",
            "TLS 1.3 TLS_CHACHA20_POLY1305_SHA256",
        ]
    );
    assert_eq!(summary["gaps"], 0, "{summary}");
    for e in &events {
        if let Event::SessionStart(s) = e {
            assert_eq!(s.user.as_deref(), Some(&b"myrr_tls"[..]), "{s:?}");
        }
        if let Event::SessionEnd(s) = e {
            assert_eq!(s.login, Login::Ok, "{s:?}");
        }
    }
    check_against_client(&client, &events);

    // Without it: counted encrypted, nothing inside.
    let (summary, events) = capture(&pcap, port, &[], &dir.join("plain.myrr"));
    assert_eq!(summary["sessions"]["encrypted"], 14, "{summary}");
    assert_eq!(summary["sessions"]["tls_read"], 0, "{summary}");
    assert_eq!(summary["tls"]["keylog"], Value::Null, "{summary}");
    assert!(!events.iter().any(|e| matches!(e, Event::Exchange(_))));

    // A key log missing half the sessions, with bad lines: those are counted encrypted and
    // the bad lines named with their numbers; the others decode.
    let text = std::fs::read_to_string(&keylog).unwrap();
    let first: Vec<&str> = text.lines().take(2).collect(); // both TLS 1.2 connections of one variant
    let partial = dir.join("partial.log");
    std::fs::write(
        &partial,
        format!("{}\nCLIENT_RANDOM nothex x\n", first.join("\n")),
    )
    .unwrap();
    let (summary, _) = capture(
        &pcap,
        port,
        &["--keylog", partial.to_str().unwrap()],
        &dir.join("partial.myrr"),
    );
    let tls = &summary["tls"];
    assert_eq!(tls["sessions_decrypted"], 2, "{tls}");
    assert_eq!(tls["sessions_without_keys"], 12, "{tls}");
    assert_eq!(summary["sessions"]["encrypted"], 12, "{summary}");
    assert_eq!(tls["keylog"]["bad_lines"], 1, "{tls}");
    assert_eq!(tls["keylog"]["bad"][0]["line"], 3, "{tls}");

    // The key log embedded in a pcapng Decryption Secrets Block: read without --keylog.
    let pcapng = dir.join("tls-dsb.pcapng");
    common::run(
        Command::new("editcap")
            .arg("--inject-secrets")
            .arg(format!("tls,{keys}"))
            .arg(&pcap)
            .arg(&pcapng),
    );
    let (summary, dsb_events) = capture(&pcapng, port, &[], &dir.join("dsb.myrr"));
    assert_eq!(summary["tls"]["keylog"]["secrets_blocks"], 1, "{summary}");
    assert_eq!(summary["tls"]["sessions_decrypted"], 14, "{summary}");
    check_against_client(&client, &dsb_events);

    // A damaged byte in the middle of a session (in the largest frame: a result's records):
    // that direction's reading stops there, and the bytes not read are a gap, not silence.
    let damaged = dir.join("damaged.pcap");
    let mut bytes = std::fs::read(&pcap).unwrap();
    let (mut at, mut largest) = (24, (0, 0));
    while at + 16 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
        if len > largest.1 {
            largest = (at + 16, len);
        }
        at += 16 + len;
    }
    bytes[largest.0 + largest.1 - 100] ^= 0x40;
    std::fs::write(&damaged, &bytes).unwrap();
    let (summary, events) = capture(&damaged, port, &["--keylog", keys], &dir.join("d.myrr"));
    let tls = &summary["tls"];
    assert_eq!(tls["sessions_decrypted"], 14, "{tls}");
    let failures: u64 = tls["failures"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(failures, 1, "{tls}");
    assert!(summary["gap_bytes"].as_u64().unwrap() > 0, "{summary}");
    let gapped: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            Event::Gap(g) => Some(g.session),
            _ => None,
        })
        .collect();
    assert!(
        !gapped.is_empty() && gapped.iter().all(|s| *s == gapped[0]),
        "{gapped:?}"
    );
    // Every other session is whole.
    let whole: Vec<Event> = events
        .iter()
        .filter(|e| e.session() != Some(gapped[0]))
        .cloned()
        .collect();
    let by_conn = sessions(&whole);
    assert_eq!(by_conn.len(), 13);
    let others: Vec<Value> = client
        .iter()
        .filter(|c| by_conn.contains_key(&(c["connection_id"].as_u64().unwrap() as u32)))
        .cloned()
        .collect();
    assert_eq!(others.len(), 13);
    check_sessions(&others, &by_conn);

    // A frame of each connection's statements lost (as a busy machine's kernel drops
    // packets): the AEAD sessions pass over the gap (the next record found by its header,
    // the records lost by which sequence number authenticates) and read on to the end; the
    // CBC ones stop there.
    let lost = dir.join("lost.pcap");
    std::fs::write(&lost, drop_a_statement_frame_per_connection(&pcap, port)).unwrap();
    let (summary, events) = capture(&lost, port, &["--keylog", keys], &dir.join("l.myrr"));
    let tls = &summary["tls"];
    let aead = client
        .iter()
        .filter(|c| {
            let cipher = c["cipher"].as_str().unwrap();
            c["protocol"] == "TLSv1.3" || cipher.contains("GCM") || cipher.contains("CHACHA")
        })
        .count() as u64;
    assert_eq!(aead, 12, "{client:?}");
    assert_eq!(tls["gaps_passed"], aead, "{tls}");
    assert_eq!(
        tls["failures"],
        serde_json::json!({"capture_gap": 2}),
        "{tls}"
    );
    assert!(
        tls["records_lost_in_gaps"].as_u64().unwrap() >= aead,
        "{tls}"
    );
    let mut conn_of = HashMap::new();
    let mut by_session: HashMap<u64, Vec<&Exchange>> = HashMap::new();
    for e in &events {
        match e {
            Event::SessionStart(s) => {
                conn_of.insert(s.session, s.connection_id.unwrap());
            }
            Event::Exchange(x) => by_session.entry(x.session).or_default().push(x),
            _ => {}
        }
    }
    let mut read_to_the_end = 0;
    for c in &client {
        let id = c["connection_id"].as_u64().unwrap() as u32;
        let (session, _) = conn_of.iter().find(|(_, c)| **c == id).unwrap();
        let xs = &by_session[session];
        let last_sql = c["statements"].as_array().unwrap().last().unwrap()["sql"]
            .as_str()
            .unwrap();
        let n = xs.len();
        let ends_well = n >= 2
            && matches!(xs[n - 1].command, Cmd::Quit)
            && (xs[n - 2].command.sql() == Some(last_sql.as_bytes())
                || matches!(&xs[n - 2].command, Cmd::Execute { .. }));
        if ends_well {
            read_to_the_end += 1;
        }
    }
    assert_eq!(read_to_the_end, aead, "{summary}");
}

/// `pcap` (tcpdump's, Ethernet) without one client-to-server data frame of each connection to
/// `port`: the one two thirds into its data frames (past the handshake, among the
/// statements).
fn drop_a_statement_frame_per_connection(pcap: &Path, port: u16) -> Vec<u8> {
    let bytes = std::fs::read(pcap).unwrap();
    assert_eq!(
        u32::from_le_bytes(bytes[20..24].try_into().unwrap()),
        1,
        "Ethernet"
    );
    let mut frames = Vec::new(); // (start, end, client port if a client data frame)
    let mut at = 24;
    while at + 16 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
        let f = &bytes[at + 16..at + 16 + len];
        let mut client = None;
        if f.len() > 34 && f[12..14] == [8, 0] && f[23] == 6 {
            let ihl = usize::from(f[14] & 0xf) * 4;
            let total = usize::from(u16::from_be_bytes([f[16], f[17]]));
            let tcp = 14 + ihl;
            let sport = u16::from_be_bytes([f[tcp], f[tcp + 1]]);
            let dport = u16::from_be_bytes([f[tcp + 2], f[tcp + 3]]);
            let payload = total - ihl - usize::from(f[tcp + 12] >> 4) * 4;
            if dport == port && payload > 0 {
                client = Some(sport);
            }
        }
        frames.push((at, at + 16 + len, client));
        at += 16 + len;
    }
    let mut by_client: HashMap<u16, Vec<usize>> = HashMap::new();
    for (i, f) in frames.iter().enumerate() {
        if let Some(c) = f.2 {
            by_client.entry(c).or_default().push(i);
        }
    }
    assert_eq!(by_client.len(), 14);
    let dropped: Vec<usize> = by_client.values().map(|v| v[v.len() * 2 / 3]).collect();
    let mut out = bytes[..24].to_vec();
    for (i, f) in frames.iter().enumerate() {
        if !dropped.contains(&i) {
            out.extend_from_slice(&bytes[f.0..f.1]);
        }
    }
    out
}

/// The login packet of user `myrr` without a password, as the third packet of a connection
/// (after the greeting and the SSLRequest).
fn login_packet() -> Vec<u8> {
    let caps: u32 = 0x1 | 0x200 | 0x800 | 0x8000 | 0x80000;
    let mut p = caps.to_le_bytes().to_vec();
    p.extend_from_slice(&(1u32 << 24).to_le_bytes());
    p.push(33);
    p.extend_from_slice(&[0; 23]);
    p.extend_from_slice(b"myrr\0\0mysql_native_password\0");
    let mut packet = (p.len() as u32).to_le_bytes()[..3].to_vec();
    packet.push(2);
    packet.extend_from_slice(&p);
    packet
}

#[test]
fn tls13_key_updates_roll_the_traffic_secrets() {
    let _serial = serial();
    let port = tls_port();
    let dir = tempdir();
    let pcap = dir.join("ku.pcap");
    let keylog = dir.join("ku.log");
    let dump = Tcpdump::start(port, &pcap);
    // s_client does MySQL's SSLRequest itself; `K` on a line of its own sends a KeyUpdate
    // asking the server to update too. Then the login goes under the new keys, and the
    // server's answer under its new keys.
    let mut s = Command::new("openssl")
        .args(["s_client", "-starttls", "mysql", "-tls1_3", "-connect"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("-keylogfile")
        .arg(&keylog)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl");
    let mut stdin = s.stdin.take().unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    stdin.write_all(b"K\n").unwrap();
    stdin.flush().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    stdin.write_all(&login_packet()).unwrap();
    stdin.flush().unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    drop(stdin);
    let _ = s.wait();
    dump.stop();

    let keys = keylog.to_str().unwrap();
    let (summary, events) = capture(&pcap, port, &["--keylog", keys], &dir.join("ku.myrr"));
    let tls = &summary["tls"];
    assert_eq!(tls["sessions_decrypted"], 1, "{tls}");
    assert_eq!(tls["key_updates"], 2, "{tls}");
    assert_eq!(tls["failures"], serde_json::json!({}), "{tls}");
    // OpenSSL's own lines for the updated secrets are known, not bad.
    assert_eq!(tls["keylog"]["bad_lines"], 0, "{tls}");
    // The login, sent after the client's update, names its user; the server's refusal,
    // sent after its own update, is read.
    let Event::SessionStart(start) = &events[0] else {
        panic!("{:?}", events[0]);
    };
    assert_eq!(start.user.as_deref(), Some(&b"myrr"[..]), "{start:?}");
    let Some(Event::SessionEnd(end)) = events.last() else {
        panic!("{events:?}");
    };
    assert!(matches!(end.login, Login::Failed { .. }), "{end:?}");
    assert_eq!(summary["sessions"]["logins_failed"], 1, "{summary}");
}
