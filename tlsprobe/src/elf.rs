//! Where a TLS library's read and write code starts, for a cheaper probe.
//!
//! A uprobe whose first instruction the kernel cannot emulate is executed out of line, one
//! single-step trap more per call: on x86_64 OpenSSL 3.0's `SSL_read` and `SSL_write` begin
//! with `sub $0x18,%rsp`, which costs the server ~5 µs per call (16-thread TLS sysbench),
//! about as much as everything else the probe does. Both functions and their `_ex` forms call
//! one internal function each (`ssl_read_internal`, `ssl_write_internal`), which begins with a
//! `push` the kernel emulates; it takes exactly `SSL_read_ex`'s arguments and returns 1 (with
//! the count) on success. [`engine`] finds it from the machine code, and only when that code
//! proves it: `SSL_read_ex` is nothing but `[endbr64] sub $8,%rsp; call X` before the call
//! (so X gets its four argument registers untouched), and `SSL_read` calls the same X. Any
//! other layout (another OpenSSL, another compiler) gets None and the exported functions are
//! probed as before.

use std::path::Path;

/// A function of an ELF file: its address and its bytes' offset in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Func {
    addr: u64,
    size: u64,
    offset: u64,
}

/// The ELF64 little-endian file's sections (address, file offset, size, type).
struct Elf<'a> {
    data: &'a [u8],
    sections: Vec<(u64, u64, u64, u32, u32)>,
}

fn u16_at(d: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_le_bytes(d.get(i..i + 2)?.try_into().ok()?))
}
fn u32_at(d: &[u8], i: usize) -> Option<u32> {
    Some(u32::from_le_bytes(d.get(i..i + 4)?.try_into().ok()?))
}
fn u64_at(d: &[u8], i: usize) -> Option<u64> {
    Some(u64::from_le_bytes(d.get(i..i + 8)?.try_into().ok()?))
}

const SHT_SYMTAB: u32 = 2;
const SHT_DYNSYM: u32 = 11;
const SHT_NOBITS: u32 = 8;
const STT_FUNC: u8 = 2;

impl<'a> Elf<'a> {
    fn parse(data: &'a [u8]) -> Option<Self> {
        // ELF64 (class 2), little-endian (1), x86_64 (62).
        if data.get(..4)? != b"\x7fELF" || data[4] != 2 || data[5] != 1 || u16_at(data, 18)? != 62 {
            return None;
        }
        let shoff = u64_at(data, 0x28)? as usize;
        let shentsize = u16_at(data, 0x3a)? as usize;
        let shnum = u16_at(data, 0x3c)? as usize;
        if shentsize < 64 {
            return None;
        }
        let mut sections = Vec::with_capacity(shnum);
        for i in 0..shnum {
            let s = shoff.checked_add(i.checked_mul(shentsize)?)?;
            let typ = u32_at(data, s + 4)?;
            let addr = u64_at(data, s + 0x10)?;
            let offset = u64_at(data, s + 0x18)?;
            let size = u64_at(data, s + 0x20)?;
            let link = u32_at(data, s + 0x28)?;
            sections.push((addr, offset, size, typ, link));
        }
        Some(Elf { data, sections })
    }

    /// The file offset of address `addr`, inside a section with bytes in the file.
    fn offset_of(&self, addr: u64) -> Option<u64> {
        self.sections
            .iter()
            .find(|&&(a, _, size, typ, _)| {
                typ != SHT_NOBITS && a != 0 && addr >= a && addr < a.saturating_add(size)
            })
            .map(|&(a, off, ..)| off + (addr - a))
    }

    fn bytes(&self, f: Func) -> Option<&'a [u8]> {
        self.data
            .get(f.offset as usize..(f.offset.checked_add(f.size)?) as usize)
    }

    /// The defined function called `name` (dynamic symbols first, then the symbol table).
    fn func(&self, name: &str) -> Option<Func> {
        for want in [SHT_DYNSYM, SHT_SYMTAB] {
            for &(_, off, size, typ, link) in &self.sections {
                if typ != want {
                    continue;
                }
                let &(_, stroff, strsize, ..) = self.sections.get(link as usize)?;
                let strtab = self
                    .data
                    .get(stroff as usize..stroff.checked_add(strsize)? as usize)?;
                let syms = self
                    .data
                    .get(off as usize..off.checked_add(size)? as usize)?;
                for sym in syms.chunks_exact(24) {
                    let name_at = u32_at(sym, 0)? as usize;
                    let info = sym[4];
                    let shndx = u16_at(sym, 6)?;
                    let value = u64_at(sym, 8)?;
                    let fsize = u64_at(sym, 16)?;
                    if info & 0xf != STT_FUNC || shndx == 0 || value == 0 {
                        continue;
                    }
                    let Some(rest) = strtab.get(name_at..) else {
                        continue;
                    };
                    let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
                    if &rest[..end] == name.as_bytes() {
                        let offset = self.offset_of(value)?;
                        return Some(Func {
                            addr: value,
                            size: fsize,
                            offset,
                        });
                    }
                }
            }
        }
        None
    }
}

const ENDBR64: [u8; 4] = [0xf3, 0x0f, 0x1e, 0xfa];
const SUB_8_RSP: [u8; 4] = [0x48, 0x83, 0xec, 0x08];

/// The address `wrapper` calls if its code is exactly `[endbr64] sub $8,%rsp; call X`.
fn wrapped(code: &[u8], addr: u64) -> Option<u64> {
    let at = if code.starts_with(&ENDBR64) { 4 } else { 0 };
    if code.get(at..at + 4)? != SUB_8_RSP || *code.get(at + 4)? != 0xe8 {
        return None;
    }
    let rel = i32::from_le_bytes(code.get(at + 5..at + 9)?.try_into().ok()?);
    let next = addr.checked_add(at as u64 + 9)?;
    Some(next.wrapping_add(rel as i64 as u64))
}

/// Whether `code` (at `addr`) holds a direct call to `target`.
fn calls(code: &[u8], addr: u64, target: u64) -> bool {
    code.windows(5).enumerate().any(|(i, w)| {
        w[0] == 0xe8 && {
            let rel = i32::from_le_bytes([w[1], w[2], w[3], w[4]]);
            (addr + i as u64 + 5).wrapping_add(rel as i64 as u64) == target
        }
    })
}

/// The file offset of the internal function that both `ex` (`SSL_read_ex`, `SSL_write_ex`)
/// and `plain` (`SSL_read`, `SSL_write`) call with `ex`'s arguments, if their code proves it.
pub fn engine(data: &[u8], ex: &str, plain: &str) -> Option<u64> {
    let elf = Elf::parse(data)?;
    let ex_f = elf.func(ex)?;
    let plain_f = elf.func(plain)?;
    let target = wrapped(elf.bytes(ex_f)?, ex_f.addr)?;
    if !calls(elf.bytes(plain_f)?, plain_f.addr, target) {
        return None;
    }
    elf.offset_of(target)
}

/// [`engine`] for the read and the write side of the library at `path`.
pub fn engines(path: &Path) -> (Option<u64>, Option<u64>) {
    match std::fs::read(path) {
        Ok(data) => (
            engine(&data, "SSL_read_ex", "SSL_read"),
            engine(&data, "SSL_write_ex", "SSL_write"),
        ),
        Err(_) => (None, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pure_wrapper_names_its_callee_and_nothing_else_does() {
        // sub $8,%rsp; call +0x10 (from 0x1009: 0x1019)
        let code = [0x48, 0x83, 0xec, 0x08, 0xe8, 0x10, 0, 0, 0, 0x31, 0xd2];
        assert_eq!(wrapped(&code, 0x1000), Some(0x1019));
        let mut endbr = ENDBR64.to_vec();
        endbr.extend_from_slice(&code);
        assert_eq!(wrapped(&endbr, 0x1000), Some(0x101d));
        // Anything before the call (an argument moved) or another first instruction: none.
        assert_eq!(wrapped(&[0x48, 0x89, 0xd1, 0xe8, 0, 0, 0, 0], 0x1000), None);
        assert_eq!(
            wrapped(&[0x48, 0x83, 0xec, 0x18, 0xe8, 0, 0, 0, 0], 0x1000),
            None
        );
        assert_eq!(wrapped(&code[..7], 0x1000), None);
        // call -0x20 at 0x2010 targets 0x1ff5.
        let mut plain = vec![0x90; 0x10];
        plain.extend_from_slice(&[0xe8, 0xe0, 0xff, 0xff, 0xff]);
        assert!(calls(&plain, 0x2000, 0x1ff5));
        assert!(!calls(&plain, 0x2000, 0x1ff6));
    }

    #[test]
    fn junk_is_no_elf() {
        for n in 0..300 {
            let junk: Vec<u8> = (0..n).map(|i| (i * 31 + n) as u8).collect();
            assert_eq!(engine(&junk, "SSL_read_ex", "SSL_read"), None);
        }
        let mut hdr = b"\x7fELF\x02\x01".to_vec();
        hdr.resize(0x40, 0);
        hdr[18] = 62;
        hdr[0x3a] = 64;
        hdr[0x3c] = 0xff;
        hdr[0x28] = 0xf0;
        assert_eq!(engine(&hdr, "SSL_read_ex", "SSL_read"), None);
    }

    #[test]
    fn this_machines_libssl_if_any() {
        // Whatever it finds must be a function start the exported ones call.
        for p in [
            "/usr/lib/x86_64-linux-gnu/libssl.so.3",
            "/usr/lib64/libssl.so.3",
        ] {
            let Ok(data) = std::fs::read(p) else { continue };
            let elf = Elf::parse(&data).expect("libssl is an ELF64 x86_64 file");
            assert!(elf.func("SSL_read").is_some());
            for (ex, plain) in [("SSL_read_ex", "SSL_read"), ("SSL_write_ex", "SSL_write")] {
                if let Some(off) = engine(&data, ex, plain) {
                    let f = elf.func(plain).unwrap();
                    assert_ne!(off, f.offset);
                }
            }
        }
    }
}
