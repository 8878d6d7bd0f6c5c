//! Disks made hands-free: `DISK_SIZE` creates a sparse qcow2 the guest sees at that size and
//! grows it keeping the guest's data (a shrink is refused and changes nothing); `DISK_BASE`
//! makes a thin overlay on a read-only base that two VMs share at once; `BOOT_ISO` boots an
//! ISO while the disk is new and the disk once an installer has written it; extra disks come
//! in a stable order under the same chain rules, and take PCI slots the NICs then cannot
//! have. Real QEMU (TCG), qemu-img and the test guest, in namespaces.

use crate::common;
use crate::common::stop;

use std::path::Path;
use std::time::Duration;

use common::{
    BUILD_TIMEOUT, Container, Network, ScratchDir, VminitBuilder, run, run_ok, run_ok_for,
    test_guest, vminit_binary,
};

const BOOT: Duration = Duration::from_secs(120);
/// OVMF under TCG reaches the kernel later than SeaBIOS.
const UEFI_BOOT: Duration = Duration::from_secs(300);

/// The image directory as the container sees it.
const IMAGE: &str = "/run/image";

/// A container with one NIC on its own network.
struct Vm {
    _net: Network,
    ctr: Container,
}

impl Vm {
    fn new(n: u8) -> Vm {
        let net = Network::new(n);
        let (ctr, _) = Container::docker_on(&net);
        Vm { _net: net, ctr }
    }

    /// vminit with `dir` as the image directory (`/run/image`, disk `image.qcow2`), no guest.
    fn vminit(&self, dir: &Path) -> VminitBuilder<'_> {
        self.vminit_mounted(dir, false)
    }

    /// The same, the image directory mounted read-only when `read_only`.
    fn vminit_mounted(&self, dir: &Path, read_only: bool) -> VminitBuilder<'_> {
        let builder = self
            .ctr
            .vminit(&vminit_binary())
            .env("AUTO_ATTACH", "yes")
            .env("ACCEL", "tcg")
            .env("RAM_SIZE", "256M")
            .env("VMINIT_DISK", format!("{IMAGE}/image.qcow2"));
        if read_only {
            builder.bind_ro(dir, Path::new(IMAGE))
        } else {
            builder.bind(dir, Path::new(IMAGE))
        }
    }

    /// The same, booting the test guest with `cmdline`.
    fn guest(&self, dir: &Path, cmdline: &str) -> VminitBuilder<'_> {
        self.vminit(dir).args(test_guest().qemu_args(cmdline))
    }
}

/// A field of `qemu-img info --output=json` (a number or a string, as text).
fn info(path: &Path, field: &str) -> Option<String> {
    let out = run_ok(&[
        "qemu-img",
        "info",
        "-U",
        "--output=json",
        &path.to_string_lossy(),
    ]);
    let key = format!("\"{field}\": ");
    let rest = &out[out.find(&key)? + key.len()..];
    let value = rest.split([',', '\n']).next()?.trim();
    Some(value.trim_matches('"').to_owned())
}

fn sha256(path: &Path) -> String {
    run_ok(&["sha256sum", &path.to_string_lossy()])
        .split_whitespace()
        .next()
        .expect("a checksum")
        .to_owned()
}

/// Expects vminit to refuse within seconds (`code`, one error line with every needle, nothing
/// on the console) with the namespace unchanged.
fn expect_refusal(vm: &Vm, builder: VminitBuilder, code: i32, needles: &[&str]) {
    let before = vm.ctr.net_state();
    let log = builder.expect_refusal(code, needles, Duration::from_secs(5));
    assert_eq!(vm.ctr.net_state(), before, "the network changed\n{log}");
}

#[test]
fn disk_size_creates_a_sparse_disk_then_grows_it_keeping_the_data_and_never_shrinks_it() {
    let s = ScratchDir::new();
    let vm = Vm::new(1);
    let disk = s.path("image.qcow2");

    let guest = vm
        .guest(&s.0, "vminit_test_write=KEPTDATA")
        .env("DISK_SIZE", "64M")
        .spawn();
    guest.expect_console("GUEST-BLOCK vda 67108864", BOOT);
    guest.expect_console("GUEST-DISK-WRITTEN KEPTDATA", BOOT);
    assert!(
        guest.log().text().contains("an empty qcow2 of 64M"),
        "{}",
        guest.tails()
    );
    stop(&guest);
    assert_eq!(info(&disk, "format").as_deref(), Some("qcow2"));
    assert_eq!(info(&disk, "virtual-size").as_deref(), Some("67108864"));
    let used = std::fs::metadata(&disk).expect("the disk").len();
    assert!(used < 2 << 20, "sparse: {used} bytes for a 64 MiB disk");
    assert_eq!(s.names(), ["image.qcow2"], "no temporary file left");

    let guest = vm.guest(&s.0, "").env("DISK_SIZE", "128M").spawn();
    guest.expect_console("GUEST-BLOCK vda 134217728", BOOT);
    guest.expect_console("GUEST-DISK KEPTDATA", BOOT);
    assert!(guest.log().text().contains("grew"), "{}", guest.tails());
    stop(&guest);
    assert_eq!(info(&disk, "virtual-size").as_deref(), Some("134217728"));

    let before = sha256(&disk);
    expect_refusal(
        &vm,
        vm.guest(&s.0, "").env("DISK_SIZE", "100M"),
        64,
        &["DISK_SIZE", "100M", "which is 128M", "never shrinks"],
    );
    assert_eq!(sha256(&disk), before, "a refused shrink changes nothing");
    // A growth waits for every other check: refused later (the network), the disk is as it
    // was.
    expect_refusal(
        &vm,
        vm.guest(&s.0, "")
            .env("DISK_SIZE", "192M")
            .env("SELECTED_NETWORK", "10.99.0.0/16"),
        64,
        &["SELECTED_NETWORK", "matches no IPv4 address"],
    );
    assert_eq!(
        sha256(&disk),
        before,
        "a refusal after the growth was planned"
    );
    assert_eq!(info(&disk, "virtual-size").as_deref(), Some("134217728"));

    // Unset, the disk is used as it is.
    let guest = vm.guest(&s.0, "").spawn();
    guest.expect_console("GUEST-BLOCK vda 134217728", BOOT);
    stop(&guest);
}

#[test]
fn disk_base_makes_thin_overlays_two_vms_share_at_once_and_the_base_is_never_written() {
    let dirs = [ScratchDir::new(), ScratchDir::new()];
    let base = dirs[0].path("base.raw");
    std::fs::write(&base, b"SHAREDBASE\n").expect("write the base's data");
    run_ok(&["truncate", "-s", "32M", &base.to_string_lossy()]);
    let before = sha256(&base);
    // The second VM's image directory holds the same base, mounted read-only.
    std::fs::write(dirs[1].path("base.raw"), b"").expect("a mount point");
    let vms = [Vm::new(1), Vm::new(2)];
    let guests = [
        vms[0]
            .guest(&dirs[0].0, "vminit_test_write=VMONEWROTE")
            .env("DISK_BASE", "base.raw")
            .env("DISK_SIZE", "64M")
            .spawn(),
        vms[1]
            .guest(&dirs[1].0, "vminit_test_write=VMTWOWROTE")
            .bind_ro(&base, &Path::new(IMAGE).join("base.raw"))
            .env("DISK_BASE", format!("{IMAGE}/base.raw"))
            .spawn(),
    ];
    for (guest, size) in guests.iter().zip(["67108864", "33554432"]) {
        guest.expect_console("GUEST-DISK SHAREDBASE", BOOT);
        guest.expect_console(&format!("GUEST-BLOCK vda {size}"), BOOT);
        assert!(
            guest
                .log()
                .text()
                .contains("a qcow2 overlay on base.raw (raw)"),
            "{}",
            guest.tails()
        );
    }
    guests[0].expect_console("GUEST-DISK-WRITTEN VMONEWROTE", BOOT);
    guests[1].expect_console("GUEST-DISK-WRITTEN VMTWOWROTE", BOOT);
    for guest in &guests {
        stop(guest);
    }
    assert_eq!(sha256(&base), before, "the base is unchanged");
    for dir in &dirs {
        let overlay = dir.path("image.qcow2");
        assert_eq!(
            info(&overlay, "backing-filename").as_deref(),
            Some("base.raw")
        );
        assert_eq!(
            info(&overlay, "backing-filename-format").as_deref(),
            Some("raw")
        );
        let used = std::fs::metadata(&overlay).expect("the overlay").len();
        assert!(used < 2 << 20, "thin: {used} bytes");
    }

    // The next start uses the overlay as it is: the guest reads what it wrote.
    let guest = vms[0]
        .guest(&dirs[0].0, "")
        .env("DISK_BASE", "base.raw")
        .spawn();
    guest.expect_console("GUEST-DISK VMONEWROTE", BOOT);
    stop(&guest);
    assert_eq!(sha256(&base), before, "the base is unchanged");
}

#[test]
fn bad_disk_and_media_inputs_are_refused_before_anything_changes() {
    let s = ScratchDir::new();
    let vm = Vm::new(1);
    std::fs::write(s.path("notes.txt"), b"not a disk\n").expect("write a text file");
    std::fs::create_dir(s.path("dir.iso")).expect("make a directory");
    /// The inputs, the exit code, what the error line says.
    type Case<'a> = (&'a [(&'a str, &'a str)], i32, &'a [&'a str]);
    let cases: [Case; 8] = [
        (&[("DISK_SIZE", "lots")], 64, &["DISK_SIZE", "20G"]),
        (&[("NIC_MODEL", "rtl8139")], 64, &["NIC_MODEL", "e1000e"]),
        (
            &[("DISK_BASE", "/etc/passwd")],
            66,
            &["/etc/passwd", "outside the image directory", "DISK_BASE"],
        ),
        (
            &[("DISK_BASE", "../../../../etc/hostname")],
            66,
            &["outside the image directory"],
        ),
        (
            &[("DISK_BASE", "notes.txt")],
            66,
            &["notes.txt", "not a disk image"],
        ),
        (
            &[("DISK_BASE", "gone.qcow2")],
            66,
            &["gone.qcow2", "does not exist"],
        ),
        (
            &[("DISK_SIZE", "64M"), ("BOOT_ISO", "dir.iso")],
            66,
            &["dir.iso", "is a directory", "BOOT_ISO"],
        ),
        (
            &[("DISK_SIZE", "64M"), ("BOOT_ISO", "notes.txt")],
            66,
            &["notes.txt", "not a CD/DVD image"],
        ),
    ];
    for (vars, code, needles) in cases {
        let mut builder = vm.vminit(&s.0);
        for (k, v) in vars {
            builder = builder.env(k, v);
        }
        expect_refusal(&vm, builder, code, needles);
        assert_eq!(s.names(), ["dir.iso", "notes.txt"], "{vars:?}");
    }
}

#[test]
fn a_tpm_or_uefi_variables_without_a_writable_image_directory_are_refused_before_anything_changes()
{
    let s = ScratchDir::new();
    let vm = Vm::new(1);
    common::make_qcow2(&s.path("image.qcow2"), "16M");
    expect_refusal(
        &vm,
        vm.vminit_mounted(&s.0, true).env("TPM", "yes"),
        66,
        &["image.tpm", "cannot be written", "read-write"],
    );
    expect_refusal(
        &vm,
        vm.vminit_mounted(&s.0, true).env("BOOT_MODE", "uefi"),
        66,
        &["image.efivars.fd", "cannot be made", "UEFI variables"],
    );
    assert_eq!(s.names(), ["image.qcow2"]);
}

#[test]
fn a_full_filesystem_while_creating_the_disk_is_named_and_leaves_no_half_made_disk() {
    let s = ScratchDir::new();
    let vm = Vm::new(1);
    // 128 KiB: less than the header, refcount and L1 clusters of a new qcow2.
    run_ok(&[
        "mount",
        "-t",
        "tmpfs",
        "-o",
        "size=128k",
        "tmpfs",
        &s.0.to_string_lossy(),
    ]);
    expect_refusal(
        &vm,
        vm.vminit(&s.0).env("DISK_SIZE", "1G"),
        66,
        &[
            "image.qcow2",
            "cannot be created",
            "No space left",
            "free space",
        ],
    );
    assert!(s.names().is_empty(), "nothing left: {:?}", s.names());
}

/// A BIOS-bootable ISO (GRUB from grub-mkrescue) of the test guest: its kernel command line
/// reports the device GRUB booted from (`GUEST-BOOTDEV hd96`, the CD, or `hd0`).
fn guest_iso(out: &Path) {
    if !run(&["sh", "-c", "command -v grub-mkrescue && command -v xorriso && command -v mformat && test -d /usr/lib/grub/i386-pc"]).success() {
        run_ok_for(
            &["apt-get", "install", "-y", "--no-install-recommends", "grub-pc-bin", "grub-common", "xorriso", "mtools"],
            BUILD_TIMEOUT,
        );
    }
    let tree = out.with_extension("tree");
    std::fs::create_dir_all(tree.join("boot/grub")).expect("make the ISO tree");
    let guest = test_guest();
    std::fs::copy(&guest.kernel, tree.join("vmlinuz")).expect("copy the kernel");
    std::fs::copy(&guest.initrd, tree.join("initrd")).expect("copy the initramfs");
    std::fs::write(
        tree.join("boot/grub/grub.cfg"),
        "serial --unit=0 --speed=115200\nterminal_input serial\nterminal_output serial\nset timeout=0\nmenuentry guest {\n  linux /vmlinuz console=ttyS0 quiet no_timer_check vminit_test_bootdev=$root\n  initrd /initrd\n}\n",
    )
    .expect("write grub.cfg");
    run_ok_for(
        &[
            "grub-mkrescue",
            "-o",
            &out.to_string_lossy(),
            &tree.to_string_lossy(),
        ],
        BUILD_TIMEOUT,
    );
    std::fs::remove_dir_all(&tree).expect("remove the ISO tree");
}

#[test]
fn boot_iso_boots_while_the_disk_is_new_and_the_disk_once_it_has_been_written() {
    let s = ScratchDir::new();
    let vm = Vm::new(1);
    let scratch = ScratchDir::new();
    guest_iso(&s.path("install.iso"));
    let iso_sum = sha256(&s.path("install.iso"));
    let start = || {
        vm.vminit(&s.0)
            .env("DISK_SIZE", "64M")
            .env("BOOT_ISO", "install.iso")
            .spawn()
    };

    let guest = start();
    // GRUB names the El Torito CD by its BIOS drive number, 0xe0: hd96.
    guest.expect_console("GUEST-BOOTDEV hd96", BOOT);
    guest.expect_console("GUEST-BLOCK vda 67108864", BOOT);
    assert!(
        guest
            .log()
            .text()
            .contains("from it once, as the disk has never been written"),
        "{}",
        guest.tails()
    );
    stop(&guest);

    // What an installer does: it writes a bootable system onto the disk. Here the system
    // is a GRUB image too, which names the device it booted from.
    let installed = scratch.path("installed.iso");
    guest_iso(&installed);
    run_ok(&[
        "qemu-img",
        "convert",
        "-n",
        "-f",
        "raw",
        "-O",
        "qcow2",
        &installed.to_string_lossy(),
        &s.path("image.qcow2").to_string_lossy(),
    ]);
    let guest = start();
    guest.expect_console("GUEST-BOOTDEV hd0", BOOT);
    assert!(
        guest
            .log()
            .text()
            .contains("from the disk, which has been written"),
        "{}",
        guest.tails()
    );
    stop(&guest);
    assert_eq!(
        sha256(&s.path("install.iso")),
        iso_sum,
        "the ISO is never written"
    );
}

#[test]
fn extra_disks_come_after_the_disk_in_the_order_of_their_numbers_under_the_chain_rules() {
    let s = ScratchDir::new();
    let vm = Vm::new(1);
    // Made in the opposite order, so that neither creation order nor the directory's decides.
    for (name, size) in [
        ("disk3.qcow2", "32M"),
        ("disk2.qcow2", "48M"),
        ("image.qcow2", "64M"),
    ] {
        common::make_qcow2(&s.path(name), size);
    }
    let guest = vm.guest(&s.0, "").spawn();
    guest.expect_console("GUEST-READY", BOOT);
    assert_eq!(
        guest.console().lines_starting("GUEST-BLOCK "),
        [
            "GUEST-BLOCK vda 67108864",
            "GUEST-BLOCK vdb 50331648",
            "GUEST-BLOCK vdc 33554432"
        ],
        "{}",
        guest.tails()
    );
    stop(&guest);

    // An extra disk's chain follows the disk's rules.
    let disk2 = s.path("disk2.qcow2").to_string_lossy().into_owned();
    run_ok(&[
        "sh",
        "-c",
        &format!("qemu-img create -q -f qcow2 -u -b /etc/hostname -F raw '{disk2}' 48M"),
    ]);
    expect_refusal(
        &vm,
        vm.guest(&s.0, ""),
        66,
        &[
            "disk2.qcow2",
            "/etc/hostname",
            "outside the image directory",
        ],
    );
}

/// Boots the test guest in `vm` (the image directory `s`) with `pairs` veth pairs beside
/// eth0 and one extra disk, under `boot_mode`; expects the guest to see every NIC and both
/// disks, stops it and expects the namespace back; vminit's log.
fn boot_with_every_nic_and_disk(vm: &Vm, s: &ScratchDir, pairs: usize, boot_mode: &str) -> String {
    vm.ctr.add_veth_pairs(pairs);
    for name in ["image.qcow2", "disk2.qcow2"] {
        common::make_qcow2(&s.path(name), "16M");
    }
    let before = vm.ctr.net_state();
    let guest = vm
        .guest(&s.0, "vminit_test_dhcp_tries=1")
        .env("BOOT_MODE", boot_mode)
        .spawn();
    guest.expect_console("GUEST-READY", UEFI_BOOT);
    let console = guest.console();
    assert_eq!(
        console.lines_starting("GUEST-PCI-NIC ").len(),
        1 + 2 * pairs,
        "{}",
        guest.tails()
    );
    assert_eq!(console.lines_starting("GUEST-BLOCK ").len(), 2);
    stop(&guest);
    assert_eq!(vm.ctr.net_state(), before, "the network is back");
    guest.log().text()
}

#[test]
fn at_the_pci_slot_limit_every_nic_and_extra_disk_reaches_the_guest_and_one_more_disk_is_refused() {
    let s = ScratchDir::new();
    let vm = Vm::new(1);
    // 27 NICs (eth0 and 13 veth pairs) and one extra disk: on `pc`, the 29 free slots less
    // the disk and the extra disk
    boot_with_every_nic_and_disk(&vm, &s, 13, "bios");
    // a second extra disk takes the 27th NIC's slot: refused before any change
    common::make_qcow2(&s.path("disk3.qcow2"), "16M");
    expect_refusal(
        &vm,
        vm.guest(&s.0, ""),
        65,
        &[
            "27 NICs",
            "at most 26",
            "the VM disk, 2 extra disks",
            "ATTACH_IFACES",
        ],
    );
}

#[test]
fn under_q35_at_the_pci_slot_limit_every_nic_reaches_the_guest_behind_its_root_port() {
    let s = ScratchDir::new();
    let vm = Vm::new(1);
    // 23 NICs (eth0 and 11 veth pairs) and one extra disk under BOOT_MODE=secure: the 29
    // free slots less the disk, the extra disk and the 4 empty root ports kept for hot-plug
    // (tests/ns/bad_input.rs: the VNC console's USB controller takes one more)
    let log = boot_with_every_nic_and_disk(&vm, &s, 11, "secure");
    assert!(log.contains("pcie-root-port,id=port26,"), "{log}");
}
