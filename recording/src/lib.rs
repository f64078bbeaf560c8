//! myrr-recording: the event model, the `.myrr` file format and the canonical result digest.
//!
//! - [`event`]: [`Event`] and what it holds — [`SessionStart`], [`Exchange`] ([`Command`] +
//!   [`Response`]), [`Gap`], [`SessionEnd`].
//! - [`format`]: [`RecordingWriter`] and [`RecordingReader`], streaming, block-checksummed,
//!   zstd-compressed; damage is reported with the file and byte offset.
//! - [`digest`]: [`RowDigester`], the one function capture and replay use to digest result rows.
//!
//! This crate depends on no other workspace crate.

pub mod digest;
pub mod event;
pub mod format;
pub mod run;
mod shared_columns;

pub use digest::{columns_digest, ResultDigest, RowDigester, ValueRef};
pub use event::*;
pub use format::{
    block_offsets, run_session_id, FormatError, Header, RecordingReader, RecordingWriter, RunKind,
    Skim, WriteError, LEVEL_DEFAULT, LEVEL_FAST,
};
pub use run::{event_time, RunReader};

#[cfg(test)]
mod tests;
