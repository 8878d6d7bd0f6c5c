//! The tap datapath under a real Docker daemon: a container granted only `--cap-add NET_ADMIN
//! --device /dev/net/tun --device /dev/kvm` (no device-cgroup rule, as a plain Kubernetes pod or
//! any runtime's default device list allows) boots the guest on the container's address; and on
//! a `-d macvlan` network the guest resolves container names through the door, as on a bridge.

use crate::common;

use common::docker::{BOOT, Scenario, VmOpts, expect_guest_nics};

#[test]
fn with_only_net_admin_tun_and_kvm_auto_takes_the_tap_datapath_and_a_peer_reaches_the_guest() {
    // given
    let sc = Scenario::new("tapauto");
    let net = sc.network();
    let vm = sc.create_vm(
        VmOpts::new()
            .network(&net)
            .without_cgroup_rule()
            .docker_flags(&["--device", "/dev/net/tun"]),
    );
    // when
    sc.start(&vm);
    // then
    let report = sc.guest_report(&vm);
    let ep = sc.only_endpoint(&vm);
    expect_guest_nics(&report, &[&ep]);
    let logs = sc.logs(&vm);
    assert!(
        logs.contains("datapath: tap (macvtap: "),
        "auto says it took tap, and why:\n{logs}"
    );
    sc.expect_answered(&net, ep.ip, &ep.mac, "the guest");
    let stopped = std::time::Instant::now();
    sc.docker_ok(&["stop", &vm]);
    assert!(
        stopped.elapsed() < std::time::Duration::from_secs(10),
        "docker stop beat its timeout"
    );
    let code = sc.inspect(&vm, "{{.State.ExitCode}}");
    assert_eq!(code.trim(), "0", "{}", sc.logs_tail(&vm));
    assert!(
        sc.logs(&vm).contains("restoring the container's network"),
        "{}",
        sc.logs_tail(&vm)
    );
}

#[test]
fn on_a_macvlan_network_the_guest_resolves_another_containers_name_through_the_door() {
    for datapath in ["macvtap", "tap"] {
        // given
        let sc = Scenario::new(&format!("mvl{datapath}"));
        let net = sc.network_macvlan();
        let other = sc.sleeper(&net);
        let other_ip = sc.endpoints(&other)[0].ip;
        let vm = sc.create_vm(
            VmOpts::new()
                .network(&net)
                .env("NET_DATAPATH", datapath)
                .docker_flags(&["--device", "/dev/net/tun"])
                .kernel_args(&format!("vminit_test_resolve={other}")),
        );
        // when
        sc.start(&vm);
        // then
        let report = sc.guest_report(&vm);
        let ep = sc.only_endpoint(&vm);
        expect_guest_nics(&report, &[&ep]);
        let answer = sc.wait_log_value(&vm, &format!("GUEST-RESOLVE {other} "), BOOT);
        assert_eq!(
            answer,
            Some(other_ip.to_string()),
            "{datapath}: Docker's name for the other container, resolved in the guest:\n{}",
            sc.logs_tail(&vm)
        );
    }
}

/// `docker-compose` of the shipped `deploy/compose.yaml` with the test guest as the command, its
/// project directory holding the disk and the console's directory; `down` when dropped.
struct ComposeProject {
    dir: std::path::PathBuf,
    name: String,
}

impl ComposeProject {
    fn new() -> ComposeProject {
        let fx = common::docker::fixtures();
        let name = common::docker::unique_name("compose").replace('-', "");
        let dir = fx.work.join(&name);
        std::fs::create_dir_all(dir.join("disk")).expect("the project directory");
        std::fs::create_dir_all(dir.join("console")).expect("the console directory");
        common::make_qcow2(&dir.join("disk/image.qcow2"), "16M");
        let guest = |f: &str| format!("{}/{f}", common::docker::GUEST_MOUNT);
        let override_yaml = format!(
            "version: \"3.7\"\nservices:\n  vm:\n    image: {image}\n    environment:\n      RAM_SIZE: 256M\n    volumes:\n      - {guest_dir}:{mount}:ro\n    command: [\"-kernel\", \"{kernel}\", \"-initrd\", \"{initrd}\", \"-append\", \"console=ttyS0 quiet\"]\n",
            image = fx.image,
            guest_dir = fx.guest_dir.display(),
            mount = common::docker::GUEST_MOUNT,
            kernel = guest("vmlinuz"),
            initrd = guest("initramfs.cpio.gz"),
        );
        std::fs::write(dir.join("test-override.yaml"), override_yaml).expect("the override");
        ComposeProject { dir, name }
    }

    fn run(&self, args: &[&str]) -> common::CmdOutput {
        let repo = env!("CARGO_MANIFEST_DIR");
        let compose = format!("{repo}/deploy/compose.yaml");
        let over = self.dir.join("test-override.yaml");
        let dir = self.dir.display().to_string();
        let mut argv = vec![
            "docker-compose",
            "-f",
            &compose,
            "-f",
            over.to_str().expect("a text path"),
            "--project-directory",
            &dir,
            "-p",
            &self.name,
        ];
        argv.extend_from_slice(args);
        common::run_for(&argv, std::time::Duration::from_secs(120))
    }
}

impl Drop for ComposeProject {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.run(&["logs", "--no-color"]));
        }
        self.run(&["down", "-v", "-t", "1"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn the_shipped_compose_file_boots_a_vm_on_two_networks_and_down_stops_it_cleanly() {
    // given
    let sc = Scenario::new("compose");
    let project = ComposeProject::new();
    // when
    let up = project.run(&["up", "-d"]);
    assert!(up.success(), "{up}");
    // then
    let vm = format!("{}_vm_1", project.name);
    let report = sc.guest_report(&vm);
    let eps = sc.endpoints(&vm);
    assert_eq!(eps.len(), 2, "{eps:?}");
    expect_guest_nics(&report, &eps.iter().collect::<Vec<_>>());
    let front = common::docker::Net {
        name: format!("{}_front", project.name),
    };
    let ep = sc.endpoint_on(&vm, &front);
    sc.expect_answered(&front, ep.ip, &ep.mac, "the guest");
    let logs = sc.logs(&vm);
    assert!(logs.contains("datapath: tap (NET_DATAPATH=tap)"), "{logs}");
    let socket = project.dir.join("console/vnc.sock");
    assert!(socket.exists(), "the VNC console's socket\n{logs}");
    // and `down` powers the guest off: vminit exits 0 in the grace period.
    let stop = project.run(&["stop"]);
    assert!(stop.success(), "{stop}");
    let code = sc.inspect(&vm, "{{.State.ExitCode}}");
    assert_eq!(code.trim(), "0", "{}", sc.logs_tail(&vm));
    let down = project.run(&["down", "-v"]);
    assert!(down.success(), "{down}");
}
