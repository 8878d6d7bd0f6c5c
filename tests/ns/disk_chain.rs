//! Disk chains inside the image directory: many VMs share one read-only base image, each
//! with a thin overlay of its own; an image may keep its data in an external data file. The
//! guests read and write through the chain that vminit opened and pinned for QEMU.

use crate::common;
use crate::common::stop;

use std::path::Path;
use std::time::Duration;

use common::{Container, Network, NicSpec, ScratchDir, run_ok, test_guest, vminit_binary};

const BOOT: Duration = Duration::from_secs(120);

/// `sh -c SCRIPT` in `dir` (qemu-img stores relative names as given).
fn sh_in(dir: &Path, script: &str) {
    run_ok(&["sh", "-c", &format!("cd '{}' && {script}", dir.display())]);
}

/// The first `len` bytes the guest sees through a chain, read with qemu-io with every
/// layer named (nothing taken from the headers).
fn guest_bytes(image_opts: &str, len: usize) -> Vec<u8> {
    let out = run_ok(&[
        "qemu-io",
        "-r",
        "--image-opts",
        image_opts,
        "-c",
        &format!("read -v 0 {len}"),
    ]);
    // "00000000:  53 48 41 52 ...  SHAR..."
    out.lines()
        .filter_map(|l| l.split_once(":  "))
        .flat_map(|(_, rest)| {
            rest.split_whitespace()
                .take_while(|w| w.len() == 2)
                .map(|h| u8::from_str_radix(h, 16).expect("hex"))
                .collect::<Vec<_>>()
        })
        .take(len)
        .collect()
}

/// A container on its own network, booting the test guest from `/run/image/image.qcow2`.
fn vm<'c>(ctr: &'c Container, cmdline: &str) -> common::VminitBuilder<'c> {
    ctr.vminit(&vminit_binary())
        .env("AUTO_ATTACH", "yes")
        .env("ACCEL", "tcg")
        .env("RAM_SIZE", "256M")
        .env("VMINIT_DISK", "/run/image/image.qcow2")
        .args(test_guest().qemu_args(cmdline))
}

#[test]
fn two_vms_share_one_read_only_base_image_each_with_its_own_overlay() {
    let s = ScratchDir::new();
    std::fs::write(s.0.join("base.raw"), b"SHAREDBASE\n").expect("write the base's data");
    sh_in(
        &s.0,
        "truncate -s 16M base.raw && qemu-img convert -f raw -O qcow2 base.raw base.qcow2",
    );
    for vm in ["vm1", "vm2"] {
        std::fs::create_dir_all(s.0.join(vm)).expect("mkdir");
        // As a user makes it: the overlay names its base relatively; both are mounted side
        // by side in /run/image (the base read-only).
        sh_in(
            &s.0.join(vm),
            "qemu-img create -q -f qcow2 -u -b base.qcow2 -F qcow2 image.qcow2 16M",
        );
    }
    let base_before = std::fs::read(s.0.join("base.qcow2")).expect("read the base");

    let nets = [Network::new(1), Network::new(2)];
    let ctrs = [Container::new(), Container::new()];
    for (net, ctr) in nets.iter().zip(&ctrs) {
        ctr.add_nic(net, NicSpec::docker(net, 2));
        ctr.set_default_route(net.gateway, "eth0");
    }
    let spawn = |i: usize, cmdline: &str| {
        vm(&ctrs[i], cmdline)
            .bind(
                &s.0.join(format!("vm{}", i + 1)).join("image.qcow2"),
                Path::new("/run/image/image.qcow2"),
            )
            .bind_ro(&s.0.join("base.qcow2"), Path::new("/run/image/base.qcow2"))
            .spawn()
    };
    let vm1 = spawn(0, "vminit_test_write=VMONEWROTE");
    let vm2 = spawn(1, "");
    for vm in [&vm1, &vm2] {
        // What the guest reads at boot comes from the shared base, through its overlay.
        vm.expect_console("GUEST-DISK SHAREDBASE", BOOT);
        assert!(
            vm.log().text().contains("base.qcow2 (qcow2)"),
            "the chain is logged\n{}",
            vm.tails()
        );
    }
    vm1.expect_console("GUEST-DISK-WRITTEN VMONEWROTE", BOOT);
    stop(&vm1);
    stop(&vm2);

    assert!(
        std::fs::read(s.0.join("base.qcow2")).expect("read the base") == base_before,
        "the shared base is unchanged"
    );
    let chain = |vm: &str| {
        format!(
            "driver=qcow2,file.driver=file,file.filename={}/{vm}/image.qcow2,backing.driver=qcow2,backing.file.driver=file,backing.file.filename={}/base.qcow2",
            s.0.display(),
            s.0.display()
        )
    };
    assert_eq!(
        guest_bytes(&chain("vm1"), 11),
        b"VMONEWROTE\n",
        "vm1 wrote its overlay"
    );
    assert_eq!(
        guest_bytes(&chain("vm2"), 11),
        b"SHAREDBASE\n",
        "vm2 still sees the base"
    );
}

#[test]
fn an_external_data_file_inside_the_image_directory_holds_the_guests_writes() {
    let s = ScratchDir::new();
    sh_in(
        &s.0,
        "qemu-img create -q -f qcow2 -o data_file=image.data image.qcow2 16M",
    );
    let net = Network::new(1);
    let (ctr, _) = Container::docker_on(&net);
    let guest = vm(&ctr, "vminit_test_write=INDATAFILE")
        .bind(&s.0, Path::new("/run/image"))
        .spawn();
    guest.expect_console("GUEST-DISK-WRITTEN INDATAFILE", BOOT);
    assert!(
        guest
            .log()
            .text()
            .contains("data file /run/image/image.data"),
        "{}",
        guest.tails()
    );
    stop(&guest);
    // An external data file keeps guest data at guest offsets.
    let data = std::fs::read(s.0.join("image.data")).expect("read the data file");
    assert_eq!(&data[..11], b"INDATAFILE\n");
}
