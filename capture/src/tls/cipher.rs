//! Cipher suites, key derivation and record decryption.
//!
//! No cryptography is written here: AES-GCM and ChaCha20-Poly1305 are `ring`'s AEADs (with
//! RustCrypto's `aes-gcm`, GHASH took a quarter of a key-log capture's time; `ring` cut the
//! capture of `benches/keylog.sh` from 0.66 s to 0.52 s); AES-CBC, HMAC, HKDF and the hashes are RustCrypto's
//! crates (`aes` + `cbc`, `hmac`, `hkdf`, `sha1`, `sha2`, `md-5`). What is here composes them
//! as the RFCs say:
//! - the TLS 1.2 PRF (RFC 5246 §5: `P_hash`, chained HMACs) and the TLS 1.0/1.1 PRF (RFC 2246
//!   §5: `P_MD5` XOR `P_SHA1` over the two halves of the secret), which turn the key log's
//!   master secret into the key block (`key expansion`);
//! - TLS 1.3's HKDF-Expand-Label (RFC 8446 §7.1), which turns a traffic secret into its key
//!   and IV, and into the next secret at a KeyUpdate (`traffic upd`);
//! - the record protections: AEAD nonces and additional data (RFC 5288, RFC 7905, RFC 8446
//!   §5.2–5.3), and CBC with HMAC, MAC-then-encrypt (RFC 5246 §6.2.3.2; TLS 1.0's IV chained
//!   from the previous record) or encrypt-then-MAC (RFC 7366).
//!
//! Being a passive reader, nothing here needs to be constant-time: a record that does not
//! authenticate is a failure to count, not an oracle.

use std::ops::Range;

use aes::cipher::KeyInit;
use cbc::cipher::block_padding::NoPadding;
use cbc::cipher::{BlockDecryptMut, InnerIvInit};
use hmac::{Hmac, Mac};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey};
use sha2::{Sha256, Sha384};

/// A protocol version, as ServerHello chose it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Version {
    Tls10,
    Tls11,
    Tls12,
    Tls13,
}

impl Version {
    pub fn from_wire(v: u16) -> Option<Self> {
        match v {
            0x0301 => Some(Version::Tls10),
            0x0302 => Some(Version::Tls11),
            0x0303 => Some(Version::Tls12),
            0x0304 => Some(Version::Tls13),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Version::Tls10 => "TLS 1.0",
            Version::Tls11 => "TLS 1.1",
            Version::Tls12 => "TLS 1.2",
            Version::Tls13 => "TLS 1.3",
        }
    }
}

/// The hash of a suite's PRF (TLS 1.2) or HKDF (TLS 1.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    Sha256,
    Sha384,
}

impl Hash {
    pub fn output_len(self) -> usize {
        match self {
            Hash::Sha256 => 32,
            Hash::Sha384 => 48,
        }
    }
}

/// The HMAC of a CBC suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MacHash {
    Sha1,
    Sha256,
    Sha384,
}

impl MacHash {
    fn len(self) -> usize {
        match self {
            MacHash::Sha1 => 20,
            MacHash::Sha256 => 32,
            MacHash::Sha384 => 48,
        }
    }
}

/// How records are protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bulk {
    Aes128Gcm,
    Aes256Gcm,
    Chacha20Poly1305,
    Aes128Cbc(MacHash),
    Aes256Cbc(MacHash),
}

impl Bulk {
    fn key_len(self) -> usize {
        match self {
            Bulk::Aes128Gcm | Bulk::Aes128Cbc(_) => 16,
            Bulk::Aes256Gcm | Bulk::Chacha20Poly1305 | Bulk::Aes256Cbc(_) => 32,
        }
    }
}

/// A cipher suite this module decrypts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Suite {
    pub id: u16,
    pub bulk: Bulk,
    pub hash: Hash,
}

/// The suite `id`, if supported in `version`.
pub fn suite(id: u16, version: Version) -> Option<Suite> {
    use Bulk::*;
    use Hash::*;
    let (bulk, hash) = if version == Version::Tls13 {
        match id {
            0x1301 => (Aes128Gcm, Sha256),
            0x1302 => (Aes256Gcm, Sha384),
            0x1303 => (Chacha20Poly1305, Sha256),
            _ => return None,
        }
    } else {
        let aead = match id {
            // RSA, DHE_RSA, ECDHE_ECDSA, ECDHE_RSA with AES-GCM (RFC 5288, 5289).
            0x009C | 0x009E | 0xC02B | 0xC02F => Some((Aes128Gcm, Sha256)),
            0x009D | 0x009F | 0xC02C | 0xC030 => Some((Aes256Gcm, Sha384)),
            // ECDHE_RSA, ECDHE_ECDSA, DHE_RSA with ChaCha20-Poly1305 (RFC 7905).
            0xCCA8..=0xCCAA => Some((Chacha20Poly1305, Sha256)),
            _ => None,
        };
        match aead {
            // AEAD suites need TLS 1.2.
            Some(_) if version < Version::Tls12 => return None,
            Some(a) => a,
            None => match id {
                // RSA, DHE_RSA, ECDHE_ECDSA, ECDHE_RSA with AES-CBC and SHA-1.
                0x002F | 0x0033 | 0xC009 | 0xC013 => (Aes128Cbc(MacHash::Sha1), Sha256),
                0x0035 | 0x0039 | 0xC00A | 0xC014 => (Aes256Cbc(MacHash::Sha1), Sha256),
                // … with SHA-256/384 MACs (TLS 1.2 only).
                0x003C | 0x0067 | 0xC023 | 0xC027 if version == Version::Tls12 => {
                    (Aes128Cbc(MacHash::Sha256), Sha256)
                }
                0x003D | 0x006B if version == Version::Tls12 => {
                    (Aes256Cbc(MacHash::Sha256), Sha256)
                }
                0xC024 | 0xC028 if version == Version::Tls12 => {
                    (Aes256Cbc(MacHash::Sha384), Sha384)
                }
                _ => return None,
            },
        }
    };
    Some(Suite { id, bulk, hash })
}

/// Why a record did not decrypt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenError {
    /// Shorter than its nonce, tag or MAC, or not whole cipher blocks.
    Length,
    /// The AEAD tag or the HMAC does not match: other keys, or damaged bytes.
    Auth,
    /// CBC padding is not well formed.
    Padding,
    /// A TLS 1.3 record with no content type (all zeros).
    NoContentType,
}

impl OpenError {
    pub fn name(self) -> &'static str {
        match self {
            OpenError::Length => "record_length",
            OpenError::Auth => "authentication",
            OpenError::Padding => "padding",
            OpenError::NoContentType => "no_content_type",
        }
    }
}

enum Cipher {
    /// AES-GCM or ChaCha20-Poly1305.
    Aead(Box<LessSafeKey>),
    Aes128Cbc(Box<aes::Aes128>),
    Aes256Cbc(Box<aes::Aes256>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// TLS 1.2 AES-GCM: 4-byte salt, 8-byte explicit nonce in each record.
    Gcm12,
    /// TLS 1.2 ChaCha20-Poly1305: 12-byte IV XOR the sequence number.
    Chacha12,
    /// TLS 1.3: IV XOR sequence number, the content type at the end of the plaintext.
    Tls13,
    /// CBC. `chained`: TLS 1.0, the IV is the previous record's last block; otherwise each
    /// record starts with its IV. `etm`: encrypt-then-MAC.
    Cbc {
        mac: MacHash,
        chained: bool,
        etm: bool,
    },
}

/// One direction's read keys and sequence number.
pub struct RecordKeys {
    cipher: Cipher,
    mode: Mode,
    /// The AEAD IV (12 bytes), GCM salt (4), or CBC IV of TLS 1.0 (16).
    iv: [u8; 16],
    mac_key: Vec<u8>,
    /// Sequence number of the next record.
    pub seq: u64,
}

impl std::fmt::Debug for RecordKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordKeys")
            .field("mode", &self.mode)
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

fn cipher(bulk: Bulk, key: &[u8]) -> Option<Cipher> {
    Some(match bulk {
        Bulk::Aes128Gcm => aead(&ring::aead::AES_128_GCM, key)?,
        Bulk::Aes256Gcm => aead(&ring::aead::AES_256_GCM, key)?,
        Bulk::Chacha20Poly1305 => aead(&ring::aead::CHACHA20_POLY1305, key)?,
        Bulk::Aes128Cbc(_) => Cipher::Aes128Cbc(Box::new(aes::Aes128::new_from_slice(key).ok()?)),
        Bulk::Aes256Cbc(_) => Cipher::Aes256Cbc(Box::new(aes::Aes256::new_from_slice(key).ok()?)),
    })
}

/// `P_hash(secret, seed)` (RFC 5246 §5) into `out`.
fn p_hash<M: Mac + KeyInit + Clone>(secret: &[u8], seed: &[u8], out: &mut [u8]) -> Option<()> {
    let base = <M as KeyInit>::new_from_slice(secret).ok()?;
    let mut a = {
        let mut m = base.clone();
        m.update(seed);
        m.finalize().into_bytes()
    };
    for chunk in out.chunks_mut(a.len()) {
        let mut m = base.clone();
        m.update(&a);
        m.update(seed);
        let block = m.finalize().into_bytes();
        chunk.copy_from_slice(&block[..chunk.len()]);
        let mut m = base.clone();
        m.update(&a);
        a = m.finalize().into_bytes();
    }
    Some(())
}

/// The PRF of `version` (and of the suite's `hash` in TLS 1.2): `PRF(secret, label, seed)`.
pub fn prf(
    version: Version,
    hash: Hash,
    secret: &[u8],
    label: &[u8],
    seed: &[u8],
    out: &mut [u8],
) -> Option<()> {
    let mut ls = Vec::with_capacity(label.len() + seed.len());
    ls.extend_from_slice(label);
    ls.extend_from_slice(seed);
    match (version, hash) {
        (Version::Tls10 | Version::Tls11, _) => {
            // RFC 2246 §5: the secret's halves (sharing the middle byte when odd).
            let half = secret.len().div_ceil(2);
            p_hash::<Hmac<md5::Md5>>(&secret[..half], &ls, out)?;
            let mut sha = vec![0u8; out.len()];
            p_hash::<Hmac<sha1::Sha1>>(&secret[secret.len() - half..], &ls, &mut sha)?;
            for (o, s) in out.iter_mut().zip(sha) {
                *o ^= s;
            }
            Some(())
        }
        (_, Hash::Sha256) => p_hash::<Hmac<Sha256>>(secret, &ls, out),
        (_, Hash::Sha384) => p_hash::<Hmac<Sha384>>(secret, &ls, out),
    }
}

/// TLS 1.3's HKDF-Expand-Label(secret, label, context, out.len()) (RFC 8446 §7.1).
pub fn hkdf_expand_label(
    hash: Hash,
    secret: &[u8],
    label: &[u8],
    context: &[u8],
    out: &mut [u8],
) -> Option<()> {
    let full = 6 + label.len();
    if full > 255 || context.len() > 255 || out.len() > u16::MAX as usize {
        return None;
    }
    let mut info = Vec::with_capacity(4 + full + context.len());
    info.extend_from_slice(&(out.len() as u16).to_be_bytes());
    info.push(full as u8);
    info.extend_from_slice(b"tls13 ");
    info.extend_from_slice(label);
    info.push(context.len() as u8);
    info.extend_from_slice(context);
    match hash {
        Hash::Sha256 => hkdf::Hkdf::<Sha256>::from_prk(secret)
            .ok()?
            .expand(&info, out)
            .ok(),
        Hash::Sha384 => hkdf::Hkdf::<Sha384>::from_prk(secret)
            .ok()?
            .expand(&info, out)
            .ok(),
    }
}

/// A TLS 1.3 traffic secret's read keys (sequence number 0).
pub fn tls13_keys(suite: Suite, secret: &[u8]) -> Option<RecordKeys> {
    if secret.len() != suite.hash.output_len() {
        return None;
    }
    let mut key = [0u8; 32];
    let key = &mut key[..suite.bulk.key_len()];
    hkdf_expand_label(suite.hash, secret, b"key", b"", key)?;
    let mut iv = [0u8; 16];
    hkdf_expand_label(suite.hash, secret, b"iv", b"", &mut iv[..12])?;
    Some(RecordKeys {
        cipher: cipher(suite.bulk, key)?,
        mode: Mode::Tls13,
        iv,
        mac_key: Vec::new(),
        seq: 0,
    })
}

/// The traffic secret after a KeyUpdate.
pub fn tls13_next_secret(suite: Suite, secret: &[u8]) -> Option<Vec<u8>> {
    let mut next = vec![0u8; suite.hash.output_len()];
    hkdf_expand_label(suite.hash, secret, b"traffic upd", b"", &mut next)?;
    Some(next)
}

/// TLS 1.0–1.2 read keys of the client's and the server's records, from the master secret.
pub fn tls12_keys(
    version: Version,
    suite: Suite,
    master: &[u8; 48],
    client_random: &[u8; 32],
    server_random: &[u8; 32],
    etm: bool,
) -> Option<(RecordKeys, RecordKeys)> {
    let (mac_len, key_len, iv_len, mode) = match suite.bulk {
        Bulk::Aes128Gcm | Bulk::Aes256Gcm => (0, suite.bulk.key_len(), 4, Mode::Gcm12),
        Bulk::Chacha20Poly1305 => (0, 32, 12, Mode::Chacha12),
        Bulk::Aes128Cbc(mac) | Bulk::Aes256Cbc(mac) => (
            mac.len(),
            suite.bulk.key_len(),
            16,
            Mode::Cbc {
                mac,
                chained: version == Version::Tls10,
                etm,
            },
        ),
    };
    let mut seed = [0u8; 64];
    seed[..32].copy_from_slice(server_random);
    seed[32..].copy_from_slice(client_random);
    let mut block = vec![0u8; 2 * (mac_len + key_len + iv_len)];
    prf(
        version,
        suite.hash,
        master,
        b"key expansion",
        &seed,
        &mut block,
    )?;
    let (client_mac, rest) = block.split_at(mac_len);
    let (server_mac, rest) = rest.split_at(mac_len);
    let (client_key, rest) = rest.split_at(key_len);
    let (server_key, rest) = rest.split_at(key_len);
    let (client_iv, server_iv) = rest.split_at(iv_len);
    let keys = |mac: &[u8], key: &[u8], iv: &[u8]| -> Option<RecordKeys> {
        let mut iv16 = [0u8; 16];
        iv16[..iv.len()].copy_from_slice(iv);
        Some(RecordKeys {
            cipher: cipher(suite.bulk, key)?,
            mode,
            iv: iv16,
            mac_key: mac.to_vec(),
            seq: 0,
        })
    };
    Some((
        keys(client_mac, client_key, client_iv)?,
        keys(server_mac, server_key, server_iv)?,
    ))
}

fn aead(alg: &'static ring::aead::Algorithm, key: &[u8]) -> Option<Cipher> {
    let key = UnboundKey::new(alg, key).ok()?;
    Some(Cipher::Aead(Box::new(LessSafeKey::new(key))))
}

/// Opens `buf` (ciphertext and tag) in place; the plaintext is its first `len - 16` bytes.
fn aead_open(c: &Cipher, nonce: [u8; 12], aad: &[u8], buf: &mut [u8]) -> Result<(), OpenError> {
    let Cipher::Aead(key) = c else {
        return Err(OpenError::Auth);
    };
    key.open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(aad), buf)
        .map(|_| ())
        .map_err(|_| OpenError::Auth)
}

fn hmac_matches(mac: MacHash, key: &[u8], parts: &[&[u8]], expected: &[u8]) -> bool {
    fn check<M: Mac + KeyInit>(key: &[u8], parts: &[&[u8]], expected: &[u8]) -> bool {
        let Ok(mut m) = <M as KeyInit>::new_from_slice(key) else {
            return false;
        };
        for p in parts {
            m.update(p);
        }
        m.verify_slice(expected).is_ok()
    }
    match mac {
        MacHash::Sha1 => check::<Hmac<sha1::Sha1>>(key, parts, expected),
        MacHash::Sha256 => check::<Hmac<Sha256>>(key, parts, expected),
        MacHash::Sha384 => check::<Hmac<Sha384>>(key, parts, expected),
    }
}

/// A record whose plaintext is `scratch[range]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    pub content_type: u8,
    pub range: Range<usize>,
}

impl RecordKeys {
    /// Decrypts one record (`content_type`, `version` and `body` as on the wire) into
    /// `scratch`; the sequence number advances when it authenticates.
    /// Whether a record can be opened without knowing how many records came before it: the
    /// AEAD suites, whose tag tells a right sequence number from a wrong one, and which carry no
    /// state from one record to the next but it. (CBC is not tried.)
    pub fn resyncable(&self) -> bool {
        matches!(self.mode, Mode::Gcm12 | Mode::Chacha12 | Mode::Tls13)
    }

    /// TLS 1.2 AES-GCM: the record's explicit nonce, which most implementations (OpenSSL
    /// among them) set to the record's sequence number: where to look first after a gap.
    pub fn seq_hint(&self, body: &[u8]) -> Option<u64> {
        if self.mode != Mode::Gcm12 {
            return None;
        }
        Some(u64::from_be_bytes(body.get(..8)?.try_into().ok()?))
    }

    pub fn open(
        &mut self,
        content_type: u8,
        version: u16,
        body: &[u8],
        scratch: &mut Vec<u8>,
    ) -> Result<Opened, OpenError> {
        let seq = self.seq.to_be_bytes();
        let xor_nonce = |iv: &[u8; 16]| {
            let mut n = [0u8; 12];
            n.copy_from_slice(&iv[..12]);
            for (a, b) in n[4..].iter_mut().zip(seq) {
                *a ^= b;
            }
            n
        };
        let opened = match self.mode {
            Mode::Gcm12 | Mode::Chacha12 | Mode::Tls13 => {
                let explicit = if self.mode == Mode::Gcm12 { 8 } else { 0 };
                if body.len() < explicit + 16 {
                    return Err(OpenError::Length);
                }
                let head = &body[..body.len() - 16];
                let ct = &head[explicit..];
                let nonce = match self.mode {
                    Mode::Gcm12 => {
                        let mut n = [0u8; 12];
                        n[..4].copy_from_slice(&self.iv[..4]);
                        n[4..].copy_from_slice(&head[..8]);
                        n
                    }
                    _ => xor_nonce(&self.iv),
                };
                let mut aad = [0u8; 13];
                let aad: &[u8] = if self.mode == Mode::Tls13 {
                    aad[0] = content_type;
                    aad[1..3].copy_from_slice(&version.to_be_bytes());
                    aad[3..5].copy_from_slice(&(body.len() as u16).to_be_bytes());
                    &aad[..5]
                } else {
                    aad[..8].copy_from_slice(&seq);
                    aad[8] = content_type;
                    aad[9..11].copy_from_slice(&version.to_be_bytes());
                    aad[11..13].copy_from_slice(&(ct.len() as u16).to_be_bytes());
                    &aad[..]
                };
                scratch.clear();
                scratch.extend_from_slice(&body[explicit..]);
                aead_open(&self.cipher, nonce, aad, scratch)?;
                scratch.truncate(ct.len());
                if self.mode == Mode::Tls13 {
                    // TLSInnerPlaintext: content, the real type, zero padding.
                    let Some(end) = scratch.iter().rposition(|&b| b != 0) else {
                        return Err(OpenError::NoContentType);
                    };
                    Opened {
                        content_type: scratch[end],
                        range: 0..end,
                    }
                } else {
                    Opened {
                        content_type,
                        range: 0..scratch.len(),
                    }
                }
            }
            Mode::Cbc { mac, chained, etm } => {
                self.open_cbc(mac, chained, etm, content_type, version, body, scratch)?
            }
        };
        self.seq = self.seq.wrapping_add(1);
        Ok(opened)
    }

    #[allow(clippy::too_many_arguments)]
    fn open_cbc(
        &mut self,
        mac: MacHash,
        chained: bool,
        etm: bool,
        content_type: u8,
        version: u16,
        body: &[u8],
        scratch: &mut Vec<u8>,
    ) -> Result<Opened, OpenError> {
        let seq = self.seq.to_be_bytes();
        let ml = mac.len();
        let (enc, etm_tag) = if etm {
            if body.len() < ml {
                return Err(OpenError::Length);
            }
            let (enc, tag) = body.split_at(body.len() - ml);
            let len = (enc.len() as u16).to_be_bytes();
            let head = [content_type, (version >> 8) as u8, version as u8];
            if !hmac_matches(mac, &self.mac_key, &[&seq, &head, &len, enc], tag) {
                return Err(OpenError::Auth);
            }
            (enc, true)
        } else {
            (body, false)
        };
        let (iv, ct) = if chained {
            (self.iv, enc)
        } else {
            if enc.len() < 16 {
                return Err(OpenError::Length);
            }
            let mut iv = [0u8; 16];
            iv.copy_from_slice(&enc[..16]);
            (iv, &enc[16..])
        };
        if ct.is_empty() || ct.len() % 16 != 0 {
            return Err(OpenError::Length);
        }
        scratch.clear();
        scratch.extend_from_slice(ct);
        let ok = match &self.cipher {
            Cipher::Aes128Cbc(a) => {
                cbc::Decryptor::<aes::Aes128>::inner_iv_init((**a).clone(), &iv.into())
                    .decrypt_padded_mut::<NoPadding>(scratch)
                    .is_ok()
            }
            Cipher::Aes256Cbc(a) => {
                cbc::Decryptor::<aes::Aes256>::inner_iv_init((**a).clone(), &iv.into())
                    .decrypt_padded_mut::<NoPadding>(scratch)
                    .is_ok()
            }
            _ => false,
        };
        if !ok {
            return Err(OpenError::Length);
        }
        let pad = usize::from(scratch[scratch.len() - 1]);
        let need = pad + 1 + if etm_tag { 0 } else { ml };
        if need > scratch.len() {
            return Err(OpenError::Padding);
        }
        let pad_start = scratch.len() - pad - 1;
        if scratch[pad_start..].iter().any(|&b| usize::from(b) != pad) {
            return Err(OpenError::Padding);
        }
        let content_end = if etm_tag { pad_start } else { pad_start - ml };
        if !etm_tag {
            let len = (content_end as u16).to_be_bytes();
            let head = [content_type, (version >> 8) as u8, version as u8];
            let (content, tag) = (&scratch[..content_end], &scratch[content_end..pad_start]);
            if !hmac_matches(mac, &self.mac_key, &[&seq, &head, &len, content], tag) {
                return Err(OpenError::Auth);
            }
        }
        if chained {
            self.iv.copy_from_slice(&ct[ct.len() - 16..]);
        }
        Ok(Opened {
            content_type,
            range: 0..content_end,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// RFC 8448 §3 (simple 1-RTT handshake): traffic secrets and the keys and IVs the trace
    /// derives from them.
    #[test]
    fn tls13_keys_follow_rfc8448() {
        let suite = suite(0x1301, Version::Tls13).unwrap();
        for (secret, key, iv) in [
            (
                // server handshake traffic secret
                "b6 7b 7d 69 0c c1 6c 4e 75 e5 42 13 cb 2d 37 b4 e9 c9 12 bc de d9 10 5d 42 be fd 59 d3 91 ad 38",
                "3f ce 51 60 09 c2 17 27 d0 f2 e4 e8 6e e4 03 bc",
                "5d 31 3e b2 67 12 76 ee 13 00 0b 30",
            ),
            (
                // client handshake traffic secret
                "b3 ed db 12 6e 06 7f 35 a7 80 b3 ab f4 5e 2d 8f 3b 1a 95 07 38 f5 2e 96 00 74 6a 0e 27 a5 5a 21",
                "db fa a6 93 d1 76 2c 5b 66 6a f5 d9 50 25 8d 01",
                "5b d3 c7 1b 83 6e 0b 76 bb 73 26 5f",
            ),
            (
                // server application traffic secret
                "a1 1a f9 f0 55 31 f8 56 ad 47 11 6b 45 a9 50 32 82 04 b4 f4 4b fb 6b 3a 4b 4f 1f 3f cb 63 16 43",
                "9f 02 28 3b 6c 9c 07 ef c2 6b b9 f2 ac 92 e3 56",
                "cf 78 2b 88 dd 83 54 9a ad f1 e9 84",
            ),
        ] {
            let secret = unhex(secret);
            let mut k = [0u8; 16];
            hkdf_expand_label(Hash::Sha256, &secret, b"key", b"", &mut k).unwrap();
            assert_eq!(k.to_vec(), unhex(key));
            let mut v = [0u8; 12];
            hkdf_expand_label(Hash::Sha256, &secret, b"iv", b"", &mut v).unwrap();
            assert_eq!(v.to_vec(), unhex(iv));
            assert!(tls13_keys(suite, &secret).is_some());
        }
        // A secret of the wrong length for the suite's hash is refused, not used.
        assert!(tls13_keys(suite, &[0; 48]).is_none());
    }

    /// A TLS 1.3 record sealed by RustCrypto's `aes-gcm` (another implementation than the
    /// one opening it) as RFC 8446 §5.2–5.3 says (nonce: IV
    /// XOR the sequence number; additional data: the record header; inner type at the end,
    /// then padding) opens with the keys of RFC 8448's server handshake secret, once, in order.
    #[test]
    fn tls13_records_open_in_sequence() {
        use aes_gcm::aead::Aead;
        let suite = suite(0x1301, Version::Tls13).unwrap();
        let secret = unhex("b67b7d690cc16c4e75e54213cb2d37b4e9c912bcded9105d42befd59d391ad38");
        let seal = |seq: u8, inner: &[u8]| {
            let key = unhex("3fce516009c21727d0f2e4e86ee403bc");
            let mut nonce = unhex("5d313eb2671276ee13000b30");
            nonce[11] ^= seq;
            let len = (inner.len() + 16) as u16;
            let header = [23, 3, 3, (len >> 8) as u8, len as u8];
            let c = aes_gcm::Aes128Gcm::new_from_slice(&key).unwrap();
            let ct = c
                .encrypt(
                    aes_gcm::Nonce::from_slice(&nonce),
                    aes_gcm::aead::Payload {
                        msg: inner,
                        aad: &header,
                    },
                )
                .unwrap();
            [header.to_vec(), ct].concat()
        };
        let mut keys = tls13_keys(suite, &secret).unwrap();
        let mut scratch = Vec::new();
        let r0 = seal(0, b"\x08\x00\x00\x02\x00\x00\x16\x00\x00");
        let r1 = seal(1, b"select 1\x17");
        let opened = keys.open(r0[0], 0x0303, &r0[5..], &mut scratch).unwrap();
        assert_eq!(
            (opened.content_type, &scratch[opened.range]),
            (22, &b"\x08\x00\x00\x02\x00\x00"[..])
        );
        let opened = keys.open(r1[0], 0x0303, &r1[5..], &mut scratch).unwrap();
        assert_eq!(
            (opened.content_type, &scratch[opened.range]),
            (23, &b"select 1"[..])
        );
        assert_eq!(keys.seq, 2);
        // Out of order: sequence 2 is expected, so record 0 does not authenticate.
        assert_eq!(
            keys.open(r0[0], 0x0303, &r0[5..], &mut scratch),
            Err(OpenError::Auth)
        );
        // A flipped byte does not either; nor does a record too short for its tag.
        let mut keys = tls13_keys(suite, &secret).unwrap();
        let mut bad = r0.clone();
        bad[7] ^= 1;
        assert_eq!(
            keys.open(bad[0], 0x0303, &bad[5..], &mut scratch),
            Err(OpenError::Auth)
        );
        assert_eq!(
            keys.open(23, 0x0303, &[1; 15], &mut scratch),
            Err(OpenError::Length)
        );
        // All zeros inside: no content type.
        let mut keys = tls13_keys(suite, &secret).unwrap();
        let z = seal(0, &[0, 0, 0]);
        assert_eq!(
            keys.open(z[0], 0x0303, &z[5..], &mut scratch),
            Err(OpenError::NoContentType)
        );
    }

    /// The next traffic secret after a KeyUpdate: HKDF-Expand-Label(secret, "traffic upd").
    #[test]
    fn key_update_rolls_the_secret() {
        let suite = suite(0x1301, Version::Tls13).unwrap();
        let secret = [7u8; 32];
        let next = tls13_next_secret(suite, &secret).unwrap();
        let mut expect = [0u8; 32];
        hkdf_expand_label(Hash::Sha256, &secret, b"traffic upd", b"", &mut expect).unwrap();
        assert_eq!(next, expect.to_vec());
        assert_ne!(next, secret.to_vec());
    }

    /// The TLS 1.2 PRF (SHA-256) test vector published on the IETF TLS list, also checked
    /// with `openssl kdf -kdfopt digest:SHA256 … TLS1-PRF`.
    #[test]
    fn tls12_prf_sha256_vector() {
        let secret = unhex("9bbe436ba940f017b17652849a71db35");
        let seed = unhex("a0ba9f936cda311827a6f796ffd5198c");
        let mut out = [0u8; 100];
        prf(
            Version::Tls12,
            Hash::Sha256,
            &secret,
            b"test label",
            &seed,
            &mut out,
        )
        .unwrap();
        assert_eq!(
            out.to_vec(),
            unhex(
                "e3f229ba727be17b8d122620557cd453c2aab21d07c3d495329b52d4e61edb5a\
                 6b301791e90d35c9c9a46b4e14baf9af0fa022f7077def17abfd3797c0564bab\
                 4fbc91666e9def9b97fce34f796789baa48082d122ee42c5a72e5a5110fff701\
                 87347b66"
            )
        );
    }

    /// The TLS 1.0 PRF (MD5 XOR SHA-1), against `openssl kdf -kdfopt digest:MD5-SHA1 …
    /// TLS1-PRF` on the same inputs.
    #[test]
    fn tls10_prf_vector() {
        let secret = unhex("9bbe436ba940f017b17652849a71db35");
        let seed = unhex("a0ba9f936cda311827a6f796ffd5198c");
        let mut out = [0u8; 32];
        prf(
            Version::Tls10,
            Hash::Sha256,
            &secret,
            b"test label",
            &seed,
            &mut out,
        )
        .unwrap();
        assert_eq!(out.to_vec(), unhex(TLS10_PRF_EXPECTED));
    }

    #[test]
    fn suites_by_version() {
        assert_eq!(
            suite(0x1303, Version::Tls13).unwrap().bulk,
            Bulk::Chacha20Poly1305
        );
        assert!(suite(0x1303, Version::Tls12).is_none());
        assert!(suite(0xC02F, Version::Tls11).is_none(), "GCM needs TLS 1.2");
        assert_eq!(
            suite(0x0039, Version::Tls10).unwrap().bulk,
            Bulk::Aes256Cbc(MacHash::Sha1)
        );
        assert_eq!(suite(0xC030, Version::Tls12).unwrap().hash, Hash::Sha384);
        assert!(
            suite(0x000A, Version::Tls12).is_none(),
            "3DES is not supported"
        );
    }

    const TLS10_PRF_EXPECTED: &str =
        "661740e6f98bc901efd2738502a71c03f76dd2f86298549b1148eff06714cf0f";
}
