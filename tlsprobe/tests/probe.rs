//! The probe in the project's TLS MariaDB server (scripts/db.sh's `tls` server; the test
//! environment's MYRR_TLS_PORT): what a TLS client sends and gets is read in plaintext, with
//! the connection's addresses, and nothing of the probe stays loaded after it stops.

use std::process::Command;
use std::sync::{Arc, Mutex};

use myrr_tlsprobe::{find_listener, Chunk, Dir, Probe};

fn tls_port() -> u16 {
    std::env::var("MYRR_TLS_PORT")
        .expect("MYRR_TLS_PORT (run through scripts/test.sh, or eval \"$(scripts/db.sh env)\")")
        .parse()
        .expect("MYRR_TLS_PORT is a port")
}

fn mariadb(port: u16, extra: &[&str], sql: &str) {
    let out = Command::new("mariadb")
        .args([
            "--no-defaults",
            "--protocol=tcp",
            "-h127.0.0.1",
            "-umyrr",
            "-pmyrr",
        ])
        .arg(format!("-P{port}"))
        .args(extra)
        .args(["-e", sql])
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

fn text(chunks: &[Chunk], dir: Dir) -> String {
    let bytes: Vec<u8> = chunks
        .iter()
        .filter(|c| c.dir == dir)
        .flat_map(|c| c.data.clone())
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

#[test]
fn reads_tls_clients_in_plaintext_and_leaves_nothing_attached() {
    let port = tls_port();
    let pid = find_listener(port).expect("the tls server's pid");
    assert!(
        loaded_probe_programs().is_empty(),
        "{:?}",
        loaded_probe_programs()
    );
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = got.clone();
    let probe = Probe::start(pid, vec![port], move |c| sink.lock().unwrap().push(c)).unwrap();
    assert!(
        probe.functions.contains(&"SSL_read"),
        "{:?}",
        probe.functions
    );
    assert_eq!(
        loaded_probe_programs().len(),
        8,
        "{:?}",
        loaded_probe_programs()
    );
    mariadb(
        port,
        &["--ssl"],
        "SELECT 'probe-marker-13', REPEAT('x', 40000)",
    );
    mariadb(
        port,
        &["--ssl", "--tls-version=TLSv1.2"],
        "SELECT 'probe-marker-12'",
    );
    // In the clear: the probe does not see it (nothing goes through the TLS library).
    mariadb(port, &["--skip-ssl"], "SELECT 'probe-marker-clear'");
    let stats = probe.stop();
    // The kernel frees a detached program after a grace period.
    let gone = (0..50).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        loaded_probe_programs().is_empty()
    });
    assert!(gone, "{:?}", loaded_probe_programs());
    let chunks = got.lock().unwrap().clone();
    let to_server = text(&chunks, Dir::ToServer);
    let to_client = text(&chunks, Dir::ToClient);
    assert!(
        to_server.contains("SELECT 'probe-marker-13', REPEAT('x', 40000)"),
        "{to_server}"
    );
    assert!(
        to_server.contains("SELECT 'probe-marker-12'"),
        "{to_server}"
    );
    assert!(!to_server.contains("probe-marker-clear"));
    assert!(
        to_client.contains(&"x".repeat(40000)),
        "the 40 kB answer, whole"
    );
    assert!(chunks
        .iter()
        .all(|c| c.server.port() == port && c.client.ip().is_loopback()));
    // Two connections, each its own client port.
    let mut clients: Vec<_> = chunks.iter().map(|c| c.client).collect();
    clients.sort();
    clients.dedup();
    assert_eq!(clients.len(), 2, "{clients:?}");
    assert_eq!(
        (stats.lost_bytes, stats.unattributed_bytes),
        (0, 0),
        "{stats:?}"
    );
    // Kernel time, as packet time: within a few seconds of now.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64;
    assert!(chunks
        .iter()
        .all(|c| c.ts_us <= now && now - c.ts_us < 60_000_000));
}
