//! `command::decode` and `command::encode`: a command packet's payload decoded under every
//! context, and what decodes encoded again.
//!
//! Input: `flags:u8 params:u8 payload...`
//!   flags bit 0: CLIENT_SECURE_CONNECTION; bit 1: CLIENT_QUERY_ATTRIBUTES; bit 2: the EXECUTE's
//!   statement is known, with `params` parameters (no types bound yet)
//!
//! Checks: no panic; a decoded command that a replay can send (everything but CHANGE_USER)
//! encodes to bytes that decode, on a connection without query attributes whose decoder has
//! seen the same statement, to a command that encodes to the same bytes again (encoding
//! normalises: query attributes dropped, one canonical width per value). Not checked: an
//! EXECUTE decoded under query attributes (see below; fuzz/regressions/command has two).
#![no_main]

use libfuzzer_sys::fuzz_target;
use myrr_recording::Command;
use myrr_wire::command::{decode, encode, DecodeContext, Statement};

fuzz_target!(|data: &[u8]| {
    myrr_fuzz::run(|| one(data));
});

fn one(data: &[u8]) {
    let [flags, params, payload @ ..] = data else {
        return;
    };
    let statement = |_: ()| Statement {
        params: *params as u16 % 16,
        types: vec![],
    };
    let mut first = statement(());
    let cx = DecodeContext {
        secure_connection: flags & 1 != 0,
        query_attributes: flags & 2 != 0,
        statement: (flags & 4 != 0).then_some(&mut first),
    };
    let Some(cmd) = decode(payload, cx) else {
        return;
    };
    if matches!(cmd, Command::ChangeUser { .. }) {
        return;
    }
    // An EXECUTE decoded under query attributes is not compared: its parameter count may come
    // from the packet rather than from the statement, and a block left undecoded (raw) is in
    // that connection's format, not in the format of the connection a replay opens (without
    // query attributes). Known: such an EXECUTE is re-sent as decoded (README).
    if flags & 2 != 0 && matches!(cmd, Command::Execute { .. }) {
        return;
    }
    let mut out = Vec::new();
    encode(&cmd, None, &mut Vec::new(), &mut out).expect("a decoded command encodes");
    let mut again = statement(());
    let cx = DecodeContext {
        secure_connection: flags & 1 != 0,
        query_attributes: false,
        statement: (flags & 4 != 0).then_some(&mut again),
    };
    let redecoded = decode(&out, cx).expect("an encoded command decodes");
    let mut out2 = Vec::new();
    encode(&redecoded, None, &mut Vec::new(), &mut out2).expect("it encodes again");
    assert_eq!(out, out2, "{cmd:?} → {redecoded:?}");
}
