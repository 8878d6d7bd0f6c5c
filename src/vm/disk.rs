//! The VM disk as an untrusted input (pure): what a qcow2 header says about other files
//! (a backing file and its format, an external data file), and the rules a disk chain must
//! follow before QEMU may open it.
//!
//! A qcow2 header can name any path or protocol as its backing file, and QEMU, running as
//! root, would open it and let the guest read it. vminit reads every header itself and
//! allows a chain only when every file in it lies inside the image directory (the directory
//! of `VMINIT_DISK`), in a format that is named, qcow2 or raw, at most `MAX_LAYERS` deep.
//! QEMU then gets each file as a descriptor with its format pinned (see `qemu`), so it opens
//! nothing by name.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The most images a chain may have, the top one included.
pub const MAX_LAYERS: usize = 16;

/// The first four bytes of every qcow image (`QFI\xfb`).
pub const QCOW_MAGIC: [u8; 4] = *b"QFI\xfb";

/// How many bytes to read first: enough for every fixed header field vminit reads.
pub const HEADER_PREFIX: usize = 112;

/// The format of one image in the chain, as QEMU's block driver names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Qcow2,
    Raw,
}

impl Format {
    pub fn driver(self) -> &'static str {
        match self {
            Format::Qcow2 => "qcow2",
            Format::Raw => "raw",
        }
    }
}

/// One file of the disk chain, open for QEMU: `F` is the descriptor type (owned while
/// vminit holds it, a raw number on QEMU's command line).
#[derive(Debug)]
pub struct File<F> {
    /// The canonical path (symlinks and `..` resolved), for messages and labels only:
    /// QEMU gets the descriptors.
    pub path: PathBuf,
    /// Open read-only.
    pub read: F,
    /// Open read-write: the top image and its data file, which the guest writes.
    pub write: Option<F>,
}

/// One image of the disk chain.
#[derive(Debug)]
pub struct Layer<F> {
    pub file: File<F>,
    pub format: Format,
    /// The external data file that holds this image's guest data, if any.
    pub data_file: Option<File<F>>,
    /// Whether the next layer of the chain is this one's backing file.
    pub has_backing: bool,
}

/// What a qcow2 header says about other files.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Header {
    /// The backing file's name as stored (not resolved), and its format.
    pub backing: Option<(Vec<u8>, Format)>,
    /// The external data file's name as stored, when the image uses one.
    pub data_file: Option<Vec<u8>>,
}

const EXT_END: u32 = 0;
const EXT_BACKING_FORMAT: u32 = 0xe279_2aca;
const EXT_DATA_FILE: u32 = 0x4441_5441;
/// Incompatible feature bit 2: guest data lives in an external data file.
const INCOMPAT_DATA_FILE: u64 = 1 << 2;
/// Incompatible feature bit 1: QEMU found the image corrupt and opens it read-only only.
const INCOMPAT_CORRUPT: u64 = 1 << 1;
/// The incompatible feature bits QEMU 7.2 knows: dirty, corrupt, external data file,
/// compression type, extended L2 entries.
const INCOMPAT_KNOWN: u64 = 0x1f;

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn be64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// The length of the header cluster (where every name a header holds must lie), from the
/// first `HEADER_PREFIX` bytes; or why these bytes are not a qcow2 header. The problem is a
/// phrase that follows the file's name.
pub fn cluster_size(prefix: &[u8]) -> Result<usize, String> {
    if prefix.len() < 4 || prefix[..4] != QCOW_MAGIC {
        return Err("is not a qcow2 image".into());
    }
    match be32(prefix, 4) {
        Some(2 | 3) => {}
        Some(1) => {
            return Err(
                "is a qcow (version 1) image; convert it with qemu-img convert -O qcow2".into(),
            );
        }
        Some(v) => return Err(format!("is a qcow2 image of unknown version {v}")),
        None => return Err("has a truncated qcow2 header".into()),
    }
    match be32(prefix, 20) {
        // QEMU opens clusters from 512 bytes to 2 MiB.
        Some(bits @ 9..=21) => Ok(1 << bits),
        Some(bits) => Err(format!("has an invalid qcow2 header (cluster_bits {bits})")),
        None => Err("has a truncated qcow2 header".into()),
    }
}

/// Reads a qcow2 header from the image's first cluster (or the whole file, when shorter).
/// The problem is a phrase that follows the file's name.
pub fn parse_header(cluster: &[u8]) -> Result<Header, String> {
    let size = cluster_size(cluster)?;
    let cluster = &cluster[..cluster.len().min(size)];
    let truncated = || "has a truncated qcow2 header".to_string();
    let version = be32(cluster, 4).ok_or_else(truncated)?;
    let backing_offset = be64(cluster, 8).ok_or_else(truncated)?;
    let backing_size = be32(cluster, 16).ok_or_else(truncated)? as usize;
    let (incompatible, header_length) = if version >= 3 {
        (
            be64(cluster, 72).ok_or_else(truncated)?,
            be32(cluster, 100).ok_or_else(truncated)? as usize,
        )
    } else {
        (0, 72)
    };
    check_openable(cluster, incompatible)?;
    // Header extensions run from the end of the header to the backing file name (or the
    // end of the cluster), as QEMU reads them.
    let ext_end = if backing_offset != 0 {
        usize::try_from(backing_offset).unwrap_or(usize::MAX)
    } else {
        size
    }
    .min(cluster.len());
    let mut backing_format = None;
    let mut data_file = None;
    let mut at = header_length;
    while at + 8 <= ext_end {
        let kind = be32(cluster, at).ok_or_else(truncated)?;
        let len = be32(cluster, at + 4).ok_or_else(truncated)? as usize;
        if kind == EXT_END {
            break;
        }
        let data = cluster
            .get(at + 8..at + 8 + len)
            .filter(|_| at + 8 + len <= ext_end)
            .ok_or_else(|| "has an invalid qcow2 header extension".to_string())?;
        match kind {
            EXT_BACKING_FORMAT => backing_format = Some(data.to_vec()),
            EXT_DATA_FILE => data_file = Some(data.to_vec()),
            _ => {}
        }
        at += 8 + len.div_ceil(8) * 8;
    }
    let backing = if backing_offset == 0 || backing_size == 0 {
        None
    } else {
        let start = usize::try_from(backing_offset).unwrap_or(usize::MAX);
        if backing_size > 1023 || start.saturating_add(backing_size) > cluster.len() {
            return Err("has an invalid qcow2 header (backing file name out of bounds)".into());
        }
        let name = cluster[start..start + backing_size].to_vec();
        let format = match backing_format.as_deref() {
            Some(b"qcow2") => Format::Qcow2,
            Some(b"raw") => Format::Raw,
            Some(other) => {
                return Err(format!(
                    "names backing file {} in format {:?}; only qcow2 and raw backing files are supported",
                    quoted(&name),
                    String::from_utf8_lossy(other)
                ));
            }
            None => {
                return Err(format!(
                    "names backing file {} without its format; record it with qemu-img rebase -u -F qcow2 -b {} IMAGE (or -F raw)",
                    quoted(&name),
                    String::from_utf8_lossy(&name)
                ));
            }
        };
        Some((name, format))
    };
    let data_file = if incompatible & INCOMPAT_DATA_FILE != 0 {
        match data_file {
            Some(name) => Some(name),
            None => {
                return Err("uses an external data file but does not name it".into());
            }
        }
    } else {
        None
    };
    Ok(Header { backing, data_file })
}

/// Refuses what QEMU cannot open with the options vminit gives it: an encrypted image
/// (QEMU needs a secret for its key), one QEMU marked corrupt, features QEMU does not know.
fn check_openable(cluster: &[u8], incompatible: u64) -> Result<(), String> {
    let decrypt = "decrypt it with qemu-img convert -O qcow2 --object secret,id=k,file=KEYFILE --image-opts driver=qcow2,file.filename=IMAGE,encrypt.key-secret=k PLAIN.qcow2";
    match be32(cluster, 32) {
        Some(0) => {}
        Some(1) => {
            return Err(format!(
                "is encrypted (qcow2 AES), and QEMU needs its key as a secret vminit does not pass; {decrypt}"
            ));
        }
        Some(2) => {
            return Err(format!(
                "is encrypted (LUKS), and QEMU needs its key as a secret vminit does not pass; {decrypt}"
            ));
        }
        Some(m) => return Err(format!("has an unknown encryption method {m}")),
        None => return Err("has a truncated qcow2 header".into()),
    }
    if incompatible & INCOMPAT_CORRUPT != 0 {
        return Err("is marked corrupt by QEMU, which opens it read-only only; repair it with qemu-img check -r all".into());
    }
    let unknown = incompatible & !INCOMPAT_KNOWN;
    if unknown != 0 {
        return Err(format!(
            "uses qcow2 features this QEMU does not know (incompatible feature bits {unknown:#x}); convert it with qemu-img convert -O qcow2"
        ));
    }
    Ok(())
}

/// A name as it appears in a message: quoted, invalid UTF-8 replaced.
pub fn quoted(name: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(name))
}

/// Refuses names that are not plain paths: empty, with NUL bytes, or a QEMU protocol
/// (`nbd:`, `json:`, `http:`, ... — anything with a colon before the first slash, which is
/// how QEMU tells a protocol from a file name). `what` is "backing file" or "data file".
pub fn check_name(what: &str, name: &[u8]) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("names an empty {what}"));
    }
    if name.contains(&0) {
        return Err(format!("names {what} {} with a NUL byte", quoted(name)));
    }
    let before_slash = name.split(|&b| b == b'/').next().unwrap_or_default();
    if let Some(colon) = before_slash.iter().position(|&b| b == b':') {
        return Err(format!(
            "names {what} {}, a QEMU protocol ({}:), not a file; only files inside the image directory are allowed",
            quoted(name),
            String::from_utf8_lossy(&name[..colon])
        ));
    }
    Ok(())
}

/// Where a name stored in `referrer`'s header points, as QEMU resolves it: relative names
/// from the directory of `referrer` (as named, not through symlinks).
pub fn resolve(referrer: &Path, name: &[u8]) -> PathBuf {
    let name = Path::new(OsStr::from_bytes(name));
    match referrer.parent() {
        Some(dir) if name.is_relative() => dir.join(name),
        _ => name.to_owned(),
    }
}

/// Whether `canonical` (a path with every symlink and `..` resolved) lies inside `dir`
/// (also canonical).
pub fn is_inside(dir: &Path, canonical: &Path) -> bool {
    canonical != dir && canonical.starts_with(dir)
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// A minimal qcow2 v3 header cluster (512-byte clusters) naming `backing` (with its
    /// format, if any) and an external data file.
    pub fn qcow2(backing: Option<(&str, Option<&str>)>, data_file: Option<&str>) -> Vec<u8> {
        let mut h = vec![0u8; 512];
        h[..4].copy_from_slice(&QCOW_MAGIC);
        h[4..8].copy_from_slice(&3u32.to_be_bytes());
        h[20..24].copy_from_slice(&9u32.to_be_bytes());
        h[100..104].copy_from_slice(&112u32.to_be_bytes());
        let mut at = 112;
        let mut ext = |h: &mut Vec<u8>, kind: u32, data: &[u8]| {
            h[at..at + 4].copy_from_slice(&kind.to_be_bytes());
            h[at + 4..at + 8].copy_from_slice(&(data.len() as u32).to_be_bytes());
            h[at + 8..at + 8 + data.len()].copy_from_slice(data);
            at += 8 + data.len().div_ceil(8) * 8;
        };
        if let Some((_, Some(format))) = backing {
            ext(&mut h, EXT_BACKING_FORMAT, format.as_bytes());
        }
        if let Some(name) = data_file {
            ext(&mut h, EXT_DATA_FILE, name.as_bytes());
            h[72..80].copy_from_slice(&INCOMPAT_DATA_FILE.to_be_bytes());
        }
        if let Some((name, _)) = backing {
            let offset = 384usize;
            h[8..16].copy_from_slice(&(offset as u64).to_be_bytes());
            h[16..20].copy_from_slice(&(name.len() as u32).to_be_bytes());
            h[offset..offset + name.len()].copy_from_slice(name.as_bytes());
        }
        h
    }

    #[test]
    fn a_plain_image_names_no_other_file() {
        assert_eq!(parse_header(&qcow2(None, None)), Ok(Header::default()));
    }

    #[test]
    fn encrypted_corrupt_and_unknown_feature_images_are_refused_with_the_fix() {
        for (at, value, needle) in [
            (32, 1u32, "encrypted (qcow2 AES)"),
            (32, 2, "encrypted (LUKS)"),
            (32, 7, "unknown encryption method 7"),
            (76, 1 << 1, "corrupt"),
            (76, 1 << 9, "feature bits 0x200"),
        ] {
            let mut h = qcow2(None, None);
            h[at..at + 4].copy_from_slice(&value.to_be_bytes());
            let e = parse_header(&h).unwrap_err();
            assert!(e.contains(needle), "{needle}: {e}");
        }
    }

    #[test]
    fn the_backing_file_and_its_format_come_from_the_header() {
        let h = parse_header(&qcow2(Some(("base.qcow2", Some("qcow2"))), None)).unwrap();
        assert_eq!(h.backing, Some((b"base.qcow2".to_vec(), Format::Qcow2)));
        let h = parse_header(&qcow2(Some(("/image/base.raw", Some("raw"))), None)).unwrap();
        assert_eq!(h.backing, Some((b"/image/base.raw".to_vec(), Format::Raw)));
    }

    #[test]
    fn a_backing_file_without_a_named_format_is_refused_with_the_fix() {
        let e = parse_header(&qcow2(Some(("base.qcow2", None)), None)).unwrap_err();
        assert!(e.contains("without its format") && e.contains("qemu-img rebase -u -F qcow2"));
        let e = parse_header(&qcow2(Some(("base.vmdk", Some("vmdk"))), None)).unwrap_err();
        assert!(e.contains("\"vmdk\""), "{e}");
    }

    #[test]
    fn an_external_data_file_is_read_from_its_header_extension() {
        let h = parse_header(&qcow2(None, Some("data.raw"))).unwrap();
        assert_eq!(h.data_file, Some(b"data.raw".to_vec()));
        let mut unnamed = qcow2(None, None);
        unnamed[72..80].copy_from_slice(&INCOMPAT_DATA_FILE.to_be_bytes());
        assert!(
            parse_header(&unnamed)
                .unwrap_err()
                .contains("does not name it")
        );
    }

    #[test]
    fn headers_that_are_not_qcow2_or_lie_about_their_bounds_are_refused() {
        assert!(
            parse_header(b"\0\0\0\0raw")
                .unwrap_err()
                .contains("not a qcow2")
        );
        let mut v1 = qcow2(None, None);
        v1[4..8].copy_from_slice(&1u32.to_be_bytes());
        assert!(parse_header(&v1).unwrap_err().contains("version 1"));
        let mut huge = qcow2(Some(("base.qcow2", Some("qcow2"))), None);
        huge[16..20].copy_from_slice(&5000u32.to_be_bytes());
        assert!(parse_header(&huge).unwrap_err().contains("out of bounds"));
        let mut beyond = qcow2(Some(("base.qcow2", Some("qcow2"))), None);
        beyond[8..16].copy_from_slice(&510u64.to_be_bytes());
        assert!(parse_header(&beyond).unwrap_err().contains("out of bounds"));
        let mut ext = qcow2(None, Some("data.raw"));
        ext[116..120].copy_from_slice(&4096u32.to_be_bytes());
        assert!(parse_header(&ext).unwrap_err().contains("extension"));
        assert!(
            parse_header(&qcow2(None, None)[..50])
                .unwrap_err()
                .contains("truncated")
        );
    }

    #[test]
    fn protocols_and_empty_names_are_not_files() {
        for name in [
            "nbd:localhost:10809",
            "json:{\"file.driver\":\"file\"}",
            "http://example.com/x",
            "file:/etc/shadow",
        ] {
            let e = check_name("backing file", name.as_bytes()).unwrap_err();
            assert!(e.contains("protocol"), "{name}: {e}");
        }
        assert!(check_name("backing file", b"").is_err());
        assert!(check_name("data file", b"a\0b").is_err());
        for name in [
            "base.qcow2",
            "../x/base.qcow2",
            "/image/base.qcow2",
            "dir/a:b",
        ] {
            assert_eq!(
                check_name("backing file", name.as_bytes()),
                Ok(()),
                "{name}"
            );
        }
    }

    #[test]
    fn relative_names_resolve_from_the_directory_of_the_image_that_names_them() {
        let top = Path::new("/image/vm1/overlay.qcow2");
        assert_eq!(
            resolve(top, b"../base.qcow2"),
            PathBuf::from("/image/vm1/../base.qcow2")
        );
        assert_eq!(resolve(top, b"/etc/passwd"), PathBuf::from("/etc/passwd"));
    }

    #[test]
    fn inside_means_strictly_below_the_directory() {
        let dir = Path::new("/image");
        assert!(is_inside(dir, Path::new("/image/base.qcow2")));
        assert!(is_inside(dir, Path::new("/image/a/b.qcow2")));
        assert!(!is_inside(dir, Path::new("/image")));
        assert!(!is_inside(dir, Path::new("/images/base.qcow2")));
        assert!(!is_inside(dir, Path::new("/etc/passwd")));
    }
}
