//! Reading a core file's ELF header and notes, and nothing else.
//!
//! A core is accepted only when its header says `ET_CORE`, whatever its name. What the crash
//! was (executable, pid, signal, command line, uid) comes from the note segments: a few KiB to a
//! few MiB at the start of the file, never the whole multi-GiB core.
//!
//! Notes read (64-bit little-endian cores, as written by x86_64 and aarch64 Linux):
//! `NT_PRSTATUS` (pid, signal), `NT_PRPSINFO` (command name, arguments, uid), `NT_SIGINFO`
//! (signal), `NT_AUXV` (`AT_ENTRY`) and `NT_FILE` (the mapped files: the one holding the entry
//! point is the executable).

use std::io;

use thiserror::Error;

/// Positional reads, so parsing works on a file descriptor and on bytes alike.
pub trait ReadAt {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;

    fn read_exact_at(&self, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
        while !buf.is_empty() {
            match self.read_at(buf, offset)? {
                0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                n => {
                    buf = &mut buf[n..];
                    offset += n as u64;
                }
            }
        }
        Ok(())
    }
}

impl ReadAt for std::fs::File {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        std::os::unix::fs::FileExt::read_at(self, buf, offset)
    }
}

impl ReadAt for [u8] {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(self.len());
        let n = buf.len().min(self.len() - start);
        buf[..n].copy_from_slice(&self[start..start + n]);
        Ok(n)
    }
}

/// Notes beyond this are not read: a real core's notes are far smaller.
pub const MAX_NOTES_BYTES: u64 = 8 * 1024 * 1024;

const ET_CORE: u16 = 4;
const PT_NOTE: u32 = 4;
const NT_PRSTATUS: u32 = 1;
const NT_PRPSINFO: u32 = 3;
const NT_AUXV: u32 = 6;
const NT_SIGINFO: u32 = 0x5349_4749;
const NT_FILE: u32 = 0x4649_4c45;
const AT_ENTRY: u64 = 9;

#[derive(Debug, Error)]
pub enum ElfError {
    #[error("not an ELF file")]
    NotElf,
    #[error("an ELF file but not a core (e_type {0})")]
    NotCore(u16),
    #[error("cannot read: {0}")]
    Io(#[from] io::Error),
}

/// What the header and notes say about the crash. Every field is optional: a truncated or
/// unusual core still ships, with what could be read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CoreInfo {
    pub exe: Option<String>,
    pub command: Option<String>,
    pub cmdline: Option<String>,
    pub pid: Option<u32>,
    pub uid: Option<u32>,
    pub signal: Option<u32>,
}

/// Checks that `file` is an ELF core and reads its notes.
pub fn read_core_info(file: &(impl ReadAt + ?Sized)) -> Result<CoreInfo, ElfError> {
    let mut ident = [0u8; 64];
    let got = file.read_at(&mut ident, 0)?;
    if got < 20 || &ident[..4] != b"\x7fELF" {
        return Err(ElfError::NotElf);
    }
    let is_64 = ident[4] == 2;
    let little = ident[5] == 1;
    let e_type = if little {
        u16::from_le_bytes([ident[16], ident[17]])
    } else {
        u16::from_be_bytes([ident[16], ident[17]])
    };
    if e_type != ET_CORE {
        return Err(ElfError::NotCore(e_type));
    }
    if !(is_64 && little && got >= 64) {
        // A 32-bit or big-endian core: accepted, described by its file name only.
        return Ok(CoreInfo::default());
    }
    let phoff = u64_at(&ident, 32);
    let phentsize = u64::from(u16_at(&ident, 54));
    let phnum = u64::from(u16_at(&ident, 56));
    let mut info = CoreInfo::default();
    let mut notes_read = 0u64;
    let mut entry = None;
    let mut files = None;
    for index in 0..phnum.min(65_535) {
        let mut header = [0u8; 56];
        let at = index
            .checked_mul(phentsize)
            .and_then(|offset| offset.checked_add(phoff));
        if phentsize < 56 || at.is_none_or(|at| file.read_exact_at(&mut header, at).is_err()) {
            break;
        }
        if u32_at(&header, 0) != PT_NOTE {
            continue;
        }
        let (offset, size) = (u64_at(&header, 8), u64_at(&header, 32));
        let size = size.min(MAX_NOTES_BYTES - notes_read);
        if size == 0 {
            break;
        }
        // No file reaches past i64::MAX, where pread fails with EINVAL: a segment said to lie
        // there is a lie (anyone who can write into the dump directory can write one), not a
        // failure to read, which would have the core retried for ever.
        if offset
            .checked_add(size)
            .is_none_or(|end| end > i64::MAX as u64)
        {
            continue;
        }
        notes_read += size;
        let mut notes = vec![0u8; size as usize];
        let got = read_up_to(file, &mut notes, offset)?;
        notes.truncate(got);
        for (kind, desc) in Notes::new(&notes) {
            match kind {
                NT_PRSTATUS if desc.len() >= 36 => {
                    info.signal = info.signal.or(Some(u32_at(desc, 0)).filter(|s| *s != 0));
                    info.pid = info.pid.or(Some(u32_at(desc, 32)));
                }
                NT_PRPSINFO if desc.len() >= 136 => {
                    info.uid = Some(u32_at(desc, 16));
                    info.pid = info.pid.or(Some(u32_at(desc, 24)));
                    info.command = c_string(&desc[40..56]);
                    info.cmdline = c_string(&desc[56..136]).map(|args| args.trim_end().to_owned());
                }
                NT_SIGINFO if desc.len() >= 4 => {
                    info.signal = Some(u32_at(desc, 0)).filter(|s| *s != 0).or(info.signal);
                }
                NT_AUXV => entry = auxv_entry(desc),
                NT_FILE => files = Some(desc.to_vec()),
                _ => {}
            }
        }
    }
    if let (Some(entry), Some(files)) = (entry, files) {
        info.exe = mapped_file_at(&files, entry);
    }
    Ok(info)
}

fn read_up_to(file: &(impl ReadAt + ?Sized), buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], offset + filled as u64)? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    bytes
        .get(at..at + 2)
        .map_or(0, |b| u16::from_le_bytes([b[0], b[1]]))
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    bytes
        .get(at..at + 4)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u32::from_le_bytes)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    bytes
        .get(at..at + 8)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

fn c_string(bytes: &[u8]) -> Option<String> {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    let text = String::from_utf8_lossy(&bytes[..end]).into_owned();
    (!text.is_empty()).then_some(text)
}

/// Iterates `(type, descriptor)` over a note segment; stops at the first malformed note.
struct Notes<'a> {
    rest: &'a [u8],
}

impl<'a> Notes<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }
}

fn align4(n: usize) -> usize {
    n.div_ceil(4) * 4
}

impl<'a> Iterator for Notes<'a> {
    type Item = (u32, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.len() < 12 {
            return None;
        }
        let name_size = u32_at(self.rest, 0) as usize;
        let desc_size = u32_at(self.rest, 4) as usize;
        let kind = u32_at(self.rest, 8);
        let desc_start = 12usize.checked_add(align4(name_size))?;
        let desc_end = desc_start.checked_add(desc_size)?;
        let desc = self.rest.get(desc_start..desc_end)?;
        self.rest = self.rest.get(align4(desc_end).min(self.rest.len())..)?;
        Some((kind, desc))
    }
}

fn auxv_entry(desc: &[u8]) -> Option<u64> {
    desc.chunks_exact(16)
        .find(|pair| u64_at(pair, 0) == AT_ENTRY)
        .map(|pair| u64_at(pair, 8))
}

/// The file mapped at `address` according to an `NT_FILE` note.
fn mapped_file_at(desc: &[u8], address: u64) -> Option<String> {
    let count = usize::try_from(u64_at(desc, 0)).ok()?;
    let ranges_end = 16usize.checked_add(count.checked_mul(24)?)?;
    let names = desc.get(ranges_end..)?;
    let mut names = names.split(|b| *b == 0);
    for index in 0..count {
        let at = 16 + index * 24;
        let (start, end) = (u64_at(desc, at), u64_at(desc, at + 8));
        let name = names.next()?;
        if (start..end).contains(&address) {
            return Some(String::from_utf8_lossy(name).into_owned());
        }
    }
    None
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn note(kind: u32, name: &[u8], desc: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend((name.len() as u32).to_le_bytes());
        out.extend((desc.len() as u32).to_le_bytes());
        out.extend(kind.to_le_bytes());
        out.extend(name);
        out.resize(align4(out.len()), 0);
        out.extend(desc);
        out.resize(align4(out.len()), 0);
        out
    }

    /// A minimal x86_64 core with the notes the kernel writes.
    pub(crate) fn synthetic_core(signal: u32, pid: u32, exe: &str) -> Vec<u8> {
        let mut prstatus = vec![0u8; 336];
        prstatus[0..4].copy_from_slice(&signal.to_le_bytes());
        prstatus[32..36].copy_from_slice(&pid.to_le_bytes());
        let mut prpsinfo = vec![0u8; 136];
        prpsinfo[16..20].copy_from_slice(&1000u32.to_le_bytes());
        prpsinfo[24..28].copy_from_slice(&pid.to_le_bytes());
        prpsinfo[40..46].copy_from_slice(b"server");
        prpsinfo[56..70].copy_from_slice(b"server --port ");
        let mut auxv = Vec::new();
        for (key, value) in [(6u64, 4096u64), (AT_ENTRY, 0x401000), (0, 0)] {
            auxv.extend(key.to_le_bytes());
            auxv.extend(value.to_le_bytes());
        }
        let mut files = Vec::new();
        files.extend(2u64.to_le_bytes());
        files.extend(4096u64.to_le_bytes());
        for (start, end) in [
            (0x7f00_0000_0000u64, 0x7f00_0001_0000u64),
            (0x400000, 0x402000),
        ] {
            files.extend(start.to_le_bytes());
            files.extend(end.to_le_bytes());
            files.extend(0u64.to_le_bytes());
        }
        files.extend(b"/usr/lib/libc.so.6\0");
        files.extend(exe.as_bytes());
        files.push(0);
        let mut notes = Vec::new();
        notes.extend(note(NT_PRSTATUS, b"CORE\0", &prstatus));
        notes.extend(note(NT_PRPSINFO, b"CORE\0", &prpsinfo));
        notes.extend(note(NT_AUXV, b"CORE\0", &auxv));
        notes.extend(note(NT_FILE, b"CORE\0", &files));

        let mut core = vec![0u8; 64 + 56];
        core[..4].copy_from_slice(b"\x7fELF");
        core[4] = 2;
        core[5] = 1;
        core[6] = 1;
        core[16..18].copy_from_slice(&ET_CORE.to_le_bytes());
        core[32..40].copy_from_slice(&64u64.to_le_bytes());
        core[54..56].copy_from_slice(&56u16.to_le_bytes());
        core[56..58].copy_from_slice(&1u16.to_le_bytes());
        let phdr = &mut core[64..120];
        phdr[0..4].copy_from_slice(&PT_NOTE.to_le_bytes());
        phdr[8..16].copy_from_slice(&120u64.to_le_bytes());
        phdr[32..40].copy_from_slice(&(notes.len() as u64).to_le_bytes());
        core.extend(notes);
        core
    }

    #[test]
    fn a_core_is_described_by_its_notes() {
        let core = synthetic_core(11, 4242, "/app/bin/server");
        let info = read_core_info(core.as_slice()).unwrap();
        assert_eq!(
            info,
            CoreInfo {
                exe: Some("/app/bin/server".to_owned()),
                command: Some("server".to_owned()),
                cmdline: Some("server --port".to_owned()),
                pid: Some(4242),
                uid: Some(1000),
                signal: Some(11),
            }
        );
    }

    #[test]
    fn only_elf_cores_are_accepted() {
        assert!(matches!(
            read_core_info(b"#!/bin/sh\necho hi\n".as_slice()),
            Err(ElfError::NotElf)
        ));
        assert!(matches!(
            read_core_info(b"".as_slice()),
            Err(ElfError::NotElf)
        ));
        let mut executable = synthetic_core(11, 1, "/x");
        executable[16] = 2;
        assert!(matches!(
            read_core_info(executable.as_slice()),
            Err(ElfError::NotCore(2))
        ));
    }

    #[test]
    fn offsets_past_any_file_end_are_notes_lost_not_read_errors() {
        let mut file = tempfile::tempfile().unwrap();
        let mut core = synthetic_core(11, 4242, "/app/bin/server");
        core[64 + 8..64 + 16].copy_from_slice(&(1u64 << 63).to_le_bytes());
        std::io::Write::write_all(&mut file, &core).unwrap();
        assert_eq!(read_core_info(&file).unwrap(), CoreInfo::default());

        let mut headers_at_the_end = synthetic_core(11, 4242, "/x");
        headers_at_the_end[32..40].copy_from_slice(&u64::MAX.to_le_bytes());
        headers_at_the_end[56..58].copy_from_slice(&3u16.to_le_bytes());
        assert_eq!(
            read_core_info(headers_at_the_end.as_slice()).unwrap(),
            CoreInfo::default()
        );
    }

    #[test]
    fn truncated_or_garbled_notes_do_not_fail_the_core() {
        let core = synthetic_core(6, 7, "/x");
        for cut in [64, 100, 130, 200, core.len() - 3] {
            assert!(read_core_info(&core[..cut]).is_ok(), "cut at {cut}");
        }
        let mut garbled = core.clone();
        garbled[120..124].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(read_core_info(garbled.as_slice()).is_ok());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            let mut core = synthetic_core(11, 1, "/x");
            let end = core.len().min(120 + bytes.len());
            core[120..end].copy_from_slice(&bytes[..end - 120]);
            let _ = read_core_info(core.as_slice());
            let _ = read_core_info(bytes.as_slice());
        }
    }
}
