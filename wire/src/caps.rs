//! Capability flags of the handshake, defined once for the decoder and the replaying client.
//!
//! The lower 32 bits are MySQL's and MariaDB's common flags; MariaDB's extended capabilities
//! (the upper 32 bits of its handshake) are listed separately.

pub const LONG_PASSWORD: u32 = 1;
pub const FOUND_ROWS: u32 = 2;
pub const LONG_FLAG: u32 = 4;
pub const CONNECT_WITH_DB: u32 = 8;
pub const NO_SCHEMA: u32 = 0x10;
pub const COMPRESS: u32 = 0x20;
pub const ODBC: u32 = 0x40;
pub const LOCAL_FILES: u32 = 0x80;
pub const IGNORE_SPACE: u32 = 0x100;
pub const PROTOCOL_41: u32 = 0x200;
pub const INTERACTIVE: u32 = 0x400;
pub const SSL: u32 = 0x800;
pub const IGNORE_SIGPIPE: u32 = 0x1000;
pub const TRANSACTIONS: u32 = 0x2000;
pub const SECURE_CONNECTION: u32 = 0x8000;
pub const MULTI_STATEMENTS: u32 = 1 << 16;
pub const MULTI_RESULTS: u32 = 1 << 17;
pub const PS_MULTI_RESULTS: u32 = 1 << 18;
pub const PLUGIN_AUTH: u32 = 1 << 19;
pub const CONNECT_ATTRS: u32 = 1 << 20;
pub const PLUGIN_AUTH_LENENC: u32 = 1 << 21;
pub const SESSION_TRACK: u32 = 1 << 23;
pub const DEPRECATE_EOF: u32 = 1 << 24;
pub const ZSTD: u32 = 1 << 26;
pub const QUERY_ATTRIBUTES: u32 = 1 << 27;

/// MariaDB extended capability (upper 32 bits): column count followed by metadata_follows.
pub const MARIADB_CACHE_METADATA: u32 = 1 << 4;
