//! The image's disk, media and firmware inputs under a real Docker daemon, with the README's
//! least-privilege flags: an empty directory at /image and `DISK_SIZE` make the disk with the
//! image's own qemu-img; `BOOT_MODE=secure` and `TPM=yes` run the image's OVMF and swtpm.

use crate::common;

use std::time::Duration;

use common::docker::{Scenario, VmOpts, expect_guest_nics};

/// OVMF under TCG is slower to reach the kernel than SeaBIOS.
const UEFI_BOOT: Duration = Duration::from_secs(240);

#[test]
fn an_empty_image_directory_and_disk_size_boot_under_secure_boot_with_a_tpm() {
    // given an empty directory for /image
    let sc = Scenario::new("disks");
    let net = sc.network();
    let dir = sc.disk_dir("empty");
    let vm = sc.create_vm(
        VmOpts::new()
            .network(&net)
            .disk(&dir)
            .env("DISK_SIZE", "64M")
            .env("BOOT_MODE", "secure")
            .env("TPM", "yes"),
    );
    // when
    sc.start(&vm);
    // then the disk was made, the firmware and the TPM came from the image
    let logs = sc.wait_logs(&vm, "GUEST-READY", UEFI_BOOT);
    for line in [
        "GUEST-BLOCK vda 67108864",
        "GUEST-FIRMWARE efi",
        "GUEST-SECUREBOOT 1",
        "GUEST-TPM 2 pcr0=",
    ] {
        assert!(logs.contains(line), "{line:?} missing\n{logs}");
    }
    let report = sc.guest_report(&vm);
    let ep = sc.only_endpoint(&vm);
    expect_guest_nics(&report, &[&ep]);
    sc.expect_answered(&net, ep.ip, &ep.mac, "the guest");
    sc.docker_ok(&["stop", &vm]);
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("read the image directory")
        .map(|e| {
            e.expect("an entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    assert_eq!(names, ["image.efivars.fd", "image.qcow2", "image.tpm"]);
}
