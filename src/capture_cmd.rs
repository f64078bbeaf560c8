//! `myrr capture`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use myrr_capture::backfill::SnapshotView;
use myrr_capture::source::{self, LiveOptions, PcapFiles};
use myrr_capture::tls::KeyLog;
use myrr_capture::{CaptureConfig, PacketSource, Stats};
use myrr_recording::{Header, RecordingWriter, RunKind};

use crate::server_view::LiveView;
use crate::util::parse_duration;

#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  myrr capture -r traffic.pcap -o prod.myrr\n  myrr capture -r a.pcapng -r b.pcap --port 3306 --port 3307 -o prod.myrr\n  myrr capture -r tls.pcap --keylog keys.log -o prod.myrr\n  sudo myrr capture -i eth0 --port 3306 --duration 10m -o prod.myrr"
)]
pub struct Args {
    /// Read packets from this pcap or pcapng file (repeat for several, read in order).
    #[arg(
        short = 'r',
        long = "read",
        value_name = "FILE",
        conflicts_with = "interface",
        required_unless_present = "interface"
    )]
    files: Vec<PathBuf>,
    /// Capture live on this interface (needs root or cap_net_raw,cap_net_admin).
    #[arg(short = 'i', long, value_name = "IFACE")]
    interface: Option<String>,
    /// MySQL server port (repeat for several); traffic to or from it is decoded.
    #[arg(short = 'p', long = "port", value_name = "N", default_value = "3306")]
    ports: Vec<u16>,
    /// BPF filter (default: tcp and the server ports).
    #[arg(long, value_name = "BPF")]
    filter: Option<String>,
    /// Stop a live capture after this long (e.g. 30s, 10m, 2h); Ctrl-C also stops it cleanly.
    #[arg(long, value_name = "D", value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Kernel capture buffer for live capture, in MiB.
    #[arg(long, value_name = "MIB", default_value = "64")]
    buffer_mib: i32,
    /// Largest MySQL packet kept, in MiB (bigger ones are counted and skipped).
    #[arg(long, value_name = "MIB", default_value = "64")]
    max_packet_mib: usize,
    /// Write the recording here.
    #[arg(short = 'o', long = "output", value_name = "OUT.myrr")]
    output: PathBuf,
    /// Print the summary as JSON on stderr instead of text.
    #[arg(long)]
    json: bool,
    /// Live capture: read the server's view of connections already open (user, database,
    /// prepared statements) from performance_schema, so their sessions replay whole:
    /// mysql://monitor[:password]@host:port (password also from MYRR_SERVER_PASSWORD). The
    /// account needs PROCESS and SELECT on performance_schema.
    #[arg(long, value_name = "URL", conflicts_with_all = ["files", "backfill"])]
    server: Option<String>,
    /// The server's view saved by `myrr snapshot` when the pcap's recording started: used for
    /// the connections that were already open.
    #[arg(long, value_name = "FILE")]
    backfill: Option<PathBuf>,
    /// Keep no rows: by default the first rows (at most 20 rows, 4 KiB) of the first 3 answers
    /// of each statement shape are kept, so that `analyze` can show differing rows.
    #[arg(long)]
    no_row_samples: bool,
    /// Live capture: read TLS sessions in plaintext inside the server's TLS library (eBPF
    /// uprobes on OpenSSL's SSL_read/SSL_write) of process PID, or of the process listening
    /// on --port on this host. Needs root, or CAP_BPF, CAP_PERFMON and CAP_SYS_PTRACE.
    #[arg(
        long,
        value_name = "PID",
        num_args = 0..=1,
        default_missing_value = "0",
        requires = "interface"
    )]
    tls_probe: Option<u32>,
    /// Read TLS sessions with the secrets of this NSS key log (SSLKEYLOGFILE format; repeat
    /// for several). Key logs in pcapng Decryption Secrets Blocks are used without it.
    #[arg(long, value_name = "FILE", conflicts_with = "interface")]
    keylog: Vec<PathBuf>,
}

/// What `--tls-probe` attached to, and what it saw once stopped.
#[derive(Default)]
struct ProbeReport {
    attached: Option<String>,
    note: Option<String>,
    stats: Option<myrr_tlsprobe::ProbeStats>,
    /// How sessions are read: with their secrets, or by the data probes.
    keys: Option<String>,
}

/// Starts the TLS probe for `--tls-probe`: a feed of plaintext for the capture. Missing
/// rights stop the capture before it writes anything; a server that cannot be found or probed
/// is a note, and the capture goes on for plaintext sessions.
fn tls_probe(
    a: &Args,
    report: &Arc<Mutex<ProbeReport>>,
) -> anyhow::Result<Option<myrr_capture::PlaintextFeed>> {
    use myrr_tlsprobe::{Dir, Probe, ProbeError, SecretKind, Seen};
    let Some(pid) = a.tls_probe else {
        return Ok(None);
    };
    let missing = myrr_tlsprobe::missing_capabilities();
    if !missing.is_empty() {
        return Err(ProbeError::Permission {
            missing: missing.join(" and "),
        }
        .into());
    }
    let pid = if pid != 0 {
        Ok(pid)
    } else {
        let mut found = Err(ProbeError::NoListener { port: a.ports[0] });
        for &port in &a.ports {
            found = myrr_tlsprobe::find_listener(port);
            if found.is_ok() {
                break;
            }
        }
        found
    };
    let (tx, rx) = std::sync::mpsc::sync_channel(1 << 16);
    let started = pid.and_then(|pid| {
        Probe::start(pid, a.ports.clone(), move |seen| {
            use myrr_capture::tls::SecretKind as K;
            let _ = tx.send(match seen {
                Seen::Plaintext(c) => {
                    myrr_capture::FromServer::Plaintext(myrr_capture::Plaintext {
                        ts_us: c.ts_us,
                        client: c.client,
                        server: c.server,
                        direction: match c.dir {
                            Dir::ToServer => myrr_recording::Direction::ClientToServer,
                            Dir::ToClient => myrr_recording::Direction::ServerToClient,
                        },
                        data: c.data,
                        lost_before: c.lost_before,
                    })
                }
                Seen::Secret(s) => myrr_capture::FromServer::Secret(myrr_capture::Secret {
                    ts_us: s.ts_us,
                    client: s.client,
                    server: s.server,
                    kind: match s.kind {
                        SecretKind::ClientHandshake => K::ClientHandshake,
                        SecretKind::ServerHandshake => K::ServerHandshake,
                        SecretKind::ClientTraffic => K::ClientTraffic,
                        SecretKind::ServerTraffic => K::ServerTraffic,
                        SecretKind::Master => K::Master,
                    },
                    secret: s.secret,
                }),
            });
        })
    });
    let mut r = report.lock().unwrap_or_else(|p| p.into_inner());
    match started {
        Ok(probe) => {
            let shared = if probe.shared.is_empty() {
                String::new()
            } else {
                format!("; probed at their common code: {}", probe.shared.join(", "))
            };
            r.attached = Some(format!(
                "process {} through {} ({}{shared})",
                probe.pid,
                probe.library.display(),
                probe.functions.join(", ")
            ));
            let secrets = probe.keys.is_ok();
            r.keys =
                Some(match &probe.keys {
                    Ok(lib) => format!(
                    "secrets of new sessions from EVP_KDF_derive in {}; data probes for the {} \
                     connections open at the start{}",
                    lib.display(),
                    probe.existing,
                    if probe.existing == 0 { " (not attached)" } else { ", until they close" }
                ),
                    Err(why) => format!("{why}: every TLS session is read by the data probes"),
                });
            let report = report.clone();
            Ok(Some(myrr_capture::PlaintextFeed {
                chunks: rx,
                secrets,
                stop: Box::new(move || {
                    let stats = probe.stop();
                    report.lock().unwrap_or_else(|p| p.into_inner()).stats = Some(stats);
                }),
            }))
        }
        Err(e @ ProbeError::Permission { .. }) => Err(e.into()),
        Err(e) => {
            r.note = Some(format!(
                "{e}; TLS sessions are counted encrypted, plaintext ones are captured"
            ));
            Ok(None)
        }
    }
}

/// Why sessions that began before the capture are (not) backfilled, for the summary.
#[derive(Default)]
struct BackfillReport {
    /// What the view is: "server host:port", "file F".
    from: Option<String>,
    notes: Vec<String>,
    connections: usize,
    /// The monitor's own connection, left out of the capture.
    own_client: Option<std::net::SocketAddr>,
}

/// The server's view for a capture, from `--server` or `--backfill`; what could not be read
/// is a note, and the capture goes on without it.
/// The key log of a capture from files: `--keylog` files, then the secrets blocks of pcapng
/// inputs. None when neither gave a line.
fn keylog(a: &Args) -> anyhow::Result<Option<Arc<KeyLog>>> {
    let mut k = KeyLog::default();
    for path in &a.keylog {
        k.read_file(path)
            .with_context(|| format!("cannot read key log {}", path.display()))?;
        if k.is_empty() {
            eprintln!(
                "myrr: warning: no TLS secrets in key log {}",
                path.display()
            );
        }
    }
    for path in &a.files {
        // An unreadable capture file is reported by the packet reader.
        let _ = k.read_pcapng_secrets(path);
    }
    for b in &k.bad {
        eprintln!("myrr: key log: {b}");
    }
    if k.bad_lines > k.bad.len() as u64 {
        eprintln!(
            "myrr: key log: {} more lines not used",
            k.bad_lines - k.bad.len() as u64
        );
    }
    Ok(
        (k.lines_used + k.bad_lines + k.secrets_blocks > 0 || !a.keylog.is_empty())
            .then(|| Arc::new(k)),
    )
}

fn server_view(
    a: &Args,
) -> (
    Option<Arc<Mutex<dyn myrr_capture::backfill::ServerView>>>,
    BackfillReport,
) {
    let mut report = BackfillReport::default();
    if let Some(url) = &a.server {
        match crate::server_view::Monitor::connect(url).and_then(LiveView::new) {
            Ok(v) => {
                let s = v.snapshot();
                report.from = Some(format!("server {}", s.server));
                report.notes = s.notes.clone();
                report.connections = s.connections.len();
                report.own_client = v.client();
                return (Some(Arc::new(Mutex::new(v))), report);
            }
            Err(e) => report.notes.push(format!(
                "no backfill: {e:#}; sessions already open are captured without it"
            )),
        }
    } else if let Some(path) = &a.backfill {
        match crate::server_view::read_file(path) {
            Ok(s) => {
                report.from = Some(format!("file {}", path.display()));
                report.notes = s.notes.clone();
                report.connections = s.connections.len();
                return (Some(Arc::new(Mutex::new(SnapshotView::new(s)))), report);
            }
            Err(e) => report.notes.push(format!("no backfill: {e:#}")),
        }
    }
    (None, report)
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    if a.ports.is_empty() {
        bail!("give at least one --port");
    }
    let filter = a.filter.clone().unwrap_or_else(|| {
        let ports: Vec<String> = a.ports.iter().map(|p| format!("port {p}")).collect();
        format!("tcp and ({})", ports.join(" or "))
    });
    let source_desc = match &a.interface {
        Some(i) => format!("interface {i}"),
        None => a
            .files
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(","),
    };
    let mut options = vec![
        (
            "ports".into(),
            a.ports
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(","),
        ),
        ("filter".into(), filter.clone()),
    ];
    // A live source is opened first: without the rights to capture, say so and write nothing.
    let stop = Arc::new(AtomicBool::new(false));
    let mut source: Box<dyn PacketSource> = match &a.interface {
        Some(iface) => Box::new(source::open_live(
            &LiveOptions {
                iface: iface.clone(),
                filter: filter.clone(),
                buffer: a.buffer_mib.saturating_mul(1 << 20),
                duration: a.duration,
            },
            stop.clone(),
        )?),
        None => Box::new(PcapFiles::new(a.files.clone(), a.filter.clone())),
    };
    // The probe before the server's view: a TLS session the view describes is then read.
    let probe_report = Arc::new(Mutex::new(ProbeReport::default()));
    let feed = tls_probe(&a, &probe_report)?;
    {
        let r = probe_report.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = &r.note {
            eprintln!("myrr: tls probe: {n}");
        }
        if let Some(at) = &r.attached {
            eprintln!("myrr: tls probe: reading TLS sessions of {at}");
            options.push(("tls_probe".into(), at.clone()));
        }
    }
    // Read after the source is open: what the server held before this moment is in the view,
    // what comes after is in the capture.
    let (view, backfill) = server_view(&a);
    for n in &backfill.notes {
        eprintln!("myrr: backfill: {n}");
    }
    if let Some(from) = &backfill.from {
        options.push(("backfill".into(), from.clone()));
    }
    let keylog = if a.interface.is_some() {
        None
    } else {
        keylog(&a)?
    };
    if let Some(k) = &keylog {
        options.push((
            "keylog".into(),
            format!("{} TLS sessions' secrets", k.sessions()),
        ));
    }
    let header = Header::new(RunKind::Capture, source_desc, options);
    let mut writer = RecordingWriter::create(&a.output, &header)
        .with_context(|| format!("cannot create {}", a.output.display()))?;
    if let Some(iface) = &a.interface {
        signal_hook::flag::register(signal_hook::consts::SIGINT, stop.clone())?;
        signal_hook::flag::register(signal_hook::consts::SIGTERM, stop.clone())?;
        eprintln!("myrr: capturing on {iface} ({filter}); Ctrl-C to stop");
    }
    let config = CaptureConfig {
        server_ports: a.ports.clone(),
        max_packet: a.max_packet_mib << 20,
        server_view: view,
        own_clients: backfill.own_client.into_iter().collect(),
        keylog: keylog.clone(),
        row_samples: !a.no_row_samples,
        ..CaptureConfig::default()
    };
    let summary = match feed {
        Some(feed) => myrr_capture::run_with_plaintext(config, source.as_mut(), feed, &mut writer),
        None => myrr_capture::run(config, source.as_mut(), &mut writer),
    }
    .with_context(|| format!("writing {}", a.output.display()))?;
    for e in &summary.source_errors {
        eprintln!("myrr: {e}");
    }
    writer
        .finish()
        .with_context(|| format!("writing {}", a.output.display()))?;
    let probe = std::mem::take(&mut *probe_report.lock().unwrap_or_else(|p| p.into_inner()));
    print_summary(
        &summary.stats,
        summary.events,
        &a.output,
        a.json,
        &backfill,
        &probe,
        keylog.as_deref(),
    );
    Ok(if summary.source_errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print_summary(
    s: &Stats,
    events: u64,
    out: &std::path::Path,
    json: bool,
    backfill: &BackfillReport,
    probe: &ProbeReport,
    keylog: Option<&KeyLog>,
) {
    let t = &s.tls;
    let d = &s.decode;
    let ps = probe.stats.clone().unwrap_or_default();
    let warning = crate::util::unprepared_warning(
        d.executes_unprepared,
        d.exchanges,
        backfill.from.is_some(),
    );
    let anomalies: Vec<_> = d
        .anomalies
        .iter()
        .map(|a| {
            serde_json::json!({
                "what": a.anomaly.to_string(),
                "session": a.session,
                "direction": match a.direction {
                    myrr_recording::Direction::ClientToServer => "client",
                    myrr_recording::Direction::ServerToClient => "server",
                },
                "offset": a.offset,
            })
        })
        .collect();
    if json {
        let v = serde_json::json!({
            "output": out.display().to_string(),
            "events": events,
            "packets": s.packets,
            "bytes": s.bytes,
            "flows": s.flows,
            "streams_restarted": s.streams_restarted,
            "sessions": {
                "full": d.sessions_full,
                "mid_stream": d.sessions_mid_stream,
                "encrypted": d.sessions_encrypted,
                "tls_read": d.sessions_tls_read,
                "compressed_detected": d.compression_detected,
                "logins_failed": d.logins_failed,
                "handshakes_aborted": d.handshakes_aborted,
                "backfilled": d.sessions_backfilled,
            },
            "backfill": {
                "from": backfill.from,
                "connections": backfill.connections,
                "notes": backfill.notes,
            },
            "tls": {
                "keylog": keylog.map(|k| serde_json::json!({
                    "sessions": k.sessions(),
                    "lines_used": k.lines_used,
                    "secrets_blocks": k.secrets_blocks,
                    "bad_lines": k.bad_lines,
                    "bad": k.bad.iter().map(|b| serde_json::json!({
                        "source": b.source,
                        "line": b.line,
                        "why": b.kind.to_string(),
                    })).collect::<Vec<_>>(),
                })),
                "sessions_decrypted": t.sessions_decrypted,
                "sessions_without_keys": t.sessions_without_keys,
                "sessions_unsupported": t.sessions_unsupported,
                "sessions_failed": t.sessions_failed,
                "unsupported": t.unsupported,
                "failures": t.failures,
                "suites": t.suites,
                "records_decrypted": t.records_decrypted,
                "records_skipped": t.records_skipped,
                "plaintext_bytes": t.plaintext_bytes,
                "key_updates": t.key_updates,
                "gaps_passed": t.gaps_passed,
                "records_lost_in_gaps": t.records_lost_in_gaps,
            },
            "executes_unprepared": d.executes_unprepared,
            "inferred": {
                "statements": s.inferred.statements,
                "executes": s.inferred.executes,
                "ambiguous": s.inferred.ambiguous,
                "forgotten": s.inferred.forgotten,
                "types_from_sql": s.inferred.types_from_sql,
            },
            "row_samples": {
                "kept": s.row_samples,
                "shapes_over_limit": s.row_sample_shapes_over_limit,
            },
            "warnings": warning.iter().collect::<Vec<_>>(),
            "exchanges": d.exchanges,
            "commands": d.commands,
            "gaps": d.gaps,
            "gap_bytes": d.gap_bytes,
            "retransmitted_bytes": s.retransmitted_bytes,
            "responses_missing": d.responses_missing,
            "kernel_drops": s.kernel_drops,
            "interface_drops": s.interface_drops,
            "tls_probe": {
                "attached": probe.attached,
                "note": probe.note,
                "keys": probe.keys,
                "secrets": s.tls_secrets,
                "secrets_unused": s.tls_secrets_unused,
                "secrets_unattributed": ps.secrets_unattributed,
                "sessions_keyed": t.sessions_keyed_live,
                "sessions_keys_late": t.sessions_keys_late,
                "existing_connections": ps.existing_connections,
                "data_probes_detached_after_s": ps.data_probes_detached_after_s,
                "tls_sessions": ps.sessions,
                "chunks": s.tls_plaintext_chunks,
                "bytes": s.tls_plaintext_bytes,
                "lost_records": ps.lost_records,
                "lost_bytes": ps.lost_bytes,
                "unattributed_bytes": ps.unattributed_bytes,
                "unused_bytes": s.tls_plaintext_unused,
                "gap_bytes": s.tls_plaintext_lost,
            },
            "undecodable": d.undecodable,
            "anomalies": anomalies,
            "undecodable_packets": s.undecodable_packets,
            "non_tcp_packets": s.non_tcp_packets,
            "other_port_packets": s.other_port_packets,
            "own_packets": s.own_packets,
            "unsolicited_packets": d.unsolicited_packets,
        });
        eprintln!("{v}");
        return;
    }
    eprintln!("myrr: wrote {} ({events} events)", out.display());
    eprintln!(
        "  packets {}  bytes {}  flows {}",
        s.packets, s.bytes, s.flows
    );
    if s.streams_restarted > 0 {
        eprintln!(
            "  new connections on a reused client port, SYN not captured: {}",
            s.streams_restarted
        );
    }
    eprintln!(
        "  sessions: {} full, {} mid-stream, {} encrypted (TLS, not decodable), {} failed logins",
        d.sessions_full, d.sessions_mid_stream, d.sessions_encrypted, d.logins_failed
    );
    if d.sessions_tls_read > 0 {
        eprintln!("  TLS sessions read in plaintext: {}", d.sessions_tls_read);
    }
    if let Some(k) = keylog {
        eprintln!(
            "  TLS with key log ({} sessions' secrets, {} lines not used): {} decrypted, {} \
             without keys, {} unsupported, {} failed",
            k.sessions(),
            k.bad_lines,
            t.sessions_decrypted,
            t.sessions_without_keys,
            t.sessions_unsupported,
            t.sessions_failed
        );
        for (suite, n) in &t.suites {
            eprintln!("    {suite}: {n}");
        }
        for (what, n) in &t.unsupported {
            eprintln!("    not supported: {what} ×{n}");
        }
        if !t.failures.is_empty() {
            let f: Vec<String> = t.failures.iter().map(|(k, v)| format!("{k} {v}")).collect();
            eprintln!("    reading stopped: {}", f.join(", "));
        }
        if t.key_updates > 0 {
            eprintln!("    key updates followed: {}", t.key_updates);
        }
        if t.gaps_passed > 0 {
            eprintln!(
                "    TCP gaps passed over: {} ({} records lost in them)",
                t.gaps_passed, t.records_lost_in_gaps
            );
        }
    }
    if d.handshakes_aborted > 0 {
        eprintln!(
            "  connections greeted but never logged in (no session): {}",
            d.handshakes_aborted
        );
    }
    if let Some(from) = &backfill.from {
        eprintln!(
            "  backfilled from {from}: {} of {} mid-stream sessions ({} connections in the view)",
            d.sessions_backfilled, d.sessions_mid_stream, backfill.connections
        );
    }
    let i = &s.inferred;
    if i.types_from_sql > 0 {
        eprintln!(
            "  EXECUTEs whose types were bound before the capture, read with the types the \
             same SQL bound elsewhere: {}",
            i.types_from_sql
        );
    }
    if i.statements + i.ambiguous > 0 {
        eprintln!(
            "  inferred from other sessions' PREPAREs: {} statements, {} EXECUTEs; {} EXECUTEs \
             left unprepared because more than one PREPARE agreed",
            i.statements, i.executes, i.ambiguous
        );
    }
    if s.row_samples + s.row_sample_shapes_over_limit > 0 {
        eprintln!(
            "  rows kept of {} answers (the first of each statement shape){}",
            s.row_samples,
            if s.row_sample_shapes_over_limit > 0 {
                format!(
                    "; {} answers of shapes past the first {} not kept",
                    s.row_sample_shapes_over_limit,
                    myrr_wire::conn::SHAPES_MAX
                )
            } else {
                String::new()
            }
        );
    }
    if let Some(w) = &warning {
        eprintln!("  WARNING: {w}");
    }
    let cmds: Vec<String> = d.commands.iter().map(|(k, v)| format!("{k} {v}")).collect();
    eprintln!(
        "  exchanges {}: {}",
        d.exchanges,
        if cmds.is_empty() {
            "-".into()
        } else {
            cmds.join(", ")
        }
    );
    eprintln!(
        "  gaps {} ({} bytes lost), retransmitted {} bytes, responses missing {}",
        d.gaps, d.gap_bytes, s.retransmitted_bytes, d.responses_missing
    );
    if s.kernel_drops + s.interface_drops > 0 {
        eprintln!(
            "  DROPPED by kernel {} / interface {}",
            s.kernel_drops, s.interface_drops
        );
    } else {
        eprintln!("  drops 0");
    }
    if let Some(at) = &probe.attached {
        eprintln!(
            "  tls probe ({at}): {} TLS sessions, {} plaintext bytes decoded",
            ps.sessions, s.tls_plaintext_bytes
        );
        if let Some(k) = &probe.keys {
            eprintln!("    {k}");
        }
        if s.tls_secrets + s.tls_secrets_unused + ps.secrets_unattributed > 0 {
            eprintln!(
                "    read with their secrets: {} sessions ({} decrypted, {} whose secrets came \
                 late, {} without keys, {} failed); secrets not used: {} (no handshake in the \
                 capture), {} (socket not found or not the server's port)",
                t.sessions_keyed_live + t.sessions_keys_late,
                t.sessions_decrypted,
                t.sessions_keys_late,
                t.sessions_without_keys,
                t.sessions_failed,
                s.tls_secrets_unused,
                ps.secrets_unattributed
            );
        }
        if t.gaps_passed > 0 {
            eprintln!(
                "    TCP gaps passed over in TLS sessions: {} ({} records lost in them)",
                t.gaps_passed, t.records_lost_in_gaps
            );
        }
        if let Some(after) = ps.data_probes_detached_after_s {
            eprintln!(
                "    data probes detached after {after:.1} s (the {} connections open at the \
                 start had closed)",
                ps.existing_connections
            );
        }
        let lost = ps.lost_bytes + ps.unattributed_bytes + s.tls_plaintext_unused;
        if lost > 0 || ps.lost_records > 0 {
            eprintln!(
                "  tls probe LOST: {} bytes in {} records (ring buffer full or a call too large), \
                 {} bytes of sockets not found, {} bytes of sessions not decodable from plaintext",
                ps.lost_bytes, ps.lost_records, ps.unattributed_bytes, s.tls_plaintext_unused
            );
        } else {
            eprintln!("  tls probe drops 0");
        }
    }
    let other = s.non_tcp_packets + s.other_port_packets + s.undecodable_packets;
    if other > 0 {
        eprintln!(
            "  ignored packets: {} not TCP/IP, {} other ports, {} unparsable frames",
            s.non_tcp_packets, s.other_port_packets, s.undecodable_packets
        );
    }
    for (what, n) in &d.undecodable {
        eprintln!("  could not decode: {what} ×{n}");
    }
    for a in d.anomalies.iter().take(5) {
        eprintln!("    at {a}");
    }
    if d.anomalies.len() > 5 {
        eprintln!(
            "    … {} more places (all in --json, the first {})",
            d.anomalies.len() - 5,
            myrr_wire::ANOMALIES_KEPT
        );
    }
    if d.unsolicited_packets > 0 {
        eprintln!(
            "  server packets with no command waiting: {}",
            d.unsolicited_packets
        );
    }
}
