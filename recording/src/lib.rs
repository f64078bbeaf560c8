//! myrr-recording: the event model, the `.myrr` file format and the canonical result digest.
//!
//! - [`event`]: [`Event`] and what it holds — [`SessionStart`], [`Exchange`] ([`Command`] +
//!   [`Response`]), [`Gap`], [`SessionEnd`].
//! - [`format`]: [`RecordingWriter`] and [`RecordingReader`], streaming, block-checksummed,
//!   zstd-compressed; damage is reported with the file and byte offset.
//! - [`digest`]: [`RowDigester`], the one function capture and replay use to digest result rows.
//! - [`sample`]: [`RowSample`], the bounded first rows of an answer a run keeps to show
//!   differences, and [`SampleBuilder`], which applies the bounds.
//!
//! This crate depends on no other workspace crate.

pub mod digest;
pub mod event;
pub mod format;
pub mod run;
pub mod sample;
mod shared_columns;

pub use digest::{columns_digest, ResultDigest, RowDigester, ValueRef};
pub use event::*;
pub use format::{
    block_offsets, read_full, run_session_id, FormatError, Header, RecordingReader,
    RecordingWriter, RunKind, Skim, WriteError, LEVEL_DEFAULT, LEVEL_FAST,
};
pub use run::{event_time, RunReader};
pub use sample::{render_value, RowSample, SampleBuilder, SampleReason};

#[cfg(test)]
mod tests;
