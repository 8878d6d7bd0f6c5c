//! Firmware: `BOOT_MODE=uefi` starts the guest under OVMF (the test guest's kernel through
//! `-kernel`, which OVMF loads as an EFI application), with its UEFI variables kept beside the
//! disk so that what the guest writes there survives a restart; `BOOT_MODE=secure` turns Secure
//! Boot on (q35, SMM, Microsoft's keys). Real QEMU (TCG), Debian's ovmf, the test guest.

use crate::common;
use crate::common::stop;

use std::path::Path;
use std::time::Duration;

use common::{Container, Network, ScratchDir, VminitBuilder};

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

    let guest = vm(&ctr, &s.0, "").env("BOOT_MODE", "uefi").spawn();
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
