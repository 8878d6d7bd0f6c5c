//! A cloud image, hands-free: the `cloud` guest (tests/distro/guests/cloud/, a Debian 12 disk
//! laid out as Debian's cloud images are — GPT, an EFI system partition with Debian's signed shim
//! and GRUB, the signed kernel, an ext4 root to the end of the disk, cloud-init, growpart and
//! sshd) is the read-only `DISK_BASE`; vminit makes a larger thin overlay (`DISK_SIZE`) and the
//! NoCloud seed, OVMF boots the disk under Secure Boot, cloud-init grows the root file system,
//! names the host and installs the key, and a peer logs in by SSH.

use crate::common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{
    Container, Network, NicSpec, ScratchDir, SshKey, distro_uefi_disk, run_ok, sha256,
    vminit_binary,
};
use nix::sys::signal::Signal;

/// OVMF, shim, GRUB, systemd and cloud-init's first boot under TCG.
const BOOT: Duration = Duration::from_secs(600);
/// systemd's poweroff under TCG.
const STOP: Duration = Duration::from_secs(240);

/// How long sshd may take to let the key in once cloud-init said it finished.
const LOGIN: Duration = Duration::from_secs(180);

/// The base's size as built (tests/distro/build-images.sh, ROOT_SIZE) and the overlay's.
const BASE_SIZE: u64 = 2 << 30;
const DISK_SIZE: u64 = 3 << 30;

#[test]
fn a_cloud_image_as_disk_base_boots_under_secure_boot_grows_its_root_and_takes_an_ssh_login_from_a_peer()
 {
    // given the cloud disk as a read-only base in the image directory, and a key
    let image = ScratchDir::new();
    let base = image.path("base.qcow2");
    std::fs::copy(distro_uefi_disk("cloud"), &base).expect("copy the cloud image");
    let before = sha256(&base);
    let info = run_ok(&["qemu-img", "info", "--output=json", &base.to_string_lossy()]);
    assert!(
        info.contains(&format!("\"virtual-size\": {BASE_SIZE},")),
        "the base is smaller than DISK_SIZE: {info}"
    );
    let key = SshKey::new();
    let net = Network::new(1);
    let ctr = Container::new();
    let nic = ctr.add_nic(&net, NicSpec::docker(&net, 2));
    ctr.set_default_route(net.gateway, "eth0");

    // when vminit starts with DISK_BASE, a larger DISK_SIZE, Secure Boot and the key, no CMD
    let started = Instant::now();
    let vm = ctr
        .vminit(&vminit_binary())
        .hostname("cloud-vm1")
        .env("AUTO_ATTACH", "yes")
        .env("ACCEL", "tcg")
        .env("RAM_SIZE", "512M")
        .env("STOP_TIMEOUT", "200")
        .env("VMINIT_DISK", "/run/image/image.qcow2")
        .env("DISK_BASE", "base.qcow2")
        .env("DISK_SIZE", "3G")
        .env("BOOT_MODE", "secure")
        .env("CLOUD_INIT_SSH_KEYS", &key.public)
        .bind(&image.0, Path::new("/run/image"))
        .spawn();

    // then cloud-init finishes its first boot and the peer logs in as the image's default user
    vm.expect_console("Cloud-init v. ", BOOT);
    vm.expect_console(" finished at ", BOOT);
    eprintln!(
        "cloud-init finished {:.0} s after vminit started",
        started.elapsed().as_secs_f64()
    );
    let ip = nic.ip().to_string();
    let out = key.login(
        |script| net.peer_exec(script),
        "debian",
        &ip,
        "hostname; cat /sys/block/vda/size; df -B1 --output=size / | tail -n 1; \
         mokutil --sb-state",
        LOGIN,
    );
    eprintln!(
        "logged in {:.0} s after vminit started:\n{out}",
        started.elapsed().as_secs_f64()
    );
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    assert_eq!(lines.first(), Some(&"cloud-vm1"), "the hostname: {out}");
    let sectors: u64 = lines[1].parse().expect("the disk's size in sectors");
    assert_eq!(
        sectors * 512,
        DISK_SIZE,
        "the guest's disk has DISK_SIZE: {out}"
    );
    let root: u64 = lines[2].parse().expect("the root file system's size");
    assert!(
        root > DISK_SIZE - (256 << 20),
        "growpart and resize2fs grew the root file system to the disk ({root} bytes): {out}"
    );
    assert!(out.contains("SecureBoot enabled"), "{out}\n{}", vm.tails());

    // and the power button shuts it down; the base is as it was
    vm.kill(Signal::SIGTERM);
    let status = vm.expect_exit(STOP);
    assert_eq!(status.code(), Some(0), "{}", vm.tails());
    assert_eq!(
        image.names(),
        ["base.qcow2", "image.efivars.fd", "image.qcow2"]
    );
    assert_eq!(sha256(&base), before, "the base was never written");
}
