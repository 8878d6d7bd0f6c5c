//! Firmware: `BOOT_MODE=uefi` starts the guest under OVMF (the test guest's kernel through
//! `-kernel`, which OVMF loads as an EFI application), with its UEFI variables kept beside the
//! disk so that what the guest writes there survives a restart; `BOOT_MODE=secure` turns Secure
//! Boot on (q35, SMM, Microsoft's keys), and the firmware then refuses a boot loader on the
//! disk that is not signed by a key it trusts, which plain UEFI starts. Real QEMU (TCG),
//! Debian's ovmf (as the image ships it, compressed, under scripts/test.sh; and raw), the test
//! guest, an unsigned GRUB made by grub-mkstandalone. (That a signed shim, GRUB and kernel boot
//! under Secure Boot is `tests/distro/cloud.rs`.)

use crate::common;
use crate::common::stop;

use std::path::Path;
use std::time::Duration;

use common::{Container, Network, ScratchDir, VminitBuilder, run_ok};

/// OVMF under TCG takes longer than SeaBIOS to reach the kernel.
const BOOT: Duration = Duration::from_secs(240);

const IMAGE: &str = "/run/image";

fn vm<'c>(ctr: &'c Container, dir: &Path, cmdline: &str) -> VminitBuilder<'c> {
    ctr.vminit(&common::vminit_binary())
        .env("AUTO_ATTACH", "yes")
        .env("ACCEL", "tcg")
        .env("RAM_SIZE", "256M")
        .env("VMINIT_DISK", format!("{IMAGE}/image.qcow2"))
        .env("DISK_SIZE", "64M")
        .bind(dir, Path::new(IMAGE))
        .args(common::test_guest().qemu_args(cmdline))
}

fn container() -> (Network, Container) {
    let net = Network::new(1);
    let (ctr, _) = Container::docker_on(&net);
    (net, ctr)
}

#[test]
fn boot_mode_uefi_boots_under_ovmf_and_keeps_the_guests_variables_beside_the_disk() {
    let s = ScratchDir::new();
    let (_net, ctr) = container();
    let guest = vm(&ctr, &s.0, "vminit_test_efivar=KEPTVAR")
        .env("BOOT_MODE", "uefi")
        .spawn();
    guest.expect_console("GUEST-FIRMWARE efi", BOOT);
    guest.expect_console("GUEST-SECUREBOOT 0", BOOT);
    guest.expect_console("GUEST-EFIVAR-WRITTEN KEPTVAR", BOOT);
    guest.expect_console("GUEST-REPORT done", BOOT);
    stop(&guest);
    assert_eq!(s.names(), ["image.efivars.fd", "image.qcow2"]);
    // A raw flash image the size of Debian's template, whichever form of the template
    // vminit found (the image's compressed qcow2 under scripts/test.sh).
    let vars = std::fs::read(s.0.join("image.efivars.fd")).unwrap();
    let template = std::fs::metadata("/usr/share/OVMF/OVMF_VARS_4M.fd").unwrap();
    assert_eq!(vars.len() as u64, template.len());
    assert!(!vars.starts_with(b"QFI\xfb"), "image.efivars.fd is a qcow2");

    // Restarted on Debian's raw OVMF as the ovmf package installs it: the same firmware.
    let guest = vm(&ctr, &s.0, "")
        .env("BOOT_MODE", "uefi")
        .env("VMINIT_OVMF_DIR", "/usr/share/OVMF")
        .spawn();
    guest.expect_console("GUEST-EFIVAR KEPTVAR", BOOT);
    stop(&guest);
}

#[test]
fn boot_mode_secure_with_tpm_gives_secure_boot_and_a_tpm_whose_state_stays_beside_the_disk() {
    let s = ScratchDir::new();
    let (_net, ctr) = container();
    let start = || {
        vm(&ctr, &s.0, "")
            .env("BOOT_MODE", "secure")
            .env("TPM", "yes")
            .spawn()
    };
    let guest = start();
    guest.expect_console("GUEST-FIRMWARE efi", BOOT);
    guest.expect_console("GUEST-SECUREBOOT 1", BOOT);
    let tpm = guest
        .console()
        .wait_for_whole_line("GUEST-TPM ", BOOT)
        .unwrap_or_else(|| panic!("no TPM line\n{}", guest.tails()))
        .line;
    assert!(tpm.starts_with("GUEST-TPM 2 pcr0="), "{tpm}");
    let pcr0 = tpm
        .trim_start_matches("GUEST-TPM 2 pcr0=")
        .trim()
        .to_owned();
    assert!(
        pcr0.len() == 64 && pcr0 != "0".repeat(64),
        "the firmware measured itself into PCR 0: {pcr0}"
    );
    // swtpm's cryptography (the image's libcrypto when the harness has it: VMINIT_TEST_SWTPM)
    // passed a full self-test and made an RSA and an ECC key.
    guest.expect_console(common::TPM_CRYPTO_OK, BOOT);
    let log = guest.log().text();
    assert!(log.contains("-machine q35,smm=on"), "{log}");
    assert!(log.contains("swtpm running"), "{log}");
    stop(&guest);
    let state = s.path("image.tpm");
    let permall = state.join("tpm2-00.permall");
    assert!(
        permall.is_file(),
        "swtpm kept its state in {}",
        state.display()
    );
    let swtpms = common::run(&["pgrep", "-f", &state.to_string_lossy()]);
    assert!(!swtpms.success(), "swtpm was stopped: {}", swtpms.stdout);

    // A restart finds the same TPM (its state) and measures the same firmware.
    let guest = start();
    guest.expect_console(&format!("GUEST-TPM 2 pcr0={pcr0}"), BOOT);
    stop(&guest);
}

/// Makes `dir/image.qcow2` a disk that boots the test guest by UEFI with nothing signed: a FAT
/// file system on the whole disk (no partition table: OVMF reads it as it reads a USB stick)
/// with an unsigned GRUB (`grub-mkstandalone`) at the removable-media path
/// `EFI/BOOT/BOOTX64.EFI` and the test guest's kernel and initramfs beside it.
fn unsigned_efi_disk(dir: &Path) {
    let guest = common::test_guest();
    let scratch = ScratchDir::new();
    let cfg = scratch.path("grub.cfg");
    std::fs::write(
        &cfg,
        "set timeout=0\nsearch --no-floppy --file --set=root /vmlinuz\n\
         linux /vmlinuz console=ttyS0 quiet no_timer_check\ninitrd /initramfs.cpio.gz\nboot\n",
    )
    .expect("write grub.cfg");
    let efi = scratch.path("BOOTX64.EFI").to_string_lossy().into_owned();
    let fat = scratch.path("esp.img").to_string_lossy().into_owned();
    run_ok(&[
        "grub-mkstandalone",
        "-O",
        "x86_64-efi",
        "-o",
        &efi,
        "--install-modules=linux fat normal search search_fs_file configfile echo test",
        "--modules=linux fat search search_fs_file",
        "--locales=",
        "--themes=",
        "--fonts=",
        &format!("boot/grub/grub.cfg={}", cfg.display()),
    ]);
    run_ok(&["mkfs.fat", "-n", "ESP", "-C", &fat, "65536"]);
    run_ok(&["mmd", "-i", &fat, "::/EFI", "::/EFI/BOOT"]);
    for (from, to) in [
        (efi.clone(), "::/EFI/BOOT/BOOTX64.EFI"),
        (guest.kernel.to_string_lossy().into_owned(), "::/vmlinuz"),
        (
            guest.initrd.to_string_lossy().into_owned(),
            "::/initramfs.cpio.gz",
        ),
    ] {
        run_ok(&["mcopy", "-i", &fat, &from, to]);
    }
    let disk = dir.join("image.qcow2").to_string_lossy().into_owned();
    run_ok(&["qemu-img", "convert", "-O", "qcow2", &fat, &disk]);
}

#[test]
fn boot_mode_secure_refuses_an_unsigned_boot_loader_on_the_disk_which_boot_mode_uefi_starts() {
    let (_net, ctr) = container();
    let disk_vm = |dir: &Path, mode: &str| {
        ctr.vminit(&common::vminit_binary())
            .env("AUTO_ATTACH", "yes")
            .env("ACCEL", "tcg")
            .env("RAM_SIZE", "256M")
            .env("VMINIT_DISK", format!("{IMAGE}/image.qcow2"))
            .env("BOOT_MODE", mode)
            .bind(dir, Path::new(IMAGE))
            .spawn()
    };

    // Plain UEFI: the firmware starts the unsigned GRUB, which boots the test guest.
    let uefi = ScratchDir::new();
    unsigned_efi_disk(&uefi.0);
    let guest = disk_vm(&uefi.0, "uefi");
    guest.expect_console("GUEST-FIRMWARE efi", BOOT);
    guest.expect_console("GUEST-SECUREBOOT 0", BOOT);
    stop(&guest);

    // Secure Boot: the same disk's boot loader is refused and nothing of it runs.
    let secure = ScratchDir::new();
    unsigned_efi_disk(&secure.0);
    let guest = disk_vm(&secure.0, "secure");
    let refused = guest
        .console()
        .wait_for_whole_line(": Access Denied", BOOT)
        .unwrap_or_else(|| panic!("the firmware did not refuse\n{}", guest.tails()))
        .line;
    // "BdsDxe: failed to load Boot0002 "UEFI Non-Block Boot Device" from PciRoot(0x0)/Pci(0x2,0x0): Access Denied"
    assert!(
        refused.contains("BdsDxe: failed to load ") && refused.contains("Pci("),
        "{refused}"
    );
    std::thread::sleep(Duration::from_secs(10));
    let console = guest.console().text();
    assert!(
        !console.contains("GRUB") && !console.contains("Linux version"),
        "neither GRUB nor the kernel ran under Secure Boot\n{console}"
    );
}
