//! Firmware: `BOOT_MODE=uefi` starts the guest under OVMF (the test guest's kernel through
//! `-kernel`, which OVMF loads as an EFI application), with its UEFI variables kept beside the
//! disk so that what the guest writes there survives a restart; `BOOT_MODE=secure` turns Secure
//! Boot on (q35, SMM, Microsoft's keys). Real QEMU (TCG), Debian's ovmf, the test guest.

use crate::common;

use std::path::Path;
use std::time::Duration;

use common::{Container, Network, NicSpec, ScratchDir, Vminit, VminitBuilder};
use nix::sys::signal::Signal;

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

fn stop(vm: &Vminit) {
    vm.kill(Signal::SIGTERM);
    let code = vm.expect_exit(Duration::from_secs(30)).code();
    assert_eq!(code, Some(0), "{}", vm.tails());
}

fn container() -> (Network, Container) {
    let net = Network::new(1);
    let ctr = Container::new();
    ctr.add_nic(&net, NicSpec::docker(&net, 2));
    ctr.set_default_route(net.gateway, "eth0");
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
