//! Builds the eBPF program (src/bpf/tlsprobe.bpf.c) with clang; the object is embedded in the
//! crate. clang and libbpf's headers come from `scripts/setup.sh` (Debian: clang, libbpf-dev).

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let src = "src/bpf/tlsprobe.bpf.c";
    println!("cargo:rerun-if-changed={src}");
    println!("cargo:rerun-if-env-changed=MYRR_CLANG");
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let clang = std::env::var("MYRR_CLANG").unwrap_or_else(|_| "clang".into());
    let arch = match std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("x86_64") => "x86",
        Ok(other) => panic!("myrr-tlsprobe: the eBPF probe supports x86_64 only, not {other}"),
        Err(_) => "x86",
    };
    // The probe, and the same for kernels without task storage for tracing programs (< 5.11).
    for (object, defines) in [
        ("tlsprobe.bpf.o", &[][..]),
        ("tlsprobe-by-tid.bpf.o", &["-DCALLS_BY_TID"][..]),
    ] {
        let status = Command::new(&clang)
            .args(["-O2", "-g", "-target", "bpf", "-Wall", "-Werror"])
            .arg(format!("-D__TARGET_ARCH_{arch}"))
            .args(defines)
            .arg("-I/usr/include/x86_64-linux-gnu")
            .args(["-c", src, "-o"])
            .arg(out_dir.join(object))
            .status();
        match status {
            Ok(s) if s.success() => {}
            Ok(s) => panic!("myrr-tlsprobe: {clang} failed to build {src} ({s})"),
            Err(e) => panic!(
                "myrr-tlsprobe: cannot run {clang} ({e}): the eBPF probe is built from C; \
                 install clang and libbpf's headers (scripts/setup.sh does: apt-get install clang libbpf-dev)"
            ),
        }
    }
}
