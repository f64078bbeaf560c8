//! The probe in the project's TLS MariaDB server (scripts/db.sh's `tls` server; the test
//! environment's MYRR_TLS_PORT): a session set up under the probe gives its handshake
//! secrets, one open before it its plaintext, each with the connection's addresses, and
//! nothing of the probe stays loaded after it stops.

use std::process::Command;
use std::sync::{Arc, Mutex};

use myrr_tlsprobe::{find_listener, Chunk, Dir, Probe, Secret, SecretKind, Seen};

fn tls_port() -> u16 {
    std::env::var("MYRR_TLS_PORT")
        .expect("MYRR_TLS_PORT (run through scripts/test.sh, or eval \"$(scripts/db.sh env)\")")
        .parse()
        .expect("MYRR_TLS_PORT is a port")
}

/// The mariadb CLI as user myrr on 127.0.0.1:`port`, running `sql`.
fn mariadb_command(port: u16, extra: &[&str], sql: &str) -> Command {
    let mut c = Command::new("mariadb");
    c.args([
        "--no-defaults",
        "--protocol=tcp",
        "-h127.0.0.1",
        "-umyrr",
        "-pmyrr",
    ])
    .arg(format!("-P{port}"))
    .args(extra)
    .args(["-e", sql]);
    c
}

fn mariadb(port: u16, extra: &[&str], sql: &str) {
    let out = mariadb_command(port, extra, sql)
        .output()
        .expect("mariadb client");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Our programs that are loaded in the kernel (bpftool).
fn loaded_probe_programs() -> Vec<String> {
    let out = Command::new("bpftool")
        .args(["prog", "show"])
        .output()
        .expect("bpftool (scripts/setup.sh installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(" name myrr_"))
        .map(str::to_string)
        .collect()
}

fn text(seen: &[Seen], dir: Dir) -> String {
    let bytes: Vec<u8> = chunks(seen)
        .filter(|c| c.dir == dir)
        .flat_map(|c| c.data.clone())
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn chunks(seen: &[Seen]) -> impl Iterator<Item = &Chunk> {
    seen.iter().filter_map(|s| match s {
        Seen::Plaintext(c) => Some(c),
        Seen::Secret(_) => None,
    })
}

fn secrets(seen: &[Seen]) -> Vec<&Secret> {
    seen.iter()
        .filter_map(|s| match s {
            Seen::Secret(s) => Some(s),
            Seen::Plaintext(_) => None,
        })
        .collect()
}

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

/// Sessions set up while the probe runs give their secrets (no data probe is attached: no
/// connection was open); one open before it is read by the data probes, which are detached
/// once it closes; nothing stays loaded after the probe stops.
#[test]
fn new_sessions_give_their_secrets_and_an_older_one_its_plaintext() {
    let port = tls_port();
    let pid = find_listener(port).expect("the tls server's pid");
    assert!(
        loaded_probe_programs().is_empty(),
        "{:?}",
        loaded_probe_programs()
    );

    // 1. No connection open: secrets only.
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = got.clone();
    let probe = Probe::start(pid, vec![port], move |c| sink.lock().unwrap().push(c)).unwrap();
    assert!(probe.keys.is_ok(), "{:?}", probe.keys);
    assert_eq!(probe.existing, 0);
    assert_eq!(
        loaded_probe_programs().len(),
        10,
        "{:?}",
        loaded_probe_programs()
    );
    mariadb(port, &["--ssl"], "SELECT 'probe-marker-13'");
    mariadb(
        port,
        &["--ssl", "--tls-version=TLSv1.2"],
        "SELECT 'probe-marker-12'",
    );
    mariadb(port, &["--skip-ssl"], "SELECT 'probe-marker-clear'");
    let stats = probe.stop();
    let seen = got.lock().unwrap().clone();
    assert_eq!(chunks(&seen).count(), 0, "no data probe: {stats:?}");
    let s = secrets(&seen);
    let mut clients: Vec<_> = s.iter().map(|s| s.client).collect();
    clients.sort();
    clients.dedup();
    assert_eq!(clients.len(), 2, "two TLS connections: {s:?}");
    let mut kinds: Vec<_> = s.iter().map(|s| s.kind).collect();
    kinds.sort_by_key(|k| *k as u8);
    assert_eq!(
        kinds,
        [
            SecretKind::ClientHandshake,
            SecretKind::ServerHandshake,
            SecretKind::ClientTraffic,
            SecretKind::ServerTraffic,
            SecretKind::Master,
        ],
        "TLS 1.3's four traffic secrets and TLS 1.2's master secret"
    );
    let now = now_us();
    for x in &s {
        assert_eq!(x.server.port(), port);
        assert!(x.client.ip().is_loopback());
        assert!([32, 48].contains(&x.secret.len()), "{x:?}");
        assert!(x.secret.iter().any(|&b| b != 0), "{x:?}");
        assert!(
            x.ts_us <= now && now - x.ts_us < 60_000_000,
            "kernel time as packet time"
        );
    }
    assert_eq!(
        (stats.secrets, stats.secrets_unattributed),
        (5, 0),
        "{stats:?}"
    );

    // 2. A TLS connection open before the probe: read by the data probes, which go once it is
    // closed.
    let older = mariadb_command(
        port,
        &["--ssl"],
        "SELECT SLEEP(2); SELECT 'probe-marker-older', REPEAT('x', 40000)",
    )
    .stdout(std::process::Stdio::null())
    .spawn()
    .expect("mariadb client");
    std::thread::sleep(std::time::Duration::from_millis(800));
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = got.clone();
    let probe = Probe::start(pid, vec![port], move |c| sink.lock().unwrap().push(c)).unwrap();
    assert_eq!(probe.existing, 1);
    let mut older = older;
    assert!(older.wait().unwrap().success());
    mariadb(port, &["--ssl"], "SELECT 'probe-marker-newer'");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let stats = probe.stop();
    let gone = (0..50).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        loaded_probe_programs().is_empty()
    });
    assert!(gone, "{:?}", loaded_probe_programs());
    let seen = got.lock().unwrap().clone();
    let to_server = text(&seen, Dir::ToServer);
    let to_client = text(&seen, Dir::ToClient);
    assert!(
        to_server.contains("SELECT 'probe-marker-older', REPEAT('x', 40000)"),
        "{to_server}"
    );
    assert!(
        !to_server.contains("probe-marker-newer"),
        "a session set up under the probe is read with its secrets, not its plaintext"
    );
    assert!(
        to_client.contains(&"x".repeat(40000)),
        "the 40 kB answer, whole"
    );
    assert_eq!(secrets(&seen).len(), 4, "the newer session's secrets");
    assert!(
        stats.data_probes_detached_after_s.is_some(),
        "the data probes go once the older connection is closed: {stats:?}"
    );
    assert_eq!(
        (stats.lost_bytes, stats.unattributed_bytes),
        (0, 0),
        "{stats:?}"
    );
}
