//! `Framer`: one direction's bytes in arbitrary chunks, optionally switching to the compressed
//! protocol at a chosen byte offset; packets pulled after every push.
//!
//! Input: `flags:u8 chunk_seed:u8 switch_at:u32le stream...`
//!   flags bit 0: switch to compressed at `switch_at` (byte offset into `stream`)
//!   flags bit 1: tiny limit (256 bytes) instead of 1 MiB
//!   flags bit 2: call `set_compressed()` twice (must be idempotent)
//!
//! Checks: no panic; when neither run reports an error, the packets are the same whether the
//! stream is pushed whole or in chunks (framing must not depend on segmentation); `next_packet`
//! reaches `None` (no endless loop).
#![no_main]

use libfuzzer_sys::fuzz_target;
use myrr_wire::framing::Framer;

struct Run {
    packets: Vec<(u8, Vec<u8>)>,
    errors: usize,
}

fn pull(f: &mut Framer, run: &mut Run) {
    // Every call either consumes bytes or returns None/Err; bound it anyway.
    for _ in 0..1_000_000 {
        match f.next_packet() {
            Ok(Some(p)) => run.packets.push((p.seq, p.payload.to_vec())),
            Ok(None) => return,
            Err(_) => {
                run.errors += 1;
                f.reset();
            }
        }
    }
    panic!("next_packet did not reach None after 1e6 calls");
}

fn feed(f: &mut Framer, run: &mut Run, data: &[u8], chunks: &mut impl FnMut() -> usize) {
    let mut rest = data;
    while !rest.is_empty() {
        let n = chunks().min(rest.len());
        let (a, b) = rest.split_at(n);
        rest = b;
        if f.push(a, 0).is_err() {
            run.errors += 1;
            f.reset();
        }
        pull(f, run);
    }
}

fn run(stream: &[u8], switch: Option<usize>, twice: bool, limit: usize, mut chunks: impl FnMut() -> usize) -> Run {
    let mut f = Framer::new(limit);
    let mut run = Run { packets: vec![], errors: 0 };
    let (a, b) = match switch {
        Some(at) => stream.split_at(at.min(stream.len())),
        None => (stream, &[][..]),
    };
    feed(&mut f, &mut run, a, &mut chunks);
    if switch.is_some() {
        if f.set_compressed().is_err() {
            run.errors += 1;
            f.reset();
        }
        if twice && f.set_compressed().is_err() {
            run.errors += 1;
            f.reset();
        }
        assert!(f.is_compressed());
        pull(&mut f, &mut run);
        feed(&mut f, &mut run, b, &mut chunks);
    }
    run
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 6 {
        return;
    }
    let flags = data[0];
    let mut rng = data[1] as u32 | 0x9e37_7900;
    let switch_at = u32::from_le_bytes(data[2..6].try_into().unwrap()) as usize;
    let stream = &data[6..];
    let switch = (flags & 1 != 0).then_some(switch_at);
    let limit = if flags & 2 != 0 { 256 } else { 1 << 20 };
    let twice = flags & 4 != 0;

    let whole = run(stream, switch, twice, limit, || usize::MAX);
    let chunked = run(stream, switch, twice, limit, || {
        // xorshift32: chunk sizes 1..=64, sometimes larger
        rng ^= rng << 13;
        rng ^= rng >> 17;
        rng ^= rng << 5;
        if rng % 8 == 0 { 1 + (rng >> 8) as usize % 4096 } else { 1 + (rng >> 8) as usize % 64 }
    });
    if whole.errors == 0 && chunked.errors == 0 {
        assert_eq!(whole.packets, chunked.packets, "framing depends on segmentation");
    }
});
