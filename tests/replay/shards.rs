//! One replay over many machines: the Kubernetes Indexed Job in deploy/ runs its shards with
//! `--start-at`, so that shards whose processes start apart still begin the recorded timeline
//! together. The manifests' argument lists are run here as they are (only the variables the
//! manifest's environment sets are given this machine's values), so they cannot drift from
//! the CLI.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use crate::common::*;
use crate::{serial, steady_recording};
use myrr_recording::Event;
use yaml_rust2::{Yaml, YamlLoader};

const SESSIONS: usize = 8;
const STATEMENTS: u64 = 30;
const EVERY_US: u64 = 50_000;
/// How far apart the shard processes are started.
const STAGGER: Duration = Duration::from_millis(400);

fn manifest(name: &str) -> Yaml {
    let path = root().join("deploy").join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    let mut docs = YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(docs.len(), 1, "{name}: one document");
    let doc = docs.remove(0);
    assert_eq!(doc["kind"].as_str(), Some("Job"), "{name}");
    doc
}

fn container(job: &Yaml) -> &Yaml {
    let c = &job["spec"]["template"]["spec"]["containers"];
    assert_eq!(c.as_vec().map(Vec::len), Some(1), "one container");
    &c[0]
}

fn strings(y: &Yaml) -> Vec<String> {
    y.as_vec()
        .unwrap_or_else(|| panic!("not a list: {y:?}"))
        .iter()
        .map(|a| match a {
            Yaml::String(s) => s.clone(),
            Yaml::Integer(i) => i.to_string(),
            other => panic!("argument {other:?} is not a string"),
        })
        .collect()
}

/// Kubernetes' `$(VAR)` expansion of an argument. Every variable must be known: one the test
/// does not know is one the manifest does not set.
fn expand(arg: &str, vars: &HashMap<&str, String>) -> String {
    let mut out = String::new();
    let mut rest = arg;
    while let Some(i) = rest.find("$(") {
        out.push_str(&rest[..i]);
        let end = rest[i..].find(')').expect("unclosed $(") + i;
        let name = &rest[i + 2..end];
        out.push_str(
            vars.get(name)
                .unwrap_or_else(|| panic!("{arg}: $({name}) is set by nobody")),
        );
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// The Job's replay, its shard count, and the environment it sets (values given here).
struct ReplayJob {
    args: Vec<String>,
    shards: u32,
    env: HashSet<String>,
}

fn replay_job() -> ReplayJob {
    let job = manifest("replay-job.yaml");
    let spec = &job["spec"];
    assert_eq!(spec["completionMode"].as_str(), Some("Indexed"));
    let n = spec["completions"].as_i64().expect("completions");
    assert_eq!(
        spec["parallelism"].as_i64(),
        Some(n),
        "all shards run at once"
    );
    let c = container(&job);
    assert_eq!(c["workingDir"].as_str(), Some("/data"));
    let mounts = c["volumeMounts"].as_vec().unwrap();
    assert!(
        mounts
            .iter()
            .any(|m| m["mountPath"].as_str() == Some("/data")),
        "the runs must land on the volume"
    );
    let args = strings(&c["args"]);
    let after = |flag: &str| {
        let i = args.iter().position(|a| a == flag);
        i.map(|i| args[i + 1].clone())
            .unwrap_or_else(|| panic!("{flag} missing: {args:?}"))
    };
    assert_eq!(after("--shard"), format!("$(JOB_COMPLETION_INDEX)/{n}"));
    assert_eq!(after("--start-at"), "$(START_AT)");
    assert!(
        after("-o").contains("$(JOB_COMPLETION_INDEX)"),
        "one run per shard"
    );
    let env = c["env"]
        .as_vec()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect();
    ReplayJob {
        args,
        shards: n as u32,
        env,
    }
}

/// Starts one process per shard, `STAGGER` apart, with the Job's argument list (less the
/// `--start-at` pair when `start_at` is None), in `dir`; waits for all.
fn run_shards(dir: &Path, job: &ReplayJob, start_at: Option<&str>) -> Vec<PathBuf> {
    let db = db();
    let mut args = job.args.clone();
    if start_at.is_none() {
        let i = args.iter().position(|a| a == "--start-at").unwrap();
        args.drain(i..i + 2);
    }
    let mut children = vec![];
    for k in 0..job.shards {
        let mut vars: HashMap<&str, String> = HashMap::new();
        // Set by Kubernetes in an Indexed Job's pods.
        vars.insert("JOB_COMPLETION_INDEX", k.to_string());
        for name in &job.env {
            let value = match name.as_str() {
                "TARGET_URL" => db.candidate_url.clone(),
                "START_AT" => start_at.unwrap_or("unused").to_string(),
                "MYRR_PASSWORD" => "myrr".to_string(),
                other => panic!("the manifest sets {other}, which this test does not know"),
            };
            vars.insert(name.as_str(), value);
        }
        let argv: Vec<String> = args.iter().map(|a| expand(a, &vars)).collect();
        children.push(
            Command::new(env!("CARGO_BIN_EXE_myrr"))
                .args(&argv)
                .current_dir(dir)
                .env("MYRR_PASSWORD", &vars["MYRR_PASSWORD"])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        std::thread::sleep(STAGGER);
    }
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert!(
            o.status.success(),
            "shard failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    (0..job.shards)
        .map(|k| dir.join(format!("runs/shard-{k}.myrr")))
        .collect()
}

/// Per shard: its sessions, and where it put the recorded timeline's origin on the wall clock
/// (each exchange's scheduled start less its recorded offset; µs since the epoch), with the
/// start lags of its exchanges.
struct ShardRun {
    sessions: Vec<u64>,
    anchors: Vec<u64>,
    lags: Vec<u64>,
}

fn read_shard(path: &Path, recorded: &HashMap<(u64, u64), u64>) -> ShardRun {
    let mut r = ShardRun {
        sessions: vec![],
        anchors: vec![],
        lags: vec![],
    };
    for e in read_events(path) {
        match e {
            Event::SessionStart(s) => r.sessions.push(s.session),
            Event::Exchange(x) => {
                let offset = recorded[&(x.session, x.seq)];
                let scheduled = x.scheduled_us.unwrap();
                r.anchors.push(scheduled - offset);
                r.lags.push(x.start_us.saturating_sub(scheduled));
            }
            _ => {}
        }
    }
    r
}

/// The recording in `dir/prod.myrr`, and each exchange's offset from its first instant.
fn prod(dir: &Path) -> HashMap<(u64, u64), u64> {
    std::fs::create_dir_all(dir.join("runs")).unwrap();
    let rec = dir.join("prod.myrr");
    steady_recording(&rec, "sbtest", SESSIONS, EVERY_US, STATEMENTS, |i| {
        format!("SELECT {i}")
    });
    let events = read_events(&rec);
    let origin = events
        .iter()
        .filter_map(|e| match e {
            Event::SessionStart(s) => Some(s.start_us),
            _ => None,
        })
        .min()
        .unwrap();
    events
        .iter()
        .filter_map(|e| match e {
            Event::Exchange(x) => Some(((x.session, x.seq), x.start_us - origin)),
            _ => None,
        })
        .collect()
}

fn spread(runs: &[ShardRun]) -> u64 {
    let firsts: Vec<u64> = runs
        .iter()
        .map(|r| *r.anchors.iter().min().unwrap())
        .collect();
    firsts.iter().max().unwrap() - firsts.iter().min().unwrap()
}

#[test]
fn the_job_manifest_replays_every_session_once_with_its_shards_together() {
    let _serial = serial();
    let dir = tempdir();
    let recorded = prod(&dir);
    let job = replay_job();
    assert_eq!(job.shards, 4);
    // Far enough ahead for every shard to be started (they are 0.4 s apart).
    let start_at = SystemTime::now() + STAGGER * job.shards + Duration::from_secs(1);
    let start_at_text = humantime::format_rfc3339_millis(start_at).to_string();
    let runs: Vec<ShardRun> = run_shards(&dir, &job, Some(&start_at_text))
        .iter()
        .map(|p| read_shard(p, &recorded))
        .collect();
    // Every session exactly once over the shards.
    let mut all: Vec<u64> = runs.iter().flat_map(|r| r.sessions.clone()).collect();
    all.sort();
    let want: Vec<u64> = (0..SESSIONS as u64).collect();
    let got_set: HashSet<u64> = all.iter().copied().collect();
    assert_eq!(all.len(), SESSIONS, "sessions over the shards: {all:?}");
    assert_eq!(got_set.len(), SESSIONS, "{all:?}");
    assert!(
        runs.iter().all(|r| !r.sessions.is_empty()),
        "an empty shard"
    );
    let exchanges: usize = runs.iter().map(|r| r.anchors.len()).sum();
    assert_eq!(exchanges as u64, SESSIONS as u64 * STATEMENTS, "{want:?}");
    // One timeline: every exchange of every shard scheduled at START_AT + its recorded
    // offset.
    let start_us = start_at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64;
    let start_us = start_us / 1000 * 1000; // the text keeps milliseconds
    for (k, r) in runs.iter().enumerate() {
        for &a in &r.anchors {
            assert!(
                a.abs_diff(start_us) <= 2_000,
                "shard {k}: an exchange anchored {} µs off --start-at",
                a as i64 - start_us as i64
            );
        }
    }
    assert!(spread(&runs) <= 2_000, "shards {} µs apart", spread(&runs));
    // Start lags within the single-process bounds (tests/replay/pacing.rs).
    let mut lags: Vec<u64> = runs.iter().flat_map(|r| r.lags.clone()).collect();
    lags.sort();
    let p99 = lags[lags.len() * 99 / 100];
    assert!(p99 <= 20_000, "start lag p99 {p99} µs");

    // The analyze step of deploy/: the shards as one candidate run.
    let analyze = strings(&container(&manifest("analyze-job.yaml"))["args"]);
    let o = Command::new(env!("CARGO_BIN_EXE_myrr"))
        .args(&analyze)
        .current_dir(&dir)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(matches!(o.status.code(), Some(0 | 1)), "analyze: {err}");
    let report = std::fs::read_to_string(dir.join("runs/report.html")).unwrap();
    assert!(report.contains("<svg"), "no chart in the report");
}

#[test]
fn without_start_at_shards_started_apart_replay_apart() {
    let _serial = serial();
    let dir = tempdir();
    let recorded = prod(&dir);
    let job = replay_job();
    let runs: Vec<ShardRun> = run_shards(&dir, &job, None)
        .iter()
        .map(|p| read_shard(p, &recorded))
        .collect();
    // Each shard's timeline begins when its process does: the last is (shards - 1) × 0.4 s
    // behind the first, and production's load shape is gone.
    let drift = spread(&runs);
    let stagger = STAGGER.as_micros() as u64 * u64::from(job.shards - 1);
    assert!(
        drift >= stagger * 3 / 4,
        "shards only {drift} µs apart, started {stagger} µs apart"
    );
}

#[test]
fn a_start_at_long_past_is_refused_and_a_bad_one_named() {
    let dir = tempdir();
    let rec = dir.join("r.myrr");
    steady_recording(&rec, "sbtest", 1, 1000, 2, |i| format!("SELECT {i}"));
    for (at, says) in [
        ("2020-01-01T00:00:00Z", "was"),
        ("yesterday", "not an RFC 3339 time"),
        ("+soon", "not a duration"),
    ] {
        let o = crate::replay_command(
            &rec,
            "mysql://u@127.0.0.1:1",
            &dir.join("o.myrr"),
            &["--start-at", at],
        )
        .output()
        .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(says), "{at}: {err}");
    }
}

/// The replay image's binary (deploy/Dockerfile's default target) is built without the
/// `capture` feature, and then depends on neither libpcap nor libbpf.
#[test]
fn the_replay_image_needs_no_capture_library() {
    let dockerfile = std::fs::read_to_string(root().join("deploy/Dockerfile")).unwrap();
    let builds: Vec<&str> = dockerfile
        .lines()
        .filter(|l| l.contains("cargo build"))
        .collect();
    assert!(
        builds[0].contains("--no-default-features") && builds[0].contains("--locked"),
        "the replay image's build: {}",
        builds[0]
    );
    let tree = |extra: &[&str]| {
        let o = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args([
                "tree",
                "--offline",
                "-p",
                "myrr",
                "-e",
                "normal",
                "--prefix",
                "none",
            ])
            .args(extra)
            .current_dir(root())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let linked = |t: &str| {
        t.lines()
            .filter(|l| l.starts_with("pcap") || l.starts_with("libbpf"))
            .map(str::to_string)
            .collect::<HashSet<_>>()
    };
    assert!(
        !linked(&tree(&[])).is_empty(),
        "the capture build links libpcap"
    );
    assert_eq!(linked(&tree(&["--no-default-features"])), HashSet::new());
}

/// With --start-at, a ramp's steps follow one timetable: two shards started apart step up
/// together.
#[test]
fn the_steps_of_a_sharded_ramp_begin_together() {
    let _serial = serial();
    let db = db();
    let dir = tempdir();
    let rec = dir.join("prod.myrr");
    steady_recording(&rec, "sbtest", 4, 50_000, 20, |i| format!("SELECT {i}"));
    let start_at = SystemTime::now() + STAGGER + Duration::from_secs(1);
    let start_at = humantime::format_rfc3339_millis(start_at).to_string();
    let mut children = vec![];
    for k in 0..2 {
        let out = dir.join(format!("shard-{k}.myrr"));
        let shard = format!("{k}/2");
        children.push((
            out.clone(),
            crate::replay_command(
                &rec,
                &db.candidate_url,
                &out,
                &["--ramp", "1,2", "--shard", &shard, "--start-at", &start_at],
            )
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
        ));
        std::thread::sleep(STAGGER);
    }
    let mut starts = vec![];
    for (out, c) in children {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let phases: Vec<u64> = read_events(&out)
            .into_iter()
            .filter_map(|e| match e {
                Event::Phase(p) if p.end.is_none() => Some(p.at_us),
                _ => None,
            })
            .collect();
        assert_eq!(phases.len(), 2, "{}", out.display());
        starts.push(phases);
    }
    for (step, (a, b)) in starts[0].iter().zip(&starts[1]).enumerate() {
        let d = a.abs_diff(*b);
        assert!(
            d <= 5_000,
            "step {} begins {d} µs apart on the two shards",
            step + 1
        );
    }
    // Step 2 begins after step 1's scheduled length (the recording: ~1 s) and the pause.
    let gap = starts[0][1] - starts[0][0];
    assert!(
        (1_900_000..2_500_000).contains(&gap),
        "step 2 began {gap} µs after step 1"
    );
}
