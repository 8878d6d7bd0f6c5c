//! One test's Docker world: the networks and containers it makes, the helpers it reads them with,
//! and their removal when it ends.

use std::fs;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use super::super::cmd::{CmdOutput, run};
use super::super::guest::{GuestNic, GuestReport, make_qcow2};
use super::super::process::tail;
use super::BOOT;
use super::attached::Attached;
use super::fixtures::{BUSYBOX_IMAGE, fixtures};
use super::names::{label_flags, unique_name};
use super::net::{Endpoint, Net, Ping, next_free_subnet};
use super::vm::VmOpts;

/// Everything one test made, removed on drop (containers, then networks, then files), with the
/// containers' logs printed first when the test is failing.
#[derive(Debug)]
pub struct Scenario {
    label: String,
    dir: PathBuf,
    containers: Mutex<Vec<String>>,
    networks: Mutex<Vec<String>>,
    /// Parent links made for macvlan networks (veth pairs in the host's namespace).
    parents: Mutex<Vec<String>>,
}

impl Scenario {
    /// A scenario whose objects' names contain `label`; makes the shared fixtures first.
    pub fn new(label: &str) -> Scenario {
        let dir = fixtures().work.join(unique_name(label));
        fs::create_dir_all(&dir).expect("create the test's directory");
        Scenario {
            label: label.to_owned(),
            dir,
            containers: Mutex::default(),
            networks: Mutex::default(),
            parents: Mutex::default(),
        }
    }

    /// A new name for a container of role `role`, removed when the scenario ends.
    fn container_name(&self, role: &str) -> String {
        let name = unique_name(&format!("{}-{role}", self.label));
        self.containers
            .lock()
            .expect("container list")
            .push(name.clone());
        name
    }

    // --- given ---------------------------------------------------------------------------------

    /// A new bridge network on a free 10.231.N.0/24.
    pub fn network(&self) -> Net {
        self.make_network(false)
    }

    /// A new dual-stack bridge network (`docker network create --ipv6`) on a free
    /// 10.231.N.0/24 and fd00:231:N::/64, whose gateway is the bridge's fd00:231:N::1.
    pub fn network_ipv6(&self) -> Net {
        self.make_network(true)
    }

    /// A new `docker network create -d macvlan -o parent=P` network on a free 10.231.N.0/24.
    /// The parent is a veth made for it (the machine's own NICs are never used), whose other
    /// end stays up and unused: the network's containers reach each other through it.
    pub fn network_macvlan(&self) -> Net {
        let name = unique_name(&format!("{}-mvl", self.label));
        let parent = format!("vmtmv{}", std::process::id() % 100_000);
        let made = run(&[
            "sh",
            "-c",
            &format!(
                "ip link add {parent} type veth peer name {parent}p && ip link set {parent} up && ip link set {parent}p up"
            ),
        ]);
        assert!(made.success(), "{made}");
        self.parents
            .lock()
            .expect("parent list")
            .push(parent.clone());
        loop {
            let subnet = next_free_subnet();
            let parent_opt = format!("parent={parent}");
            let mut args = vec![
                "network",
                "create",
                "--driver",
                "macvlan",
                "-o",
                &parent_opt,
                "--subnet",
                &subnet,
            ];
            let labels = label_flags();
            args.extend(labels.iter().map(String::as_str));
            args.push(&name);
            let out = self.docker(&args);
            if out.success() {
                self.networks
                    .lock()
                    .expect("network list")
                    .push(name.clone());
                return Net { name };
            }
            assert!(out.stderr.contains("overlap"), "{out}");
        }
    }

    fn make_network(&self, ipv6: bool) -> Net {
        let name = unique_name(&format!("{}-net", self.label));
        loop {
            let subnet = next_free_subnet();
            let n = subnet.split('.').nth(2).unwrap_or("0").to_owned();
            let subnet6 = format!("fd00:231:{n}::/64");
            let mut args = vec![
                "network", "create", "--driver", "bridge", "--subnet", &subnet,
            ];
            if ipv6 {
                args.extend(["--ipv6", "--subnet", &subnet6]);
            }
            let labels = label_flags();
            args.extend(labels.iter().map(String::as_str));
            args.push(&name);
            let out = self.docker(&args);
            if out.success() {
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
    pub fn disk_dir(&self, role: &str) -> PathBuf {
        let dir = self.dir.join(role);
        fs::create_dir_all(&dir).expect("create a disk directory");
        dir
    }

    /// A directory to mount at /image holding a copy of the bootable test disk (the guest boots
    /// from it with SYSLINUX when QEMU gets no `-kernel`).
    pub fn boot_disk_dir(&self, role: &str) -> PathBuf {
        let dir = self.disk_dir(role);
        fs::copy(&fixtures().boot_disk, dir.join("image.qcow2")).expect("copy the boot disk");
        dir
    }

    /// `docker create` of the vminit image as `opts` say; returns the container's name.
    pub fn create_vm(&self, opts: VmOpts) -> String {
        let name = self.container_name("vm");
        let disk = match opts.disk_dir() {
            Some(dir) => dir.to_owned(),
            None => {
                let dir = self.disk_dir(&format!("{name}-disk"));
                make_qcow2(&dir.join("image.qcow2"), "16M");
                dir
            }
        };
        let argv = opts.create_args(&name, &disk, fixtures());
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        self.docker_ok(&argv);
        name
    }

    /// `docker network connect NET NAME`.
    pub fn connect(&self, name: &str, net: &Net) {
        self.docker_ok(&["network", "connect", &net.name, name]);
    }

    /// Starts a long-running busybox container on `net`; returns its name.
    pub fn sleeper(&self, net: &Net) -> String {
        let name = self.container_name("named");
        let network = format!("--network={}", net.name);
        let out = self.busybox(&name, &["-d", &network], &["sleep", "600"]);
        assert!(out.success(), "{out}");
        name
    }

    /// Starts a long-running container of role `role` from `image` on `net` (`docker run -d`,
    /// `flags` before the image, `args` after it); returns its name.
    pub fn daemon(
        &self,
        role: &str,
        net: &Net,
        flags: &[&str],
        image: &str,
        args: &[&str],
    ) -> String {
        let name = self.container_name(role);
        let labels = label_flags();
        let network = format!("--network={}", net.name);
        let mut argv = vec!["run", "-d", "--name", &name, &network];
        argv.extend(labels.iter().map(String::as_str));
        argv.extend_from_slice(flags);
        argv.push(image);
        argv.extend_from_slice(args);
        self.docker_ok(&argv);
        name
    }

    // --- when ----------------------------------------------------------------------------------

    /// `docker start NAME`.
    pub fn start(&self, name: &str) {
        self.docker_ok(&["start", name]);
    }

    /// `docker start --attach --interactive NAME`, with a stdin the test writes.
    pub fn start_attached(&self, name: &str) -> Attached {
        Attached::start(name)
    }

    /// `docker attach NAME` on a terminal (the container must have been made with `--tty`).
    pub fn attach_terminal(&self, name: &str) -> Attached {
        Attached::terminal(name)
    }

    /// Starts `name`, waits (bounded) for it to exit; its exit code and vminit's error line, of
    /// which there must be exactly one.
    pub fn run_to_error(&self, name: &str) -> (i32, String) {
        self.start(name);
        let wait = self.docker(&["wait", name]);
        assert!(
            wait.success(),
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

    /// `docker ARGS…` with the ordinary time limit.
    pub fn docker(&self, args: &[&str]) -> CmdOutput {
        let mut argv = vec!["docker"];
        argv.extend_from_slice(args);
        run(&argv)
    }

    /// `docker ARGS…`, which must succeed; returns its stdout, trimmed.
    pub fn docker_ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(out.success(), "{out}");
        out.stdout.trim().to_owned()
    }

    /// `docker exec NAME /vminit health`: the image's health check.
    pub fn health_check(&self, name: &str) -> CmdOutput {
        self.docker(&["exec", name, "/vminit", "health"])
    }

    // --- then ----------------------------------------------------------------------------------

    /// `docker inspect -f FORMAT NAME`, trimmed.
    pub fn inspect(&self, name: &str, format: &str) -> String {
        self.docker_ok(&["inspect", "-f", format, name])
    }

    /// The container's endpoints, in network-name order.
    pub fn endpoints(&self, name: &str) -> Vec<Endpoint> {
        let text = self.inspect(name, Endpoint::INSPECT_FORMAT);
        text.lines().map(Endpoint::parse).collect()
    }

    /// The container's endpoint on `net`; panics if it has none.
    pub fn endpoint_on(&self, name: &str, net: &Net) -> Endpoint {
        self.endpoints(name)
            .into_iter()
            .find(|e| e.network == net.name)
            .unwrap_or_else(|| panic!("{name} has no endpoint on {}", net.name))
    }

    /// The container's only endpoint; panics if it has not exactly one.
    pub fn only_endpoint(&self, name: &str) -> Endpoint {
        let eps = self.endpoints(name);
        assert_eq!(eps.len(), 1, "{eps:?}");
        eps[0].clone()
    }

    /// `docker logs NAME`, both streams in the order Docker logged them.
    pub fn logs(&self, name: &str) -> String {
        docker_logs(name).stdout.replace('\r', "")
    }

    /// The last 60 lines of the logs, for failure messages.
    pub fn logs_tail(&self, name: &str) -> String {
        format!(
            "--- docker logs {name} (last 60 lines)\n{}",
            tail(&self.logs(name), 60)
        )
    }

    /// Waits up to `timeout` for `pattern` in the container's logs; fails early if it stops.
    pub fn wait_logs(&self, name: &str, pattern: &str, timeout: Duration) -> String {
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

    /// Waits (see [`Scenario::wait_logs`]) for a log line starting with `prefix`; the rest of the
    /// first such line (`None` if nothing follows the prefix).
    pub fn wait_log_value(&self, name: &str, prefix: &str, timeout: Duration) -> Option<String> {
        let logs = self.wait_logs(name, prefix, timeout);
        logs.lines()
            .find_map(|l| l.trim_end().strip_prefix(prefix))
            .map(str::to_owned)
    }

    /// The guest's complete `GUEST-REPORT` block, waited for.
    pub fn guest_report(&self, name: &str) -> GuestReport {
        let logs = self.wait_logs(name, "GUEST-REPORT done", BOOT);
        GuestReport::parse(&logs).expect("a report ending in done")
    }

    /// Polls the container's health status every half second until it is `wanted` or `timeout`
    /// passed; the last status seen.
    pub fn wait_health(&self, name: &str, wanted: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        let mut status = String::new();
        while Instant::now() < deadline {
            status = self.inspect(name, "{{.State.Health.Status}}");
            if status == wanted {
                break;
            }
            thread::sleep(Duration::from_millis(500));
        }
        status
    }

    /// Asserts that a peer container on `net` pings `ip` and that `mac` answered its ARP:
    /// what a user checks to know who holds the address.
    pub fn expect_answered(&self, net: &Net, ip: Ipv4Addr, mac: &str, who: &str) {
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
    pub fn peer_ping(&self, net: &Net, ip: Ipv4Addr) -> Ping {
        let name = self.container_name("peer");
        let script = format!("ping -c 3 -W 2 {ip}; rc=$?; arp -n; exit $rc");
        let network = format!("--network={}", net.name);
        let out = self.busybox(&name, &["--rm", &network], &["sh", "-c", &script]);
        // busybox arp -n: "? (10.231.1.2) at 02:42:0a:e7:01:02 [ether]  on eth0"
        let needle = format!("({ip}) at ");
        let neighbour_mac = out.stdout.lines().find_map(|l| {
            let rest = &l[l.find(&needle)? + needle.len()..];
            rest.split_whitespace().next().map(str::to_owned)
        });
        Ping {
            ok: out.success(),
            neighbour_mac,
            output: out.to_string(),
        }
    }

    /// The container `name`'s IPv6 address, prefix length and gateway on its only network.
    pub fn endpoint6(&self, name: &str) -> (std::net::Ipv6Addr, u8, std::net::Ipv6Addr) {
        let text = self.inspect(
            name,
            "{{range .NetworkSettings.Networks}}{{.GlobalIPv6Address}} {{.GlobalIPv6PrefixLen}} {{.IPv6Gateway}}{{end}}",
        );
        let f: Vec<&str> = text.split_whitespace().collect();
        assert_eq!(f.len(), 3, "no IPv6 endpoint: {text:?}");
        (
            f[0].parse().expect("GlobalIPv6Address"),
            f[1].parse().expect("GlobalIPv6PrefixLen"),
            f[2].parse().expect("IPv6Gateway"),
        )
    }

    /// The IPv6 gateway Docker gave `net` (the bridge's address): the one `docker network
    /// inspect` names, else (Docker 20.10 names none it chose itself) the subnet's first.
    pub fn network_gateway6(&self, net: &Net) -> std::net::Ipv6Addr {
        let text = self.docker_ok(&[
            "network",
            "inspect",
            "-f",
            "{{range .IPAM.Config}}{{.Subnet}} {{.Gateway}},{{end}}",
            &net.name,
        ]);
        let entry = text
            .trim()
            .split(',')
            .find(|e| e.contains(':'))
            .unwrap_or_else(|| panic!("no IPv6 subnet on {}: {text:?}", net.name));
        let mut words = entry.split_whitespace();
        let subnet = words.next().unwrap_or_default();
        if let Some(gateway) = words.next().and_then(|g| g.parse().ok()) {
            return gateway;
        }
        let network: std::net::Ipv6Addr = subnet
            .split('/')
            .next()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("IPv6 subnet of {}: {text:?}", net.name));
        std::net::Ipv6Addr::from(u128::from(network) + 1)
    }

    /// The MAC of `net`'s bridge (`br-<id>` on this machine): the gateway's.
    pub fn bridge_mac(&self, net: &Net) -> String {
        let id = self.docker_ok(&["network", "inspect", "-f", "{{.Id}}", &net.name]);
        let bridge = format!("br-{}", &id.trim()[..12]);
        fs::read_to_string(format!("/sys/class/net/{bridge}/address"))
            .unwrap_or_else(|e| panic!("{bridge}'s MAC: {e}"))
            .trim()
            .to_owned()
    }

    /// Pings `ip` over IPv6 from a new busybox container on `net` and reads the peer's
    /// neighbour entry for it.
    pub fn peer_ping6(&self, net: &Net, ip: std::net::Ipv6Addr) -> Ping {
        let name = self.container_name("peer");
        let script = format!("ping -6 -c 3 -W 2 {ip}; rc=$?; ip -6 neigh show {ip}; exit $rc");
        let network = format!("--network={}", net.name);
        let out = self.busybox(&name, &["--rm", &network], &["sh", "-c", &script]);
        // busybox ip -6 neigh: "fd00:231:1::2 dev eth0 lladdr 02:42:0a:e7:01:02 REACHABLE"
        let neighbour_mac = out.stdout.lines().find_map(|l| {
            let mut words = l.split_whitespace();
            words.find(|w| *w == "lladdr")?;
            words.next().map(str::to_owned)
        });
        Ping {
            ok: out.success(),
            neighbour_mac,
            output: out.to_string(),
        }
    }

    /// Runs `sh -c SCRIPT` in a busybox container that shares `name`'s network namespace.
    pub fn in_netns_of(&self, name: &str, script: &str) -> CmdOutput {
        let side = self.container_name("side");
        let network = format!("--network=container:{name}");
        self.busybox(&side, &["--rm", &network], &["sh", "-c", script])
    }

    /// Runs `sh -c SCRIPT` with this machine's programs in `name`'s network namespace
    /// (`nsenter -t PID -n`): a client the busybox image lacks (OpenSSH's), from where that
    /// container is on its networks.
    pub fn host_shell_in_netns_of(&self, name: &str, script: &str) -> CmdOutput {
        let pid = self.inspect(name, "{{.State.Pid}}");
        run(&["nsenter", "-t", pid.trim(), "-n", "--", "sh", "-c", script])
    }

    /// `docker run --name NAME <labels> FLAGS… <busybox image> ARGS…`.
    fn busybox(&self, name: &str, flags: &[&str], args: &[&str]) -> CmdOutput {
        let labels = label_flags();
        let mut argv = vec!["run", "--name", name];
        argv.extend(labels.iter().map(String::as_str));
        argv.extend_from_slice(flags);
        argv.push(BUSYBOX_IMAGE);
        argv.extend_from_slice(args);
        self.docker(&argv)
    }
}

impl Drop for Scenario {
    fn drop(&mut self) {
        let containers = std::mem::take(self.containers.get_mut().expect("container list"));
        if thread::panicking() {
            for name in &containers {
                let out = docker_logs(name);
                if out.success() {
                    eprintln!("===== docker logs {name}\n{}", out.stdout.replace('\r', ""));
                }
            }
        }
        for name in containers.iter().rev() {
            run(&["docker", "rm", "-f", "-v", name]);
        }
        for name in self.networks.get_mut().expect("network list").iter().rev() {
            let out = run(&["docker", "network", "rm", name]);
            if !out.success() {
                eprintln!("warning: {out}");
            }
        }
        for parent in self.parents.get_mut().expect("parent list").iter() {
            run(&["ip", "link", "del", parent]);
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// `docker logs NAME 2>&1`: both streams in the order Docker logged them.
fn docker_logs(name: &str) -> CmdOutput {
    run(&["sh", "-c", "exec docker logs \"$1\" 2>&1", "sh", name])
}

/// Asserts that the guest's one default route is the container's, through `ep`'s gateway on
/// the guest's first NIC.
pub fn expect_default_route_via(report: &GuestReport, ep: &Endpoint) {
    assert_eq!(
        report.default_routes(),
        vec![format!(
            "default via {} dev {}",
            ep.gateway, report.nics[0].name
        )],
        "{report:?}"
    );
}

/// The guest's NIC with the MAC of the container's NIC `ep`; fails the test when there is none.
pub fn guest_nic_of<'r>(report: &'r GuestReport, ep: &Endpoint) -> &'r GuestNic {
    report
        .nics
        .iter()
        .find(|n| n.mac == ep.mac)
        .unwrap_or_else(|| {
            panic!(
                "no guest NIC has the MAC of the container's NIC on {}: {ep:?}\n{report:?}",
                ep.network
            )
        })
}

/// Asserts that the guest has exactly one NIC per endpoint in `eps`, each with its endpoint's MAC
/// and nothing but its address: the guest took over those container NICs.
pub fn expect_guest_nics(report: &GuestReport, eps: &[&Endpoint]) {
    assert_eq!(
        report.nics.len(),
        eps.len(),
        "the guest should have {} NIC(s): {report:?}",
        eps.len()
    );
    for ep in eps {
        let nic = guest_nic_of(report, ep);
        assert_eq!(
            nic.addrs,
            vec![ep.cidr()],
            "guest {} vs the container on {}",
            nic.name,
            ep.network
        );
    }
}
