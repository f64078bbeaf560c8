//! What the probe learns from `/proc`: which process listens on a port, which TLS library it
//! maps, which capabilities we have, and which connection a socket of the server is.

use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use crate::ProbeError;

/// The process listening on TCP `port` on this host (IPv4 or IPv6).
pub fn find_listener(port: u16) -> Result<u32, ProbeError> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            if f.len() < 10 || f[3] != "0A" {
                continue;
            }
            let local_port = f[1]
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            if local_port == Some(port) {
                inodes.push(f[9].to_string());
            }
        }
    }
    if inodes.is_empty() {
        return Err(ProbeError::NoListener { port });
    }
    let wanted: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    let mut pids = Vec::new();
    let procs = fs::read_dir("/proc").map_err(|e| ProbeError::Proc {
        what: "/proc".into(),
        error: e.to_string(),
    })?;
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(fds) = fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(target) = fs::read_link(fd.path()) {
                if wanted.iter().any(|w| target.as_os_str() == w.as_str()) {
                    pids.push(pid);
                    break;
                }
            }
        }
    }
    match pids.as_slice() {
        [pid] => Ok(*pid),
        [] => Err(ProbeError::ListenerNotVisible { port }),
        _ => Err(ProbeError::ManyListeners { port, pids }),
    }
}

/// Where the key derivation of process `pid` is (`EVP_KDF_derive`): the `libcrypto` it maps,
/// else its executable, as [`tls_library_candidates`].
pub fn crypto_library_candidates(pid: u32) -> Result<Vec<PathBuf>, ProbeError> {
    library_candidates(pid, &["libcrypto.so"])
}

/// Where the TLS functions of process `pid` are: the `libssl` it maps, else its executable
/// (a server linked statically); paths through `/proc/PID/root`, so a server in a container
/// is probed in its own files. Also returns what was searched, for messages.
pub fn tls_library_candidates(pid: u32) -> Result<Vec<PathBuf>, ProbeError> {
    library_candidates(pid, &["libssl.so", "libssl3.so"])
}

/// The libraries process `pid` maps whose file names start with one of `prefixes`, then its
/// executable.
fn library_candidates(pid: u32, prefixes: &[&str]) -> Result<Vec<PathBuf>, ProbeError> {
    let maps_path = format!("/proc/{pid}/maps");
    let maps = fs::read_to_string(&maps_path).map_err(|e| ProbeError::Proc {
        what: maps_path.clone(),
        error: e.to_string(),
    })?;
    let root = PathBuf::from(format!("/proc/{pid}/root"));
    let mut found: Vec<PathBuf> = Vec::new();
    for line in maps.lines() {
        let Some(path) = line.split_whitespace().nth(5) else {
            continue;
        };
        let name = Path::new(path)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("");
        if prefixes.iter().any(|p| name.starts_with(p)) {
            let full = root.join(path.trim_start_matches('/'));
            if !found.contains(&full) {
                found.push(full);
            }
        }
    }
    if let Ok(exe) = fs::read_link(format!("/proc/{pid}/exe")) {
        let full = root.join(exe.to_string_lossy().trim_start_matches('/'));
        found.push(full);
    }
    Ok(found)
}

/// Capabilities the probe needs that this process does not have in its effective set.
pub fn missing_capabilities() -> Vec<&'static str> {
    let eff = fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0);
    let has = |bit: u32| eff & (1u64 << bit) != 0;
    const SYS_PTRACE: u32 = 19;
    const SYS_ADMIN: u32 = 21;
    const PERFMON: u32 = 38;
    const BPF: u32 = 39;
    let mut missing = Vec::new();
    if !has(SYS_ADMIN) {
        if !has(BPF) {
            missing.push("CAP_BPF");
        }
        if !has(PERFMON) {
            missing.push("CAP_PERFMON");
        }
    }
    if !has(SYS_PTRACE) {
        missing.push("CAP_SYS_PTRACE");
    }
    missing
}

/// The server's sockets, read through a pidfd: `pidfd_getfd` lends us the socket, whose
/// addresses `getsockname`/`getpeername` give.
pub struct Sockets {
    pidfd: OwnedFd,
}

impl Sockets {
    pub fn open(pid: u32) -> Result<Self, ProbeError> {
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        if fd < 0 {
            return Err(ProbeError::Proc {
                what: format!("pidfd_open({pid})"),
                error: std::io::Error::last_os_error().to_string(),
            });
        }
        // SAFETY: a descriptor we own from here.
        let pidfd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        Ok(Self { pidfd })
    }

    /// The server's connections to one of `ports` (fd, client, server), as they are now:
    /// every socket descriptor of process `pid` whose local port is one of them and that has a
    /// peer.
    pub fn connections(&self, pid: u32, ports: &[u16]) -> Vec<(i32, SocketAddr, SocketAddr)> {
        let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
            return Vec::new();
        };
        let mut found = Vec::new();
        for fd in fds.flatten() {
            let is_socket = fs::read_link(fd.path())
                .map(|t| t.to_string_lossy().starts_with("socket:"))
                .unwrap_or(false);
            let Some(n) = fd.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
                continue;
            };
            if !is_socket {
                continue;
            }
            if let Some((local, peer)) = self.addresses(n) {
                if ports.contains(&local.port()) && peer.port() != 0 {
                    found.push((n, peer, local));
                }
            }
        }
        found
    }

    /// (local, peer) of the server's descriptor `fd`; None if it is not a TCP socket (any
    /// more). Addresses come back as the packets show them (IPv4-mapped IPv6 as IPv4).
    pub fn addresses(&self, fd: i32) -> Option<(SocketAddr, SocketAddr)> {
        // SAFETY: pidfd_getfd(pidfd, targetfd, flags) returns a new descriptor or -1.
        let got = unsafe { libc::syscall(libc::SYS_pidfd_getfd, self.pidfd.as_raw_fd(), fd, 0) };
        if got < 0 {
            return None;
        }
        // SAFETY: ours to close.
        let sock = unsafe { OwnedFd::from_raw_fd(got as i32) };
        let local = sockaddr(sock.as_raw_fd(), libc::getsockname)?;
        let peer = sockaddr(sock.as_raw_fd(), libc::getpeername)?;
        Some((local, peer))
    }
}

type NameFn = unsafe extern "C" fn(libc::c_int, *mut libc::sockaddr, *mut libc::socklen_t) -> i32;

fn sockaddr(fd: i32, f: NameFn) -> Option<SocketAddr> {
    // SAFETY: a zeroed sockaddr_storage is valid; the call fills at most `len` bytes.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: pointers to our own storage and its length.
    let rc = unsafe { f(fd, &mut ss as *mut _ as *mut libc::sockaddr, &mut len) };
    if rc != 0 {
        return None;
    }
    match ss.ss_family as i32 {
        libc::AF_INET => {
            // SAFETY: the family says this is a sockaddr_in.
            let a = unsafe { &*(&ss as *const _ as *const libc::sockaddr_in) };
            let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddr::new(IpAddr::V4(ip), u16::from_be(a.sin_port)))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this is a sockaddr_in6.
            let a = unsafe { &*(&ss as *const _ as *const libc::sockaddr_in6) };
            let ip = Ipv6Addr::from(a.sin6_addr.s6_addr).to_canonical();
            Some(SocketAddr::new(ip, u16::from_be(a.sin6_port)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn finds_this_process_listening_and_reads_its_sockets() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        assert_eq!(find_listener(port).unwrap(), std::process::id());
        let c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (s, _) = l.accept().unwrap();
        let socks = Sockets::open(std::process::id()).unwrap();
        let (local, peer) = socks.addresses(s.as_raw_fd()).unwrap();
        assert_eq!(local.port(), port);
        assert_eq!(peer, c.local_addr().unwrap());
        drop(l);
        assert!(matches!(
            find_listener(port),
            Err(ProbeError::NoListener { .. })
        ));
    }

    #[test]
    fn a_process_without_libssl_offers_only_its_executable() {
        let c = tls_library_candidates(std::process::id()).unwrap();
        assert_eq!(c.len(), 1, "{c:?}");
        assert!(c[0].starts_with(format!("/proc/{}/root", std::process::id())));
    }
}
