//! End-to-end tests of the vminit image under a real Docker daemon: the workflows of the README
//! (`docker run`, `docker network connect`, `docker attach`, `docker stop`, the debug shell, the
//! least-privilege flags and the HEALTHCHECK), each booting the test guest (tests/guest) through
//! the image's contract: the disk at `/image/image.qcow2`, QEMU arguments as CMD.
//!
//! Shared set-up, done once per test process: a Docker daemon (`scripts/dockerd.sh start`, which
//! reuses a running one; the tests never stop it), the image (`image/build.sh`), the test guest
//! (`tests/guest/build-guest.sh target/guest`), a bootable disk made from it for the debug shell
//! (`tests/docker/build-boot-disk.sh`) and a `FROM scratch` busybox image for peer containers.
//!
//! Every container and network a test makes is named `vmtd-<pid>-<n>-<role>`, labelled
//! `io.vminit.test=docker`, and removed when the test ends, also when it fails (its logs are
//! printed first). Leftovers of a killed run (whose pid is gone) are removed by the next run.
//! Networks use free /24s of 10.231.0.0/16 (checked against the host's routes); no traffic
//! leaves them. Every command has a time limit.

mod common;

use std::fmt;
use std::fs;
use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use common::{Cidata, GuestReport};

/// Time for the guest to boot and report (TCG: a few seconds; this is the bound).
const BOOT: Duration = Duration::from_secs(60);
/// Time for one ordinary docker CLI call.
const DOCKER: Duration = Duration::from_secs(60);
/// Time for building the image, the guest and the other fixtures.
const BUILD: Duration = Duration::from_secs(1200);
/// Docker's default `docker stop` timeout, which a clean guest poweroff must beat.
const DOCKER_STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// The image under test; `$VMINIT_TEST_IMAGE` overrides it (runs in parallel need tags of their own).
const IMAGE: &str = "vminit:vmt-docker-test";
const BUSYBOX_IMAGE: &str = "vmt-busybox:test";
const LABEL: &str = "io.vminit.test=docker";
const NAME_PREFIX: &str = "vmtd";
/// The private range the tests' Docker networks come from: 10.231.N.0/24.
const SUBNET_BASE: [u8; 2] = [10, 231];
/// The test guest's kernel and initramfs inside the container (`-v target/guest:/guest:ro`).
const GUEST_MOUNT: &str = "/guest";
/// Debian's busybox-static: peer containers' busybox and the debug shell.
const HOST_BUSYBOX: &str = "/bin/busybox";

// --- the tests ------------------------------------------------------------------------------

#[test]
fn docker_run_gives_the_guest_the_containers_ip_and_mac_and_a_peer_container_pings_it() {
    let sc = Scenario::new("onenet");
    let net = sc.network();
    let vm = sc.create_vm(VmOpts::new().network(&net));
    sc.start(&vm);
    let report = sc.guest_report(&vm);

    let eps = sc.endpoints(&vm);
    assert_eq!(eps.len(), 1, "{eps:?}");
    let ep = &eps[0];
    assert_eq!(
        report.nics.len(),
        1,
        "the guest should have one NIC: {report:?}"
    );
    let nic = &report.nics[0];
    assert_eq!(nic.mac, ep.mac, "guest NIC MAC vs the container's ({ep:?})");
    assert_eq!(
        nic.addrs,
        vec![ep.cidr()],
        "guest NIC address vs the container's ({ep:?})"
    );
    assert_eq!(
        report.default_routes(),
        vec![format!("default via {} dev {}", ep.gateway, nic.name)],
        "{report:?}"
    );

    sc.expect_answered(&net, ep.ip, &ep.mac, "the guest");
}

#[test]
fn the_guest_resolves_another_containers_name_on_the_docker_network() {
    let sc = Scenario::new("dns");
    let net = sc.network();
    let other = sc.sleeper(&net);
    let other_ip = sc.endpoints(&other)[0].ip;
    let vm = sc.create_vm(
        VmOpts::new()
            .network(&net)
            .kernel_args(&format!("vminit_test_resolve={other}")),
    );
    sc.start(&vm);
    let report = sc.guest_report(&vm);
    assert!(
        !report.dns.is_empty() && report.dns.iter().all(|d| !d.starts_with("127.")),
        "the guest gets a resolver it can reach, never a loopback one: {report:?}"
    );
    let logs = sc.wait_logs(&vm, &format!("GUEST-RESOLVE {other} "), BOOT);
    let answer = logs
        .lines()
        .find_map(|l| {
            l.trim_end()
                .strip_prefix(&format!("GUEST-RESOLVE {other} "))
        })
        .map(str::to_owned);
    assert_eq!(
        answer,
        Some(other_ip.to_string()),
        "Docker's name for the other container, resolved in the guest:\n{}",
        sc.logs_tail(&vm)
    );
}

#[test]
fn two_networks_connected_before_start_both_reach_the_guest_which_has_one_default_route() {
    let sc = Scenario::new("twonet");
    let net1 = sc.network();
    let net2 = sc.network();
    let vm = sc.create_vm(VmOpts::new().network(&net1));
    sc.docker_ok(&["network", "connect", &net2.name, &vm]);
    sc.start(&vm);
    let report = sc.guest_report(&vm);

    let eps = sc.endpoints(&vm);
    assert_eq!(eps.len(), 2, "{eps:?}");
    assert_eq!(
        report.nics.len(),
        2,
        "the guest should have two NICs: {report:?}"
    );
    for ep in &eps {
        let nic = report
            .nics
            .iter()
            .find(|n| n.mac == ep.mac)
            .unwrap_or_else(|| {
                panic!(
                    "no guest NIC has the MAC of the container's NIC on {}: {ep:?}\n{report:?}",
                    ep.network
                )
            });
        assert_eq!(
            nic.addrs,
            vec![ep.cidr()],
            "guest {} vs the container on {}",
            nic.name,
            ep.network
        );
    }

    let defaults = report.default_routes();
    assert_eq!(
        defaults.len(),
        1,
        "the guest should have exactly one default route: {report:?}"
    );
    let gateways: Vec<String> = eps.iter().map(|e| e.gateway.to_string()).collect();
    assert!(
        gateways
            .iter()
            .any(|g| defaults[0].starts_with(&format!("default via {g} dev "))),
        "the guest's default route {:?} should go via one of the networks' gateways {gateways:?}",
        defaults[0]
    );

    for net in [&net1, &net2] {
        let ep = eps
            .iter()
            .find(|e| e.network == net.name)
            .expect("an endpoint on each network");
        sc.expect_answered(net, ep.ip, &ep.mac, "the guest");
    }
}

#[test]
fn attach_ifaces_eth1_gives_the_guest_only_eth1_and_leaves_eth0_to_the_container() {
    let sc = Scenario::new("attach1");
    let net1 = sc.network();
    let net2 = sc.network();
    let vm = sc.create_vm(
        VmOpts::new()
            .network(&net1)
            .env("AUTO_ATTACH", "no")
            .env("ATTACH_IFACES", "eth1"),
    );
    sc.docker_ok(&["network", "connect", &net2.name, &vm]);
    sc.start(&vm);
    let report = sc.guest_report(&vm);
    let eps = sc.endpoints(&vm);
    assert_eq!(eps.len(), 2, "{eps:?}");

    // The container's eth0 as seen from a busybox sharing its network namespace: Docker decides
    // which network is eth0, so find it by its (untouched) MAC.
    let inside = sc.in_netns_of(
        &vm,
        "ip -o link show dev eth0; ip -o -4 addr show dev eth0; ip route",
    );
    assert!(inside.ok(), "{inside}");
    let kept = eps
        .iter()
        .find(|ep| inside.stdout.contains(&format!("link/ether {} ", ep.mac)))
        .unwrap_or_else(|| panic!("eth0 should keep its Docker MAC, one of {eps:?}:\n{inside}"));
    assert!(
        inside.stdout.contains(&format!("inet {} ", kept.cidr())),
        "eth0 should keep its address {}:\n{inside}",
        kept.cidr()
    );
    let given = eps
        .iter()
        .find(|ep| ep.network != kept.network)
        .expect("the other endpoint");

    assert_eq!(
        report.nics.len(),
        1,
        "the guest should have only eth1's NIC: {report:?}"
    );
    assert_eq!(
        report.nics[0].mac, given.mac,
        "the guest NIC should have eth1's MAC ({given:?})"
    );
    assert_eq!(
        report.nics[0].addrs,
        vec![given.cidr()],
        "the guest NIC should have eth1's IP ({given:?})"
    );
    let logs = sc.logs(&vm);
    assert!(
        !logs
            .lines()
            .any(|l| l.starts_with("vminit: ")
                && (l.contains(" dev eth0") || l.contains("link eth0 "))),
        "vminit should not touch eth0:\n{logs}"
    );

    let net_of = |ep: &Endpoint| {
        if ep.network == net1.name {
            &net1
        } else {
            &net2
        }
    };
    sc.expect_answered(net_of(given), given.ip, &given.mac, "the guest");
    sc.expect_answered(net_of(kept), kept.ip, &kept.mac, "the container's own eth0");
}

#[test]
fn docker_attach_talks_to_the_guest_shell_ctrl_c_reaches_the_guest_and_detach_leaves_it_running() {
    let sc = Scenario::new("attach");
    let net = sc.network();
    let vm = sc.create_vm(
        VmOpts::new()
            .network(&net)
            .docker_flags(&["--interactive", "--tty"]),
    );
    sc.start(&vm);
    sc.wait_logs(&vm, "GUEST-READY", BOOT);

    let mut console = Attached::start(&vm);
    // Enter until the prompt shows: it proves the attach is live before the real input.
    let mut prompt = false;
    for _ in 0..15 {
        let mark = console.len();
        console.write(b"\r");
        if console.wait_for_from(mark, "guest# ", Duration::from_secs(2)) {
            prompt = true;
            break;
        }
    }
    assert!(
        prompt,
        "no guest prompt through docker attach:\n{}\n{}",
        console.text(),
        sc.logs_tail(&vm)
    );
    let mark = console.len();
    console.write(b"echo $((6*7))\r");
    let answered = console.wait_until(mark, Duration::from_secs(20), |t| {
        t.lines().any(|l| l.trim() == "42")
    });
    assert!(answered, "the guest did not answer 42:\n{}", console.text());

    // Ctrl-C on the attached terminal interrupts the guest's foreground command; QEMU
    // (signal=off on its console) lives on.
    console.write(b"sleep 1000\r");
    thread::sleep(Duration::from_millis(800));
    let mark = console.len();
    console.write(b"\x03");
    thread::sleep(Duration::from_millis(300));
    console.write(b"echo after-$((2*3))-ctrl-c\r");
    let interrupted = console.wait_until(mark, Duration::from_secs(20), |t| {
        t.lines().any(|l| l.trim() == "after-6-ctrl-c")
    });
    assert!(
        interrupted,
        "Ctrl-C did not reach the guest's shell:\n{}\n{}",
        console.text(),
        sc.logs_tail(&vm)
    );

    console.write(b"\x10\x11"); // Docker's default detach keys: ctrl-p ctrl-q
    let exited = console.wait_exit(Duration::from_secs(10));
    assert!(
        exited,
        "docker attach did not detach on ctrl-p ctrl-q:\n{}",
        console.text()
    );
    assert!(
        console.text().contains("read escape sequence"),
        "{}",
        console.text()
    );

    thread::sleep(Duration::from_secs(1));
    assert_eq!(
        sc.inspect(&vm, "{{.State.Running}}"),
        "true",
        "{}",
        sc.logs_tail(&vm)
    );
    let health = sc.docker(&["exec", &vm, "/vminit", "health"]);
    assert!(
        health.ok(),
        "QEMU should still answer QMP after the detach: {health}\n{}",
        sc.logs_tail(&vm)
    );
}

#[test]
fn docker_stop_powers_the_guest_off_cleanly_and_exits_0_within_dockers_timeout() {
    let sc = Scenario::new("stop");
    let net = sc.network();
    let vm = sc.create_vm(VmOpts::new().network(&net));
    sc.start(&vm);
    sc.wait_logs(&vm, "GUEST-READY", BOOT);

    let started = Instant::now();
    let stop = sc.docker(&["stop", &vm]);
    let took = started.elapsed();
    assert!(stop.ok(), "{stop}");
    assert!(
        took < DOCKER_STOP_TIMEOUT,
        "docker stop took {took:?}:\n{}",
        sc.logs_tail(&vm)
    );
    assert_eq!(
        sc.inspect(&vm, "{{.State.ExitCode}}"),
        "0",
        "exit code:\n{}",
        sc.logs_tail(&vm)
    );

    let logs = sc.logs(&vm);
    assert!(
        logs.contains("GUEST-POWERBUTTON"),
        "the guest never saw the power button:\n{logs}"
    );
    let steps = logs.lines().filter(|l| l.starts_with("vminit: ")).count();
    assert!(
        steps >= 5,
        "docker logs should show vminit's steps:\n{logs}"
    );
    assert!(
        logs.contains("GUEST-REPORT done"),
        "docker logs should show the guest's console:\n{logs}"
    );
}

#[test]
fn the_debug_shell_gets_a_prepared_container_whose_qemu_sh_boots_the_guest_from_the_image_disk() {
    let sc = Scenario::new("debug");
    let net = sc.network();
    // CMD `sh` leaves QEMU no -kernel: the guest boots from /image/image.qcow2 (SYSLINUX).
    let disk = sc.disk_dir("debugdisk");
    fs::copy(&setup().boot_disk, disk.join("image.qcow2")).expect("copy the boot disk");
    let opts = VmOpts::new()
        .network(&net)
        .disk(&disk)
        .docker_flags(&[
            "--interactive",
            "-v",
            &format!("{HOST_BUSYBOX}:/bin/busybox:ro"),
        ])
        .cmd(&["sh"]);
    let vm = sc.create_vm(opts);
    let shell = sc.start_attached(&vm);
    sc.wait_logs(&vm, "vminit: debug mode", BOOT);
    shell.write(b"sh /run/vminit/qemu.sh\n");
    let report = sc.guest_report(&vm);

    let logs = sc.logs(&vm);
    assert!(
        !logs.contains("vminit: QEMU running"),
        "vminit itself should not start QEMU in debug mode:\n{logs}"
    );
    let eps = sc.endpoints(&vm);
    assert_eq!(eps.len(), 1, "{eps:?}");
    assert_eq!(report.nics.len(), 1, "{report:?}");
    assert_eq!(report.nics[0].mac, eps[0].mac, "{report:?}");
    assert_eq!(report.nics[0].addrs, vec![eps[0].cidr()], "{report:?}");
    sc.expect_answered(&net, eps[0].ip, &eps[0].mac, "the guest the shell started");
}

#[test]
fn without_cap_add_net_admin_the_container_exits_non_zero_naming_the_flag() {
    let sc = Scenario::new("nocap");
    let net = sc.network();
    let vm = sc.create_vm(VmOpts::new().network(&net).without_net_admin());
    let (code, error) = sc.run_to_error(&vm);
    assert_ne!(code, 0, "{}", sc.logs(&vm));
    assert!(
        error.contains("--cap-add NET_ADMIN"),
        "the error should name the flag: {error:?}\n{}",
        sc.logs(&vm)
    );
}

#[test]
fn without_the_macvtap_device_cgroup_rule_the_container_exits_non_zero_naming_the_flag() {
    let sc = Scenario::new("nocgroup");
    let net = sc.network();
    let vm = sc.create_vm(VmOpts::new().network(&net).without_cgroup_rule());
    let (code, error) = sc.run_to_error(&vm);
    assert_ne!(code, 0, "{}", sc.logs(&vm));
    let rule = format!("--device-cgroup-rule 'c {}:* rwm'", setup().macvtap_major);
    assert!(
        error.contains(&rule),
        "the error should name the flag ({rule}): {error:?}\n{}",
        sc.logs(&vm)
    );
}

#[test]
fn a_seed_from_a_read_only_key_file_reaches_the_guest_and_its_id_survives_docker_restart() {
    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAPFPMcJf+JBN2T9sgjx88buoVWz0EfiCGaLNOJ3CJYb alice@laptop";
    let sc = Scenario::new("seed");
    let net = sc.network();
    let keys = sc.dir.join("id_ed25519.pub");
    fs::write(&keys, format!("{KEY}\n")).expect("write the key file");
    let vm = sc.create_vm(
        VmOpts::new()
            .network(&net)
            .kernel_args("vminit_test_cidata=1")
            .env("CLOUD_INIT_SSH_KEYS_FILE", "/run/keys.pub")
            .docker_flags(&[&format!("--volume={}:/run/keys.pub:ro", keys.display())]),
    );
    sc.start(&vm);
    let logs = sc.wait_logs(&vm, "GUEST-CIDATA done", BOOT);
    let first = Cidata::parse(&logs).expect("a seed report");
    assert!(
        first.device.contains(" ro=1 "),
        "a read-only disk: {first:?}"
    );
    assert!(
        first.text("user-data").contains(&format!("\"{KEY}\"")),
        "{first:?}"
    );
    let ep = &sc.endpoints(&vm)[0];
    assert!(
        first
            .text("network-config")
            .contains(&format!("macaddress: \"{}\"", ep.mac)),
        "the container's MAC: {first:?}"
    );
    let hostname = sc.inspect(&vm, "{{.Config.Hostname}}");
    let meta = first.text("meta-data");
    assert!(
        meta.contains(&format!("local-hostname: \"{hostname}\"\n")),
        "{meta}"
    );
    let id = meta
        .lines()
        .find(|l| l.starts_with("instance-id: \"vminit-"))
        .unwrap_or_else(|| panic!("an instance id: {meta}"))
        .to_owned();

    sc.docker_ok(&["restart", &vm]);
    let deadline = Instant::now() + BOOT;
    let logs = loop {
        let logs = sc.logs(&vm);
        if logs.matches("GUEST-CIDATA done").count() >= 2 {
            break logs;
        }
        assert!(
            Instant::now() < deadline,
            "no second boot within {BOOT:?}\n{}",
            sc.logs_tail(&vm)
        );
        thread::sleep(Duration::from_millis(300));
    };
    let second = Cidata::parse(&logs).expect("a seed report");
    let meta_again = second.text("meta-data");
    assert!(
        meta_again.lines().any(|l| l == id),
        "the instance id survives docker restart: {id} vs\n{meta_again}"
    );
}

#[test]
fn the_images_healthcheck_reports_healthy_while_the_guest_runs() {
    let sc = Scenario::new("health");
    let net = sc.network();
    let vm = sc.create_vm(VmOpts::new().network(&net).docker_flags(&[
        "--health-interval=1s",
        "--health-timeout=5s",
        "--health-start-period=60s",
    ]));
    sc.start(&vm);
    let deadline = Instant::now() + BOOT;
    let mut status = String::new();
    while Instant::now() < deadline {
        status = sc.inspect(&vm, "{{.State.Health.Status}}");
        if status == "healthy" {
            break;
        }
        thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(
        status,
        "healthy",
        "{}\n{}",
        sc.inspect(&vm, "{{json .State.Health}}"),
        sc.logs_tail(&vm)
    );
    let check = sc.docker(&["exec", &vm, "/vminit", "health"]);
    assert!(check.ok(), "{check}");
}

// --- shared set-up ----------------------------------------------------------------------------

/// What every test needs, made once per test process.
#[derive(Debug)]
struct Setup {
    /// The directory with the guest's `vmlinuz` and `initramfs.cpio.gz`.
    guest_dir: PathBuf,
    /// A bootable qcow2 made from the guest (for the debug shell, which has no CMD arguments).
    boot_disk: PathBuf,
    /// The macvtap character devices' major number, from /proc/devices.
    macvtap_major: String,
    /// Where the tests' disks live (`<target>/tmp/docker-tests`).
    work: PathBuf,
}

static SETUP: OnceLock<Result<Setup, String>> = OnceLock::new();

/// The shared set-up; the first caller makes it, the others wait. A failure fails every test.
fn setup() -> &'static Setup {
    match SETUP.get_or_init(prepare) {
        Ok(setup) => setup,
        Err(e) => panic!("set-up failed: {e}"),
    }
}

fn prepare() -> Result<Setup, String> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let target = tmp.parent().unwrap_or(tmp);
    let work = tmp.join("docker-tests");
    fs::create_dir_all(&work).map_err(|e| format!("mkdir {}: {e}", work.display()))?;
    let step = |what: &str, argv: &[&str], timeout: Duration| -> Result<Output, String> {
        eprintln!("docker tests: {what}");
        let out = run_cmd(argv, timeout);
        if out.ok() {
            Ok(out)
        } else {
            Err(format!("{what}: {out}"))
        }
    };
    let path = |p: &Path| p.to_string_lossy().into_owned();

    step(
        "starting dockerd if none runs",
        &[&path(&repo.join("scripts/dockerd.sh")), "start"],
        Duration::from_secs(120),
    )?;
    reap_stale();
    let superseded = image_id(image());
    step(
        "building the image",
        &[&path(&repo.join("image/build.sh")), image()],
        BUILD,
    )?;
    remove_if_superseded(image(), superseded);
    let guest_dir = target.join("guest");
    step(
        "building the test guest",
        &[
            "sh",
            &path(&repo.join("tests/guest/build-guest.sh")),
            &path(&guest_dir),
        ],
        BUILD,
    )?;
    let boot_disk = work.join("boot.qcow2");
    step(
        "building the bootable test disk",
        &[
            "sh",
            &path(&repo.join("tests/docker/build-boot-disk.sh")),
            &path(&guest_dir),
            &path(&boot_disk),
        ],
        BUILD,
    )?;

    // A FROM scratch image with Debian's static busybox, for peer containers.
    let context = work.join("busybox-image");
    fs::create_dir_all(&context).map_err(|e| format!("mkdir {}: {e}", context.display()))?;
    fs::copy(HOST_BUSYBOX, context.join("busybox"))
        .map_err(|e| format!("copy {HOST_BUSYBOX} (busybox-static): {e}"))?;
    fs::write(
        context.join("Dockerfile"),
        "FROM scratch\nCOPY busybox /bin/busybox\nENTRYPOINT [\"/bin/busybox\"]\n",
    )
    .map_err(|e| format!("write the busybox Dockerfile: {e}"))?;
    let superseded = image_id(BUSYBOX_IMAGE);
    step(
        "building the busybox image",
        &[
            "docker",
            "build",
            "-q",
            "-t",
            BUSYBOX_IMAGE,
            &path(&context),
        ],
        BUILD,
    )?;
    remove_if_superseded(BUSYBOX_IMAGE, superseded);

    let macvtap_major = match macvtap_major() {
        Some(major) => major,
        None => {
            // The module loads on the first macvtap; load it now to learn its major.
            let _ = run_cmd(&["modprobe", "macvtap"], Duration::from_secs(30));
            macvtap_major().ok_or("no macvtap in /proc/devices (modprobe macvtap failed)")?
        }
    };
    Ok(Setup {
        guest_dir,
        boot_disk,
        macvtap_major,
        work,
    })
}

/// The tag of the image under test: [`IMAGE`], or `$VMINIT_TEST_IMAGE`.
fn image() -> &'static str {
    static TAG: OnceLock<String> = OnceLock::new();
    TAG.get_or_init(|| std::env::var("VMINIT_TEST_IMAGE").unwrap_or_else(|_| IMAGE.to_owned()))
}

/// The id of the image tagged `tag`, if there is one.
fn image_id(tag: &str) -> Option<String> {
    let out = run_cmd(
        &["docker", "image", "inspect", "-f", "{{.Id}}", tag],
        DOCKER,
    );
    out.ok().then(|| out.stdout.trim().to_owned())
}

/// Removes the image `tag` named before a rebuild, if the rebuild moved the tag away from it and
/// no other tag names it (the same build may also be, say, `vminit:latest`), so that runs do not
/// pile up untagged images. Does nothing when a container still uses it.
fn remove_if_superseded(tag: &str, before: Option<String>) {
    let Some(old) = before else { return };
    if image_id(tag).is_none_or(|new| new == old) {
        return;
    }
    let tags = run_cmd(
        &[
            "docker",
            "image",
            "inspect",
            "-f",
            "{{len .RepoTags}}",
            &old,
        ],
        DOCKER,
    );
    if tags.ok() && tags.stdout.trim() == "0" {
        run_cmd(&["docker", "rmi", &old], DOCKER);
    }
}

fn macvtap_major() -> Option<String> {
    let devices = fs::read_to_string("/proc/devices").ok()?;
    devices.lines().find_map(|line| {
        let (major, name) = line.trim().split_once(' ')?;
        (name == "macvtap").then(|| major.to_owned())
    })
}

/// Removes the containers and networks of earlier runs of these tests whose process is gone.
fn reap_stale() {
    let stale = |names: &str| -> Vec<String> {
        names
            .lines()
            .filter(|name| {
                let mut parts = name.split('-');
                parts.next() == Some(NAME_PREFIX)
                    && parts
                        .next()
                        .and_then(|p| p.parse::<u32>().ok())
                        .is_some_and(|pid| {
                            pid != std::process::id()
                                && !Path::new(&format!("/proc/{pid}")).exists()
                        })
            })
            .map(str::to_owned)
            .collect()
    };
    let filter = format!("label={LABEL}");
    let containers = run_cmd(
        &[
            "docker",
            "ps",
            "-a",
            "--filter",
            &filter,
            "--format",
            "{{.Names}}",
        ],
        DOCKER,
    );
    for name in stale(&containers.stdout) {
        eprintln!("docker tests: removing container {name} left by an earlier run");
        run_cmd(&["docker", "rm", "-f", &name], DOCKER);
    }
    let networks = run_cmd(
        &[
            "docker",
            "network",
            "ls",
            "--filter",
            &filter,
            "--format",
            "{{.Name}}",
        ],
        DOCKER,
    );
    for name in stale(&networks.stdout) {
        eprintln!("docker tests: removing network {name} left by an earlier run");
        run_cmd(&["docker", "network", "rm", &name], DOCKER);
    }
}

// --- one test's containers and networks ----------------------------------------------------------

static COUNTER: AtomicU32 = AtomicU32::new(0);
/// The next third octet to try for a network's 10.231.N.0/24.
static NEXT_SUBNET: AtomicU32 = AtomicU32::new(1);

/// A unique Docker name for `role`: `vmtd-<pid>-<n>-<role>`.
fn unique_name(role: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{NAME_PREFIX}-{}-{n}-{role}", std::process::id())
}

/// A Docker network a test made.
#[derive(Debug, Clone)]
struct Net {
    name: String,
}

/// A container's endpoint on one network, as Docker reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Endpoint {
    network: String,
    ip: Ipv4Addr,
    prefix: u8,
    mac: String,
    gateway: Ipv4Addr,
}

impl Endpoint {
    fn cidr(&self) -> String {
        format!("{}/{}", self.ip, self.prefix)
    }
}

/// The outcome of pinging from a peer container.
#[derive(Debug)]
struct Ping {
    ok: bool,
    /// The MAC the peer's ARP table holds for the address pinged.
    neighbour_mac: Option<String>,
    output: String,
}

/// Everything one test made, removed on drop (containers, then networks, then files), with the
/// containers' logs printed first when the test is failing.
struct Scenario {
    label: String,
    dir: PathBuf,
    containers: Mutex<Vec<String>>,
    networks: Mutex<Vec<String>>,
    children: Mutex<Vec<Child>>,
}

impl Scenario {
    fn new(label: &str) -> Scenario {
        let dir = setup().work.join(unique_name(label));
        fs::create_dir_all(&dir).expect("create the test's directory");
        Scenario {
            label: label.to_owned(),
            dir,
            containers: Mutex::default(),
            networks: Mutex::default(),
            children: Mutex::default(),
        }
    }

    /// `docker ARGS…` with the ordinary time limit.
    fn docker(&self, args: &[&str]) -> Output {
        let mut argv = vec!["docker"];
        argv.extend_from_slice(args);
        run_cmd(&argv, DOCKER)
    }

    /// `docker ARGS…`, which must succeed; returns its stdout, trimmed.
    fn docker_ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(out.ok(), "{out}");
        out.stdout.trim().to_owned()
    }

    /// A new bridge network on a free 10.231.N.0/24.
    fn network(&self) -> Net {
        let name = unique_name(&format!("{}-net", self.label));
        loop {
            let n = NEXT_SUBNET.fetch_add(1, Ordering::SeqCst);
            assert!(
                n <= 254,
                "no free /24 left in {}.{}.0.0/16",
                SUBNET_BASE[0],
                SUBNET_BASE[1]
            );
            let subnet = (
                Ipv4Addr::new(SUBNET_BASE[0], SUBNET_BASE[1], n as u8, 0),
                24,
            );
            if host_routes_overlap(subnet) {
                continue;
            }
            let cidr = format!("{}/{}", subnet.0, subnet.1);
            let out = self.docker(&[
                "network", "create", "--driver", "bridge", "--subnet", &cidr, "--label", LABEL,
                &name,
            ]);
            if out.ok() {
                self.networks
                    .lock()
                    .expect("network list")
                    .push(name.clone());
                return Net { name };
            }
            // Another test process took it first: try the next one.
            assert!(out.stderr.contains("overlap"), "{out}");
        }
    }

    /// A directory to mount at /image, made for this test.
    fn disk_dir(&self, role: &str) -> PathBuf {
        let dir = self.dir.join(role);
        fs::create_dir_all(&dir).expect("create a disk directory");
        dir
    }

    /// `docker create` of the vminit image as `opts` say; returns the container's name.
    fn create_vm(&self, opts: VmOpts) -> String {
        let setup = setup();
        let name = unique_name(&format!("{}-vm", self.label));
        let disk = match &opts.disk {
            Some(dir) => dir.clone(),
            None => {
                let dir = self.disk_dir(&format!("{name}-disk"));
                let file = dir.join("image.qcow2");
                let out = run_cmd(
                    &[
                        "qemu-img",
                        "create",
                        "-q",
                        "-f",
                        "qcow2",
                        &file.to_string_lossy(),
                        "16M",
                    ],
                    DOCKER,
                );
                assert!(out.ok(), "{out}");
                dir
            }
        };
        let mut argv: Vec<String> = ["create", "--name", &name, "--label", LABEL]
            .map(String::from)
            .to_vec();
        if let Some(net) = &opts.network {
            argv.push(format!("--network={}", net.name));
        }
        if opts.net_admin {
            argv.extend(["--cap-add", "NET_ADMIN"].map(String::from));
        }
        argv.extend(["--device", "/dev/kvm"].map(String::from));
        if opts.cgroup_rule {
            argv.push(format!(
                "--device-cgroup-rule=c {}:* rwm",
                setup.macvtap_major
            ));
        }
        argv.push(format!("--volume={}:/image", disk.display()));
        argv.push(format!(
            "--volume={}:{GUEST_MOUNT}:ro",
            setup.guest_dir.display()
        ));
        for (key, value) in &opts.env {
            argv.push(format!("--env={key}={value}"));
        }
        argv.extend(opts.docker_flags.iter().cloned());
        argv.push(image().to_owned());
        argv.extend(opts.cmd.iter().cloned());
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        self.containers
            .lock()
            .expect("container list")
            .push(name.clone());
        self.docker_ok(&argv);
        name
    }

    fn start(&self, name: &str) {
        self.docker_ok(&["start", name]);
    }

    /// `docker start --attach --interactive NAME`, with a stdin the test writes.
    fn start_attached(&self, name: &str) -> Stdin {
        let mut child = Command::new("docker")
            .args(["start", "--attach", "--interactive", name])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start docker start --attach");
        let stdin = child.stdin.take().expect("piped stdin");
        self.children.lock().expect("child list").push(child);
        Stdin(Mutex::new(stdin))
    }

    /// Starts `name`, waits (bounded) for it to exit; its exit code and vminit's error line, of
    /// which there must be exactly one.
    fn run_to_error(&self, name: &str) -> (i32, String) {
        self.start(name);
        let wait = self.docker(&["wait", name]);
        assert!(
            wait.ok(),
            "the container did not exit: {wait}\n{}",
            self.logs_tail(name)
        );
        let code: i32 = wait
            .stdout
            .trim()
            .parse()
            .expect("docker wait prints the exit code");
        let logs = self.logs(name);
        let errors: Vec<&str> = logs
            .lines()
            .filter(|l| l.starts_with("vminit: error"))
            .collect();
        assert_eq!(
            errors.len(),
            1,
            "vminit should print one error line:\n{logs}"
        );
        eprintln!("{name} exited {code}; vminit printed:\n{logs}");
        (code, errors[0].to_owned())
    }

    /// `docker inspect -f FORMAT NAME`, trimmed.
    fn inspect(&self, name: &str, format: &str) -> String {
        self.docker_ok(&["inspect", "-f", format, name])
    }

    /// The container's endpoints, in network-name order.
    fn endpoints(&self, name: &str) -> Vec<Endpoint> {
        let format = "{{range $n, $e := .NetworkSettings.Networks}}{{$n}} {{$e.IPAddress}} {{$e.IPPrefixLen}} {{$e.MacAddress}} {{$e.Gateway}}\n{{end}}";
        let text = self.inspect(name, format);
        text.lines()
            .map(|line| {
                let f: Vec<&str> = line.split_whitespace().collect();
                assert_eq!(f.len(), 5, "unexpected endpoint line {line:?}");
                Endpoint {
                    network: f[0].to_owned(),
                    ip: f[1].parse().expect("IPAddress"),
                    prefix: f[2].parse().expect("IPPrefixLen"),
                    mac: f[3].to_owned(),
                    gateway: f[4].parse().expect("Gateway"),
                }
            })
            .collect()
    }

    /// `docker logs NAME`, both streams in the order Docker logged them.
    fn logs(&self, name: &str) -> String {
        let out = run_cmd(
            &["sh", "-c", "exec docker logs \"$1\" 2>&1", "sh", name],
            DOCKER,
        );
        out.stdout.replace('\r', "")
    }

    /// The last 60 lines of the logs, for failure messages.
    fn logs_tail(&self, name: &str) -> String {
        let logs = self.logs(name);
        let lines: Vec<&str> = logs.lines().collect();
        format!(
            "--- docker logs {name} (last 60 lines)\n{}",
            lines[lines.len().saturating_sub(60)..].join("\n")
        )
    }

    /// Waits up to `timeout` for `pattern` in the container's logs; fails early if it stops.
    fn wait_logs(&self, name: &str, pattern: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let logs = self.logs(name);
            if logs.contains(pattern) {
                return logs;
            }
            let running = self
                .docker(&["inspect", "-f", "{{.State.Running}}", name])
                .stdout
                .trim()
                == "true";
            if !running || Instant::now() >= deadline {
                let why = if running {
                    format!("within {timeout:?}")
                } else {
                    "before the container exited".into()
                };
                panic!(
                    "{pattern:?} not in the logs of {name} {why}\n{}",
                    self.logs_tail(name)
                );
            }
            thread::sleep(Duration::from_millis(300));
        }
    }

    /// The guest's complete `GUEST-REPORT` block, waited for.
    fn guest_report(&self, name: &str) -> GuestReport {
        let logs = self.wait_logs(name, "GUEST-REPORT done", BOOT);
        GuestReport::parse(&logs).expect("a report ending in done")
    }

    /// Starts a long-running busybox container on `net`; returns its name.
    fn sleeper(&self, net: &Net) -> String {
        let name = unique_name(&format!("{}-named", self.label));
        self.containers
            .lock()
            .expect("container list")
            .push(name.clone());
        let network = format!("--network={}", net.name);
        self.docker_ok(&[
            "run",
            "-d",
            "--name",
            &name,
            "--label",
            LABEL,
            &network,
            BUSYBOX_IMAGE,
            "sleep",
            "600",
        ]);
        name
    }

    /// Asserts that a peer container on `net` pings `ip` and that `mac` answered its ARP:
    /// what a user checks to know who holds the address.
    fn expect_answered(&self, net: &Net, ip: Ipv4Addr, mac: &str, who: &str) {
        let ping = self.peer_ping(net, ip);
        assert!(
            ping.ok,
            "a peer container on {} cannot ping {who} at {ip}:\n{}",
            net.name, ping.output
        );
        assert_eq!(
            ping.neighbour_mac.as_deref(),
            Some(mac),
            "{who} should answer ARP for {ip} on {} with {mac}:\n{}",
            net.name,
            ping.output
        );
    }

    /// Pings `ip` from a new busybox container on `net` and reads the peer's ARP entry for it.
    fn peer_ping(&self, net: &Net, ip: Ipv4Addr) -> Ping {
        let name = unique_name(&format!("{}-peer", self.label));
        self.containers
            .lock()
            .expect("container list")
            .push(name.clone());
        let script = format!("ping -c 3 -W 2 {ip}; rc=$?; arp -n; exit $rc");
        let network = format!("--network={}", net.name);
        let out = self.docker(&[
            "run",
            "--rm",
            "--name",
            &name,
            "--label",
            LABEL,
            &network,
            BUSYBOX_IMAGE,
            "sh",
            "-c",
            &script,
        ]);
        // busybox arp -n: "? (10.231.1.2) at 02:42:0a:e7:01:02 [ether]  on eth0"
        let needle = format!("({ip}) at ");
        let neighbour_mac = out.stdout.lines().find_map(|l| {
            let rest = &l[l.find(&needle)? + needle.len()..];
            rest.split_whitespace().next().map(str::to_owned)
        });
        Ping {
            ok: out.ok(),
            neighbour_mac,
            output: out.to_string(),
        }
    }

    /// Runs `sh -c SCRIPT` in a busybox container that shares `name`'s network namespace.
    fn in_netns_of(&self, name: &str, script: &str) -> Output {
        let side = unique_name(&format!("{}-side", self.label));
        self.containers
            .lock()
            .expect("container list")
            .push(side.clone());
        let network = format!("--network=container:{name}");
        self.docker(&[
            "run",
            "--rm",
            "--name",
            &side,
            "--label",
            LABEL,
            &network,
            BUSYBOX_IMAGE,
            "sh",
            "-c",
            script,
        ])
    }
}

impl Drop for Scenario {
    fn drop(&mut self) {
        let containers = std::mem::take(self.containers.get_mut().expect("container list"));
        if thread::panicking() {
            for name in &containers {
                let out = run_cmd(
                    &["sh", "-c", "exec docker logs \"$1\" 2>&1", "sh", name],
                    DOCKER,
                );
                if out.ok() {
                    eprintln!("===== docker logs {name}\n{}", out.stdout.replace('\r', ""));
                }
            }
        }
        for name in containers.iter().rev() {
            run_cmd(&["docker", "rm", "-f", "-v", name], DOCKER);
        }
        for child in self.children.get_mut().expect("child list").iter_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for name in self.networks.get_mut().expect("network list").iter().rev() {
            let out = run_cmd(&["docker", "network", "rm", name], DOCKER);
            if !out.ok() {
                eprintln!("warning: {out}");
            }
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// How to create a vminit container; the defaults are the README's least-privilege run line with
/// `AUTO_ATTACH=yes`, the test guest as CMD and a fresh empty disk.
#[derive(Debug, Clone)]
struct VmOpts {
    network: Option<Net>,
    env: Vec<(String, String)>,
    net_admin: bool,
    cgroup_rule: bool,
    docker_flags: Vec<String>,
    cmd: Vec<String>,
    disk: Option<PathBuf>,
}

impl VmOpts {
    fn new() -> VmOpts {
        let guest = |f: &str| format!("{GUEST_MOUNT}/{f}");
        VmOpts {
            network: None,
            env: vec![
                ("AUTO_ATTACH".into(), "yes".into()),
                ("RAM_SIZE".into(), "256M".into()),
            ],
            net_admin: true,
            cgroup_rule: true,
            docker_flags: Vec::new(),
            cmd: vec![
                "-kernel".into(),
                guest("vmlinuz"),
                "-initrd".into(),
                guest("initramfs.cpio.gz"),
                "-append".into(),
                "console=ttyS0 quiet".into(),
            ],
            disk: None,
        }
    }

    fn network(mut self, net: &Net) -> VmOpts {
        self.network = Some(net.clone());
        self
    }

    /// Sets (or replaces) an environment variable.
    fn env(mut self, key: &str, value: &str) -> VmOpts {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.into(), value.into()));
        self
    }

    fn without_net_admin(mut self) -> VmOpts {
        self.net_admin = false;
        self
    }

    fn without_cgroup_rule(mut self) -> VmOpts {
        self.cgroup_rule = false;
        self
    }

    /// Appends `extra` to the guest kernel's command line (options of tests/guest/init.sh).
    fn kernel_args(mut self, extra: &str) -> VmOpts {
        if let Some(append) = self.cmd.iter().position(|a| a == "-append") {
            let line = &mut self.cmd[append + 1];
            line.push(' ');
            line.push_str(extra);
        }
        self
    }

    fn docker_flags(mut self, flags: &[&str]) -> VmOpts {
        self.docker_flags
            .extend(flags.iter().map(|f| (*f).to_owned()));
        self
    }

    fn cmd(mut self, cmd: &[&str]) -> VmOpts {
        self.cmd = cmd.iter().map(|c| (*c).to_owned()).collect();
        self
    }

    /// The directory mounted at /image (it holds image.qcow2).
    fn disk(mut self, dir: &Path) -> VmOpts {
        self.disk = Some(dir.to_owned());
        self
    }
}

/// True when 10.231.N.0/24 overlaps a route of the host (the default route aside).
fn host_routes_overlap((net, len): (Ipv4Addr, u8)) -> bool {
    let routes = run_cmd(&["ip", "-4", "route", "show", "table", "all"], DOCKER);
    assert!(routes.ok(), "{routes}");
    routes.stdout.lines().any(|line| {
        let mut words = line.split_whitespace();
        let mut dest = words.next().unwrap_or("");
        if [
            "local",
            "broadcast",
            "unicast",
            "unreachable",
            "prohibit",
            "blackhole",
            "throw",
            "multicast",
            "anycast",
        ]
        .contains(&dest)
        {
            dest = words.next().unwrap_or("");
        }
        if dest == "default" {
            return false;
        }
        let (addr, plen) = dest.split_once('/').unwrap_or((dest, "32"));
        let (Ok(addr), Ok(plen)) = (addr.parse::<Ipv4Addr>(), plen.parse::<u8>()) else {
            return false;
        };
        let shorter = plen.min(len);
        let mask = if shorter == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(shorter))
        };
        (u32::from(addr) & mask) == (u32::from(net) & mask)
    })
}

// --- processes ----------------------------------------------------------------------------------

/// How a command ended and what it printed.
#[derive(Debug)]
struct Output {
    command: String,
    /// The exit code; `None` when it was killed (by the time limit or a signal).
    code: Option<i32>,
    timed_out: bool,
    stdout: String,
    stderr: String,
}

impl Output {
    fn ok(&self) -> bool {
        self.code == Some(0)
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let end = if self.timed_out {
            "timed out".to_owned()
        } else {
            self.code
                .map_or("was killed".to_owned(), |c| format!("exited {c}"))
        };
        write!(
            f,
            "`{}` {end}\n--- stdout\n{}--- stderr\n{}",
            self.command, self.stdout, self.stderr
        )
    }
}

/// Runs `argv` (stdin closed) for at most `timeout`, then kills its whole process group.
fn run_cmd(argv: &[&str], timeout: Duration) -> Output {
    let command = argv.join(" ");
    let mut child = match Command::new(argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            return Output {
                command,
                code: None,
                timed_out: false,
                stdout: String::new(),
                stderr: format!("cannot start: {e}"),
            };
        }
    };
    let stdout = Capture::start(child.stdout.take().expect("piped stdout"));
    let stderr = Capture::start(child.stderr.take().expect("piped stderr"));
    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => {
                timed_out = true;
                kill_group(child.id());
                break child.wait().ok();
            }
            Ok(None) => thread::sleep(Duration::from_millis(20)),
            Err(_) => break None,
        }
    };
    // Output a left-behind grandchild still writes is not waited for.
    stdout.wait_closed(Duration::from_secs(2));
    stderr.wait_closed(Duration::from_secs(2));
    Output {
        command,
        code: if timed_out {
            None
        } else {
            status.and_then(|s| s.code())
        },
        timed_out,
        stdout: stdout.text(),
        stderr: stderr.text(),
    }
}

/// SIGKILL to every process of group `pgid` (`kill -KILL -- -PGID`).
fn kill_group(pgid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// What a stream has delivered so far, filled by a reader thread.
#[derive(Default)]
struct Capture {
    bytes: Mutex<Vec<u8>>,
    closed: Mutex<bool>,
}

impl Capture {
    fn start(mut source: impl Read + Send + 'static) -> Arc<Capture> {
        let capture = Arc::new(Capture::default());
        let sink = Arc::clone(&capture);
        thread::spawn(move || {
            let mut buf = [0u8; 8192];
            loop {
                match source.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => sink
                        .bytes
                        .lock()
                        .expect("capture")
                        .extend_from_slice(&buf[..n]),
                }
            }
            *sink.closed.lock().expect("capture") = true;
        });
        capture
    }

    fn text(&self) -> String {
        self.text_from(0)
    }

    /// What arrived at or after byte offset `mark` (see [`Capture::len`]).
    fn text_from(&self, mark: usize) -> String {
        let bytes = self.bytes.lock().expect("capture");
        String::from_utf8_lossy(bytes.get(mark..).unwrap_or_default()).into_owned()
    }

    fn len(&self) -> usize {
        self.bytes.lock().expect("capture").len()
    }

    fn is_closed(&self) -> bool {
        *self.closed.lock().expect("capture")
    }

    fn wait_closed(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.is_closed() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
    }
}

/// The stdin of a `docker start --attach --interactive`.
struct Stdin(Mutex<ChildStdin>);

impl Stdin {
    fn write(&self, bytes: &[u8]) {
        let mut stdin = self.0.lock().expect("stdin");
        stdin
            .write_all(bytes)
            .and_then(|()| stdin.flush())
            .expect("write to docker's stdin");
    }
}

/// `docker attach NAME` on a pseudo-terminal (`script`), as a user at a terminal runs it: the
/// container has a TTY, and Docker's detach keys work only then.
struct Attached {
    child: Child,
    stdin: Option<ChildStdin>,
    output: Arc<Capture>,
}

impl Attached {
    fn start(name: &str) -> Attached {
        let mut child = Command::new("script")
            .args([
                "--quiet",
                "--flush",
                "--command",
                &format!("docker attach {name}"),
                "/dev/null",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("start script (util-linux) for docker attach");
        let stdin = child.stdin.take();
        let output = Capture::start(child.stdout.take().expect("piped stdout"));
        let _stderr = Capture::start(child.stderr.take().expect("piped stderr"));
        Attached {
            child,
            stdin,
            output,
        }
    }

    fn write(&self, bytes: &[u8]) {
        let mut stdin = self.stdin.as_ref().expect("stdin open");
        stdin
            .write_all(bytes)
            .and_then(|()| stdin.flush())
            .expect("write to docker attach");
    }

    fn text(&self) -> String {
        self.output.text()
    }

    fn len(&self) -> usize {
        self.output.len()
    }

    /// Waits up to `timeout` until `done` holds for the output after `mark`.
    fn wait_until(&self, mark: usize, timeout: Duration, done: impl Fn(&str) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if done(&self.output.text_from(mark)) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_for_from(&self, mark: usize, pattern: &str, timeout: Duration) -> bool {
        self.wait_until(mark, timeout, |t| t.contains(pattern))
    }

    /// Waits for `docker attach` (and `script`) to end.
    fn wait_exit(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        self.stdin.take();
        if let Ok(None) = self.child.try_wait() {
            kill_group(self.child.id());
            let _ = self.child.wait();
        }
    }
}
