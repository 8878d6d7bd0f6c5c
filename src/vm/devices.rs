//! Device nodes and probes: /dev/tapN for each macvtap, /dev/kvm, /dev/vhost-net; the disk
//! and every file of its backing chain, checked and opened for QEMU.

use std::fs;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{FcntlArg, OFlag, fcntl, open};
use nix::sys::stat::{Mode, SFlag, fstat, makedev, mknod};
use nix::sys::uio::pread;

use crate::error::{Error, Result};
use crate::vm::accel::{KvmStatus, MacvtapProbe};
use crate::vm::disk::{self, Format, MAX_LAYERS};

/// A macvtap's character device, open for QEMU (no CLOEXEC: QEMU inherits it), once per
/// queue pair: each open of a macvtap's node is one more queue.
#[derive(Debug)]
pub struct Tap {
    pub path: PathBuf,
    /// At least one.
    pub fds: Vec<OwnedFd>,
}

impl Tap {
    pub fn raw_fds(&self) -> Vec<RawFd> {
        self.fds.iter().map(AsRawFd::as_raw_fd).collect()
    }
}

/// The major number the kernel gave the macvtap driver, from /proc/devices.
pub fn macvtap_major(proc_devices: &Path) -> Option<u64> {
    let text = fs::read_to_string(proc_devices).ok()?;
    parse_major(&text, "macvtap")
}

fn parse_major(devices: &str, driver: &str) -> Option<u64> {
    devices
        .lines()
        .skip_while(|l| !l.starts_with("Character devices"))
        .take_while(|l| !l.starts_with("Block devices"))
        .find_map(|l| {
            let mut w = l.split_whitespace();
            let major = w.next()?.parse().ok()?;
            (w.next()? == driver).then_some(major)
        })
}

/// The Docker flag that lets a container create and open macvtap nodes.
fn cgroup_hint(major: Option<u64>) -> String {
    match major {
        Some(m) => format!("hint: add --device-cgroup-rule 'c {m}:* rwm' (and keep CAP_MKNOD)"),
        None => {
            "hint: add --device-cgroup-rule 'c <macvtap major from /proc/devices>:* rwm'".into()
        }
    }
}

/// Checks, before anything changes, whether this container may create and open macvtap
/// device nodes: mknod a node of the macvtap major with a minor no macvtap uses, open
/// it. EPERM from either means the device cgroup or a capability is missing.
pub fn probe_tap_nodes(dev: &Path, proc_devices: &Path) -> MacvtapProbe {
    let Some(major) = macvtap_major(proc_devices) else {
        // The driver loads with the first macvtap; nothing to probe yet.
        return MacvtapProbe::NotLoaded;
    };
    match try_tap_node(dev, major) {
        Ok(()) => MacvtapProbe::Usable,
        Err(e) => MacvtapProbe::Refused(e),
    }
}

fn try_tap_node(dev: &Path, major: u64) -> Result<()> {
    let probe = dev.join(".vminit-probe");
    let _ = fs::remove_file(&probe);
    let made = mknod(
        &probe,
        SFlag::S_IFCHR,
        Mode::from_bits_truncate(0o600),
        makedev(major, 0),
    );
    if let Err(e) = made {
        return Err(Error::Unavailable {
            what: format!(
                "mknod {}: {e}; cannot create macvtap device nodes",
                probe.display()
            ),
            hint: cgroup_hint(Some(major)),
        });
    }
    let opened = open(&probe, OFlag::O_RDWR | OFlag::O_CLOEXEC, Mode::empty());
    let _ = fs::remove_file(&probe);
    match opened {
        Ok(_) => Ok(()),
        Err(nix::errno::Errno::EPERM) | Err(nix::errno::Errno::EACCES) => Err(Error::Unavailable {
            what: format!(
                "open {}: permission denied by the device cgroup",
                probe.display()
            ),
            hint: cgroup_hint(Some(major)),
        }),
        // ENXIO/ENODEV: allowed, just no device behind minor 0.
        Err(_) => Ok(()),
    }
}

/// Creates `/dev/tap<ifindex>` for a macvtap and opens it for QEMU, once per queue.
///
/// `mknod /dev/tapN c MAJ MIN` with MAJ:MIN from
/// `/sys/class/net/<tap>/macvtap/tap<ifindex>/dev`, then `open` without `O_CREAT`
/// (a failed mknod must never turn into a regular file) and without `O_CLOEXEC`.
pub fn open_tap(
    sys_class_net: &Path,
    dev: &Path,
    tap: &str,
    ifindex: u32,
    major: Option<u64>,
    queues: u32,
) -> Result<Tap> {
    let candidates = [
        sys_class_net
            .join(tap)
            .join("macvtap")
            .join(format!("tap{ifindex}"))
            .join("dev"),
        sys_class_net
            .join(tap)
            .join(format!("tap{ifindex}"))
            .join("dev"),
    ];
    let text = candidates
        .iter()
        .find_map(|p| fs::read_to_string(p).ok())
        .ok_or_else(|| {
            Error::os(
                format!("read {}", candidates[0].display()),
                std::io::Error::from_raw_os_error(libc::ENOENT),
            )
        })?;
    let (maj, min) = text
        .trim()
        .split_once(':')
        .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)))
        .ok_or_else(|| {
            Error::os(
                format!("parse {text:?} as MAJOR:MINOR"),
                std::io::Error::from(std::io::ErrorKind::InvalidData),
            )
        })?;
    let rdev = makedev(maj, min);
    let path = dev.join(format!("tap{ifindex}"));
    // A node left by an earlier run may point at another device: replace it.
    if let Ok(meta) = fs::symlink_metadata(&path)
        && !(meta.file_type().is_char_device() && meta.rdev() == rdev)
    {
        fs::remove_file(&path)
            .map_err(|e| Error::os(format!("remove stale {}", path.display()), e))?;
    }
    if !path.exists() {
        mknod(&path, SFlag::S_IFCHR, Mode::from_bits_truncate(0o600), rdev).map_err(|e| {
            Error::Unavailable {
                what: format!("mknod {} c {maj} {min}: {e}", path.display()),
                hint: cgroup_hint(major.or(Some(maj))),
            }
        })?;
    }
    log::info!("mknod {} c {maj} {min}", path.display());
    let opened: Result<Vec<OwnedFd>> = (0..queues.max(1))
        .map(|_| open_char_device(&path, maj))
        .collect();
    if opened.is_err() {
        let _ = fs::remove_file(&path);
    }
    Ok(Tap { fds: opened?, path })
}

/// Opens a device node without `O_CREAT` and `O_CLOEXEC`, and checks it is a character
/// device.
fn open_char_device(path: &Path, maj: u64) -> Result<OwnedFd> {
    let fd = open(path, OFlag::O_RDWR, Mode::empty()).map_err(|e| {
        if e == nix::errno::Errno::EPERM || e == nix::errno::Errno::EACCES {
            Error::Unavailable {
                what: format!("open {}: {e}", path.display()),
                hint: cgroup_hint(Some(maj)),
            }
        } else {
            Error::os(format!("open {}", path.display()), e)
        }
    })?;
    let st = fstat(&fd).map_err(|e| Error::os(format!("fstat {}", path.display()), e))?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFCHR {
        return Err(Error::os(
            format!("{} is not a character device", path.display()),
            std::io::Error::from(std::io::ErrorKind::InvalidInput),
        ));
    }
    Ok(fd)
}

/// Runs a probe guest on /dev/kvm (see `kvm`).
pub fn probe_kvm(dev: &Path, keep: &mut crate::vm::kvm::ProbeVm) -> KvmStatus {
    let path = dev.join("kvm");
    let fd = match open(&path, OFlag::O_RDWR | OFlag::O_CLOEXEC, Mode::empty()) {
        Ok(fd) => fd,
        Err(e) => {
            return KvmStatus::Unusable(
                format!("open {}: {e}", path.display()),
                "hint: add --device /dev/kvm",
            );
        }
    };
    match crate::vm::kvm::run_probe_guest(&fd, keep) {
        Ok(()) => KvmStatus::Usable,
        Err(why) => KvmStatus::Unusable(
            why,
            "hint: this host's KVM cannot run guests; use a host with working KVM",
        ),
    }
}

/// Whether /dev/vhost-net can be opened (QEMU aborts on `vhost=on` when it cannot).
pub fn probe_vhost(dev: &Path) -> std::result::Result<(), String> {
    let path = dev.join("vhost-net");
    open(&path, OFlag::O_RDWR | OFlag::O_CLOEXEC, Mode::empty())
        .map(drop)
        .map_err(|e| format!("open {}: {e}", path.display()))
}

/// One file of the VM disk, open for QEMU (without CLOEXEC: QEMU inherits the descriptors
/// and opens nothing of the disk by name).
pub type DiskFile = disk::File<OwnedFd>;

/// A file with its descriptors' numbers, for QEMU's command line.
pub fn raw(f: &DiskFile) -> disk::File<RawFd> {
    disk::File {
        path: f.path.clone(),
        read: f.read.as_raw_fd(),
        write: f.write.as_ref().map(AsRawFd::as_raw_fd),
    }
}

/// The VM disk: every image of its backing chain, checked and open, top first.
#[derive(Debug, Default)]
pub struct Disk {
    pub layers: Vec<disk::Layer<OwnedFd>>,
}

impl Disk {
    /// Every descriptor QEMU inherits.
    pub fn fds(&self) -> Vec<RawFd> {
        let mut fds = Vec::new();
        for layer in &self.layers {
            for file in std::iter::once(&layer.file).chain(&layer.data_file) {
                fds.push(file.read.as_raw_fd());
                fds.extend(file.write.as_ref().map(AsRawFd::as_raw_fd));
            }
        }
        fds
    }

    /// The chain with the descriptors' numbers, for QEMU's command line.
    pub fn raw_fds(&self) -> Vec<disk::Layer<RawFd>> {
        self.layers
            .iter()
            .map(|l| disk::Layer {
                file: raw(&l.file),
                format: l.format,
                data_file: l.data_file.as_ref().map(raw),
                has_backing: l.has_backing,
            })
            .collect()
    }

    /// The chain in one line: `/image/image.qcow2 (qcow2) <- /image/base.qcow2 (qcow2)`.
    pub fn describe(&self) -> String {
        self.layers
            .iter()
            .map(|l| {
                let data = match &l.data_file {
                    Some(d) => format!(", data file {}", d.path.display()),
                    None => String::new(),
                };
                format!("{} ({}{data})", l.file.path.display(), l.format.driver())
            })
            .collect::<Vec<_>>()
            .join(" on ")
    }
}

/// Opens the VM disk and every file its chain names, after checking each against the rules
/// in `disk`: regular files only (opened with O_NONBLOCK, so a FIFO or a device at the path
/// cannot block), inside the image directory (the canonical directory of `path`), formats
/// named, at most `MAX_LAYERS` images, no loop. Refuses with the file that breaks a rule.
pub fn open_disk(path: &Path) -> Result<Disk> {
    let hint = format!(
        "mount the VM disk with -v /path/to/image.qcow2:{}, or set DISK_SIZE (such as 20G) to create one",
        path.display()
    );
    let refuse = |file: &Path, problem: String| Error::Disk {
        path: file.to_owned(),
        problem,
    };
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let dir = match fs::canonicalize(parent) {
        Ok(dir) => dir,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(refuse(path, format!("not found; {hint}")));
        }
        Err(e) => return Err(refuse(path, format!("cannot be opened: {e}; {hint}"))),
    };
    let mut layers: Vec<disk::Layer<OwnedFd>> = Vec::new();
    // The image to open next, as named (relative names resolve from here), its format, and
    // the image whose header named it.
    let mut named = path.to_owned();
    let mut format = Format::Qcow2;
    let mut referrer: Option<PathBuf> = None;
    loop {
        let top = referrer.is_none();
        let file = match &referrer {
            None => open_disk_file(path, &dir, true).map_err(|problem| {
                let problem = match problem {
                    OpenProblem::Missing => format!("not found; {hint}"),
                    OpenProblem::Other(p) => format!("{p}; {hint}"),
                };
                refuse(path, problem)
            })?,
            Some(by) => open_disk_file(&named, &dir, false)
                .map_err(|problem| refuse(by, problem.naming("backing file", &named, &dir)))?,
        };
        if let Some(earlier) = layers.iter().find(|l| same_file(&l.file.read, &file.read)) {
            return Err(refuse(
                referrer.as_deref().unwrap_or(path),
                format!(
                    "has a backing chain that loops back to {}",
                    earlier.file.path.display()
                ),
            ));
        }
        let header = match format {
            Format::Raw => None,
            Format::Qcow2 => Some(read_header(&file.read).map_err(|problem| {
                let problem = match (&referrer, top) {
                    (_, true) if problem == "is not a qcow2 image" => format!(
                        "is not a qcow2 image; convert it with qemu-img convert -O qcow2, then {hint}"
                    ),
                    (Some(by), _) => format!(
                        "{problem}, yet {} names it as a qcow2 backing file",
                        by.display()
                    ),
                    _ => problem,
                };
                refuse(&file.path, problem)
            })?),
        };
        let header = header.unwrap_or_default();
        let data_file = match &header.data_file {
            None => None,
            Some(name) => {
                disk::check_name("data file", name).map_err(|p| refuse(&file.path, p))?;
                let target = disk::resolve(&named, name);
                Some(open_disk_file(&target, &dir, top).map_err(|problem| {
                    refuse(&file.path, problem.naming("data file", &target, &dir))
                })?)
            }
        };
        let layer_path = file.path.clone();
        layers.push(disk::Layer {
            file,
            format,
            data_file,
            has_backing: header.backing.is_some(),
        });
        let Some((name, backing_format)) = header.backing else {
            break;
        };
        disk::check_name("backing file", &name).map_err(|p| refuse(&layer_path, p))?;
        if layers.len() == MAX_LAYERS {
            return Err(refuse(
                path,
                format!(
                    "has a backing chain of more than {MAX_LAYERS} images; flatten it with qemu-img convert"
                ),
            ));
        }
        named = disk::resolve(&named, &name);
        format = backing_format;
        referrer = Some(layer_path);
    }
    Ok(Disk { layers })
}

/// Opens a file a machine input names (a base image, a boot ISO; the UEFI variables, also
/// for writing) under the chain's rules: a regular, non-empty file inside `dir` (canonical).
/// The problem is a phrase that follows the file's name.
pub fn open_media(
    path: &Path,
    dir: &Path,
    writable: bool,
) -> std::result::Result<DiskFile, String> {
    open_disk_file(path, dir, writable).map_err(|problem| match problem {
        OpenProblem::Missing => format!("does not exist; put it in {}", dir.display()),
        OpenProblem::Other(p) => p,
    })
}

/// Why a file of the chain could not be used.
enum OpenProblem {
    Missing,
    Other(String),
}

impl OpenProblem {
    /// The problem as a phrase about the image that names `target` as its `what`.
    fn naming(self, what: &str, target: &Path, dir: &Path) -> String {
        match self {
            OpenProblem::Missing => format!(
                "names {what} {}, which does not exist; put it in {}",
                target.display(),
                dir.display()
            ),
            OpenProblem::Other(p) => format!("names {what} {}, which {p}", target.display()),
        }
    }
}

/// Opens one file of the chain (read-only, and read-write when `writable`), after checking
/// that its canonical path lies inside `dir` and that it is a regular file.
fn open_disk_file(
    path: &Path,
    dir: &Path,
    writable: bool,
) -> std::result::Result<DiskFile, OpenProblem> {
    let canonical = match fs::canonicalize(path) {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(OpenProblem::Missing),
        Err(e) => return Err(OpenProblem::Other(format!("cannot be opened: {e}"))),
    };
    if !disk::is_inside(dir, &canonical) {
        let via = if canonical == path {
            String::new()
        } else {
            format!(" (it resolves to {})", canonical.display())
        };
        return Err(OpenProblem::Other(format!(
            "is outside the image directory {}{via}; every file of a disk chain must be inside it",
            dir.display()
        )));
    }
    // O_NONBLOCK: opening a FIFO or a device must not wait for a writer or a carrier.
    let flags = OFlag::O_NONBLOCK | OFlag::O_NOCTTY;
    let read = open(&canonical, flags | OFlag::O_RDONLY, Mode::empty())
        .map_err(|e| OpenProblem::Other(format!("cannot be opened: {e}")))?;
    let st = fstat(&read).map_err(|e| OpenProblem::Other(format!("cannot be read: {e}")))?;
    let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
    if kind != SFlag::S_IFREG {
        let what = match kind {
            SFlag::S_IFIFO => "a FIFO",
            SFlag::S_IFCHR => "a character device",
            SFlag::S_IFBLK => "a block device",
            SFlag::S_IFDIR => "a directory",
            SFlag::S_IFSOCK => "a socket",
            _ => "not a regular file",
        };
        return Err(OpenProblem::Other(format!(
            "is {what}, not a disk image file"
        )));
    }
    if st.st_size == 0 {
        return Err(OpenProblem::Other("is empty".into()));
    }
    let write = if writable {
        let fd = open(&canonical, flags | OFlag::O_RDWR, Mode::empty()).map_err(|e| {
            OpenProblem::Other(format!(
                "cannot be opened for writing: {e}; the image the guest writes must be writable (only shared base images may be mounted read-only)"
            ))
        })?;
        if !same_file(&fd, &read) {
            return Err(OpenProblem::Other(
                "changed while it was being opened".into(),
            ));
        }
        Some(fd)
    } else {
        None
    };
    // Back to blocking I/O for QEMU (O_NONBLOCK means nothing for a regular file, but QEMU
    // should get the descriptors it would have opened itself).
    for fd in std::iter::once(&read).chain(&write) {
        let _ = fcntl(fd, FcntlArg::F_SETFL(OFlag::empty()));
    }
    Ok(DiskFile {
        path: canonical,
        read,
        write,
    })
}

/// The header cluster of a qcow2 image, parsed.
fn read_header(fd: &OwnedFd) -> std::result::Result<disk::Header, String> {
    let mut prefix = vec![0u8; disk::HEADER_PREFIX];
    let n = pread(fd, &mut prefix, 0).map_err(|e| format!("cannot be read: {e}"))?;
    prefix.truncate(n);
    let size = disk::cluster_size(&prefix)?;
    let mut cluster = vec![0u8; size];
    let n = pread(fd, &mut cluster, 0).map_err(|e| format!("cannot be read: {e}"))?;
    cluster.truncate(n);
    disk::parse_header(&cluster)
}

fn same_file(a: &OwnedFd, b: &OwnedFd) -> bool {
    match (fstat(a), fstat(b)) {
        (Ok(a), Ok(b)) => a.st_dev == b.st_dev && a.st_ino == b.st_ino,
        _ => false,
    }
}

/// Capability numbers (linux/capability.h), for `effective_caps`' bits.
pub const CAP_NET_BIND_SERVICE: u32 = 10;
pub const CAP_NET_ADMIN: u32 = 12;

/// The capability sets vminit runs with: bit N of `CapEff` in /proc/self/status is
/// capability N (`CAP_NET_ADMIN` = 12, `CAP_NET_BIND_SERVICE` = 10). Unreadable: none.
pub fn effective_caps(proc_self_status: &Path) -> u64 {
    fs::read_to_string(proc_self_status)
        .ok()
        .and_then(|text| parse_cap_eff(&text))
        .unwrap_or(0)
}

fn parse_cap_eff(status: &str) -> Option<u64> {
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

/// Checks that a program exists and is executable, before anything changes.
pub fn check_program(path: &Path, what: &str) -> Result<()> {
    let meta = fs::metadata(path).map_err(|source| Error::Program {
        what: format!("{what} {} (set {})", path.display(), env_of(what)),
        source,
    })?;
    if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
        return Err(Error::Program {
            what: format!("{what} {}", path.display()),
            source: std::io::Error::from_raw_os_error(libc::EACCES),
        });
    }
    Ok(())
}

fn env_of(what: &str) -> &'static str {
    match what {
        "dnsmasq" => "VMINIT_DNSMASQ to its path, or ENABLE_DHCP=no",
        "qemu-img" => "VMINIT_QEMU_IMG to its path",
        "swtpm" => "VMINIT_SWTPM to its path, or TPM=no",
        "passt" => "VMINIT_PASST to its path",
        _ => "VMINIT_QEMU to its path",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_macvtap_major_among_character_devices_only() {
        let text = "Character devices:\n  1 mem\n246 macvtap\n\nBlock devices:\n  8 macvtap\n";
        assert_eq!(parse_major(text, "macvtap"), Some(246));
        assert_eq!(
            parse_major("Character devices:\n  1 mem\n", "macvtap"),
            None
        );
    }

    #[test]
    fn reads_the_effective_capabilities_from_proc_status() {
        let status = "Name:\tvminit\nCapPrm:\t0000000000000000\nCapEff:\t00000000a80435fb\n";
        let caps = parse_cap_eff(status).unwrap();
        assert_ne!(caps & (1 << 12), 0, "NET_ADMIN");
        assert_eq!(parse_cap_eff("CapEff:\t0000000000000000\n"), Some(0));
        assert_eq!(parse_cap_eff("Name: x\n"), None);
    }

    use crate::vm::disk::tests::qcow2;
    use std::os::unix::fs::symlink;

    /// A scratch directory with an `image/` directory inside, removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let dir = std::env::temp_dir().join(format!("vminit-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(dir.join("image")).unwrap();
            Scratch(dir)
        }

        fn image(&self, name: &str) -> PathBuf {
            self.0.join("image").join(name)
        }

        fn write(&self, rel: &str, bytes: &[u8]) -> PathBuf {
            let path = self.0.join(rel);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, bytes).unwrap();
            path
        }

        fn refusal(&self, top: &str) -> String {
            open_disk(&self.image(top)).unwrap_err().to_string()
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn disk_errors_name_the_path_and_the_docker_flag() {
        let s = Scratch::new("disk-errors");
        let missing = s.refusal("none.qcow2");
        assert!(
            missing.contains("not found") && missing.contains("-v "),
            "{missing}"
        );
        s.write("image/empty.qcow2", b"");
        assert!(s.refusal("empty.qcow2").contains("is empty"));
        s.write("image/raw.qcow2", b"\0\0\0\0raw");
        assert!(s.refusal("raw.qcow2").contains("not a qcow2"));
        s.write("image/good.qcow2", &qcow2(None, None));
        let disk = open_disk(&s.image("good.qcow2")).unwrap();
        assert_eq!(disk.layers.len(), 1);
        assert!(
            disk.layers[0].file.write.is_some(),
            "the top image is writable"
        );
        assert_eq!(disk.fds().len(), 2);
    }

    #[test]
    fn a_chain_inside_the_image_directory_opens_every_layer_with_its_format() {
        let s = Scratch::new("disk-chain");
        s.write("image/base.raw", &[0u8; 4096]);
        s.write(
            "image/sub/mid.qcow2",
            &qcow2(Some(("../base.raw", Some("raw"))), None),
        );
        s.write(
            "image/top.qcow2",
            &qcow2(Some(("sub/mid.qcow2", Some("qcow2"))), Some("top.data")),
        );
        s.write("image/top.data", &[0u8; 4096]);
        let disk = open_disk(&s.image("top.qcow2")).unwrap();
        let layers: Vec<(String, Format, bool)> = disk
            .layers
            .iter()
            .map(|l| {
                let name = l
                    .file
                    .path
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                (name, l.format, l.file.write.is_some())
            })
            .collect();
        assert_eq!(
            layers,
            vec![
                ("top.qcow2".into(), Format::Qcow2, true),
                ("mid.qcow2".into(), Format::Qcow2, false),
                ("base.raw".into(), Format::Raw, false),
            ]
        );
        let data = disk.layers[0].data_file.as_ref().expect("the data file");
        assert!(data.write.is_some() && data.path.ends_with("image/top.data"));
        assert!(disk.describe().contains("top.qcow2 (qcow2, data file"));
    }

    #[test]
    fn files_outside_the_image_directory_are_refused_naming_the_image_that_names_them() {
        let s = Scratch::new("disk-escape");
        let secret = s.write("secret", b"token");
        s.write(
            "image/abs.qcow2",
            &qcow2(Some((secret.to_str().unwrap(), Some("raw"))), None),
        );
        s.write(
            "image/dots.qcow2",
            &qcow2(Some(("../secret", Some("raw"))), None),
        );
        symlink(&secret, s.image("link")).unwrap();
        s.write(
            "image/link.qcow2",
            &qcow2(Some(("link", Some("raw"))), None),
        );
        s.write("image/data.qcow2", &qcow2(None, Some("../secret")));
        s.write(
            "image/nbd.qcow2",
            &qcow2(Some(("nbd:evil:10809", Some("raw"))), None),
        );
        for top in ["abs.qcow2", "dots.qcow2", "link.qcow2", "data.qcow2"] {
            let e = s.refusal(top);
            assert!(
                e.starts_with(&format!("VM disk {}", s.image(top).display())),
                "{e}"
            );
            assert!(e.contains("outside the image directory"), "{e}");
        }
        assert!(s.refusal("link.qcow2").contains("resolves to"));
        assert!(s.refusal("nbd.qcow2").contains("QEMU protocol (nbd:)"));
    }

    #[test]
    fn loops_missing_files_deep_chains_and_fifos_are_refused() {
        let s = Scratch::new("disk-shapes");
        s.write(
            "image/a.qcow2",
            &qcow2(Some(("b.qcow2", Some("qcow2"))), None),
        );
        s.write(
            "image/b.qcow2",
            &qcow2(Some(("a.qcow2", Some("qcow2"))), None),
        );
        assert!(s.refusal("a.qcow2").contains("loops back"));
        s.write(
            "image/orphan.qcow2",
            &qcow2(Some(("gone.qcow2", Some("qcow2"))), None),
        );
        assert!(s.refusal("orphan.qcow2").contains("does not exist"));
        for i in 0..=MAX_LAYERS {
            let next = format!("l{}.qcow2", i + 1);
            s.write(
                &format!("image/l{i}.qcow2"),
                &qcow2(Some((&next, Some("qcow2"))), None),
            );
        }
        assert!(s.refusal("l0.qcow2").contains("more than 16 images"));
        nix::unistd::mkfifo(&s.image("fifo.qcow2"), Mode::from_bits_truncate(0o600)).unwrap();
        assert!(s.refusal("fifo.qcow2").contains("is a FIFO"));
        s.write(
            "image/tofifo.qcow2",
            &qcow2(Some(("fifo.qcow2", Some("raw"))), None),
        );
        assert!(s.refusal("tofifo.qcow2").contains("is a FIFO"));
        s.write(
            "image/rawbase.qcow2",
            &qcow2(Some(("notq.img", Some("qcow2"))), None),
        );
        s.write("image/notq.img", &[0u8; 512]);
        assert!(
            s.refusal("rawbase.qcow2")
                .contains("names it as a qcow2 backing file")
        );
    }
}
