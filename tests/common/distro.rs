//! The distribution guests (tests/distro/build-images.sh): Debian with its own kernel,
//! initramfs, systemd and network stack, each booted from a qcow2 overlay of its cached root disk.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::cmd::{BUILD_TIMEOUT, run_ok, run_ok_for};
use super::names::unique_id;

/// One built guest: boot it with [`DistroGuest::qemu_args`] and a [`DistroGuest::disk`].
#[derive(Debug, Clone)]
pub struct DistroGuest {
    /// The directory name under tests/distro/guests/ (`networkd`, `ifupdown`, …).
    pub name: String,
    /// The guest's own kernel and initramfs, taken from its /boot.
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// The root file system (ext4 on the whole virtio disk), never written by a test.
    pub root: PathBuf,
    /// The kernel command line the image was built for (`root=/dev/vda ro console=ttyS0 …`).
    pub cmdline: String,
}

static BUILT: OnceLock<PathBuf> = OnceLock::new();

/// The directory that holds every built guest, building them on first use (minutes from
/// scratch; a no-op when the cache under `$VMINIT_DISTRO_CACHE` or /var/cache/vminit-test-guests
/// is up to date; concurrent test processes serialise on a lock file).
fn built() -> &'static Path {
    BUILT.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/distro/build-images.sh");
        let started = std::time::Instant::now();
        let out = run_ok_for(&["bash", &script.to_string_lossy()], BUILD_TIMEOUT);
        let dir = out
            .lines()
            .last()
            .expect("the script prints the image directory");
        eprintln!(
            "distro guests: {dir} (ready after {:.0} s)",
            started.elapsed().as_secs_f64()
        );
        PathBuf::from(dir)
    })
}

/// The guest `name`, booted with `-kernel` (its directory has no `esp/`).
pub fn distro_guest(name: &str) -> DistroGuest {
    let guest = built().join(name);
    let cmdline = std::fs::read_to_string(guest.join("cmdline"))
        .unwrap_or_else(|e| panic!("guest {name}: {}: {e}", guest.join("cmdline").display()));
    DistroGuest {
        name: name.to_owned(),
        kernel: guest.join("vmlinuz"),
        initrd: guest.join("initrd.img"),
        root: guest.join("root.qcow2"),
        cmdline: cmdline.trim().to_owned(),
    }
}

/// The disk of the guest `name` that boots from its own disk by UEFI (its directory has
/// `esp/`): GPT, the EFI system partition with shim and GRUB, the ext4 root to the end.
/// Never write it: use it as a base (`DISK_BASE`) or under an overlay.
pub fn distro_uefi_disk(name: &str) -> PathBuf {
    let disk = built().join(name).join("disk.qcow2");
    assert!(disk.is_file(), "guest {name}: no {}", disk.display());
    disk
}

impl DistroGuest {
    /// QEMU arguments that boot this guest's kernel and initramfs with its command line and
    /// `extra` appended (e.g. `distro_report.resolve=peer.test`). The root disk is the one
    /// vminit attaches (`VMINIT_DISK`, the first virtio disk: /dev/vda).
    pub fn qemu_args(&self, extra: &str) -> Vec<String> {
        vec![
            "-kernel".into(),
            self.kernel.to_string_lossy().into_owned(),
            "-initrd".into(),
            self.initrd.to_string_lossy().into_owned(),
            "-append".into(),
            format!("{} {extra}", self.cmdline).trim_end().to_owned(),
        ]
    }

    /// A fresh copy-on-write disk over this guest's root, for one boot.
    pub fn disk(&self) -> OverlayDisk {
        OverlayDisk::new(&self.root)
    }
}

/// A qcow2 overlay whose backing file is a cached root disk, in a scratch directory removed on
/// drop: the guest writes to it, the cached image stays as built. vminit accepts a backing file
/// only inside the disk's own directory, so the root is linked in beside the overlay (a hard
/// link; a copy where the cache is on another filesystem).
#[derive(Debug)]
pub struct OverlayDisk {
    pub dir: PathBuf,
    /// `dir/image.qcow2`.
    pub path: PathBuf,
}

impl OverlayDisk {
    pub fn new(backing: &Path) -> OverlayDisk {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(unique_id());
        std::fs::create_dir_all(&dir).expect("create the test's scratch directory");
        let path = dir.join("image.qcow2");
        let base = dir.join("root.qcow2");
        if std::fs::hard_link(backing, &base).is_err() {
            std::fs::copy(backing, &base).expect("copy the cached root disk");
        }
        // qemu-img create -f qcow2 -b root.qcow2 -F qcow2 PATH (relative: beside the overlay)
        run_ok(&[
            "qemu-img",
            "create",
            "-q",
            "-f",
            "qcow2",
            "-b",
            "root.qcow2",
            "-F",
            "qcow2",
            &path.to_string_lossy(),
        ]);
        OverlayDisk { dir, path }
    }
}

impl Drop for OverlayDisk {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
