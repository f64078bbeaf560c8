//! The connection phase's first two packets, encoded: a server's greeting (protocol 10) and a
//! client's login (HandshakeResponse41). The decoder reads them in [`crate::conn`]; these
//! writers make fixtures for tests, benchmarks and fuzz seeds, byte for byte as MySQL and
//! MariaDB send them.

/// A server's greeting.
#[derive(Debug, Clone)]
pub struct Greeting<'a> {
    pub server_version: &'a [u8],
    pub connection_id: u32,
    /// The server's capability flags (lower 32 bits).
    pub capabilities: u32,
    /// The server's default collation id.
    pub collation: u8,
    pub status: u16,
    /// The authentication challenge: 8 bytes, then 12.
    pub scramble: [u8; 20],
    pub auth_plugin: &'a [u8],
}

impl Default for Greeting<'_> {
    fn default() -> Self {
        Greeting {
            server_version: b"10.11.19-MariaDB",
            connection_id: 42,
            capabilities: 0,
            collation: 33,
            status: 2,
            scramble: *b"abcdefghijklmnopqrst",
            auth_plugin: b"mysql_native_password",
        }
    }
}

impl Greeting<'_> {
    /// Appends the greeting's payload (without the packet header).
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(0x0a);
        out.extend_from_slice(self.server_version);
        out.push(0);
        out.extend_from_slice(&self.connection_id.to_le_bytes());
        out.extend_from_slice(&self.scramble[..8]);
        out.push(0);
        out.extend_from_slice(&(self.capabilities as u16).to_le_bytes());
        out.push(self.collation);
        out.extend_from_slice(&self.status.to_le_bytes());
        out.extend_from_slice(&((self.capabilities >> 16) as u16).to_le_bytes());
        out.push(self.scramble.len() as u8 + 1);
        out.extend_from_slice(&[0; 10]);
        out.extend_from_slice(&self.scramble[8..]);
        out.push(0);
        out.extend_from_slice(self.auth_plugin);
        out.push(0);
    }
}

/// A client's login, with a length-prefixed auth response (CLIENT_SECURE_CONNECTION).
#[derive(Debug, Clone)]
pub struct Login<'a> {
    pub capabilities: u32,
    pub max_packet: u32,
    pub collation: u8,
    pub user: &'a [u8],
    /// At most 255 bytes.
    pub auth_response: &'a [u8],
    /// Written when given (the caller sets CLIENT_CONNECT_WITH_DB).
    pub database: Option<&'a [u8]>,
    pub auth_plugin: &'a [u8],
}

impl Default for Login<'_> {
    fn default() -> Self {
        Login {
            capabilities: 0,
            max_packet: 16 << 20,
            collation: 33,
            user: b"app",
            auth_response: &[7; 20],
            database: None,
            auth_plugin: b"mysql_native_password",
        }
    }
}

impl Login<'_> {
    /// Appends the login's payload (without the packet header).
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.capabilities.to_le_bytes());
        out.extend_from_slice(&self.max_packet.to_le_bytes());
        out.push(self.collation);
        out.extend_from_slice(&[0; 23]);
        out.extend_from_slice(self.user);
        out.push(0);
        let auth = &self.auth_response[..self.auth_response.len().min(255)];
        out.push(auth.len() as u8);
        out.extend_from_slice(auth);
        if let Some(db) = self.database {
            out.extend_from_slice(db);
            out.push(0);
        }
        out.extend_from_slice(self.auth_plugin);
        out.push(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::caps;
    use crate::conn::{Conn, Ctx};
    use crate::framing::frame;
    use crate::DecodeStats;
    use myrr_recording::{Direction, EndReason, Event};

    /// What the decoder makes of a greeting and a login written here.
    #[test]
    fn the_decoder_reads_the_greeting_and_login_written_here() {
        let capabilities = caps::LONG_PASSWORD
            | caps::CONNECT_WITH_DB
            | caps::PROTOCOL_41
            | caps::SECURE_CONNECTION
            | caps::PLUGIN_AUTH;
        let mut greeting = Vec::new();
        Greeting {
            capabilities,
            server_version: b"11.4.2-MariaDB",
            connection_id: 7,
            ..Greeting::default()
        }
        .encode(&mut greeting);
        let mut login = Vec::new();
        Login {
            capabilities,
            user: b"shop_app",
            database: Some(b"shop"),
            ..Login::default()
        }
        .encode(&mut login);
        let (mut events, mut stats, mut next) = (Vec::new(), DecodeStats::default(), 1);
        let mut ctx = Ctx {
            events: &mut events,
            stats: &mut stats,
            next_session: &mut next,
            samples: None,
        };
        let mut conn = Conn::new("c:1".into(), "s:2".into(), 0, true, 1 << 20);
        let packet = |seq, p: &[u8]| {
            let mut v = Vec::new();
            frame(seq, p, &mut v);
            v
        };
        conn.data(
            Direction::ServerToClient,
            &packet(0, &greeting),
            1,
            &mut ctx,
        );
        conn.data(Direction::ClientToServer, &packet(1, &login), 2, &mut ctx);
        conn.data(
            Direction::ServerToClient,
            &packet(2, &[0, 0, 0, 2, 0, 0, 0]),
            3,
            &mut ctx,
        );
        conn.end(EndReason::Closed, 4, &mut ctx);
        let start = events
            .iter()
            .find_map(|e| match e {
                Event::SessionStart(s) => Some(s),
                _ => None,
            })
            .expect("a session");
        assert_eq!(start.user.as_deref(), Some(&b"shop_app"[..]));
        assert_eq!(start.db.as_deref(), Some(&b"shop"[..]));
        assert_eq!(
            start.server_version.as_deref(),
            Some(&b"11.4.2-MariaDB"[..])
        );
        assert_eq!(start.connection_id, Some(7));
        assert_eq!(start.capabilities, Some(capabilities));
        assert!(!start.mid_stream);
        assert!(stats.undecodable.is_empty(), "{:?}", stats.undecodable);
    }
}
