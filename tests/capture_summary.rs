//! `myrr capture`'s summary, in text and JSON, counts what makes no exchange: a connection
//! the server greeted and the client never answered, a login refused right after the
//! greeting, a client port reused without a SYN in the capture. The capture is written here,
//! frame by frame (raw IPv4); no database is needed.

mod common;

use common::*;

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;

/// A raw IPv4/TCP packet between 10.0.0.1:`port` and 10.0.0.2:3306.
fn packet(to_server: bool, port: u16, seq: u32, ack: u32, flags: u8, data: &[u8]) -> Vec<u8> {
    let (src, dst, sport, dport) = if to_server {
        ([10, 0, 0, 1], [10, 0, 0, 2], port, 3306)
    } else {
        ([10, 0, 0, 2], [10, 0, 0, 1], 3306, port)
    };
    let total = (20 + 20 + data.len()) as u16;
    let mut p = vec![0x45, 0];
    p.extend_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0x40, 0, 64, 6, 0, 0]);
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    let sum = p
        .chunks(2)
        .fold(0u32, |s, w| s + u32::from(u16::from_be_bytes([w[0], w[1]])));
    let sum = !((sum & 0xffff) + (sum >> 16)) as u16;
    p[10..12].copy_from_slice(&sum.to_be_bytes());
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ack.to_be_bytes());
    p.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    p.extend_from_slice(data);
    p
}

/// A pcap file of raw IP packets (LINKTYPE_RAW).
fn pcap(packets: &[(u64, Vec<u8>)]) -> Vec<u8> {
    let mut f = Vec::new();
    for v in [0xa1b2c3d4u32.to_le_bytes(), [2, 0, 4, 0], [0; 4], [0; 4]] {
        f.extend_from_slice(&v);
    }
    f.extend_from_slice(&65535u32.to_le_bytes());
    f.extend_from_slice(&101u32.to_le_bytes());
    for (us, p) in packets {
        f.extend_from_slice(&((us / 1_000_000) as u32).to_le_bytes());
        f.extend_from_slice(&((us % 1_000_000) as u32).to_le_bytes());
        f.extend_from_slice(&(p.len() as u32).to_le_bytes());
        f.extend_from_slice(&(p.len() as u32).to_le_bytes());
        f.extend_from_slice(p);
    }
    f
}

fn mysql(seq: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = (payload.len() as u32).to_le_bytes()[..3].to_vec();
    v.push(seq);
    v.extend_from_slice(payload);
    v
}

/// One TCP connection's next sequence numbers; every segment acknowledges all the peer sent.
struct Conn {
    port: u16,
    client: u32,
    server: u32,
    out: Vec<(u64, Vec<u8>)>,
}

impl Conn {
    fn new(port: u16, client: u32, server: u32) -> Self {
        Self {
            port,
            client,
            server,
            out: Vec::new(),
        }
    }

    fn handshake(&mut self, at: u64) {
        let (c, s) = (self.client, self.server);
        self.out.push((at, packet(true, self.port, c, 0, SYN, &[])));
        self.out
            .push((at, packet(false, self.port, s, c + 1, SYN | ACK, &[])));
        self.out
            .push((at, packet(true, self.port, c + 1, s + 1, ACK, &[])));
        self.client += 1;
        self.server += 1;
    }

    fn c(&mut self, at: u64, data: &[u8]) {
        let p = packet(true, self.port, self.client, self.server, PSH | ACK, data);
        self.out.push((at, p));
        self.client += data.len() as u32;
    }

    fn s(&mut self, at: u64, data: &[u8]) {
        let p = packet(false, self.port, self.server, self.client, PSH | ACK, data);
        self.out.push((at, p));
        self.server += data.len() as u32;
    }

    fn close(&mut self, at: u64) {
        let (c, s) = (self.client, self.server);
        self.out
            .push((at, packet(true, self.port, c, s, FIN | ACK, &[])));
        self.out
            .push((at, packet(false, self.port, s, c + 1, FIN | ACK, &[])));
    }
}

fn greeting() -> Vec<u8> {
    let mut p = vec![0x0a];
    p.extend_from_slice(b"10.11.19-MariaDB\0");
    p.extend_from_slice(&7u32.to_le_bytes());
    mysql(0, &p)
}

fn query(sql: &str) -> Vec<u8> {
    mysql(0, &[&[0x03], sql.as_bytes()].concat())
}

#[test]
fn summary_counts_handshakes_that_stop_short_and_reused_ports() {
    let mut packets = Vec::new();
    // Greeted, then the client closes without a login.
    let mut probe = Conn::new(40001, 100, 200);
    probe.handshake(1_000_000);
    probe.s(1_000_100, &greeting());
    probe.close(1_000_200);
    packets.extend(probe.out);
    // Greeted, then refused before the client answered.
    let mut refused = Conn::new(40002, 100, 200);
    refused.handshake(2_000_000);
    refused.s(2_000_100, &greeting());
    refused.s(12_000_000, &mysql(1, b"\xff\x13\x04Bad handshake"));
    refused.close(12_000_100);
    packets.extend(refused.out);
    // A query never answered on a connection whose end is not in the capture, then a new
    // connection from the same port whose SYN is not either.
    let mut old = Conn::new(40003, 2_000_000_000, 7000);
    old.c(13_000_000, &query("SELECT SLEEP(100)"));
    let mut new = Conn::new(40003, 1_000_000, 900_000_000);
    new.c(14_000_000, &query("SELECT 1"));
    new.s(14_000_500, &mysql(1, &[0, 0, 0, 2, 0, 0, 0]));
    packets.extend(old.out);
    packets.extend(new.out);

    let dir = tempdir();
    let file = dir.join("short.pcap");
    std::fs::write(&file, pcap(&packets)).unwrap();
    let capture = |json: bool| {
        let mut cmd = myrr();
        cmd.args(["capture", "-r"])
            .arg(&file)
            .arg("-o")
            .arg(dir.join("short.myrr"));
        if json {
            cmd.arg("--json");
        }
        let out = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{err}");
        err
    };
    let s: serde_json::Value = serde_json::from_str(&capture(true)).unwrap();
    assert_eq!(s["flows"], 4, "{s:#}");
    assert_eq!(s["streams_restarted"], 1, "{s:#}");
    assert_eq!(s["sessions"]["handshakes_aborted"], 1, "{s:#}");
    assert_eq!(s["sessions"]["logins_failed"], 1, "{s:#}");
    assert_eq!(s["exchanges"], 2, "{s:#}");
    assert_eq!(s["responses_missing"], 1, "{s:#}");
    let text = capture(false);
    for line in [
        "new connections on a reused client port, SYN not captured: 1",
        "1 failed logins",
        "connections greeted but never logged in (no session): 1",
    ] {
        assert!(text.contains(line), "{line:?} not in:\n{text}");
    }
}
