//! Device nodes and probes: /dev/tapN for each macvtap, /dev/kvm, /dev/vhost-net, the disk.

use std::fs;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{OFlag, open};
use nix::sys::stat::{Mode, SFlag, fstat, makedev, mknod};

use crate::accel::KvmStatus;
use crate::error::{Error, Result};

/// A macvtap's character device, open for QEMU (no CLOEXEC: QEMU inherits it).
#[derive(Debug)]
pub struct Tap {
    pub path: PathBuf,
    pub fd: OwnedFd,
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

/// Checks, before anything changes, that this container may create and open macvtap
/// device nodes: mknod a node of the macvtap major with a minor no macvtap uses, open
/// it. EPERM from either means the device cgroup or a capability is missing.
pub fn probe_tap_nodes(dev: &Path, proc_devices: &Path) -> Result<()> {
    let Some(major) = macvtap_major(proc_devices) else {
        // The driver loads with the first macvtap; nothing to probe yet.
        return Ok(());
    };
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

/// Creates `/dev/tap<ifindex>` for a macvtap and opens it for QEMU.
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
    let opened = open_char_device(&path, maj);
    if opened.is_err() {
        let _ = fs::remove_file(&path);
    }
    Ok(Tap { fd: opened?, path })
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
pub fn probe_kvm(dev: &Path) -> KvmStatus {
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
    match crate::kvm::run_probe_guest(&fd) {
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

/// Checks that the VM disk exists, is not empty and is a qcow2 image.
pub fn check_disk(path: &Path) -> Result<()> {
    let hint = format!(
        "mount the VM disk with -v /path/to/image.qcow2:{}",
        path.display()
    );
    let refuse = |problem: String| {
        Err(Error::Disk {
            path: path.to_owned(),
            problem,
        })
    };
    let mut file = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return refuse(format!("not found; {hint}"));
        }
        Err(e) => return refuse(format!("cannot be opened: {e}; {hint}")),
    };
    let mut magic = [0u8; 4];
    match file.read(&mut magic) {
        Ok(0) => refuse(format!("is empty; {hint}")),
        Ok(4) if &magic == b"QFI\xfb" => Ok(()),
        Ok(_) => refuse(format!(
            "is not a qcow2 image; convert it with qemu-img convert -O qcow2, then {hint}"
        )),
        Err(e) => refuse(format!("cannot be read: {e}")),
    }
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
    fn disk_errors_name_the_path_and_the_docker_flag() {
        let dir = std::env::temp_dir().join(format!("vminit-disk-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let missing = check_disk(&dir.join("none.qcow2")).unwrap_err().to_string();
        assert!(
            missing.contains("not found") && missing.contains("-v "),
            "{missing}"
        );
        let empty = dir.join("empty.qcow2");
        fs::write(&empty, b"").unwrap();
        assert!(
            check_disk(&empty)
                .unwrap_err()
                .to_string()
                .contains("is empty")
        );
        let raw = dir.join("raw.qcow2");
        fs::write(&raw, b"\0\0\0\0raw").unwrap();
        assert!(
            check_disk(&raw)
                .unwrap_err()
                .to_string()
                .contains("not a qcow2")
        );
        let good = dir.join("good.qcow2");
        fs::write(&good, b"QFI\xfb\0\0\0\x03").unwrap();
        assert!(check_disk(&good).is_ok());
        fs::remove_dir_all(&dir).unwrap();
    }
}
