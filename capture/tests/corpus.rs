//! Every third-party capture in `../shared/corpus/pcaps` decodes without error, and the SQL
//! of its query/prepare commands equals tshark's reading of it — or, where the corpus index
//! says tshark is wrong, the upstream projects' own expected outputs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use std::sync::Arc;

use myrr_capture::tls::KeyLog;
use myrr_capture::{source, Capture, CaptureConfig, Stats};
use myrr_recording::{Command, Event, Login, Response};

fn corpus() -> PathBuf {
    let dir = std::env::var_os("MYRR_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus"));
    assert!(
        dir.join("ports.tsv").is_file(),
        "corpus not found at {} (set MYRR_CORPUS to the shared corpus folder)",
        dir.display()
    );
    dir
}

struct Row {
    file: String,
    ports: Vec<u16>,
    tshark_reliable: bool,
}

fn rows() -> Vec<Row> {
    let text = std::fs::read_to_string(corpus().join("ports.tsv")).unwrap();
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            Row {
                file: f[0].to_string(),
                ports: f[1].split(',').map(|p| p.parse().unwrap()).collect(),
                tshark_reliable: f[2] == "yes",
            }
        })
        .collect()
}

fn decode(row: &Row) -> (Vec<Event>, Stats) {
    decode_with(row, None)
}

/// The key log the corpus gives for a capture (`keys/<file>.keylog`).
fn corpus_keylog(file: &str) -> Option<Arc<KeyLog>> {
    let path = corpus().join("keys").join(format!("{file}.keylog"));
    if !path.is_file() {
        return None;
    }
    let mut k = KeyLog::default();
    k.read_file(&path).unwrap();
    assert_eq!(k.bad_lines, 0, "{:?}", k.bad);
    Some(Arc::new(k))
}

fn decode_with(row: &Row, keylog: Option<Arc<KeyLog>>) -> (Vec<Event>, Stats) {
    let mut cap = Capture::new(CaptureConfig {
        server_ports: row.ports.clone(),
        keylog,
        ..CaptureConfig::default()
    });
    let mut events = Vec::new();
    let path = corpus().join("pcaps").join(&row.file);
    source::read_file(&path, None, |ts, link, frame| {
        cap.packet(ts, link, frame);
        events.extend(cap.drain_events());
    })
    .unwrap_or_else(|e| panic!("{}: {e}", row.file));
    cap.finish();
    events.extend(cap.drain_events());
    (events, cap.stats().clone())
}

/// Query/prepare SQL in the order the commands were sent.
fn sql_list(events: &[Event]) -> Vec<String> {
    let mut x: Vec<(u64, u64, u64, String)> = events
        .iter()
        .filter_map(|e| match e {
            Event::Exchange(x) => x.command.sql().map(|s| {
                (
                    x.start_us,
                    x.session,
                    x.seq,
                    String::from_utf8_lossy(s).into_owned(),
                )
            }),
            _ => None,
        })
        .collect();
    x.sort();
    x.into_iter().map(|t| t.3).collect()
}

/// tshark's `-T fields` escaping of a field value.
fn tshark_escape(s: &str) -> String {
    s.replace('\n', "\\n")
        .replace('\r', "\\r")
        .replace('\t', "\\t")
}

fn tshark_queries(file: &str) -> Vec<String> {
    let p = corpus().join("tshark").join(format!("{file}.queries.txt"));
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// `code -> count` from tshark's counted `mysql.command` output (real command codes only).
fn tshark_commands(file: &str) -> BTreeMap<u8, u64> {
    let p = corpus().join("tshark").join(format!("{file}.commands.txt"));
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            Some((f.first()?.parse::<u8>().ok()?, f.get(2)?.parse().ok()?))
        })
        .filter(|(c, _)| *c <= 0x1f)
        .collect()
}

fn our_commands(events: &[Event]) -> BTreeMap<u8, u64> {
    let mut m = BTreeMap::new();
    for e in events {
        if let Event::Exchange(x) = e {
            let code = match &x.command {
                Command::Quit => 0x01,
                Command::InitDb { .. } => 0x02,
                Command::Query { .. } => 0x03,
                Command::FieldList { .. } => 0x04,
                Command::Statistics => 0x09,
                Command::Ping => 0x0e,
                Command::ChangeUser { .. } => 0x11,
                Command::Prepare { .. } => 0x16,
                Command::Execute { .. } => 0x17,
                Command::SendLongData { .. } => 0x18,
                Command::CloseStmt { .. } => 0x19,
                Command::ResetStmt { .. } => 0x1a,
                Command::SetOption { .. } => 0x1b,
                Command::Fetch { .. } => 0x1c,
                Command::ResetConnection => 0x1f,
                Command::Other { code, .. } => *code,
                _ => 0xff,
            };
            *m.entry(code).or_default() += 1;
        }
    }
    m
}

/// pcap2mysql-log's text transcripts: the text of every `Type: Query` block.
fn pcap2mysql_log_queries(file: &str) -> Vec<String> {
    let name = file
        .trim_start_matches("pcap2mysql-log__")
        .trim_end_matches(".pcap");
    let p = corpus()
        .join("expected/pcap2mysql-log")
        .join(format!("{name}.txt.expected"));
    let t = std::fs::read_to_string(p).unwrap();
    t.split("\n\nType: ")
        .filter_map(|b| b.strip_prefix("Query\n"))
        .map(str::to_string)
        .collect()
}

/// Zeek's mysql.log baseline: the argument of every `query` row.
fn zeek_queries(baseline: &str) -> Vec<String> {
    let p = corpus().join("expected/zeek").join(baseline);
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f.get(6) == Some(&"query")).then(|| f[7].to_string())
        })
        .collect()
}

/// Where tshark is not the oracle: the upstream expectation for this capture.
fn expected_queries(row: &Row) -> Option<Vec<String>> {
    match row.file.as_str() {
        "pcap2mysql-log__error.pcap" | "pcap2mysql-log__compressed-data-missing.pcap" => {
            Some(pcap2mysql_log_queries(&row.file))
        }
        "zeek__mysql-9.0.0-query-attributes.pcap" => Some(zeek_queries(
            "Baseline__scripts.base.protocols.mysql.query-attr-non-string__mysql.log",
        )),
        _ => None,
    }
}

/// TLS captures that tshark decrypted with the key in `keys/`: without it, we must mark them
/// encrypted and decode nothing inside; with it, decode what tshark found.
fn decrypted_by_tshark(file: &str) -> bool {
    file.starts_with("wireshark-notes__")
}

#[test]
fn every_corpus_capture_matches_its_oracle() {
    let rows = rows();
    assert!(
        rows.len() >= 50,
        "expected the whole corpus, found {} rows",
        rows.len()
    );
    let mut failures = Vec::new();
    for row in &rows {
        let (events, stats) = decode(row);
        let ours = sql_list(&events);
        if let Some(u) = stats.decode.undecodable.keys().next() {
            failures.push(format!("{}: could not decode: {u}", row.file));
        }
        if decrypted_by_tshark(&row.file) {
            let encrypted = events
                .iter()
                .any(|e| matches!(e, Event::SessionStart(s) if s.encrypted));
            if !ours.is_empty() || !encrypted {
                failures.push(format!(
                    "{}: TLS session must be marked encrypted with nothing decoded",
                    row.file
                ));
            }
        }
        let (events, stats) = if decrypted_by_tshark(&row.file) {
            let keylog = corpus_keylog(&row.file)
                .unwrap_or_else(|| panic!("{}: no key log in the corpus", row.file));
            decode_with(row, Some(keylog))
        } else {
            (events, stats)
        };
        let ours = sql_list(&events);
        if decrypted_by_tshark(&row.file)
            && (stats.decode.sessions_tls_read, stats.tls.sessions_decrypted) != (1, 1)
        {
            failures.push(format!(
                "{}: the TLS session must be read with the key log: {:?}",
                row.file, stats.tls
            ));
        }
        let want: Vec<String> = match expected_queries(row) {
            Some(q) => q,
            None => {
                if !row.tshark_reliable {
                    // tshark is said to be wrong somewhere else in these; its query list
                    // still has to agree (checked below), and the commands are not compared.
                }
                tshark_queries(&row.file)
            }
        };
        let got: Vec<String> = if expected_queries(row).is_some() {
            ours.clone()
        } else {
            ours.iter().map(|s| tshark_escape(s)).collect()
        };
        if got != want {
            failures.push(format!(
                "{}: queries differ\n  ours:   {:?}\n  oracle: {:?}",
                row.file,
                got.iter()
                    .map(|s| s.chars().take(80).collect::<String>())
                    .collect::<Vec<_>>(),
                want.iter()
                    .map(|s| s.chars().take(80).collect::<String>())
                    .collect::<Vec<_>>()
            ));
        }
        if row.tshark_reliable {
            let theirs = tshark_commands(&row.file);
            let mine = our_commands(&events);
            if theirs != mine {
                failures.push(format!(
                    "{}: command counts differ: ours {mine:?}, tshark {theirs:?}",
                    row.file
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} captures fail:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
}

fn decode_named(file: &str) -> (Vec<Event>, Stats) {
    let row = rows().into_iter().find(|r| r.file == file).unwrap();
    decode(&row)
}

fn exchanges(events: &[Event]) -> Vec<&myrr_recording::Exchange> {
    events.iter().filter_map(Event::as_exchange).collect()
}

#[test]
fn failed_logins_and_err_instead_of_greeting() {
    let (events, stats) = decode_named("zeek__auth.pcap");
    let failed: Vec<u16> = events
        .iter()
        .filter_map(|e| match e {
            Event::SessionEnd(s) => match &s.login {
                Login::Failed { code, .. } => Some(*code),
                _ => None,
            },
            _ => None,
        })
        .collect();
    assert_eq!(
        failed.iter().filter(|&&c| c == 1130).count(),
        3,
        "{failed:?}"
    );
    assert_eq!(
        failed.iter().filter(|&&c| c == 1045).count(),
        9,
        "{failed:?}"
    );
    assert_eq!(stats.decode.logins_failed, 12);
    let (events, _) = decode_named("pcap2mysql-log__connect-fail.pcap");
    assert!(events.iter().any(
        |e| matches!(e, Event::SessionEnd(s) if matches!(s.login, Login::Failed { code: 1130, .. }))
    ));
}

/// A readiness probe in a real capture: it connects, takes the greeting and closes.
#[test]
fn greeted_connection_closed_without_a_login_is_an_aborted_handshake() {
    let (events, stats) = decode_named("pcap2mysql-log__execute.pcap");
    assert_eq!(stats.decode.handshakes_aborted, 1);
    let sessions = events
        .iter()
        .filter(|e| matches!(e, Event::SessionStart(_)))
        .count();
    assert_eq!(sessions, 2, "only the connections that logged in");
}

#[test]
fn mid_stream_sessions_are_marked_and_rows_counted() {
    let (events, _) = decode_named("packetbeat__mysql_long.pcap");
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::SessionStart(s) if s.mid_stream)));
    let x = exchanges(&events);
    assert_eq!(x.len(), 1);
    assert_eq!(x[0].total_rows(), 400);
    let (events, _) = decode_named("packetbeat__mysql_long_result.pcap");
    assert_eq!(exchanges(&events)[0].total_rows(), 15);
}

#[test]
fn lost_segment_becomes_a_gap_and_an_incomplete_result() {
    let (events, stats) = decode_named("packetbeat__mysql_with_gap.pcap");
    assert_eq!(
        (stats.decode.gaps, stats.decode.gap_bytes),
        (1, 13032),
        "one hole of 13032 bytes (seq 144801..157833)"
    );
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::Gap(g) if g.bytes == 13032)));
    let x = exchanges(&events);
    assert_eq!(x.len(), 1);
    match &x[0].response {
        myrr_recording::Response::Rows(rs) => {
            assert!(!rs.complete);
            // The segment lost is after the 320th row; rows after it cannot be framed.
            assert!(rs.rows > 1 && rs.rows <= 320, "{}", rs.rows);
        }
        r => panic!("{r:?}"),
    }
}

#[test]
fn prepared_statements_carry_typed_parameters() {
    let (events, _) = decode_named("pcap2mysql-log__execute.pcap");
    let execs: Vec<_> = exchanges(&events)
        .into_iter()
        .filter(|x| matches!(x.command, Command::Execute { .. }))
        .collect();
    assert!(!execs.is_empty());
    for x in execs {
        match &x.command {
            Command::Execute {
                prepare_seen,
                params,
                ..
            } => {
                assert!(prepare_seen);
                assert!(!params.is_empty());
            }
            _ => unreachable!(),
        }
    }
    // Mid-stream: the EXECUTE's PREPARE is in the capture here.
    let (events, _) = decode_named("packetbeat__mysql_prepare_statement.pcap");
    let x = exchanges(&events);
    assert!(matches!(
        x[0].response,
        myrr_recording::Response::Prepared(_)
    ));
    assert_eq!(x[1].total_rows(), 1);
}

#[test]
fn compressed_protocol_results_are_inflated() {
    let (events, _) = decode_named("pcap2mysql-log__compressed-data-missing.pcap");
    let x = exchanges(&events);
    let select = x
        .iter()
        .find(|x| x.command.sql().is_some_and(|s| s.starts_with(b"SELECT")))
        .unwrap();
    assert!(select.total_rows() >= 1);
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::SessionStart(s) if s.compressed)));
}

#[test]
fn tls_sessions_are_counted_not_decoded() {
    for f in [
        "arkime__mysql-tls.pcap",
        "zeek__encrypted.pcap",
        "zeek__tls-13-amazon-rds.pcap",
        "nDPI__mysql.pcapng",
    ] {
        let (events, stats) = decode_named(f);
        assert_eq!(stats.decode.sessions_encrypted, 1, "{f}");
        assert!(
            events
                .iter()
                .any(|e| matches!(e, Event::SessionStart(s) if s.encrypted)),
            "{f}"
        );
    }
}

/// Inputs the fuzzers found (fuzz/regressions): they must decode without panicking.
#[test]
fn fuzz_regressions_do_not_panic() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions/capture_packets");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "pcap") {
            let mut cap = Capture::new(CaptureConfig::default());
            let _ = source::read_file(&path, None, |ts, link, frame| cap.packet(ts, link, frame));
            cap.finish();
            n += 1;
        }
    }
    assert!(n >= 2, "regression pcaps not found in {}", dir.display());
}

fn decode_named_with(file: &str, keylog: Option<Arc<KeyLog>>) -> (Vec<Event>, Stats) {
    let row = rows().into_iter().find(|r| r.file == file).unwrap();
    decode_with(&row, keylog)
}

#[test]
fn tls_sessions_decode_with_their_key_log() {
    // mysql-ssl: TLS 1.0, DHE_RSA_WITH_AES_256_CBC_SHA (MAC-then-encrypt, chained IVs).
    let file = "wireshark-notes__mysql-ssl.pcapng";
    let (events, stats) = decode_named_with(file, corpus_keylog(file));
    let Event::SessionStart(s) = &events[0] else {
        panic!("{:?}", events[0]);
    };
    assert!(s.encrypted && !s.mid_stream, "{s:?}");
    assert_eq!(s.user.as_deref(), Some(&b"test"[..]));
    let xs = exchanges(&events);
    assert_eq!(xs.len(), 10);
    assert!(
        matches!(&xs[2].response, Response::Err(e) if e.code == 1044),
        "{:?}",
        xs[2]
    );
    assert_eq!(xs[5].total_rows(), 3);
    assert!(matches!(events.last(), Some(Event::SessionEnd(e)) if e.login == Login::Ok));
    assert_eq!(
        stats.tls.suites.keys().collect::<Vec<_>>(),
        ["TLS 1.0 TLS_DHE_RSA_WITH_AES_256_CBC_SHA"]
    );
    assert!(stats.tls.failures.is_empty(), "{:?}", stats.tls.failures);
    assert_eq!((stats.decode.gaps, stats.decode.sessions_encrypted), (0, 0));

    // mysql-ssl-larger: 'show variables' spans TLS records and TCP segments.
    let file = "wireshark-notes__mysql-ssl-larger.pcapng";
    let (events, stats) = decode_named_with(file, corpus_keylog(file));
    let xs = exchanges(&events);
    let rows: Vec<u64> = xs.iter().map(|x| x.total_rows()).collect();
    assert_eq!(rows, [1, 14, 431, 0]);
    assert!(
        matches!(&events[0], Event::SessionStart(s) if s.db.as_deref() == Some(&b"testdb"[..]))
    );
    // tshark counts 18 application data records and the two encrypted Finished messages.
    assert_eq!(stats.tls.records_decrypted, 20);
}

/// `--tls-probe`'s way: the server tells the session's secret while the capture reads it.
/// mysql-ssl-larger's master secret given at `when` (None: never; Some(0): before the
/// first frame; Some(n): after frame n); frames from `shift_from` on come `shift_us` later.
fn decode_with_live_secret(
    when: Option<usize>,
    shift_from: usize,
    shift_us: u64,
) -> (Vec<Event>, Stats) {
    let file = "wireshark-notes__mysql-ssl-larger.pcapng";
    let keylog =
        std::fs::read_to_string(corpus().join("keys").join(format!("{file}.keylog"))).unwrap();
    let hex = keylog.split_whitespace().nth(2).unwrap();
    let master: Vec<u8> = (0..hex.len() / 2)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    assert_eq!(master.len(), 48);
    let mut frames = Vec::new();
    source::read_file(
        &corpus().join("pcaps").join(file),
        None,
        |ts, link, frame| frames.push((ts, link, frame.to_vec())),
    )
    .unwrap();
    let (events, _) = decode_named_with(file, corpus_keylog(file));
    let Event::SessionStart(start) = &events[0] else {
        panic!("{:?}", events[0])
    };
    let secret = || myrr_capture::Secret {
        ts_us: frames[0].0,
        client: start.client.parse().unwrap(),
        server: start.server.parse().unwrap(),
        kind: myrr_capture::tls::SecretKind::Master,
        secret: master.clone(),
    };
    let mut cap = Capture::new(CaptureConfig {
        server_ports: vec![3306],
        tls_plaintext: true,
        tls_secrets: true,
        ..CaptureConfig::default()
    });
    let mut events = Vec::new();
    for (n, (ts, link, frame)) in frames.iter().enumerate() {
        if when == Some(n) {
            cap.secret(secret());
        }
        let ts = if n >= shift_from { ts + shift_us } else { *ts };
        cap.packet(ts, *link, frame);
        events.extend(cap.drain_events());
    }
    if when == Some(frames.len()) {
        cap.secret(secret());
    }
    cap.finish();
    events.extend(cap.drain_events());
    (events, cap.stats().clone())
}

#[test]
fn a_session_read_with_the_secret_the_server_tells_waits_for_it() {
    let rows = |events: &[Event]| -> Vec<u64> {
        exchanges(events).iter().map(|x| x.total_rows()).collect()
    };
    // Told after the SYN, or only after the last frame: the bytes wait, then read whole.
    for when in [1, 42] {
        let (events, stats) = decode_with_live_secret(Some(when), usize::MAX, 0);
        assert_eq!(rows(&events), [1, 14, 431, 0], "secret after frame {when}");
        assert_eq!(
            (stats.tls.sessions_keyed_live, stats.tls.sessions_keys_late),
            (1, 0)
        );
        assert_eq!((stats.tls_secrets, stats.tls_secrets_unused), (1, 0));
        assert_eq!(stats.tls.records_decrypted, 20);
    }
    // Never told, or told before its connection was seen: counted without keys, nothing read.
    for when in [None, Some(0)] {
        let (events, stats) = decode_with_live_secret(when, usize::MAX, 0);
        assert!(exchanges(&events).is_empty(), "{when:?}");
        assert_eq!(
            (
                stats.tls.sessions_keys_late,
                stats.tls.sessions_without_keys
            ),
            (1, 1)
        );
        assert_eq!(stats.decode.sessions_encrypted, 1);
        assert_eq!(stats.tls_secrets_unused, u64::from(when.is_some()));
    }
    // Told 3 s (of capture time) after TLS began: the wait was over; the secret is not used.
    let (events, stats) = decode_with_live_secret(Some(30), 20, 3_000_000);
    assert!(exchanges(&events).is_empty());
    assert_eq!(
        (
            stats.tls.sessions_keys_late,
            stats.tls.sessions_without_keys
        ),
        (1, 1)
    );
    assert_eq!((stats.tls_secrets, stats.tls_secrets_unused), (0, 1));
}

#[test]
fn tls_sessions_with_wrong_or_missing_keys_stay_encrypted() {
    let file = "wireshark-notes__mysql-ssl.pcapng";
    let good =
        std::fs::read_to_string(corpus().join("keys").join(format!("{file}.keylog"))).unwrap();
    // The other capture's key: no secret for this client random.
    let other = corpus().join("keys/wireshark-notes__mysql-ssl-larger.pcapng.keylog");
    let mut k = KeyLog::default();
    k.read_file(&other).unwrap();
    // A damaged master secret: the first record does not authenticate.
    let last = good.trim_end().chars().last().unwrap();
    let flipped = if last == '0' { '1' } else { '0' };
    let bad = format!(
        "{}{flipped}\n",
        &good.trim_end()[..good.trim_end().len() - 1]
    );
    let mut wrong = KeyLog::default();
    wrong.parse(bad.as_bytes(), "wrong");
    assert_eq!(wrong.sessions(), 1);
    for (keylog, without, failed) in [(k, 1, 0), (wrong, 0, 1)] {
        let (events, stats) = decode_named_with(file, Some(Arc::new(keylog)));
        assert!(exchanges(&events).is_empty());
        assert!(matches!(&events[0], Event::SessionStart(s) if s.encrypted && s.user.is_none()));
        assert_eq!(stats.decode.sessions_encrypted, 1);
        assert_eq!(stats.decode.sessions_tls_read, 0);
        assert_eq!(
            (stats.tls.sessions_without_keys, stats.tls.sessions_failed),
            (without, failed),
            "{:?}",
            stats.tls
        );
    }
}
