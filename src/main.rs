//! `myrr`: MySQL record & replay. This binary only turns arguments into library calls, prints,
//! and maps outcomes to exit codes.

#![recursion_limit = "256"]

mod analyze_cmd;
#[cfg(feature = "capture")]
mod capture_cmd;
mod inspect;
mod replay_cmd;
#[cfg(feature = "capture")]
mod server_view;
mod util;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc: the replay client allocates and frees per exchange on one thread, and glibc's
/// malloc was about 8 % of its CPU. Built without transparent huge pages (`no_thp`): each
/// replay thread's heap otherwise faulted in and zeroed 2 MiB pages of its own (64 sessions:
/// 167 MiB peak RSS and 5 % of the CPU in `clear_page`; without: 40 MiB).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "myrr",
    version,
    about = "MySQL record & replay: capture traffic off the wire, replay it against a candidate server, and compare"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

// Parsed once per process: the variants' sizes do not matter (without `capture`, `replay`'s
// arguments are by far the largest).
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Cmd {
    /// Record MySQL traffic from pcap/pcapng files or a live interface into a .myrr recording.
    #[cfg(feature = "capture")]
    Capture(capture_cmd::Args),
    /// Print every event of a recording (table for people, jsonl for tools).
    Inspect(inspect::Args),
    /// Re-issue recorded sessions against a candidate server, paced, scaled or sharded.
    Replay(replay_cmd::Args),
    /// Compare two runs: latency per query shape, answer differences, and a pass/fail verdict.
    Analyze(analyze_cmd::Args),
    /// Print the fingerprint (query shape) of each SQL statement read from stdin.
    Fingerprint(analyze_cmd::FingerprintArgs),
    /// Save the server's view of its open connections (users, databases, prepared
    /// statements) for `capture -r F.pcap --backfill FILE`.
    #[cfg(feature = "capture")]
    Snapshot(server_view::SnapshotArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        #[cfg(feature = "capture")]
        Cmd::Capture(a) => capture_cmd::run(a),
        Cmd::Inspect(a) => inspect::run(a),
        Cmd::Replay(a) => replay_cmd::run(a),
        Cmd::Analyze(a) => analyze_cmd::run(a),
        Cmd::Fingerprint(a) => analyze_cmd::fingerprint(a),
        #[cfg(feature = "capture")]
        Cmd::Snapshot(a) => server_view::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("myrr: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
