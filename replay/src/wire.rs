//! The replay client's connection: the MySQL protocol spoken directly on a tokio socket.
//!
//! Handshake and authentication use `mysql_common`'s packets and scrambles. Commands are sent
//! as the recorded bytes would have been, and the answer is read by the capture's own decoder
//! ([`myrr_wire::conn::Conn`]) watching both directions of this connection, so a replayed
//! response is decoded and digested by exactly the code that decoded the recorded one. Rows are
//! digested straight from the read buffer; nothing is allocated per row.

use myrr_recording::{Direction, ErrInfo, Event, Response};
use myrr_wire::caps;
use myrr_wire::command::{self, Code};
use myrr_wire::conn::{parse_err, Conn as Decoder, Ctx};
use myrr_wire::framing::{self, Framer};
use myrr_wire::DecodeStats as Stats;
use mysql_common::io::ParseBuf;
use mysql_common::packets::{AuthPlugin, HandshakePacket};
use mysql_common::proto::MySerialize;
use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::tls::{Tls, TlsMode};
use crate::waiting::Waiting;

/// Largest packet the decoder accepts: the server's own ceiling (max_allowed_packet ≤ 1 GiB).
const MAX_PACKET: usize = 1 << 30;
/// The read buffer starts small (thousands of sessions each hold one) and doubles up to
/// `READ_MAX` while reads fill it (large results).
const READ_MIN: usize = 8 << 10;
const READ_MAX: usize = 256 << 10;
/// utf8mb4_general_ci.
const CHARSET: u8 = 45;
/// Capabilities a replaying client takes over from the recorded session when it had them:
/// they change what the server answers (FOUND_ROWS changes affected-row counts,
/// MULTI_STATEMENTS whether `a; b` runs, LOCAL_FILES whether LOAD DATA LOCAL is allowed...).
const FROM_RECORDING: u32 = caps::FOUND_ROWS
    | caps::LONG_FLAG
    | caps::NO_SCHEMA
    | caps::ODBC
    | caps::LOCAL_FILES
    | caps::IGNORE_SPACE
    | caps::INTERACTIVE
    | caps::IGNORE_SIGPIPE
    | caps::TRANSACTIONS
    | caps::MULTI_STATEMENTS
    | caps::MULTI_RESULTS
    | caps::PS_MULTI_RESULTS
    | caps::SESSION_TRACK
    | caps::DEPRECATE_EOF;
/// When the recording does not say (a session attached mid-stream): what common drivers ask.
const DEFAULT_CAPS: u32 = caps::LONG_FLAG
    | caps::TRANSACTIONS
    | caps::MULTI_STATEMENTS
    | caps::MULTI_RESULTS
    | caps::PS_MULTI_RESULTS
    | caps::DEPRECATE_EOF;
/// Always on: the protocol this client speaks. SSL, compression and query attributes stay off.
const REQUIRED: u32 = caps::LONG_PASSWORD
    | caps::PROTOCOL_41
    | caps::SECURE_CONNECTION
    | caps::PLUGIN_AUTH
    | caps::PLUGIN_AUTH_LENENC;

/// Who logs in, and how the recorded session talked.
pub(crate) struct LoginOpts<'a> {
    pub user: &'a str,
    pub pass: Option<&'a str>,
    pub db: Option<&'a str>,
    /// The recorded session's capability flags, when its login was captured.
    pub recorded_caps: Option<u32>,
}

/// Why the connection is unusable: it must be dropped (and the session reconnects).
#[derive(Debug, thiserror::Error)]
pub(crate) enum Lost {
    #[error("the server closed the connection")]
    Closed,
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("bad packet from the server: {0}")]
    Framing(#[from] myrr_wire::FrameError),
    /// The decoder lost its place in the answer (named by the anomaly it counted).
    #[error("the answer cannot be decoded ({0}); the connection is dropped")]
    Undecodable(String),
    #[error("change user: {0}")]
    ChangeUser(String),
    #[error("not connected")]
    NotConnected,
}

/// Why connecting failed.
#[derive(Debug)]
pub(crate) enum ConnectError {
    /// The server refused the login.
    Refused(ErrInfo),
    Other(String),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Refused(e) => write!(
                f,
                "ERROR {} ({}): {}",
                e.code,
                String::from_utf8_lossy(&e.state),
                String::from_utf8_lossy(&e.message)
            ),
            ConnectError::Other(m) => f.write_str(m),
        }
    }
}

impl From<Lost> for ConnectError {
    fn from(l: Lost) -> Self {
        ConnectError::Other(l.to_string())
    }
}

/// The socket, plain or TLS.
enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// Only while the plain socket is handed to the TLS handshake.
    Upgrading,
}

impl Stream {
    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf).await,
            Stream::Tls(s) => s.read(buf).await,
            Stream::Upgrading => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.write_all(buf).await,
            Stream::Tls(s) => {
                s.write_all(buf).await?;
                s.flush().await
            }
            Stream::Upgrading => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    async fn shutdown(&mut self) {
        let _ = match self {
            Stream::Plain(s) => s.shutdown().await,
            Stream::Tls(s) => s.shutdown().await,
            Stream::Upgrading => Ok(()),
        };
    }
}

/// One decoded answer: the first result and any further ones (multi-results).
pub(crate) type Answer = (Response, Vec<Response>);

pub(crate) struct WireConn {
    stream: Stream,
    tls: bool,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    /// Frames packets this client must read itself (authentication).
    framer: Framer,
    decoder: Decoder,
    events: Vec<Event>,
    stats: Stats,
    next_session: u64,
    infile_answered: u64,
    /// The decoder lost its place: the connection must be dropped.
    broken: bool,
    caps: u32,
    /// The last authentication challenge (for COM_CHANGE_USER).
    nonce: Vec<u8>,
    plugin: AuthPlugin<'static>,
    pub connection_id: u32,
    pub server_version: String,
    /// How this session waits for its answers (see [`crate::waiting`]): plain connections
    /// only; without it, always in the runtime.
    waiting: Option<Waiting>,
}

impl WireConn {
    /// A connection over `stream` (to `addr`), before the server's greeting.
    fn over(stream: TcpStream, addr: &str) -> Self {
        let local = stream
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let mut decoder = Decoder::new(local, addr.to_string(), 0, true, MAX_PACKET);
        decoder.answers_only = true;
        WireConn {
            stream: Stream::Plain(stream),
            tls: false,
            rbuf: vec![0; READ_MIN],
            wbuf: Vec::with_capacity(1024),
            framer: Framer::new(MAX_PACKET),
            decoder,
            events: Vec::new(),
            stats: Stats::default(),
            next_session: 0,
            infile_answered: 0,
            broken: false,
            caps: 0,
            nonce: Vec::new(),
            plugin: AuthPlugin::MysqlNativePassword,
            connection_id: 0,
            server_version: String::new(),
            waiting: None,
        }
    }

    /// Connects to `host:port` and logs in.
    pub(crate) async fn connect(
        host: &str,
        port: u16,
        tls: &Tls,
        login: &LoginOpts<'_>,
    ) -> Result<Self, ConnectError> {
        let addr = &format!("{host}:{port}");
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| ConnectError::Other(format!("cannot connect to {addr}: {e}")))?;
        let _ = stream.set_nodelay(true);
        let mut c = WireConn::over(stream, addr);
        let (seq, greeting) = c.read_packet().await?;
        if greeting.first() == Some(&0xff) {
            return Err(ConnectError::Refused(parse_err(&greeting)));
        }
        let hs: HandshakePacket<'_> = ParseBuf(&greeting)
            .parse(())
            .map_err(|e| ConnectError::Other(format!("not a MySQL greeting: {e}")))?;
        c.connection_id = hs.connection_id();
        let version = hs.server_version_str();
        // MariaDB prefixes "5.5.5-" for old replication clients.
        c.server_version = version
            .strip_prefix("5.5.5-")
            .filter(|v| v.contains("MariaDB"))
            .unwrap_or(&version)
            .to_string();
        c.nonce = hs.nonce();
        let server_caps = hs.capabilities().bits();
        if server_caps & caps::PROTOCOL_41 == 0 {
            return Err(ConnectError::Other(
                "the server speaks a protocol older than 4.1".into(),
            ));
        }
        let wanted = match login.recorded_caps {
            Some(r) => r & FROM_RECORDING,
            None => DEFAULT_CAPS,
        } | REQUIRED
            | if login.db.is_some() {
                caps::CONNECT_WITH_DB
            } else {
                0
            };
        c.caps = wanted & server_caps;
        // MariaDB (which clears CLIENT_MYSQL in its greeting) can skip resending a prepared
        // statement's column definitions with every EXECUTE, as its own connector asks; the
        // decoder knows them from the PREPARE. It halves the server's work per short EXECUTE.
        let mut ext = 0u32;
        if server_caps & caps::LONG_PASSWORD == 0 {
            ext = hs.mariadb_ext_capabilities().bits() & caps::MARIADB_CACHE_METADATA;
            if ext != 0 {
                c.caps &= !caps::LONG_PASSWORD;
            }
        }
        c.plugin = match hs.auth_plugin().map(AuthPlugin::into_owned) {
            Some(p @ (AuthPlugin::CachingSha2Password | AuthPlugin::MysqlNativePassword)) => p,
            _ => AuthPlugin::MysqlNativePassword,
        };
        let auth = auth_data(&c.plugin, login.pass, &c.nonce)?;
        let offers_tls = server_caps & caps::SSL != 0;
        let use_tls = match tls.mode() {
            TlsMode::Off => false,
            TlsMode::Prefer => offers_tls,
            _ if offers_tls => true,
            _ => {
                return Err(ConnectError::Other(format!(
                    "{addr} does not offer TLS, and --tls {:?} requires it",
                    tls.mode()
                )))
            }
        };
        let mut seq = seq.wrapping_add(1);
        if use_tls {
            c.caps |= caps::SSL;
        }
        let mut p = Vec::with_capacity(128);
        p.extend_from_slice(&c.caps.to_le_bytes());
        p.extend_from_slice(&(MAX_PACKET as u32).to_le_bytes());
        p.push(CHARSET);
        p.extend_from_slice(&[0; 19]);
        p.extend_from_slice(&ext.to_le_bytes());
        if use_tls {
            // SSLRequest: the login's first 32 bytes; the rest follows inside TLS. The decoder
            // does not see it (it would take the session for undecodable).
            c.send(seq, &p, false).await?;
            seq = seq.wrapping_add(1);
            let Stream::Plain(tcp) = std::mem::replace(&mut c.stream, Stream::Upgrading) else {
                unreachable!("the socket is plain until here");
            };
            let secured = tls
                .wrap(tcp, host)
                .await
                .map_err(|e| ConnectError::Other(format!("TLS to {addr}: {e}")))?;
            c.stream = Stream::Tls(Box::new(secured));
            c.tls = true;
        }
        p.extend_from_slice(login.user.as_bytes());
        p.push(0);
        myrr_wire::values::write_lenenc(&mut p, auth.len() as u64);
        p.extend_from_slice(&auth);
        if c.caps & caps::CONNECT_WITH_DB != 0 {
            p.extend_from_slice(login.db.unwrap_or("").as_bytes());
            p.push(0);
        }
        p.extend_from_slice(c.plugin.as_bytes());
        p.push(0);
        c.write_packet(seq, &p).await?;
        match c.authenticate(login.pass).await {
            Err(ConnectError::Refused(e)) if offers_tls && !c.tls && e.code == 1045 => {
                let mut e = e;
                e.message.extend_from_slice(
                    b" (the server offers TLS: if the account requires it, add --tls require)",
                );
                return Err(ConnectError::Refused(e));
            }
            other => other?,
        }
        c.take_answer();
        Ok(c)
    }

    /// Reads the server's side of authentication to its end (OK or ERR), answering auth
    /// switches and caching_sha2_password's requests on the way.
    async fn authenticate(&mut self, pass: Option<&str>) -> Result<(), ConnectError> {
        loop {
            let (seq, p) = self.read_packet().await?;
            let next = seq.wrapping_add(1);
            match p.first() {
                Some(0x00) => return Ok(()),
                Some(0xff) => return Err(ConnectError::Refused(parse_err(&p))),
                Some(0xfe) if p.len() > 1 => {
                    let body = &p[1..];
                    let name_end = body.iter().position(|&b| b == 0).unwrap_or(body.len());
                    let plugin = AuthPlugin::from_bytes(&body[..name_end]).into_owned();
                    let mut nonce = body.get(name_end + 1..).unwrap_or(&[]).to_vec();
                    if nonce.last() == Some(&0) {
                        nonce.pop();
                    }
                    let data = match &plugin {
                        AuthPlugin::MysqlNativePassword
                        | AuthPlugin::CachingSha2Password
                        | AuthPlugin::Ed25519 => auth_data(&plugin, pass, &nonce)?,
                        other => {
                            return Err(ConnectError::Other(format!(
                                "the server asks for authentication plugin {:?}, which myrr \
                                 does not speak (mysql_native_password, caching_sha2_password \
                                 and client_ed25519 are supported)",
                                String::from_utf8_lossy(other.as_bytes())
                            )))
                        }
                    };
                    self.plugin = plugin;
                    self.nonce = nonce;
                    self.write_packet(next, &data).await?;
                }
                Some(0x01) if matches!(self.plugin, AuthPlugin::CachingSha2Password) => {
                    match p.get(1) {
                        Some(3) => {} // fast authentication succeeded: OK follows
                        Some(4) if self.tls => {
                            // Inside TLS the password goes as it is.
                            let mut clear = pass.unwrap_or("").as_bytes().to_vec();
                            clear.push(0);
                            self.write_packet(next, &clear).await?;
                        }
                        Some(4) => self.write_packet(next, &[2]).await?, // ask for the RSA key
                        _ => {
                            // The server's public key: send the password encrypted with it.
                            let key = p[1..].to_vec();
                            let mut clear = pass.unwrap_or("").as_bytes().to_vec();
                            clear.push(0);
                            for (i, b) in clear.iter_mut().enumerate() {
                                *b ^= self.nonce.get(i % self.nonce.len().max(1)).unwrap_or(&0);
                            }
                            let encrypted = std::panic::catch_unwind(|| {
                                mysql_common::crypto::encrypt(&clear, &key)
                            })
                            .map_err(|_| {
                                ConnectError::Other(
                                    "the server's RSA public key is unusable".into(),
                                )
                            })?;
                            self.write_packet(next, &encrypted).await?;
                        }
                    }
                }
                _ => {
                    return Err(ConnectError::Other(format!(
                        "unexpected packet during authentication (0x{:02x})",
                        p.first().copied().unwrap_or(0)
                    )))
                }
            }
        }
    }

    /// The capability flags in effect on this connection.
    pub(crate) fn caps(&self) -> u32 {
        self.caps
    }

    /// Sends one command; [`WireConn::read_answer`] reads its answer.
    pub(crate) async fn send_command(&mut self, payload: &[u8]) -> Result<(), Lost> {
        self.write_packet(0, payload).await
    }

    /// Sends commands back to back, in one write; their answers are read one by one with
    /// [`WireConn::read_answer`], in order.
    pub(crate) async fn send_commands(&mut self, payloads: &[&[u8]]) -> Result<(), Lost> {
        self.wbuf.clear();
        for p in payloads {
            framing::frame(0, p, &mut self.wbuf);
        }
        self.feed(Direction::ClientToServer, 0);
        self.stream.write_all(&self.wbuf).await.map_err(Lost::Io)
    }

    /// Sends one command and reads its whole answer through the decoder.
    pub(crate) async fn command(&mut self, payload: &[u8]) -> Result<Answer, Lost> {
        self.send_command(payload).await?;
        self.read_answer().await
    }

    /// COM_CHANGE_USER, with its authentication.
    pub(crate) async fn change_user(
        &mut self,
        user: &str,
        pass: Option<&str>,
        db: Option<&str>,
    ) -> Result<Answer, Lost> {
        let auth = auth_data(&self.plugin, pass, &self.nonce)
            .map_err(|e| Lost::ChangeUser(e.to_string()))?;
        let mut p = Vec::new();
        command::encode_change_user(
            user.as_bytes(),
            &auth,
            db.unwrap_or("").as_bytes(),
            CHARSET as u16,
            self.plugin.as_bytes(),
            &mut p,
        );
        self.write_packet(0, &p).await?;
        match self.authenticate(pass).await {
            Ok(()) | Err(ConnectError::Refused(_)) => {}
            Err(ConnectError::Other(m)) => return Err(Lost::ChangeUser(m)),
        }
        self.take_answer()
            .ok_or_else(|| Lost::ChangeUser("the answer did not decode".into()))
    }

    /// Keep the first rows of every answer, for [`WireConn::take_kept`].
    pub(crate) fn keep_rows(&mut self, on: bool) {
        self.decoder.keep_rows = on;
    }

    /// The first rows of the answer read last (with [`WireConn::keep_rows`]), undecoded.
    pub(crate) fn take_kept(&mut self) -> Option<myrr_wire::conn::KeptRows> {
        self.decoder.take_kept()
    }

    /// Says goodbye (COM_QUIT) and closes the socket.
    pub(crate) async fn quit(mut self) {
        let _ = self.write_packet(0, &[Code::Quit.byte()]).await;
        self.stream.shutdown().await;
    }

    /// Reads the whole answer to the command sent last, through the decoder.
    pub(crate) async fn read_answer(&mut self) -> Result<Answer, Lost> {
        loop {
            if let Some(a) = self.take_answer() {
                return Ok(a);
            }
            if self.broken {
                let why = self.stats.undecodable.keys().next().cloned();
                return Err(Lost::Undecodable(
                    why.unwrap_or_else(|| "stream out of step".into()),
                ));
            }
            if self.decoder.infile_requests > self.infile_answered {
                // LOAD DATA LOCAL: the file's contents are not in the recording; send an
                // empty file (the server then answers with its OK or error).
                self.infile_answered = self.decoder.infile_requests;
                self.write_packet(2, &[]).await?;
            }
            let n = self.fill().await?;
            self.feed(Direction::ServerToClient, n);
        }
    }

    /// The decoded answer, if the decoder has finished one.
    /// The first answer decoded, if one is; later ones stay for the next call (commands sent
    /// back to back, such as a pin's `SET` and its statement, can be answered in one read).
    fn take_answer(&mut self) -> Option<Answer> {
        let mut upto = self.events.len();
        for (i, e) in self.events.iter().enumerate() {
            match e {
                Event::Exchange(_) => {
                    upto = i + 1;
                    break;
                }
                // The decoder lost its place in the stream (a packet over MAX_PACKET, or bytes
                // that do not frame): nothing more on this connection can be trusted.
                Event::Gap(_) => self.broken = true,
                _ => {}
            }
        }
        self.events.drain(..upto).find_map(|e| match e {
            Event::Exchange(x) => Some((x.response, x.more)),
            _ => None,
        })
    }

    /// From now on, this session waits for its answers as `waiting` says (plain connections;
    /// a TLS one always waits in the runtime).
    pub(crate) fn wait_with(&mut self, waiting: Waiting) {
        if let Stream::Plain(_) = &self.stream {
            self.waiting = Some(waiting);
        }
    }

    /// Reads what the socket has into `rbuf`; the connection is lost on EOF.
    async fn fill(&mut self) -> Result<usize, Lost> {
        let waited = match (&mut self.waiting, &self.stream) {
            (Some(w), Stream::Plain(s)) => w.read(s, &mut self.rbuf),
            _ => None,
        };
        let read = match waited {
            Some(r) => r,
            None => self.stream.read(&mut self.rbuf).await,
        };
        match read {
            Ok(0) => Err(Lost::Closed),
            Ok(n) => {
                if let (Some(w), Stream::Plain(s)) = (&mut self.waiting, &self.stream) {
                    w.after_read(s);
                }
                if n == self.rbuf.len() && n < READ_MAX {
                    // Grown after use: the bytes just read stay where they are.
                    self.rbuf.resize(n * 2, 0);
                }
                Ok(n)
            }
            Err(e) => Err(Lost::Io(e)),
        }
    }

    /// Hands the first `n` bytes of `rbuf` (server → client) or all of `wbuf` (client →
    /// server) to the decoder.
    fn feed(&mut self, dir: Direction, n: usize) {
        let data = match dir {
            Direction::ServerToClient => &self.rbuf[..n],
            Direction::ClientToServer => &self.wbuf[..],
        };
        let mut ctx = Ctx {
            events: &mut self.events,
            stats: &mut self.stats,
            next_session: &mut self.next_session,
            samples: None,
        };
        self.decoder.data(dir, data, 0, &mut ctx);
    }

    /// One packet for this client to read itself (during authentication).
    async fn read_packet(&mut self) -> Result<(u8, Vec<u8>), Lost> {
        loop {
            match self.framer.next_packet() {
                Ok(Some(p)) => return Ok((p.seq, p.payload.to_vec())),
                Ok(None) => {}
                Err(e) => return Err(Lost::Framing(e)),
            }
            let n = self.fill().await?;
            self.feed(Direction::ServerToClient, n);
            self.framer
                .push(&self.rbuf[..n], 0)
                .map_err(Lost::Framing)?;
        }
    }

    /// Frames `payload` (split at 16 MiB) and sends it; the decoder sees it.
    async fn write_packet(&mut self, seq: u8, payload: &[u8]) -> Result<(), Lost> {
        self.send(seq, payload, true).await
    }

    async fn send(&mut self, seq: u8, payload: &[u8], decode: bool) -> Result<(), Lost> {
        self.wbuf.clear();
        framing::frame(seq, payload, &mut self.wbuf);
        if decode {
            self.feed(Direction::ClientToServer, 0);
        }
        self.stream.write_all(&self.wbuf).await.map_err(Lost::Io)
    }
}

/// The authentication response for `plugin`.
fn auth_data(
    plugin: &AuthPlugin<'_>,
    pass: Option<&str>,
    nonce: &[u8],
) -> Result<Vec<u8>, ConnectError> {
    let mut out = Vec::new();
    if let Some(d) = plugin.gen_data(pass, nonce) {
        d.serialize(&mut out);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Instant;

    /// What the connection's read does first: the session's own wait, if it waits alone.
    fn read_alone(c: &mut WireConn) -> Option<io::Result<usize>> {
        let (Some(w), Stream::Plain(s)) = (&mut c.waiting, &c.stream) else {
            return None;
        };
        w.read(s, &mut c.rbuf)
    }

    fn non_blocking(c: &WireConn) -> bool {
        let Stream::Plain(s) = &c.stream else {
            unreachable!("a plain connection")
        };
        // SAFETY: F_GETFL reads the flags of a descriptor `s` keeps open.
        let flags = unsafe { libc::fcntl(s.as_raw_fd(), libc::F_GETFL) };
        assert!(flags >= 0, "F_GETFL: {}", io::Error::last_os_error());
        flags & libc::O_NONBLOCK != 0
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_lone_session_blocks_in_recv_and_gives_the_runtime_its_socket_back_non_blocking() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let client = TcpStream::connect(&addr).await.unwrap();
        let (mut server, _) = listener.accept().unwrap();
        let live = Arc::new(AtomicUsize::new(1));
        crate::waiting::set_live_counter(live.clone());
        let mut c = WireConn::over(client, &addr);
        let abandon = Arc::new(AtomicBool::new(false));
        c.wait_with(Waiting::new(abandon.clone(), false));
        assert!(
            non_blocking(&c),
            "the runtime hands over a non-blocking socket"
        );

        // Several receive timeouts pass before the answer: the read goes on waiting.
        let started = Instant::now();
        let writer = std::thread::spawn(move || {
            std::thread::sleep(crate::waiting::BLOCK_FOR * 5);
            server.write_all(b"answer").unwrap();
            server
        });
        let n = read_alone(&mut c).expect("waits alone").unwrap();
        assert_eq!(&c.rbuf[..n], b"answer");
        assert!(
            started.elapsed() >= crate::waiting::BLOCK_FOR * 4,
            "{:?}",
            started.elapsed()
        );
        assert!(!non_blocking(&c), "alone, the socket blocks");
        let mut server = writer.join().unwrap();

        // A second session on the thread: the wait goes back to the runtime, which needs the
        // socket non-blocking; the runtime's read then gets what the server sends.
        live.store(2, Ordering::Relaxed);
        assert!(read_alone(&mut c).is_none());
        assert!(non_blocking(&c));
        server.write_all(b"next").unwrap();
        let n = c.fill().await.unwrap();
        assert_eq!(&c.rbuf[..n], b"next");

        // Alone again: blocking again, until the replay abandons its answers.
        live.store(1, Ordering::Relaxed);
        server.write_all(b"third").unwrap();
        let n = read_alone(&mut c).expect("waits alone").unwrap();
        assert_eq!(&c.rbuf[..n], b"third");
        assert!(!non_blocking(&c));
        abandon.store(true, Ordering::Relaxed);
        assert!(read_alone(&mut c).is_none());
        assert!(non_blocking(&c));
    }
}
