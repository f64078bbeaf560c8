//! Damaged recordings: refused unless asked, and a block that does not decompress ends the
//! replay with its offset.

use crate::common::*;
use crate::{recorded, serial, spawn_replay, steady_recording};

#[test]
fn damaged_recording_is_refused_unless_asked() {
    let _serial = serial();
    let db = db();
    let dir = tempdir();
    let rec = recorded();
    let bytes = std::fs::read(rec).unwrap();
    let cut = dir.join("cut.myrr");
    std::fs::write(&cut, &bytes[..bytes.len() - 50]).unwrap();
    let o = myrr()
        .arg("replay")
        .arg(&cut)
        .args(["--target", &db.candidate_url, "-o"])
        .arg(dir.join("x.myrr"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("cut.myrr")
            && err.contains("truncated at byte")
            && err.contains("--ignore-damage"),
        "{err}"
    );
    let out = dir.join("partial.myrr");
    let o = myrr()
        .arg("replay")
        .arg(&cut)
        .args([
            "--target",
            &db.candidate_url,
            "--speed",
            "max",
            "--ignore-damage",
            "-o",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let n = exchanges_by_key(&read_events(&out)).len();
    assert!(n > 0, "the readable part was replayed");
}

/// A block whose checksum is right but whose contents do not decompress (a writer's bug, not
/// a torn file) passes the pre-scan, which checks checksums only: the replay runs up to it,
/// then says where the damage is and exits with 1, the exchanges before it written.
#[test]
fn a_block_that_does_not_decompress_ends_the_replay_with_its_offset() {
    let _serial = serial();
    let db = db();
    let dir = tempdir();
    let rec = dir.join("many.myrr");
    steady_recording(&rec, "sbtest", 1, 1, 20_000, |i| format!("SELECT {i}"));
    let mut bytes = std::fs::read(&rec).unwrap();
    let blocks = myrr_recording::block_offsets(&bytes);
    assert!(blocks.len() >= 4, "{} blocks", blocks.len());
    let bad = blocks[blocks.len() / 2];
    let len = u32::from_le_bytes(bytes[bad..bad + 4].try_into().unwrap()) as usize;
    let payload = bad + 8..bad + 8 + len;
    // Keep the zstd frame header; scramble what follows.
    for b in &mut bytes[payload.start + 12..payload.end] {
        *b = b.wrapping_mul(31).wrapping_add(7);
    }
    let crc = crc32fast::hash(&bytes[payload]);
    bytes[bad + 4..bad + 8].copy_from_slice(&crc.to_le_bytes());
    let broken = dir.join("broken.myrr");
    std::fs::write(&broken, &bytes).unwrap();

    let out = dir.join("broken.out.myrr");
    let child = spawn_replay(
        &broken,
        &db.candidate_url,
        &out,
        &["--speed", "max", "--json"],
    );
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let damage = summary["damage"].as_str().expect("damage reported");
    assert!(
        damage.contains("broken.myrr") && damage.contains(&bad.to_string()),
        "{damage}"
    );
    let n = exchanges_by_key(&read_events(&out)).len();
    assert!(
        n > 0 && n < 20_000,
        "the exchanges before the damaged block are replayed, none after: {n}"
    );
}
