//! The handshake's two packets that matter to decoding: the server's greeting (version,
//! connection id, what it can do) and the client's login (user, schema, and the capabilities
//! both agreed on, which decide how every later packet reads: DEPRECATE_EOF, compression,
//! query attributes, TLS).

use myrr_recording::{Direction, Login};

use super::packets::parse_err;
use super::{Conn, Ctx, Phase};
use crate::reader::Reader;
use crate::{caps, Anomaly};

impl Conn {
    pub(super) fn login_request(&mut self, p: &[u8], ctx: &mut Ctx<'_>) {
        let mut r = Reader::new(p);
        let parsed = (|| {
            let low = r.u16()? as u32;
            if low & caps::PROTOCOL_41 == 0 {
                // HandshakeResponse320.
                r.u24()?;
                let user = r.cstr_or_rest().to_vec();
                return Some((low, 0u32, Some(user), None, p.len() <= 5));
            }
            let c = low | ((r.u16()? as u32) << 16);
            r.u32()?;
            r.u8()?;
            let filler = r.take(23)?;
            let ext = u32::from_le_bytes([filler[19], filler[20], filler[21], filler[22]]);
            if p.len() == 32 && c & caps::SSL != 0 {
                return Some((c, ext, None, None, true));
            }
            let user = r.cstr()?.to_vec();
            if c & caps::PLUGIN_AUTH_LENENC != 0 {
                r.lenenc_bytes()?;
            } else if c & caps::SECURE_CONNECTION != 0 {
                let n = r.u8()? as usize;
                r.skip(n)?;
            } else {
                r.cstr()?;
            }
            let db = if c & caps::CONNECT_WITH_DB != 0 {
                Some(r.cstr_or_rest().to_vec()).filter(|d| !d.is_empty())
            } else {
                None
            };
            Some((c, ext, Some(user), db, false))
        })();
        let Some((client_caps, ext, user, db, ssl)) = parsed else {
            self.anomaly(Direction::ClientToServer, Anomaly::MalformedLogin, ctx);
            self.phase = Phase::Unattached;
            self.client_resync = true;
            self.server_resync = true;
            return;
        };
        let effective = client_caps & self.server_caps.unwrap_or(u32::MAX);
        self.caps = Some(effective);
        // MariaDB puts extended capabilities where MySQL has filler, when CLIENT_MYSQL is off.
        if effective & caps::LONG_PASSWORD == 0 {
            self.ext_caps = ext & self.server_ext_caps;
        }
        self.deprecate_eof = Some(effective & caps::DEPRECATE_EOF != 0);
        // The session starts compressed once authentication succeeds.
        self.compressed = effective & caps::COMPRESS != 0;
        self.query_attrs = Some(effective & caps::QUERY_ATTRIBUTES != 0);
        if ssl && client_caps & caps::SSL != 0 && self.tls_readable {
            // The session starts with the login inside TLS, if its plaintext comes.
            self.phase = Phase::TlsPending;
            return;
        }
        if ssl && client_caps & caps::SSL != 0 {
            self.phase = Phase::Encrypted;
            self.login = Login::Encrypted;
            self.attach(None, None, false, ctx);
            return;
        }
        self.phase = Phase::Auth;
        self.attach(user, db, false, ctx);
    }

    /// The server refused the login (ERR `p`, instead of the greeting, after it or after the
    /// login): counted, and the connection is over for the decoder.
    pub(super) fn login_refused(&mut self, p: &[u8], ctx: &mut Ctx<'_>) {
        let e = parse_err(p);
        ctx.stats.logins_failed += 1;
        self.login = Login::Failed {
            code: e.code,
            message: e.message,
        };
        self.phase = Phase::Done;
    }

    pub(super) fn greeting(&mut self, p: &[u8], ctx: &mut Ctx<'_>) {
        match p.first() {
            Some(0xff) => {
                self.login_refused(p, ctx);
                self.attach(None, None, false, ctx);
            }
            Some(0x0a) => {
                let mut r = Reader::new(&p[1..]);
                self.server_version = Some(r.cstr_or_rest().to_vec());
                self.connection_id = r.u32();
                let rest = (|| {
                    r.skip(9)?;
                    let low = r.u16()? as u32;
                    let mut c = low;
                    let mut ext = 0;
                    if !r.is_empty() {
                        r.u8()?;
                        r.u16()?;
                        c |= (r.u16()? as u32) << 16;
                        r.u8()?;
                        let reserved = r.take(10)?;
                        ext = u32::from_le_bytes([
                            reserved[6],
                            reserved[7],
                            reserved[8],
                            reserved[9],
                        ]);
                    }
                    Some((c, ext))
                })();
                let (c, ext) = rest.unwrap_or((0, 0));
                self.server_caps = Some(c);
                self.server_ext_caps = if c & caps::LONG_PASSWORD == 0 { ext } else { 0 };
                self.phase = Phase::AwaitLogin;
            }
            Some(0x09) => {
                let mut r = Reader::new(&p[1..]);
                self.server_version = Some(r.cstr_or_rest().to_vec());
                self.connection_id = r.u32();
                self.server_caps = Some(0);
                self.phase = Phase::AwaitLogin;
            }
            _ => {
                self.anomaly(Direction::ServerToClient, Anomaly::NotAGreeting, ctx);
                self.phase = Phase::Unattached;
                self.client_resync = true;
                self.server_resync = true;
            }
        }
    }
}
