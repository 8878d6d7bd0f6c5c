//! Bad input: every mistake a user can make is refused quickly, with one line that names the
//! variable, path or interface and the fix, a documented exit code, and every NIC left exactly
//! as it was.

use crate::common;

use std::time::Duration;

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
        let (ctr, _) = Container::docker_on(&net);
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
    let log = vm.expect_refusal(code, needles, limit);
    assert_eq!(f.ctr.net_state(), before, "the network changed\n{log}");
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
fn a_loopback_or_malformed_guest_dns_is_refused_naming_the_variable() {
    for value in ["127.0.0.11", "10.0.0.53;1.1.1.1"] {
        let f = Fixture::new();
        let vm = f.vminit().env("GUEST_DNS", value);
        expect_refusal(&f, vm, 64, &["GUEST_DNS", "GUEST_DNS=ip[,ip...]"], QUICK);
    }
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
fn net_datapath_macvtap_without_mknod_rights_names_the_device_cgroup_flag() {
    let f = Fixture::new();
    let vm = f.vminit().env("NET_DATAPATH", "macvtap").cap_drop("mknod");
    expect_refusal(&f, vm, 69, &["mknod", "--device-cgroup-rule 'c "], QUICK);
}

#[test]
fn net_datapath_tap_without_dev_net_tun_names_the_device_flag() {
    let f = Fixture::new();
    let vm = f.vminit().env("NET_DATAPATH", "tap").dev_net_tun(false);
    expect_refusal(
        &f,
        vm,
        69,
        &["NET_DATAPATH=tap", "--device /dev/net/tun"],
        QUICK,
    );
}

#[test]
fn net_datapath_tap_without_net_admin_names_the_cap_add_flag() {
    let f = Fixture::new();
    let vm = f.vminit().env("NET_DATAPATH", "tap").cap_drop("net_admin");
    expect_refusal(&f, vm, 69, &["--cap-add NET_ADMIN"], QUICK);
}

// With NET_DATAPATH=auto, a container without NET_ADMIN, or where neither a macvtap node nor
// a tap can be made, boots in user mode instead (tests/ns/user.rs).
#[test]
fn net_datapath_macvtap_without_net_admin_names_the_cap_add_flag_and_user_mode() {
    let f = Fixture::new();
    let vm = f
        .vminit()
        .env("NET_DATAPATH", "macvtap")
        .cap_drop("net_admin");
    expect_refusal(
        &f,
        vm,
        69,
        &["--cap-add NET_ADMIN", "NET_DATAPATH=user"],
        QUICK,
    );
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
fn a_failure_in_the_middle_of_a_batch_undoes_what_the_kernel_did_after_it_too() {
    let f = Fixture::new();
    // The user's own route to the container's address: the door's route to it, in the
    // batch of the door's address and routes, fails; the kernel still adds the routes
    // after it in that batch, which must be undone as well.
    let made = f.ctr.exec("ip route add 10.1.0.2/32 dev lo");
    assert!(made.success(), "{made:?}");
    let before = f.ctr.net_state();
    let log =
        f.vminit()
            .expect_refusal(71, &["10.1.0.2/32", "File exists"], Duration::from_secs(3));
    assert!(
        log.contains("undo: ip route del default via 10.1.0.1 dev vmlink0"),
        "the default route the kernel added after the failure is undone\n{log}"
    );
    assert!(
        !log.contains("undo: ip route del 10.1.0.2/32"),
        "the route that failed is not undone\n{log}"
    );
    assert_eq!(f.ctr.net_state(), before, "the network changed\n{log}");
}

#[test]
fn display_other_than_none_or_vnc_is_refused() {
    let f = Fixture::new();
    let vm = f.vminit().env("DISPLAY", ":0");
    expect_refusal(&f, vm, 64, &["DISPLAY", "\":0\"", "none or vnc"], QUICK);
}

#[test]
fn an_unreadable_vnc_password_file_is_refused_naming_it() {
    let f = Fixture::new();
    let vm = f
        .vminit()
        .env("DISPLAY", "vnc")
        .env("VNC_DIR", "/run/vnc")
        .env("VNC_PASSWORD_FILE", "/run/secrets/missing");
    expect_refusal(
        &f,
        vm,
        64,
        &["VNC_PASSWORD_FILE", "/run/secrets/missing", "No such file"],
        QUICK,
    );
}

#[test]
fn a_world_writable_vnc_dir_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let f = Fixture::new();
    let dir = f.scratch.dir.join("console");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let vm = f
        .vminit()
        .env("DISPLAY", "vnc")
        .env("VNC_DIR", "/run/vnc")
        .bind(&dir, std::path::Path::new("/run/vnc"));
    expect_refusal(&f, vm, 64, &["VNC_DIR", "world-writable", "0750"], QUICK);
}

#[test]
fn vnc_on_a_nic_the_guest_takes_is_refused() {
    let f = Fixture::new();
    let vm = f
        .vminit()
        .env("DISPLAY", "vnc")
        .env("VNC_DIR", "/run/vnc")
        .env("VNC_LISTEN", "eth0");
    expect_refusal(
        &f,
        vm,
        64,
        &["VNC_LISTEN", "eth0", "goes to the guest"],
        QUICK,
    );
}

#[test]
fn vnc_on_a_missing_interface_is_refused() {
    let f = Fixture::new();
    let vm = f
        .vminit()
        .env("DISPLAY", "vnc")
        .env("VNC_DIR", "/run/vnc")
        .env("VNC_LISTEN", "eth9");
    expect_refusal(&f, vm, 64, &["VNC_LISTEN", "no interface eth9"], QUICK);
}

// ---- the disk is untrusted input ----

/// `qemu-img create -f qcow2 [-b BACKING -F FORMAT] [-o data_file=DATA] PATH 16M`, without
/// checking that the backing file exists (`-u`): the header says what the test wants.
fn qcow2(path: &std::path::Path, backing: Option<(&str, Option<&str>)>, data_file: Option<&str>) {
    let path = path.to_string_lossy();
    let mut argv = vec!["qemu-img", "create", "-q", "-f", "qcow2", "-u"];
    if let Some((name, format)) = backing {
        argv.extend(["-b", name]);
        if let Some(format) = format {
            argv.extend(["-F", format]);
        }
    }
    let options;
    if let Some(data) = data_file {
        options = format!("data_file={data}");
        argv.extend(["-o", &options]);
    }
    argv.extend([&*path, "16M"]);
    common::run_ok(&argv);
}

/// The refusal of a disk whose chain breaks a rule: exit 66, one line naming the image
/// that names the bad file, and the reason.
fn expect_disk_refusal(f: &Fixture, top: &std::path::Path, needles: &[&str]) {
    let name = top.to_string_lossy();
    let mut all = vec![&*name];
    all.extend_from_slice(needles);
    expect_refusal(f, f.vminit().env("VMINIT_DISK", top), 66, &all, QUICK);
}

#[test]
fn a_backing_file_outside_the_image_directory_is_refused() {
    let f = Fixture::new();
    let image_dir = f.scratch.dir.join("image");
    std::fs::create_dir_all(&image_dir).expect("mkdir image");
    // What a hostile image would name: a file of the container (an absolute path, or a
    // relative one that climbs out), here a scratch file outside the directory.
    let secret = f.scratch.dir.join("secret.raw");
    std::fs::write(&secret, vec![0u8; 4096]).expect("write the secret");
    let absolute = image_dir.join("absolute.qcow2");
    qcow2(
        &absolute,
        Some((&secret.to_string_lossy(), Some("raw"))),
        None,
    );
    expect_disk_refusal(
        &f,
        &absolute,
        &["secret.raw", "outside the image directory"],
    );
    let dots = image_dir.join("dots.qcow2");
    qcow2(&dots, Some(("../secret.raw", Some("raw"))), None);
    expect_disk_refusal(&f, &dots, &["../secret.raw", "outside the image directory"]);
    let proc_file = image_dir.join("proc.qcow2");
    qcow2(&proc_file, Some(("/proc/1/environ", Some("raw"))), None);
    expect_disk_refusal(
        &f,
        &proc_file,
        &["/proc/1/environ", "outside the image directory"],
    );
}

#[test]
fn a_symlink_out_of_the_image_directory_is_refused() {
    let f = Fixture::new();
    let image_dir = f.scratch.dir.join("image");
    std::fs::create_dir_all(&image_dir).expect("mkdir image");
    let secret = f.scratch.dir.join("secret.raw");
    std::fs::write(&secret, vec![0u8; 4096]).expect("write the secret");
    std::os::unix::fs::symlink(&secret, image_dir.join("base.raw")).expect("symlink");
    let top = image_dir.join("image.qcow2");
    qcow2(&top, Some(("base.raw", Some("raw"))), None);
    expect_disk_refusal(&f, &top, &["base.raw", "resolves to", "secret.raw"]);
}

#[test]
fn a_protocol_as_backing_file_is_refused() {
    let f = Fixture::new();
    for (name, protocol) in [
        ("nbd://10.1.0.50:10809/export", "nbd:"),
        (
            r#"json:{"file.driver":"file","file.filename":"/etc/shadow"}"#,
            "json:",
        ),
    ] {
        let top = f.scratch.dir.join("proto.qcow2");
        let _ = std::fs::remove_file(&top);
        // Written by hand: qemu-img would try to reach the protocol.
        write_qcow2_naming(&top, name, Some("raw"));
        expect_disk_refusal(&f, &top, &[protocol, "not a file"]);
    }
}

/// A qcow2 v3 header (512-byte clusters) whose backing file is `name`, in `format` when
/// given.
fn write_qcow2_naming(path: &std::path::Path, name: &str, format: Option<&str>) {
    let mut h = vec![0u8; 65536];
    h[..4].copy_from_slice(b"QFI\xfb");
    h[4..8].copy_from_slice(&3u32.to_be_bytes());
    h[20..24].copy_from_slice(&9u32.to_be_bytes());
    h[24..32].copy_from_slice(&(16u64 << 20).to_be_bytes());
    h[100..104].copy_from_slice(&112u32.to_be_bytes());
    if let Some(format) = format {
        h[112..116].copy_from_slice(&0xe279_2acau32.to_be_bytes());
        h[116..120].copy_from_slice(&(format.len() as u32).to_be_bytes());
        h[120..120 + format.len()].copy_from_slice(format.as_bytes());
    }
    h[8..16].copy_from_slice(&256u64.to_be_bytes());
    h[16..20].copy_from_slice(&(name.len() as u32).to_be_bytes());
    h[256..256 + name.len()].copy_from_slice(name.as_bytes());
    std::fs::write(path, h).expect("write the image");
}

#[test]
fn a_data_file_outside_the_image_directory_is_refused() {
    let f = Fixture::new();
    // Another VM's disk, next to this one's directory.
    let other = f.scratch.dir.join("other-vm.raw");
    std::fs::write(&other, vec![0u8; 16 << 20]).expect("write the other disk");
    let image_dir = f.scratch.dir.join("image");
    std::fs::create_dir_all(&image_dir).expect("mkdir image");
    let top = image_dir.join("image.qcow2");
    qcow2(&top, None, Some(&other.to_string_lossy()));
    expect_disk_refusal(
        &f,
        &top,
        &["data file", "other-vm.raw", "outside the image directory"],
    );
}

#[test]
fn a_chain_deeper_than_sixteen_images_or_a_loop_is_refused() {
    let f = Fixture::new();
    let dir = &f.scratch.dir;
    for i in 0..=16 {
        let next = format!("layer{}.qcow2", i + 1);
        qcow2(
            &dir.join(format!("layer{i}.qcow2")),
            Some((&next, Some("qcow2"))),
            None,
        );
    }
    qcow2(&dir.join("layer17.qcow2"), None, None);
    expect_disk_refusal(&f, &dir.join("layer0.qcow2"), &["more than 16 images"]);
    qcow2(&dir.join("a.qcow2"), Some(("b.qcow2", Some("qcow2"))), None);
    qcow2(&dir.join("b.qcow2"), Some(("a.qcow2", Some("qcow2"))), None);
    expect_disk_refusal(&f, &dir.join("a.qcow2"), &["loops back"]);
}

#[test]
fn a_backing_file_without_its_format_is_refused_with_the_fix() {
    let f = Fixture::new();
    let base = f.scratch.dir.join("base.qcow2");
    qcow2(&base, None, None);
    // What QEMU before 6.1 wrote by default (today's qemu-img refuses to).
    let top = f.scratch.dir.join("top.qcow2");
    write_qcow2_naming(&top, "base.qcow2", None);
    expect_disk_refusal(
        &f,
        &top,
        &["without its format", "qemu-img rebase -u -F qcow2"],
    );
}

#[test]
fn a_fifo_or_a_device_at_the_disk_path_is_refused_at_once() {
    let f = Fixture::new();
    let fifo = f.scratch.dir.join("image.fifo");
    common::run_ok(&["mkfifo", &fifo.to_string_lossy()]);
    // Opening a FIFO for reading waits for a writer: never, here.
    expect_refusal(
        &f,
        f.vminit().env("VMINIT_DISK", &fifo),
        66,
        &["image.fifo", "is a FIFO"],
        QUICK,
    );
    expect_refusal(
        &f,
        f.vminit().env("VMINIT_DISK", "/dev/zero"),
        66,
        &["/dev/zero", "is a character device"],
        QUICK,
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

// ---- every refusal before the first change, watched by `ip monitor` ----

/// `ip monitor` on the container's namespace for a whole run: every link, address, route
/// and rule change shows, also one that is rolled back at once.
struct Watch {
    child: std::process::Child,
    out: std::path::PathBuf,
}

impl Watch {
    fn start(f: &Fixture) -> Watch {
        let out = f.scratch.dir.join("ip-monitor.txt");
        let file = std::fs::File::create(&out).expect("create the monitor's output");
        let child = std::process::Command::new("ip")
            .args([
                "-n",
                f.ctr.ns().name(),
                "monitor",
                "link",
                "address",
                "route",
                "rule",
            ])
            .stdout(file)
            .spawn()
            .expect("start ip monitor");
        // Let it subscribe before vminit starts.
        std::thread::sleep(Duration::from_millis(300));
        Watch { child, out }
    }

    /// Everything it saw.
    fn stop(mut self) -> String {
        std::thread::sleep(Duration::from_millis(300));
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }
}

/// `expect_refusal`, with the namespace watched for the whole run: not even a change that
/// was rolled back passes.
fn expect_early_refusal(f: &Fixture, vm: VminitBuilder, code: i32, needles: &[&str]) {
    let watch = Watch::start(f);
    expect_refusal(f, vm, code, needles, Duration::from_secs(4));
    let seen = watch.stop();
    assert!(
        seen.is_empty(),
        "the namespace changed during the run:\n{seen}"
    );
}

#[test]
fn a_run_directory_too_long_for_qemus_sockets_is_refused_before_any_change() {
    let f = Fixture::new();
    let long = format!("/run/{}", "d".repeat(100));
    let vm = f.vminit().env("VMINIT_RUN_DIR", &long);
    expect_early_refusal(
        &f,
        vm,
        64,
        &["VMINIT_RUN_DIR", "at most 107", "bytes shorter"],
    );
}

#[test]
fn a_vnc_directory_too_long_for_its_socket_is_refused_before_any_change() {
    let f = Fixture::new();
    let long = format!("/run/{}", "v".repeat(100));
    let vm = f.vminit().env("DISPLAY", "vnc").env("VNC_DIR", &long);
    expect_early_refusal(&f, vm, 64, &["VNC_DIR", "at most 107"]);
}

#[test]
fn ram_qemu_cannot_address_or_this_host_cannot_give_is_refused_before_any_change() {
    let f = Fixture::new();
    let vm = f.vminit().env("RAM_SIZE", "99999999999T");
    expect_early_refusal(
        &f,
        vm,
        64,
        &["RAM_SIZE", "more memory than QEMU can address"],
    );
    let vm = f.vminit().env("RAM_SIZE", "64T");
    expect_early_refusal(
        &f,
        vm,
        64,
        &["RAM_SIZE", "64T", "memory and swap", "use at most"],
    );
}

#[test]
fn more_nics_than_pci_slots_are_refused_before_any_change() {
    let f = Fixture::new();
    f.ctr.add_veth_pairs(30);
    let vm = f.vminit();
    expect_early_refusal(&f, vm, 65, &["61 NICs", "at most 28", "ATTACH_IFACES"]);
    // user mode too, before any passt starts
    let vm = f.vminit().env("NET_DATAPATH", "user");
    expect_early_refusal(&f, vm, 65, &["61 NICs", "at most 28"]);
}

#[test]
fn a_refusal_after_the_disk_was_made_takes_back_the_disk_the_uefi_variables_and_the_tpm_state() {
    // The NIC count is known only once the network has been read, after DISK_SIZE made the
    // disk, BOOT_MODE its UEFI variables and TPM its state directory: the refusal removes
    // them, so the image directory is as the user left it.
    let f = Fixture::new();
    f.ctr.add_veth_pairs(30);
    let dir = f.scratch.dir.join("fresh");
    std::fs::create_dir(&dir).expect("make the image directory");
    std::fs::write(dir.join("notes.txt"), "the user's").expect("write a file of the user's");
    let vm = f
        .vminit()
        .env("VMINIT_DISK", dir.join("image.qcow2"))
        .env("DISK_SIZE", "1G")
        .env("BOOT_MODE", "uefi")
        .env("TPM", "yes");
    expect_early_refusal(&f, vm, 65, &["61 NICs", "at most 28"]);
    assert_eq!(common::dir_names(&dir), ["notes.txt"]);
}

#[test]
fn uefi_without_ovmf_or_with_a_broken_variables_template_is_refused_before_any_change() {
    let f = Fixture::new();
    let dir = f.scratch.dir.join("fresh");
    std::fs::create_dir(&dir).expect("make the image directory");
    std::fs::write(dir.join("notes.txt"), "the user's").expect("write a file of the user's");
    let ovmf = f.scratch.dir.join("ovmf");
    std::fs::create_dir(&ovmf).expect("make the firmware directory");
    let vm = |mode: &str| {
        f.vminit()
            .env("VMINIT_DISK", dir.join("image.qcow2"))
            .env("DISK_SIZE", "1G")
            .env("BOOT_MODE", mode)
            .env("VMINIT_OVMF_DIR", &ovmf)
    };
    // No OVMF at all: named with both forms and the way out.
    expect_early_refusal(
        &f,
        vm("uefi"),
        69,
        &[
            "UEFI firmware OVMF_CODE_4M",
            "OVMF_CODE_4M.qcow2 or OVMF_CODE_4M.fd",
            "VMINIT_OVMF_DIR",
            "BOOT_MODE=bios",
        ],
    );
    // The code is there, the variables' template is a qcow2 qemu-img cannot read: the
    // variables cannot be made, and nothing is left of them or of the disk.
    std::fs::write(ovmf.join("OVMF_CODE_4M.secboot.fd"), "code").unwrap();
    std::fs::write(ovmf.join("OVMF_VARS_4M.ms.qcow2"), "not a qcow2").unwrap();
    expect_early_refusal(
        &f,
        vm("secure"),
        66,
        &[
            "image.efivars.fd",
            "cannot be made from",
            "OVMF_VARS_4M.ms.qcow2",
        ],
    );
    assert_eq!(common::dir_names(&dir), ["notes.txt"]);
}

#[test]
fn under_q35_the_hot_plug_ports_and_the_vnc_consoles_usb_count_against_the_nics_pci_slots() {
    let f = Fixture::new();
    // 23 NICs and one extra disk: BOOT_MODE=secure (q35) keeps 4 root ports for hot-plug,
    // and the VNC console's USB controller takes a slot of its own there, so the root bus's
    // 29 free slots leave 22 beside the disk and the extra disk
    f.ctr.add_veth_pairs(11);
    common::make_qcow2(&f.scratch.dir.join("disk2.qcow2"), "1M");
    let vm = f
        .vminit()
        .env("BOOT_MODE", "secure")
        .env("DISPLAY", "vnc")
        .env("VNC_DIR", "/run/vnc");
    expect_early_refusal(
        &f,
        vm,
        65,
        &[
            "23 NICs",
            "at most 22",
            "1 extra disk",
            "4 PCIe root ports kept empty for hot-plug",
            "the VNC console's USB controller",
            "ATTACH_IFACES",
        ],
    );
}

#[test]
fn an_encrypted_disk_is_refused_before_any_change() {
    let f = Fixture::new();
    let image = f.scratch.dir.join("encrypted.qcow2");
    common::run_ok(&[
        "qemu-img",
        "create",
        "-q",
        "-f",
        "qcow2",
        "--object",
        "secret,id=k,data=letmein",
        "-o",
        "encrypt.format=luks,encrypt.key-secret=k",
        &image.to_string_lossy(),
        "16M",
    ]);
    let vm = f.vminit().env("VMINIT_DISK", &image);
    expect_early_refusal(
        &f,
        vm,
        66,
        &["encrypted.qcow2", "encrypted (LUKS)", "qemu-img convert"],
    );
}

#[test]
fn a_point_to_point_address_is_refused_before_any_change() {
    let f = Fixture::new();
    let made = f
        .ctr
        .exec("ip addr add 10.77.0.2 peer 10.77.0.1/32 dev eth0");
    assert!(made.success(), "{made}");
    let vm = f.vminit();
    expect_early_refusal(
        &f,
        vm,
        65,
        &["eth0", "10.77.0.2", "point-to-point (peer 10.77.0.1)"],
    );
}

#[test]
fn an_address_on_two_nics_is_refused_before_any_change() {
    let f = Fixture::new();
    let other = Network::new(2);
    f.ctr.add_nic(&other, NicSpec::docker(&other, 3));
    let made = f.ctr.exec("ip addr add 10.1.0.2/24 dev eth1");
    assert!(made.success(), "{made}");
    let vm = f.vminit();
    expect_early_refusal(&f, vm, 65, &["10.1.0.2 is on both eth0 and eth1"]);
}

#[test]
fn a_run_directory_vminit_did_not_make_is_never_chmod_ed() {
    use std::os::unix::fs::PermissionsExt;
    let f = Fixture::new();
    let made = f
        .ctr
        .exec("ip addr add 10.77.0.2 peer 10.77.0.1/32 dev eth0");
    assert!(made.success(), "{made}");
    // A directory of the user's (0750): used as it is, its mode kept.
    let dir = f.scratch.dir.join("users-dir");
    std::fs::create_dir(&dir).expect("mkdir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o750)).expect("chmod");
    let vm = f.vminit().env("VMINIT_RUN_DIR", &dir);
    expect_early_refusal(&f, vm, 65, &["point-to-point"]);
    let mode = std::fs::metadata(&dir).expect("stat").permissions().mode();
    assert_eq!(mode & 0o7777, 0o750, "the user's directory keeps its mode");
    // One others may write to is refused, and keeps its mode too.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777)).expect("chmod");
    let vm = f.vminit().env("VMINIT_RUN_DIR", &dir);
    expect_early_refusal(&f, vm, 64, &["VMINIT_RUN_DIR", "may be written by others"]);
    let mode = std::fs::metadata(&dir).expect("stat").permissions().mode();
    assert_eq!(mode & 0o7777, 0o1777);
}
