//! The guest machine's storage and devices the inputs ask for (pure): the disk's size and base
//! image, the boot ISO, the extra disks, the NIC model; and the decisions about them — create,
//! grow or leave the disk, boot from the ISO or the disk — with `qemu-img`'s command lines.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::vm::disk::{Format, QCOW_MAGIC};

/// What the machine inputs ask for.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Machine {
    /// `DISK_SIZE` in bytes: create the disk at this size when it is missing, grow it when
    /// it is smaller.
    pub disk_size: Option<u64>,
    /// `DISK_BASE`: the read-only base a new disk is a thin overlay on, as given (relative
    /// names are inside the image directory).
    pub disk_base: Option<PathBuf>,
    /// `BOOT_ISO`: a CD-ROM image, as given (relative names are inside the image directory).
    pub boot_iso: Option<PathBuf>,
    pub nic_model: NicModel,
    pub boot_mode: BootMode,
    /// `TPM=yes`: a TPM 2.0 from swtpm.
    pub tpm: bool,
}

/// The guest's firmware (`BOOT_MODE`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BootMode {
    /// SeaBIOS on the default `pc` machine.
    #[default]
    Bios,
    /// OVMF (UEFI), its variables kept beside the disk.
    Uefi,
    /// OVMF with Secure Boot on the `q35` machine with SMM (which Secure Boot needs to keep
    /// the guest from writing the variables itself), Microsoft's keys enrolled.
    Secure,
}

impl BootMode {
    /// Whether the guest runs on the `q35` machine (PCI Express), which Secure Boot needs.
    pub fn q35(self) -> bool {
        self == BootMode::Secure
    }

    /// OVMF's code and the template of its variables, for UEFI: the names of Debian's 4 MiB
    /// builds without their extension (see [`firmware_files`]).
    pub fn ovmf(self) -> Option<(&'static str, &'static str)> {
        match self {
            BootMode::Bios => None,
            BootMode::Uefi => Some(("OVMF_CODE_4M", "OVMF_VARS_4M")),
            BootMode::Secure => Some(("OVMF_CODE_4M.secboot", "OVMF_VARS_4M.ms")),
        }
    }
}

/// The files one part of OVMF (`stem`, from [`BootMode::ovmf`]) may be found as in the
/// firmware directory, in the order they are looked for: the image's copy, which holds the
/// same bytes as Debian's in a compressed qcow2 (an OVMF flash is mostly erased, 0xFF, space:
/// 3.2 MB for the four files instead of 8.2), then Debian's raw flash image as the ovmf
/// package installs it. The format goes with the name, so QEMU never guesses it.
pub fn firmware_files(stem: &str) -> [(String, Format); 2] {
    [
        (format!("{stem}.qcow2"), Format::Qcow2),
        (format!("{stem}.fd"), Format::Raw),
    ]
}

/// One part of OVMF as found: its file and the format its name says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Firmware {
    pub path: PathBuf,
    pub format: Format,
}

/// `qemu-img convert` of OVMF's variables template stored as a qcow2 into the raw flash image
/// the guest's variables are kept in (`image.efivars.fd`): the guest writes that file through
/// the flash, so it stays raw whatever the template's format.
pub fn vars_command(qemu_img: &Path, template: &Path, to: &Path) -> Vec<OsString> {
    vec![
        qemu_img.into(),
        "convert".into(),
        "-q".into(),
        "-f".into(),
        "qcow2".into(),
        "-O".into(),
        "raw".into(),
        template.into(),
        to.into(),
    ]
}

/// The directory beside the disk that keeps the TPM's state: `image.qcow2` -> `image.tpm`.
pub fn tpm_state_name(disk: &Path) -> PathBuf {
    let stem = disk.file_stem().unwrap_or_default().to_string_lossy();
    PathBuf::from(format!("{stem}.tpm"))
}

/// The file beside the disk that keeps the guest's UEFI variables: `image.qcow2` ->
/// `image.efivars.fd`.
pub fn efi_vars_name(disk: &Path) -> PathBuf {
    let stem = disk.file_stem().unwrap_or_default().to_string_lossy();
    PathBuf::from(format!("{stem}.efivars.fd"))
}

/// The guest NICs' device model (`NIC_MODEL`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NicModel {
    #[default]
    Virtio,
    /// Intel 82574L, which Windows and most installers drive without extra drivers.
    E1000e,
}

impl NicModel {
    /// QEMU's device name.
    pub fn device(self) -> &'static str {
        match self {
            NicModel::Virtio => "virtio-net-pci",
            NicModel::E1000e => "e1000e",
        }
    }

    /// Whether the device takes the container NIC's MTU as `host_mtu` (virtio only; the
    /// guest of another model learns it by DHCP option 26).
    pub fn takes_host_mtu(self) -> bool {
        self == NicModel::Virtio
    }

    /// The queue pairs a NIC of this model gets when `asked` are: virtio-net takes several,
    /// other models one.
    pub fn queues(self, asked: u32) -> u32 {
        if self == NicModel::Virtio { asked } else { 1 }
    }
}

/// Reads the machine inputs through `env` (empty values count as unset). Errors name the
/// variable and the fix.
pub fn parse(env: &dyn Fn(&str) -> Option<String>) -> Result<Machine, (&'static str, String)> {
    let mut m = Machine::default();
    if let Some(v) = env("DISK_SIZE") {
        m.disk_size = Some(parse_size(&v).ok_or((
            "DISK_SIZE",
            format!("{v:?} is not a disk size; use a number with M, G or T, such as 20G or 512M"),
        ))?);
    }
    let file = |var: &'static str, v: String| {
        let path = PathBuf::from(&v);
        let valid = !v.contains('\0') && path.file_name().is_some() && !v.ends_with('/');
        if valid {
            Ok(path)
        } else {
            Err((
                var,
                format!(
                    "{v:?} is not a file name; name a file in the image directory, such as base.qcow2"
                ),
            ))
        }
    };
    if let Some(v) = env("DISK_BASE") {
        m.disk_base = Some(file("DISK_BASE", v)?);
    }
    if let Some(v) = env("BOOT_ISO") {
        m.boot_iso = Some(file("BOOT_ISO", v)?);
    }
    m.boot_mode = match env("BOOT_MODE").as_deref() {
        None | Some("bios") => BootMode::Bios,
        Some("uefi") => BootMode::Uefi,
        Some("secure") => BootMode::Secure,
        Some(v) => {
            return Err((
                "BOOT_MODE",
                format!("{v:?} is not bios, uefi or secure (UEFI with Secure Boot)"),
            ));
        }
    };
    m.tpm = match env("TPM").as_deref() {
        None | Some("no") => false,
        Some("yes") => true,
        Some(v) => return Err(("TPM", format!("{v:?} is not yes or no"))),
    };
    m.nic_model = match env("NIC_MODEL").as_deref() {
        None | Some("virtio") => NicModel::Virtio,
        Some("e1000e") => NicModel::E1000e,
        Some(v) => {
            return Err((
                "NIC_MODEL",
                format!("{v:?} is not virtio or e1000e (e1000e for guests without virtio drivers)"),
            ));
        }
    };
    Ok(m)
}

/// A size in `RAM_SIZE`'s units: a number with an optional K, M, G or T suffix (powers of
/// 1024), a bare number meaning MiB; at least 1 MiB, at most 64 TiB (qcow2's limit), a
/// multiple of 512 bytes.
pub fn parse_size(v: &str) -> Option<u64> {
    let digits = v.trim_end_matches(|c: char| "KkMmGgTt".contains(c));
    let shift = match &v[digits.len()..] {
        "K" | "k" => 10,
        "" | "M" | "m" => 20,
        "G" | "g" => 30,
        "T" | "t" => 40,
        _ => return None,
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let bytes = digits.parse::<u64>().ok()?.checked_mul(1 << shift)?;
    ((1 << 20..=64 << 40).contains(&bytes) && bytes.is_multiple_of(512)).then_some(bytes)
}

/// A size for messages: in the largest unit that divides it (`20G`, `1536M`), else bytes.
pub fn human(bytes: u64) -> String {
    for (unit, shift) in [("T", 40), ("G", 30), ("M", 20), ("K", 10)] {
        if bytes >= 1 << shift && bytes.is_multiple_of(1 << shift) {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    format!("{bytes} bytes")
}

/// What to do to the disk before QEMU opens it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DiskAction {
    /// Use it as it is.
    Keep,
    /// Create an empty qcow2 of this many bytes.
    Create { size: u64 },
    /// Create a qcow2 overlay on a base image: its name relative to the disk's directory,
    /// its format, and the overlay's size.
    Overlay {
        base: PathBuf,
        format: Format,
        size: u64,
    },
    /// Grow the disk from one size to another.
    Grow { from: u64, to: u64 },
}

/// The base image, as `decide` needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Base {
    /// Its name relative to the disk's directory.
    pub name: PathBuf,
    pub format: Format,
    /// The size the guest sees.
    pub size: u64,
}

/// Why the disk cannot be made as asked: the variable to change and what is wrong.
pub type Refusal = (&'static str, String);

/// Decides what to do to the disk: `current` is its size when it exists, `size` is
/// `DISK_SIZE`, `base` the checked `DISK_BASE`. A disk is never shrunk, and a new overlay is
/// never smaller than its base.
pub fn decide(
    current: Option<u64>,
    size: Option<u64>,
    base: Option<Base>,
) -> Result<DiskAction, Refusal> {
    match (current, size, base) {
        (Some(from), Some(to), _) if to > from => Ok(DiskAction::Grow { from, to }),
        (Some(from), Some(to), _) if to < from => Err((
            "DISK_SIZE",
            format!(
                "{} is smaller than the disk, which is {}; vminit never shrinks a disk: set DISK_SIZE={} or more, or leave it unset",
                human(to),
                human(from),
                human(from)
            ),
        )),
        (Some(_), _, _) => Ok(DiskAction::Keep),
        (None, size, Some(base)) => match size {
            Some(size) if size < base.size => Err((
                "DISK_SIZE",
                format!(
                    "{} is smaller than the base image {}, which is {}; set DISK_SIZE={} or more, or leave it unset",
                    human(size),
                    base.name.display(),
                    human(base.size),
                    human(base.size)
                ),
            )),
            size => Ok(DiskAction::Overlay {
                size: size.unwrap_or(base.size),
                base: base.name,
                format: base.format,
            }),
        },
        (None, Some(size), None) => Ok(DiskAction::Create { size }),
        (None, None, None) => Ok(DiskAction::Keep),
    }
}

/// `qemu-img create` for a new disk at `path`: a sparse qcow2 (no preallocation), or an
/// overlay that records its base's relative name and format and does not open the base
/// (`-u`: the size is given).
pub fn create_command(qemu_img: &Path, path: &Path, action: &DiskAction) -> Option<Vec<OsString>> {
    let mut a: Vec<OsString> = vec![
        qemu_img.into(),
        "create".into(),
        "-q".into(),
        "-f".into(),
        "qcow2".into(),
    ];
    let size = match action {
        DiskAction::Create { size } => *size,
        DiskAction::Overlay { base, format, size } => {
            a.extend(["-u".into(), "-b".into(), base.into(), "-F".into()]);
            a.push(format.driver().into());
            *size
        }
        _ => return None,
    };
    a.push(path.into());
    a.push(size.to_string().into());
    Some(a)
}

/// `qemu-img resize` of the qcow2 open on descriptor `fd` (through `/proc/self/fd`, so
/// qemu-img opens no name of the chain, and without its backing file, which a resize does
/// not read).
pub fn grow_command(qemu_img: &Path, fd: i32, to: u64) -> Vec<OsString> {
    vec![
        qemu_img.into(),
        "resize".into(),
        "-q".into(),
        format!(
            r#"json:{{"driver":"qcow2","file":{{"driver":"file","filename":"/proc/self/fd/{fd}"}},"backing":null}}"#
        )
        .into(),
        to.to_string().into(),
    ]
}

/// The size a qcow2 image gives the guest, from its header.
pub fn qcow2_size(header: &[u8]) -> Option<u64> {
    if header.get(..4)? != QCOW_MAGIC {
        return None;
    }
    Some(u64::from_be_bytes(header.get(24..32)?.try_into().ok()?))
}

/// Where a qcow2 image's L1 table lies and how many bytes it has, from its header.
pub fn l1_table(header: &[u8]) -> Option<(u64, usize)> {
    let entries = u32::from_be_bytes(header.get(36..40)?.try_into().ok()?) as usize;
    let offset = u64::from_be_bytes(header.get(40..48)?.try_into().ok()?);
    Some((offset, entries.checked_mul(8)?))
}

/// Whether an L1 table points at no L2 table: the image holds no guest data at all, as
/// `qemu-img create` leaves it.
pub fn l1_is_empty(l1: &[u8]) -> bool {
    const OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
    l1.chunks(8).all(|e| {
        let entry = u64::from_be_bytes(e.try_into().unwrap_or([0; 8]));
        entry & OFFSET_MASK == 0
    })
}

/// What kind of image the start of a file shows: the format of a disk image QEMU can use as
/// a base, or why the file is not one. `head` is at least the first 64 bytes (and `iso` its
/// bytes at offset 32769, when the file is that long); `len` is the file's length. The
/// problem is a phrase that follows the file's name.
pub fn base_format(head: &[u8], iso: &[u8], len: u64) -> Result<Format, String> {
    let convert = |what: &str| {
        Err(format!(
            "is a {what} image; convert it with qemu-img convert -O qcow2 and name the result"
        ))
    };
    if head.starts_with(&QCOW_MAGIC) {
        return Ok(Format::Qcow2);
    }
    if head.starts_with(b"KDMV") || head.starts_with(b"# Disk DescriptorFile") {
        return convert("VMDK");
    }
    if head.starts_with(b"vhdxfile") {
        return convert("VHDX");
    }
    if head.starts_with(b"conectix") {
        return convert("VHD");
    }
    if head.get(64..68) == Some(&[0x7f, 0x10, 0xda, 0xbe]) {
        return convert("VDI");
    }
    if is_iso(iso) {
        return Err("is a CD/DVD image, not a disk; give it as BOOT_ISO".into());
    }
    if len == 0 || !len.is_multiple_of(512) {
        return Err(format!(
            "is not a disk image (its length, {len} bytes, is not a whole number of 512-byte sectors)"
        ));
    }
    Ok(Format::Raw)
}

/// Whether the bytes at offset 32769 of a file (the first volume descriptor's identifier)
/// are those of a CD/DVD image: ISO 9660 (`CD001`) or UDF (`BEA01`).
pub fn is_iso(at_32769: &[u8]) -> bool {
    at_32769.starts_with(b"CD001") || at_32769.starts_with(b"BEA01")
}

/// The extra disks among the names of the image directory: `disk2.qcow2`, `disk3.qcow2`,
/// ... in the order of their numbers (so the guest sees them in that order, whatever the
/// directory's order), up to `disk9.qcow2`.
pub fn extra_disks<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<(u32, String)> {
    let mut found: Vec<(u32, String)> = names
        .into_iter()
        .filter_map(|name| {
            let n = name.strip_prefix("disk")?.strip_suffix(".qcow2")?;
            let number = n.parse::<u32>().ok().filter(|n| (2..=9).contains(n))?;
            (n.len() == 1).then(|| (number, name.to_string()))
        })
        .collect();
    found.sort();
    found
}

/// QEMU's `-boot` option for a guest with a boot ISO: the CD-ROM once while the disk has
/// never been written (an installer's reboot then starts the disk), the disk first after.
pub fn boot_order(disk_is_new: bool) -> &'static str {
    if disk_is_new {
        "order=c,once=d"
    } else {
        "order=cd"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn only_a_virtio_nic_takes_several_queues() {
        assert_eq!(NicModel::Virtio.queues(4), 4);
        assert_eq!(NicModel::E1000e.queues(4), 1);
    }

    fn parse_with(vars: &[(&str, &str)]) -> Result<Machine, (&'static str, String)> {
        let map: HashMap<&str, &str> = vars.iter().copied().collect();
        parse(&|k| map.get(k).map(|v| v.to_string()))
    }

    #[test]
    fn sizes_use_ram_sizes_units_and_bare_numbers_are_mebibytes() {
        assert_eq!(parse_size("20G"), Some(20 << 30));
        assert_eq!(parse_size("512M"), Some(512 << 20));
        assert_eq!(parse_size("512m"), Some(512 << 20));
        assert_eq!(parse_size("2048"), Some(2048 << 20));
        assert_eq!(parse_size("1T"), Some(1 << 40));
        assert_eq!(parse_size("1048576K"), Some(1 << 30));
        for bad in [
            "",
            "G",
            "0",
            "0G",
            "1.5G",
            "20GB",
            "-1G",
            "512K",
            "65T",
            "99999999999999T",
        ] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
        assert_eq!(human(20 << 30), "20G");
        assert_eq!(human(1536 << 20), "1536M");
        assert_eq!(human(1000), "1000 bytes");
    }

    #[test]
    fn inputs_are_parsed_with_defaults_and_refused_naming_the_variable() {
        let m = parse_with(&[]).unwrap();
        assert_eq!(m, Machine::default());
        assert_eq!(m.nic_model, NicModel::Virtio);
        let m = parse_with(&[
            ("DISK_SIZE", "8G"),
            ("DISK_BASE", "debian.raw"),
            ("BOOT_ISO", "/image/install.iso"),
            ("NIC_MODEL", "e1000e"),
        ])
        .unwrap();
        assert_eq!(m.disk_size, Some(8 << 30));
        assert_eq!(m.disk_base, Some(PathBuf::from("debian.raw")));
        assert_eq!(m.boot_iso, Some(PathBuf::from("/image/install.iso")));
        assert_eq!(m.nic_model, NicModel::E1000e);
        assert_eq!(
            parse_with(&[("DISK_SIZE", "big")]).unwrap_err().0,
            "DISK_SIZE"
        );
        assert_eq!(
            parse_with(&[("DISK_BASE", "/image/")]).unwrap_err().0,
            "DISK_BASE"
        );
        assert_eq!(parse_with(&[("BOOT_ISO", "..")]).unwrap_err().0, "BOOT_ISO");
        let (var, msg) = parse_with(&[("NIC_MODEL", "rtl8139")]).unwrap_err();
        assert_eq!(var, "NIC_MODEL");
        assert!(msg.contains("virtio or e1000e"), "{msg}");
    }

    #[test]
    fn a_missing_disk_is_created_a_smaller_one_grown_and_a_larger_one_never_shrunk() {
        assert_eq!(
            decide(None, Some(1 << 30), None),
            Ok(DiskAction::Create { size: 1 << 30 })
        );
        assert_eq!(decide(None, None, None), Ok(DiskAction::Keep));
        assert_eq!(decide(Some(1 << 30), None, None), Ok(DiskAction::Keep));
        assert_eq!(
            decide(Some(1 << 30), Some(1 << 30), None),
            Ok(DiskAction::Keep)
        );
        assert_eq!(
            decide(Some(1 << 30), Some(2 << 30), None),
            Ok(DiskAction::Grow {
                from: 1 << 30,
                to: 2 << 30
            })
        );
        let (var, msg) = decide(Some(2 << 30), Some(1 << 30), None).unwrap_err();
        assert_eq!(var, "DISK_SIZE");
        assert!(
            msg.contains("which is 2G")
                && msg.contains("never shrinks")
                && msg.contains("DISK_SIZE=2G"),
            "{msg}"
        );
    }

    #[test]
    fn a_new_overlay_takes_its_bases_size_unless_asked_for_more() {
        let base = Base {
            name: "cloud.raw".into(),
            format: Format::Raw,
            size: 2 << 30,
        };
        assert_eq!(
            decide(None, None, Some(base.clone())),
            Ok(DiskAction::Overlay {
                base: "cloud.raw".into(),
                format: Format::Raw,
                size: 2 << 30
            })
        );
        assert_eq!(
            decide(None, Some(8 << 30), Some(base.clone())),
            Ok(DiskAction::Overlay {
                base: "cloud.raw".into(),
                format: Format::Raw,
                size: 8 << 30
            })
        );
        let (_, msg) = decide(None, Some(1 << 30), Some(base.clone())).unwrap_err();
        assert!(msg.contains("base image cloud.raw, which is 2G"), "{msg}");
        // An existing disk is used as it is, whatever the base.
        assert_eq!(
            decide(Some(2 << 30), None, Some(base)),
            Ok(DiskAction::Keep)
        );
    }

    #[test]
    fn qemu_img_creates_sparse_images_and_overlays_that_name_their_base_relatively() {
        let img = Path::new("/usr/bin/qemu-img");
        let words = |a: Option<Vec<OsString>>| -> Vec<String> {
            a.unwrap()
                .into_iter()
                .map(|w| w.into_string().unwrap())
                .collect()
        };
        assert_eq!(
            words(create_command(
                img,
                Path::new("/image/.new"),
                &DiskAction::Create { size: 1 << 30 }
            )),
            [
                "/usr/bin/qemu-img",
                "create",
                "-q",
                "-f",
                "qcow2",
                "/image/.new",
                "1073741824"
            ]
        );
        let overlay = DiskAction::Overlay {
            base: "sub/base.raw".into(),
            format: Format::Raw,
            size: 4 << 30,
        };
        assert_eq!(
            words(create_command(img, Path::new("/image/.new"), &overlay)),
            [
                "/usr/bin/qemu-img",
                "create",
                "-q",
                "-f",
                "qcow2",
                "-u",
                "-b",
                "sub/base.raw",
                "-F",
                "raw",
                "/image/.new",
                "4294967296"
            ]
        );
        assert_eq!(
            create_command(img, Path::new("/x"), &DiskAction::Keep),
            None
        );
        // OVMF's compressed variables template becomes the raw flash the guest writes.
        assert_eq!(
            words(Some(vars_command(
                img,
                Path::new("/usr/share/OVMF/OVMF_VARS_4M.qcow2"),
                Path::new("/image/.image.efivars.fd.vminit-new"),
            ))),
            [
                "/usr/bin/qemu-img",
                "convert",
                "-q",
                "-f",
                "qcow2",
                "-O",
                "raw",
                "/usr/share/OVMF/OVMF_VARS_4M.qcow2",
                "/image/.image.efivars.fd.vminit-new",
            ]
        );
        let grow: Vec<String> = grow_command(img, 7, 2 << 30)
            .into_iter()
            .map(|w| w.into_string().unwrap())
            .collect();
        assert_eq!(
            grow[3],
            r#"json:{"driver":"qcow2","file":{"driver":"file","filename":"/proc/self/fd/7"},"backing":null}"#
        );
        assert_eq!(grow[4], "2147483648");
    }

    #[test]
    fn header_fields_give_the_size_and_the_l1_table() {
        let mut h = crate::vm::disk::tests::qcow2(None, None);
        h[24..32].copy_from_slice(&(16u64 << 20).to_be_bytes());
        h[36..40].copy_from_slice(&2u32.to_be_bytes());
        h[40..48].copy_from_slice(&0x30000u64.to_be_bytes());
        assert_eq!(qcow2_size(&h), Some(16 << 20));
        assert_eq!(l1_table(&h), Some((0x30000, 16)));
        assert_eq!(qcow2_size(b"\0\0\0\0rawdata-rawdata-rawdata-rawdata"), None);
        assert!(l1_is_empty(&[0u8; 16]));
        // Only the offset bits count (bit 63 is the "copied" flag).
        let mut copied = [0u8; 16];
        copied[8] = 0x80;
        assert!(l1_is_empty(&copied));
        let mut used = [0u8; 16];
        used[13] = 0x05;
        assert!(!l1_is_empty(&used));
    }

    #[test]
    fn a_base_is_qcow2_or_raw_and_other_images_are_refused_with_the_fix() {
        let mut head = vec![0u8; 72];
        assert_eq!(base_format(&head, &[], 2 << 30), Ok(Format::Raw));
        head[..4].copy_from_slice(&QCOW_MAGIC);
        assert_eq!(base_format(&head, &[], 12345), Ok(Format::Qcow2));
        let mut vmdk = vec![0u8; 72];
        vmdk[..4].copy_from_slice(b"KDMV");
        assert!(
            base_format(&vmdk, &[], 1 << 20)
                .unwrap_err()
                .contains("VMDK")
        );
        let mut vdi = vec![0u8; 72];
        vdi[64..68].copy_from_slice(&[0x7f, 0x10, 0xda, 0xbe]);
        assert!(
            base_format(&vdi, &[], 1 << 20)
                .unwrap_err()
                .contains("qemu-img convert")
        );
        let e = base_format(&[0u8; 72], b"CD001\x01", 1 << 20).unwrap_err();
        assert!(e.contains("BOOT_ISO"), "{e}");
        let e = base_format(b"#!/bin/sh\necho not a disk\n", &[], 26).unwrap_err();
        assert!(e.contains("not a disk image"), "{e}");
        assert!(is_iso(b"BEA01\x01"));
        assert!(!is_iso(b"\0\0\0\0\0"));
    }

    #[test]
    fn extra_disks_are_numbered_two_to_nine_in_order() {
        let names = [
            "disk10.qcow2",
            "disk3.qcow2",
            "image.qcow2",
            "disk2.qcow2",
            "disk02.qcow2",
            "disk2.raw",
            "disk1.qcow2",
        ];
        assert_eq!(
            extra_disks(names),
            vec![
                (2, "disk2.qcow2".to_string()),
                (3, "disk3.qcow2".to_string())
            ]
        );
    }

    #[test]
    fn uefi_takes_ovmf_and_keeps_its_variables_beside_the_disk() {
        assert_eq!(parse_with(&[]).unwrap().boot_mode, BootMode::Bios);
        assert_eq!(
            parse_with(&[("BOOT_MODE", "secure")]).unwrap().boot_mode,
            BootMode::Secure
        );
        assert_eq!(
            parse_with(&[("BOOT_MODE", "efi")]).unwrap_err().0,
            "BOOT_MODE"
        );
        assert_eq!(BootMode::Bios.ovmf(), None);
        assert_eq!(
            BootMode::Uefi.ovmf(),
            Some(("OVMF_CODE_4M", "OVMF_VARS_4M"))
        );
        // Secure Boot: the SMM build, and variables with Microsoft's keys enrolled.
        assert_eq!(
            BootMode::Secure.ovmf(),
            Some(("OVMF_CODE_4M.secboot", "OVMF_VARS_4M.ms"))
        );
        // The image's compressed copy first, then Debian's raw flash image; each with the
        // format its name says.
        assert_eq!(
            firmware_files("OVMF_CODE_4M.secboot"),
            [
                ("OVMF_CODE_4M.secboot.qcow2".to_string(), Format::Qcow2),
                ("OVMF_CODE_4M.secboot.fd".to_string(), Format::Raw),
            ]
        );
        assert_eq!(
            efi_vars_name(Path::new("/image/image.qcow2")),
            PathBuf::from("image.efivars.fd")
        );
        assert_eq!(
            tpm_state_name(Path::new("/image/image.qcow2")),
            PathBuf::from("image.tpm")
        );
        assert!(parse_with(&[("TPM", "yes")]).unwrap().tpm);
        assert!(!parse_with(&[]).unwrap().tpm);
        assert_eq!(parse_with(&[("TPM", "2.0")]).unwrap_err().0, "TPM");
    }

    #[test]
    fn the_iso_boots_once_while_the_disk_is_new() {
        assert_eq!(boot_order(true), "order=c,once=d");
        assert_eq!(boot_order(false), "order=cd");
    }
}
