//! The image's disk, media and firmware inputs under a real Docker daemon, with the README's
//! least-privilege flags: an empty directory at /image and `DISK_SIZE` make the disk with the
//! image's own qemu-img; `BOOT_MODE=secure` and `TPM=yes` run the image's OVMF and swtpm; a
//! Debian cloud image as `DISK_BASE` with `DISK_SIZE` and a key is logged into from a peer.

use crate::common;

use std::time::Duration;

use common::docker::{Scenario, VmOpts, expect_guest_nics};
use common::{SshKey, TPM_CRYPTO_OK, distro_uefi_disk, sha256};

/// OVMF under TCG is slower to reach the kernel than SeaBIOS.
const UEFI_BOOT: Duration = Duration::from_secs(240);
/// OVMF, GRUB, systemd and cloud-init's first boot of a Debian cloud image under TCG.
const CLOUD_BOOT: Duration = Duration::from_secs(600);

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
    // then the disk was made, the firmware and the TPM came from the image, and the TPM's
    // cryptography (the image's own libcrypto) passed a full self-test and made RSA and ECC keys
    let logs = sc.wait_logs(&vm, "GUEST-READY", UEFI_BOOT);
    for line in [
        "GUEST-BLOCK vda 67108864",
        "GUEST-FIRMWARE efi",
        "GUEST-SECUREBOOT 1",
        "GUEST-TPM 2 pcr0=",
        TPM_CRYPTO_OK,
    ] {
        assert!(logs.contains(line), "{line:?} missing\n{logs}");
    }
    let report = sc.guest_report(&vm);
    let ep = sc.only_endpoint(&vm);
    expect_guest_nics(&report, &[&ep]);
    sc.expect_answered(&net, ep.ip, &ep.mac, "the guest");
    sc.docker_ok(&["stop", &vm]);
    assert_eq!(
        common::dir_names(&dir),
        ["image.efivars.fd", "image.qcow2", "image.tpm"]
    );
}

#[test]
fn a_cloud_image_as_disk_base_with_disk_size_and_a_key_is_logged_into_by_ssh_from_a_peer_container()
{
    // given a directory holding only a Debian cloud image (the distro tier's, 2 GiB, booting
    // by UEFI), and a key
    let sc = Scenario::new("cloud");
    let net = sc.network();
    let dir = sc.disk_dir("cloud");
    let base = dir.join("debian-12-cloud.qcow2");
    std::fs::copy(distro_uefi_disk("cloud"), &base).expect("copy the cloud image");
    let before = sha256(&base);
    let key = SshKey::new();
    let vm = sc.create_vm(
        VmOpts::new()
            .network(&net)
            .disk(&dir)
            .cmd(&[])
            .docker_flags(&["--hostname", "cloud-vm2"])
            .env("RAM_SIZE", "512M")
            .env("STOP_TIMEOUT", "180")
            .env("DISK_BASE", "debian-12-cloud.qcow2")
            .env("DISK_SIZE", "3G")
            .env("BOOT_MODE", "uefi")
            .env("CLOUD_INIT_SSH_KEYS", &key.public),
    );
    // when
    sc.start(&vm);
    // then cloud-init's first boot finishes and a peer container logs in with the key
    sc.wait_logs(&vm, " finished at ", CLOUD_BOOT);
    let peer = sc.sleeper(&net);
    let ep = sc.only_endpoint(&vm);
    let out = key.login(
        |script| sc.host_shell_in_netns_of(&peer, script),
        "debian",
        &ep.ip.to_string(),
        "hostname; df -B1 --output=size / | tail -n 1",
        Duration::from_secs(180),
    );
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    assert_eq!(lines.first(), Some(&"cloud-vm2"), "the hostname: {out}");
    let root: u64 = lines
        .get(1)
        .and_then(|l| l.parse().ok())
        .unwrap_or_else(|| panic!("the root file system's size: {out}"));
    assert!(
        root > (3 << 30) - (256 << 20),
        "the root file system grew to DISK_SIZE ({root} bytes): {out}"
    );
    // and `docker stop` powers it off; the base is as it was
    sc.docker_ok(&["stop", "-t", "200", &vm]);
    assert_eq!(sc.inspect(&vm, "{{.State.ExitCode}}").trim(), "0");
    assert_eq!(sha256(&base), before, "the base was never written");
}
