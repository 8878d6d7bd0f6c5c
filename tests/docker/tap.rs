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

/// On a Docker `-d macvlan` network (a veth parent made by the test), with either datapath, the
/// guest takes the container's MAC and address and resolves another container's name through
/// the door. (Issue 20's macvlan DNS bug: the container's NIC, a sibling of the guest's link
/// there, also answered the guest's ARP for the door address, and lookups sent to it timed
/// out now and then; see docs/network.md, "Which container NICs".)
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
            "version: \"3.7\"\nservices:\n  vm:\n    image: {image}\n    environment:\n      RAM_SIZE: 256M\n    volumes:\n      - {guest_dir}:{mount}:ro\n    command: [\"-kernel\", \"{kernel}\", \"-initrd\", \"{initrd}\", \"-append\", \"console=ttyS0 quiet no_timer_check\"]\n",
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

/// The `name`/`value` pairs of a manifest's `sysctls:` list (quotes dropped).
fn pod_sysctls(manifest: &str) -> Vec<(String, String)> {
    let mut lines = manifest
        .lines()
        .map(str::trim)
        .skip_while(|l| *l != "sysctls:")
        .skip(1);
    let mut out = Vec::new();
    while let (Some(name), Some(value)) = (lines.next(), lines.next()) {
        match (name.strip_prefix("- name: "), value.strip_prefix("value: ")) {
            (Some(n), Some(v)) => out.push((n.to_owned(), v.trim_matches('"').to_owned())),
            _ => break,
        }
    }
    out
}

/// A `podman kube play` of a shipped manifest (`deploy/kubernetes/NAME`): the image copied
/// from Docker, the test guest as the container's args and the disk on a hostPath (in place of
/// the claim of `pod-restricted.yaml`), owned by `owner` (UID, GID). Podman 4.3 raises
/// containers' limits above what root may set in this sandbox, so its `containers.conf` sets
/// them lower, and gives the pod the manifest's sysctls, which Podman 4.3's kube play ignores.
/// Played down when dropped.
pub(crate) struct KubePlay {
    pub(crate) dir: std::path::PathBuf,
    pub(crate) manifest: std::path::PathBuf,
}

impl KubePlay {
    pub(crate) fn new(image: &str, name: &str, owner: (u32, u32)) -> KubePlay {
        let fx = common::docker::fixtures();
        let dir = fx.work.join(common::docker::unique_name("kube"));
        for sub in [
            "disk",
            "peer/bin",
            "peer/proc",
            "peer/sys",
            "peer/dev",
            "peer/etc",
        ] {
            std::fs::create_dir_all(dir.join(sub)).expect("a directory of the play");
        }
        let shipped = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("deploy/kubernetes")
                .join(name),
        )
        .expect("the shipped manifest");
        // Podman 4.3 ignores a pod's securityContext.sysctls (kube play reads them from 4.5
        // on): the manifest's reach the pod's containers through containers.conf instead.
        let sysctls: Vec<String> = pod_sysctls(&shipped)
            .iter()
            .map(|(k, v)| format!("\"{k}={v}\""))
            .collect();
        std::fs::write(
            dir.join("containers.conf"),
            format!(
                "[containers]\ndefault_ulimits = [\"nofile=4096:4096\", \"nproc=4096:4096\"]\ndefault_sysctls = [{}]\n",
                sysctls.join(", ")
            ),
        )
        .expect("containers.conf");
        common::make_qcow2(&dir.join("disk/image.qcow2"), "16M");
        std::fs::copy(common::docker::HOST_BUSYBOX, dir.join("peer/bin/busybox"))
            .expect("busybox for the peer");
        let disk = dir.join("disk");
        common::run_ok(&[
            "chown",
            "-R",
            &format!("{}:{}", owner.0, owner.1),
            &disk.display().to_string(),
        ]);
        let manifest = shipped
            .replace(
                "persistentVolumeClaim:\n        claimName: vm-disk",
                "hostPath:\n        path: /srv/vminit/vm\n        type: Directory",
            )
            .replace("image: vminit:latest", &format!("image: localhost/{image}"))
            .replace(
                "path: /srv/vminit/vm",
                &format!("path: {}", dir.join("disk").display()),
            )
            .replace(
                "      env:\n",
                "      args: [\"-kernel\", \"/guest/vmlinuz\", \"-initrd\", \"/guest/initramfs.cpio.gz\", \"-append\", \"console=ttyS0 quiet no_timer_check vminit_test_serve=80\"]\n      env:\n",
            )
            .replace("value: 1G", "value: 256M")
            .replace(
                "          mountPath: /image\n",
                "          mountPath: /image\n        - name: guest\n          mountPath: /guest\n          readOnly: true\n",
            )
            + &format!(
                "    - name: guest\n      hostPath:\n        path: {}\n        type: Directory\n",
                fx.guest_dir.display()
            );
        assert!(manifest.contains("args: ") && manifest.contains("name: guest"));
        let path = dir.join("pod.yaml");
        std::fs::write(&path, manifest).expect("the manifest");
        let play = KubePlay {
            dir,
            manifest: path,
        };
        let loaded = common::run_for(
            &[
                "sh",
                "-c",
                &format!(
                    "docker save {image} | CONTAINERS_CONF={} podman load",
                    play.conf()
                ),
            ],
            std::time::Duration::from_secs(120),
        );
        assert!(loaded.success(), "{loaded}");
        play
    }

    /// The pod's logs once the guest has reported (within `BOOT`).
    pub(crate) fn guest_report_logs(&self) -> String {
        let deadline = std::time::Instant::now() + BOOT;
        let mut logs = String::new();
        while !logs.contains("GUEST-REPORT done") {
            assert!(
                std::time::Instant::now() < deadline,
                "no guest report\n{logs}"
            );
            std::thread::sleep(std::time::Duration::from_millis(500));
            let out = self.podman(&["logs", "vm-vm"]);
            logs = format!("{}{}", out.stdout, out.stderr).replace('\r', "");
        }
        logs
    }

    /// The pod's network as `NETWORK IP PREFIX MAC` (its infra container's).
    pub(crate) fn pod_network(&self) -> Vec<String> {
        let infra = self.podman(&["pod", "inspect", "vm", "--format", "{{.InfraContainerID}}"]);
        let pod_net = self.podman(&[
            "inspect",
            infra.stdout.trim(),
            "--format",
            "{{range $n, $e := .NetworkSettings.Networks}}{{$n}} {{$e.IPAddress}} {{$e.IPPrefixLen}} {{$e.MacAddress}}{{end}}",
        ]);
        let f: Vec<String> = pod_net
            .stdout
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        assert_eq!(f.len(), 4, "{pod_net}");
        f
    }

    /// `sh -c SCRIPT` in a busybox container on `network`.
    pub(crate) fn peer(&self, network: &str, script: &str) -> common::CmdOutput {
        let peer_root = self.dir.join("peer").display().to_string();
        self.podman(&[
            "run",
            "--rm",
            "--network",
            network,
            "--rootfs",
            &peer_root,
            "/bin/busybox",
            "sh",
            "-c",
            script,
        ])
    }

    /// `podman pod stop` within the grace period; vminit's exit code.
    pub(crate) fn stop(&self) -> String {
        let stop = self.podman(&["pod", "stop", "-t", "12", "vm"]);
        assert!(stop.success(), "{stop}");
        let code = self.podman(&["inspect", "vm-vm", "--format", "{{.State.ExitCode}}"]);
        code.stdout.trim().to_owned()
    }

    pub(crate) fn conf(&self) -> String {
        self.dir.join("containers.conf").display().to_string()
    }

    /// `podman ARGS` with this play's containers.conf.
    pub(crate) fn podman(&self, args: &[&str]) -> common::CmdOutput {
        let mut argv = vec![
            "env".to_string(),
            format!("CONTAINERS_CONF={}", self.conf()),
        ];
        argv.push("podman".into());
        argv.extend(args.iter().map(|a| a.to_string()));
        common::run_for(&argv, std::time::Duration::from_secs(120))
    }
}

impl Drop for KubePlay {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.podman(&["logs", "vm-vm"]));
        }
        let manifest = self.manifest.display().to_string();
        self.podman(&["kube", "play", "--down", &manifest]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn podman_kube_play_runs_the_shipped_pod_unprivileged_and_the_vm_takes_the_pods_address() {
    // given
    let fx = common::docker::fixtures();
    let play = KubePlay::new(&fx.image, "pod.yaml", (0, 0));
    let manifest = play.manifest.display().to_string();
    // when
    let up = play.podman(&["kube", "play", &manifest]);
    assert!(up.success(), "{up}");
    // then
    let logs = play.guest_report_logs();
    assert!(logs.contains("datapath: tap (NET_DATAPATH=tap)"), "{logs}");
    let privileged = play.podman(&["inspect", "vm-vm", "--format", "{{.HostConfig.Privileged}}"]);
    assert_eq!(privileged.stdout.trim(), "false");
    let f = play.pod_network();
    let (network, ip, prefix, mac) = (f[0].as_str(), f[1].as_str(), f[2].as_str(), f[3].as_str());
    let report = common::GuestReport::parse(&logs).expect("a guest report");
    let g = report.nic("eth0").expect("the guest's eth0");
    assert_eq!(
        (g.mac.as_str(), g.addrs.clone()),
        (mac, vec![format!("{ip}/{prefix}")]),
        "the pod's MAC and address"
    );
    // A peer on the pod's network reaches the guest at the pod's address and MAC.
    let ping = play.peer(
        network,
        &format!("/bin/busybox ping -c 3 -W 2 {ip} && /bin/busybox arp -n"),
    );
    assert!(ping.success(), "{ping}");
    assert!(ping.stdout.contains(&format!("({ip}) at {mac}")), "{ping}");
    // The pod stops within its grace period, vminit exiting 0.
    assert_eq!(play.stop(), "0", "{}", play.podman(&["logs", "vm-vm"]));
}

/// A non-root user's Podman (slirp4netns networking, its own user namespace): the user, made
/// once, runs `podman` through `su`; the image is copied from Docker into the user's storage.
struct Rootless {
    dir: std::path::PathBuf,
    name: String,
}

const ROOTLESS_USER: &str = "vmtrootless";

impl Rootless {
    fn new(image: &str) -> Rootless {
        let fx = common::docker::fixtures();
        if !common::run(&["id", ROOTLESS_USER]).success() {
            common::run_ok(&["useradd", "-m", "-s", "/bin/sh", ROOTLESS_USER]);
        }
        let name = common::docker::unique_name("rootless");
        let dir = std::env::temp_dir().join(&name);
        std::fs::create_dir_all(dir.join("disk")).expect("the rootless directory");
        common::make_qcow2(&dir.join("disk/image.qcow2"), "16M");
        let tar = dir.join("image.tar");
        common::run_ok_for(
            &[
                "docker",
                "save",
                image,
                "-o",
                tar.to_str().expect("a text path"),
            ],
            std::time::Duration::from_secs(120),
        );
        common::run_ok(&[
            "cp",
            "-r",
            &fx.guest_dir.display().to_string(),
            &dir.join("guest").display().to_string(),
        ]);
        common::run_ok(&["chown", "-R", ROOTLESS_USER, &dir.display().to_string()]);
        common::run_ok(&["chmod", "-R", "u+rwX", &dir.display().to_string()]);
        let r = Rootless { dir, name };
        // Podman 4.3 raises containers' limits above what this sandbox allows (see
        // docs/deploy.md); the user's containers.conf keeps them lower.
        let setup = r.podman(&format!(
            "mkdir -p ~/.config/containers && printf '[containers]\\ndefault_ulimits = [\"nofile=4096:4096\", \"nproc=4096:4096\"]\\n' > ~/.config/containers/containers.conf && podman load -i {}",
            tar.display()
        ));
        assert!(setup.success(), "{setup}");
        r
    }

    /// `sh -c SCRIPT` as the user, in a login shell (its own XDG_RUNTIME_DIR and storage).
    fn podman(&self, script: &str) -> common::CmdOutput {
        common::run_for(
            &[
                "su",
                "-",
                ROOTLESS_USER,
                "-c",
                &format!("cd /tmp && {script}"),
            ],
            std::time::Duration::from_secs(180),
        )
    }
}

impl Drop for Rootless {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.podman(&format!("podman logs {}", self.name)));
        }
        self.podman(&format!("podman rm -f {}", self.name));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn rootless_podman_gives_the_guest_slirps_tap0_and_it_reaches_slirps_gateway() {
    // given
    let fx = common::docker::fixtures();
    let user = Rootless::new(&fx.image);
    let dir = user.dir.display().to_string();
    // when: `podman run` as a user, with the flags docs/deploy.md names
    let run = user.podman(&format!(
        "podman run -d --name {name} --cap-add NET_ADMIN --cap-add NET_RAW --device /dev/net/tun \
         -e AUTO_ATTACH=yes -e RAM_SIZE=256M -e STOP_TIMEOUT=4 -v {dir}/disk:/image -v {dir}/guest:/guest:ro \
         localhost/{image} -kernel /guest/vmlinuz -initrd /guest/initramfs.cpio.gz \
         -append 'console=ttyS0 quiet no_timer_check vminit_test_ipv6=eth0 vminit_test_ping6=fd00::2'",
        name = user.name,
        image = fx.image,
    ));
    assert!(run.success(), "{run}");
    // then
    let deadline = std::time::Instant::now() + BOOT;
    let mut logs = String::new();
    while !logs.contains("GUEST-PING6 fd00::2 ") {
        assert!(
            std::time::Instant::now() < deadline,
            "no ping6 report\n{logs}"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
        let out = user.podman(&format!("podman logs {} 2>&1", user.name));
        logs = out.stdout.replace('\r', "");
    }
    assert!(logs.contains("datapath: tap (macvtap: "), "{logs}");
    let report = common::GuestReport::parse(&logs).expect("a guest report");
    let g = report.nic("eth0").expect("the guest's eth0");
    assert_eq!(
        g.addrs,
        ["10.0.2.100/24"],
        "slirp's address for the container"
    );
    assert!(
        logs.contains("GUEST-PING6 fd00::2 ok"),
        "the guest reaches slirp's gateway over IPv6:\n{logs}"
    );
    let stop = user.podman(&format!("podman stop -t 10 {}", user.name));
    assert!(stop.success(), "{stop}");
    let code = user.podman(&format!(
        "podman inspect {} --format '{{{{.State.ExitCode}}}}'",
        user.name
    ));
    assert_eq!(code.stdout.trim(), "0", "{code}");
}
