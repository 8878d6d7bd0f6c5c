//! Bad input: every mistake a user can make is refused quickly, with one line that names the
//! variable, path or interface and the fix, a documented exit code, and every NIC left exactly
//! as it was.

mod common;

use std::time::{Duration, Instant};

use common::{Container, Network, NicSpec, ScratchDisk, VminitBuilder, vminit_binary};

/// A container on one Docker-like network, and a valid disk.
struct Fixture {
    _net: Network,
    ctr: Container,
    scratch: ScratchDisk,
}

impl Fixture {
    fn new() -> Fixture {
        let net = Network::new(1);
        let ctr = Container::new();
        ctr.add_nic(&net, NicSpec::docker(&net, 2));
        ctr.set_default_route(net.gateway, "eth0");
        Fixture {
            _net: net,
            ctr,
            scratch: ScratchDisk::new(),
        }
    }

    /// vminit with valid settings; each test spoils one.
    fn vminit(&self) -> VminitBuilder<'_> {
        self.ctr
            .vminit(&vminit_binary())
            .env("AUTO_ATTACH", "yes")
            .env("ACCEL", "tcg")
            .env("RAM_SIZE", "128M")
            .env("VMINIT_DISK", &self.scratch.path)
    }
}

/// Runs vminit, expects `code` within `limit`, exactly one error line containing every
/// needle, and the container's network unchanged.
fn expect_refusal(f: &Fixture, vm: VminitBuilder, code: i32, needles: &[&str], limit: Duration) {
    let before = f.ctr.net_state();
    let start = Instant::now();
    let vm = vm.spawn();
    let status = vm
        .wait_exit(limit + Duration::from_secs(5))
        .unwrap_or_else(|| {
            panic!("vminit did not exit\n{}", vm.tails());
        });
    let took = start.elapsed();
    // The log is complete once every writer is gone (its reader thread may lag behind).
    let read_by = Instant::now() + Duration::from_secs(5);
    while !vm.log().is_closed() && Instant::now() < read_by {
        std::thread::sleep(Duration::from_millis(10));
    }
    let log = vm.log().text();
    assert_eq!(status.code(), Some(code), "exit code\n{log}");
    assert!(took <= limit, "took {took:?}, more than {limit:?}\n{log}");
    let errors: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with("vminit: error: "))
        .collect();
    assert_eq!(errors.len(), 1, "exactly one error line\n{log}");
    for needle in needles {
        assert!(
            errors[0].contains(needle),
            "{needle:?} missing from {:?}",
            errors[0]
        );
    }
    assert_eq!(f.ctr.net_state(), before, "the network changed\n{log}");
    assert!(vm.console().text().is_empty(), "nothing on the console");
}

const QUICK: Duration = Duration::from_secs(2);

#[test]
fn auto_attach_unset_is_refused_naming_the_variable() {
    let f = Fixture::new();
    let vm = f
        .ctr
        .vminit(&vminit_binary())
        .env("VMINIT_DISK", &f.scratch.path);
    expect_refusal(&f, vm, 64, &["AUTO_ATTACH", "AUTO_ATTACH=yes"], QUICK);
}

#[test]
fn auto_attach_other_than_yes_or_no_is_refused() {
    let f = Fixture::new();
    expect_refusal(
        &f,
        f.vminit().env("AUTO_ATTACH", "true"),
        64,
        &["AUTO_ATTACH", "\"true\""],
        QUICK,
    );
}

#[test]
fn auto_attach_no_without_interfaces_is_refused() {
    let f = Fixture::new();
    expect_refusal(
        &f,
        f.vminit().env("AUTO_ATTACH", "no"),
        64,
        &["ATTACH_IFACES"],
        QUICK,
    );
}

#[test]
fn an_unknown_interface_is_named_after_the_bounded_wait() {
    let f = Fixture::new();
    let vm = f
        .vminit()
        .env("AUTO_ATTACH", "no")
        .env("ATTACH_IFACES", "eth0,eth7");
    // IFACE_WAIT defaults to 2 s: the interface may still be on its way.
    expect_refusal(
        &f,
        vm,
        65,
        &["eth7", "does not exist"],
        Duration::from_secs(4),
    );
}

#[test]
fn a_nic_without_ipv4_is_named() {
    let f = Fixture::new();
    let other = Network::new(2);
    f.ctr.add_nic(&other, NicSpec::new());
    let vm = f.vminit().env("IFACE_WAIT", "0.5");
    expect_refusal(&f, vm, 65, &["eth1 has no IPv4"], QUICK);
}

#[test]
fn a_malformed_selected_network_is_refused() {
    let f = Fixture::new();
    let vm = f.vminit().env("SELECTED_NETWORK", "10.1.0.0/33");
    expect_refusal(&f, vm, 64, &["SELECTED_NETWORK", "IP/MASK"], QUICK);
}

#[test]
fn a_selected_network_matching_no_address_is_refused() {
    let f = Fixture::new();
    let vm = f.vminit().env("SELECTED_NETWORK", "10.99.0.0/16");
    expect_refusal(
        &f,
        vm,
        64,
        &["SELECTED_NETWORK", "matches no IPv4 address of eth0"],
        QUICK,
    );
}

#[test]
fn a_missing_disk_is_refused_naming_the_volume_flag() {
    let f = Fixture::new();
    let vm = f
        .vminit()
        .env("VMINIT_DISK", f.scratch.dir.join("nothing.qcow2"));
    expect_refusal(&f, vm, 66, &["nothing.qcow2", "not found", "-v "], QUICK);
}

#[test]
fn an_empty_disk_is_refused() {
    let f = Fixture::new();
    let empty = f.scratch.dir.join("empty.qcow2");
    std::fs::write(&empty, b"").expect("write the empty disk");
    expect_refusal(
        &f,
        f.vminit().env("VMINIT_DISK", &empty),
        66,
        &["empty.qcow2", "is empty"],
        QUICK,
    );
}

#[test]
fn a_raw_disk_is_refused_as_not_qcow2() {
    let f = Fixture::new();
    let raw = f.scratch.dir.join("raw.img");
    std::fs::write(&raw, vec![0u8; 65536]).expect("write the raw disk");
    expect_refusal(
        &f,
        f.vminit().env("VMINIT_DISK", &raw),
        66,
        &["raw.img", "not a qcow2", "qemu-img convert"],
        QUICK,
    );
}

#[test]
fn a_missing_qemu_is_refused_with_127() {
    let f = Fixture::new();
    let vm = f
        .vminit()
        .env("VMINIT_QEMU", "/nonexistent/qemu-system-x86_64");
    expect_refusal(
        &f,
        vm,
        127,
        &["/nonexistent/qemu-system-x86_64", "VMINIT_QEMU"],
        QUICK,
    );
}

#[test]
fn a_missing_dnsmasq_is_refused_with_127() {
    let f = Fixture::new();
    let vm = f.vminit().env("VMINIT_DNSMASQ", "/nonexistent/dnsmasq");
    expect_refusal(
        &f,
        vm,
        127,
        &["/nonexistent/dnsmasq", "ENABLE_DHCP=no"],
        QUICK,
    );
}

#[test]
fn a_qemu_that_is_not_executable_is_refused_with_126() {
    let f = Fixture::new();
    let plain = f.scratch.dir.join("qemu");
    std::fs::write(&plain, b"not a program").expect("write the fake QEMU");
    expect_refusal(
        &f,
        f.vminit().env("VMINIT_QEMU", &plain),
        126,
        &["qemu"],
        QUICK,
    );
}

#[test]
fn without_mknod_rights_the_device_cgroup_flag_is_named() {
    let f = Fixture::new();
    let vm = f.vminit().cap_drop("mknod");
    expect_refusal(&f, vm, 69, &["mknod", "--device-cgroup-rule 'c "], QUICK);
}

#[test]
fn without_net_admin_the_cap_add_flag_is_named() {
    let f = Fixture::new();
    let vm = f.vminit().cap_drop("net_admin");
    expect_refusal(&f, vm, 69, &["--cap-add NET_ADMIN"], QUICK);
}

#[test]
fn vhost_on_without_vhost_net_is_refused_naming_the_device_flag() {
    let f = Fixture::new();
    let vm = f.vminit().env("VHOST", "on").vhost_net(false);
    expect_refusal(&f, vm, 69, &["VHOST=on", "--device /dev/vhost-net"], QUICK);
}

#[test]
fn accel_kvm_without_kvm_is_refused_naming_the_device_flag() {
    let f = Fixture::new();
    let vm = f.vminit().env("ACCEL", "kvm").kvm(false);
    expect_refusal(&f, vm, 69, &["ACCEL=kvm", "--device /dev/kvm"], QUICK);
}

#[test]
fn a_failure_at_the_second_of_three_nics_puts_the_first_back() {
    let f = Fixture::new();
    let (n2, n3) = (Network::new(2), Network::new(3));
    f.ctr.add_nic(&n2, NicSpec::docker(&n2, 2));
    f.ctr.add_nic(&n3, NicSpec::docker(&n3, 2));
    // Something of the user's already holds the name vminit gives the second NIC's door:
    // the first NIC is fully taken over when the second fails.
    let made = f
        .ctr
        .exec("ip link add vmlink1 type veth peer name vmlink1peer");
    assert!(made.success(), "{made:?}");
    let vm = f
        .vminit()
        .env("AUTO_ATTACH", "no")
        .env("ATTACH_IFACES", "eth0 eth1 eth2");
    expect_refusal(
        &f,
        vm,
        71,
        &["vmlink1", "File exists"],
        Duration::from_secs(3),
    );
}

#[test]
fn a_run_directory_that_cannot_be_made_is_one_line_even_with_log_level_off() {
    let f = Fixture::new();
    let file = f.scratch.dir.join("a-file");
    std::fs::write(&file, b"").expect("write a file");
    for level in ["info", "off"] {
        let vm = f
            .vminit()
            .env("VMINIT_RUN_DIR", file.join("run"))
            .env("LOG_LEVEL", level);
        expect_refusal(&f, vm, 71, &["a-file/run", "Not a directory"], QUICK);
    }
}

#[test]
fn log_level_off_still_prints_a_fatal_error() {
    let f = Fixture::new();
    let vm = f
        .vminit()
        .env("LOG_LEVEL", "off")
        .env("VMINIT_DISK", f.scratch.dir.join("nothing.qcow2"));
    expect_refusal(&f, vm, 66, &["nothing.qcow2", "not found"], QUICK);
}
