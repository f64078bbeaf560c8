//! The scripts in benches/ work from a fresh clone: each builds everything it runs (the myrr
//! binary, examples) and has the tools it compares against (sysbench, tcpdump, tshark…)
//! installed or installable (scripts/setup.sh, apt-get). `--build-only` does exactly that and
//! exits before any benchmark; this runs it for every script. No database, nothing measured.
//!
//! The scripts build with MYRR_BENCH_CARGO_PROFILE, here `test` (in this target dir, mostly
//! built already by `cargo test`; a first run may compile a few crates again, as `cargo build
//! -p myrr` unifies features without the dev-dependencies) rather than release, which takes
//! many minutes on 2 cores. That this target dir already holds a myrr binary does not hide a
//! script that forgot to build one: the scripts run only executables their own `cargo build`
//! reported (`bench_built` in benches/lib/build.sh), and never a path under target/<profile>/
//! (checked below).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// The shell scripts under `dir` (and its subdirectories), sorted.
fn shell_scripts(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(shell_scripts(&path));
        } else if path.extension().is_some_and(|e| e == "sh") {
            found.push(path);
        }
    }
    found.sort();
    found
}

/// The benchmarks: the scripts directly in benches/ (benches/lib/ holds what they source).
fn bench_scripts() -> Vec<PathBuf> {
    let scripts: Vec<_> = shell_scripts(&root().join("benches"))
        .into_iter()
        .filter(|p| p.parent() == Some(&root().join("benches")))
        .collect();
    assert!(scripts.len() >= 5, "benches/*.sh: {scripts:?}");
    scripts
}

#[test]
fn every_bench_script_builds_what_it_runs() {
    let profile = std::env::var("MYRR_BENCH_CARGO_PROFILE").unwrap_or_else(|_| "test".into());
    let mut failures = Vec::new();
    for script in bench_scripts() {
        let out = Command::new("bash")
            .arg(&script)
            .arg("--build-only")
            .env("MYRR_BENCH_CARGO_PROFILE", &profile)
            .current_dir(root())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let name = script.file_name().unwrap().to_string_lossy();
        if !out.status.success() || !stderr.contains("--build-only: built and checked") {
            failures.push(format!(
                "bash benches/{name} --build-only: {}\n{stderr}",
                out.status
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A path such as target/release/myrr exists only once something has built it, and only for
/// that profile: a script must run what its own build reported instead.
#[test]
fn bench_scripts_name_no_build_output_path() {
    let mut found = Vec::new();
    for script in shell_scripts(&root().join("benches")) {
        let text = std::fs::read_to_string(&script).unwrap();
        for (i, line) in text.lines().enumerate() {
            if line.trim_start().starts_with('#') {
                continue;
            }
            for dir in ["release", "debug", "demo"] {
                if line.contains(&format!("target/{dir}/"))
                    || line.ends_with(&format!("target/{dir}"))
                {
                    found.push(format!("{}:{}: {line}", script.display(), i + 1));
                }
            }
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}
