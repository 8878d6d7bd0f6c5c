//! A Docker-like network: a bridge with the gateway address in its own namespace ("the host"),
//! and a peer namespace on the bridge that plays another machine on the network.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::cmd::CmdOutput;
use super::names::{ifname, unique_id};
use super::netns::Netns;

/// The gateway Calico gives `/32` pods: `default via 169.254.1.1 dev eth0 onlink`.
pub const K8S_GATEWAY: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);

/// Host number of the peer in every network (10.N.0.50).
const PEER_HOST: u8 = 50;

/// The link-local gateway Calico gives IPv6 pods: `default via fe80::ecee:eeff:feee:eeee dev eth0`
/// (the EUI-64 address of the host side's MAC ee:ee:ee:ee:ee:ee).
pub const CALICO_GATEWAY6: Ipv6Addr =
    Ipv6Addr::new(0xfe80, 0, 0, 0, 0xecee, 0xeeff, 0xfeee, 0xeeee);

/// The network 10.N.0.0/24: bridge `<id>br` with 10.N.0.1 in the host namespace, and a peer
/// namespace whose `eth0` (10.N.0.50) hangs on the bridge. The host namespace forwards IPv4, so a
/// `/32` pod address routed via [`K8S_GATEWAY`] reaches the peer too.
///
/// Networks live in their own namespaces, so two networks may share an index; the networks of one
/// container need distinct indexes.
#[derive(Debug)]
pub struct Network {
    id: String,
    host: Netns,
    peer: Netns,
    /// The bridge's name in the host namespace.
    pub bridge: String,
    /// N in 10.N.0.0/24.
    pub index: u8,
    /// 10.N.0.1, on the bridge.
    pub gateway: Ipv4Addr,
    /// 24.
    pub prefix: u8,
    /// 10.N.0.50, the peer's address.
    pub peer_ip: Ipv4Addr,
    /// The MTU of the bridge, the peer and (by default) every NIC attached.
    pub mtu: u32,
    /// The IPv6 side of a dual-stack network ([`Network::dual_stack`]).
    pub v6: Option<Net6>,
    ports: AtomicU32,
    answers_k8s_gateway: AtomicBool,
}

/// A `tcpdump` listening on the peer's NIC ([`Network::peer_listen`]).
#[derive(Debug)]
pub struct Listener {
    process: super::process::Process,
}

impl Listener {
    /// Stops listening; returns the lines of what it heard (empty when it heard nothing).
    pub fn stop(self) -> Vec<String> {
        self.process.signal(nix::sys::signal::Signal::SIGINT);
        self.process.wait_exit(Duration::from_secs(10));
        self.process
            .stdout()
            .wait_closed(std::time::Duration::from_secs(5));
        self.process
            .stdout()
            .text()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_owned)
            .collect()
    }
}

/// The IPv6 side of a dual-stack network, shaped like a Docker `--ipv6` user network:
/// `fd00:N::/64`, the gateway `fd00:N::1` on the bridge (which sends no router advertisements),
/// a peer at `fd00:N::50`, and a host beyond the gateway.
#[derive(Debug, Clone)]
pub struct Net6 {
    /// `fd00:N::1`, on the bridge.
    pub gateway: Ipv6Addr,
    /// 64.
    pub prefix: u8,
    /// `fd00:N::50`, the peer's address.
    pub peer_ip: Ipv6Addr,
    /// `fd00:ff:N::1`: an address of the host namespace outside the network, reachable only
    /// through the gateway.
    pub far: Ipv6Addr,
    /// The bridge's MAC: what every neighbour of the gateway sees.
    pub gateway_mac: String,
    /// The bridge's own link-local address (the kernel's, from its MAC).
    pub gateway_ll: Ipv6Addr,
}

impl Net6 {
    /// `fd00:N::host`.
    pub fn addr(&self, host: u16) -> Ipv6Addr {
        let s = self.gateway.segments();
        Ipv6Addr::new(s[0], s[1], 0, 0, 0, 0, 0, host)
    }

    /// `addr/64`.
    pub fn cidr(&self, addr: Ipv6Addr) -> String {
        format!("{addr}/{}", self.prefix)
    }
}

impl Network {
    /// The network 10.`index`.0.0/24 with MTU 1500.
    pub fn new(index: u8) -> Network {
        Network::with_mtu(index, 1500)
    }

    /// The network 10.`index`.0.0/24 with the given MTU (as `docker network create -o
    /// com.docker.network.driver.mtu=MTU`).
    pub fn with_mtu(index: u8, mtu: u32) -> Network {
        Network::build(index, mtu, false)
    }

    /// The network 10.`index`.0.0/24 and, for IPv6, fd00:`index`::/64 with the gateway
    /// fd00:`index`::1 (see [`Net6`]); MTU 1500.
    pub fn dual_stack(index: u8) -> Network {
        Network::build(index, 1500, true)
    }

    /// [`Network::dual_stack`] with the given MTU (`docker network create --ipv6 -o
    /// com.docker.network.driver.mtu=MTU`).
    pub fn dual_stack_with_mtu(index: u8, mtu: u32) -> Network {
        Network::build(index, mtu, true)
    }

    fn build(index: u8, mtu: u32, ipv6: bool) -> Network {
        let id = unique_id();
        let create = if ipv6 {
            Netns::create_ipv6
        } else {
            Netns::create
        };
        let host = create(&id, "br");
        let peer = create(&id, "peer");
        let bridge = ifname(&id, "br");
        let mut net = Network {
            gateway: Ipv4Addr::new(10, index, 0, 1),
            peer_ip: Ipv4Addr::new(10, index, 0, PEER_HOST),
            prefix: 24,
            index,
            mtu,
            bridge,
            host,
            peer,
            id,
            v6: None,
            ports: AtomicU32::new(0),
            answers_k8s_gateway: AtomicBool::new(false),
        };
        // Forward between addresses on the bridge (the /32 pod case), quietly.
        for (key, value) in [
            ("net.ipv4.ip_forward", "1"),
            ("net.ipv4.conf.all.send_redirects", "0"),
            ("net.ipv4.conf.default.send_redirects", "0"),
            ("net.ipv4.conf.all.rp_filter", "0"),
            ("net.ipv4.conf.default.rp_filter", "0"),
        ] {
            net.host.sysctl(key, value);
        }
        let mtu = mtu.to_string();
        // ip link add BR type bridge; ip link set BR mtu MTU up; ip addr add 10.N.0.1/24 dev BR
        if ipv6 {
            // As Docker does, with a MAC of its own: a bridge would take its lowest port's
            // otherwise, and the gateway's MAC would change under its neighbours.
            let mac = format!("02:42:fe:00:00:{index:02x}");
            net.host.ip(&[
                "link",
                "add",
                &net.bridge,
                "address",
                &mac,
                "type",
                "bridge",
            ]);
        } else {
            net.host.ip(&["link", "add", &net.bridge, "type", "bridge"]);
        }
        net.host
            .ip(&["link", "set", &net.bridge, "mtu", &mtu, "up"]);
        net.host
            .ip(&["addr", "add", &net.cidr(net.gateway), "dev", &net.bridge]);

        net.attach(net.peer.name(), "eth0", net.mtu);
        net.peer
            .ip(&["addr", "add", &net.cidr(net.peer_ip), "dev", "eth0"]);
        net.peer.ip(&["link", "set", "eth0", "up"]);
        net.peer
            .ip(&["route", "add", "default", "via", &net.gateway.to_string()]);
        if ipv6 {
            net.add_ipv6();
        }
        net
    }

    /// The IPv6 side (see [`Net6`]): addresses without duplicate address detection, as Docker
    /// adds them, and forwarding in the host namespace.
    fn add_ipv6(&mut self) {
        let n = u16::from(self.index);
        let gateway = Ipv6Addr::new(0xfd00, n, 0, 0, 0, 0, 0, 1);
        let peer_ip = Ipv6Addr::new(0xfd00, n, 0, 0, 0, 0, 0, u16::from(PEER_HOST));
        let far = Ipv6Addr::new(0xfd00, 0xff, n, 0, 0, 0, 0, 1);
        for (key, value) in [
            ("net.ipv6.conf.all.forwarding", "1"),
            ("net.ipv6.conf.all.accept_redirects", "0"),
        ] {
            self.host.sysctl(key, value);
        }
        // ip -6 addr add fd00:N::1/64 dev BR nodad; ip -6 addr add fd00:ff:N::1/128 dev lo
        self.host.ip(&[
            "-6",
            "addr",
            "add",
            &format!("{gateway}/64"),
            "dev",
            &self.bridge,
            "nodad",
        ]);
        self.host
            .ip(&["-6", "addr", "add", &format!("{far}/128"), "dev", "lo"]);
        self.peer.ip(&[
            "-6",
            "addr",
            "add",
            &format!("{peer_ip}/64"),
            "dev",
            "eth0",
            "nodad",
        ]);
        self.peer
            .ip(&["-6", "route", "add", "default", "via", &gateway.to_string()]);
        let gateway_mac = self
            .host
            .exec_ok(&format!("cat /sys/class/net/{}/address", self.bridge))
            .trim()
            .to_string();
        // The bridge gets its link-local address once it is up with a port; on a loaded
        // machine that can come a moment after the peer's port.
        let deadline = Instant::now() + Duration::from_secs(10);
        let gateway_ll: Ipv6Addr = loop {
            let found = self
                .host
                .exec_ok(&format!(
                    "ip -6 -o addr show dev {} scope link | awk '{{print $4}}'",
                    self.bridge
                ))
                .trim()
                .split('/')
                .next()
                .and_then(|a| a.parse().ok());
            match found {
                Some(ll) => break ll,
                None if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                None => panic!(
                    "the bridge {} has no link-local address after 10 s",
                    self.bridge
                ),
            }
        };
        self.v6 = Some(Net6 {
            gateway,
            prefix: 64,
            peer_ip,
            far,
            gateway_mac,
            gateway_ll,
        });
    }

    /// The IPv6 side; panics for a network made without one.
    pub fn net6(&self) -> &Net6 {
        self.v6
            .as_ref()
            .expect("an IPv6 network (Network::dual_stack)")
    }

    /// True when the peer gets at least one answer of three IPv6 pings to `addr`.
    pub fn peer_ping6(&self, addr: Ipv6Addr) -> bool {
        self.peer_exec(&format!("ping -6 -n -q -c 3 -i 0.2 -W 1 {addr}"))
            .success()
    }

    /// Starts `tcpdump` on the peer's NIC with the capture filter `filter` (a neighbour on the
    /// network that listens); returns once it listens. Its [`Listener::stop`] says what it heard.
    pub fn peer_listen(&self, filter: &str) -> Listener {
        if !super::cmd::run(&["sh", "-c", "command -v tcpdump"]).success() {
            super::cmd::run_ok_for(
                &["apt-get", "install", "-y", "tcpdump"],
                super::cmd::BUILD_TIMEOUT,
            );
        }
        let mut command = std::process::Command::new("ip");
        command
            .args(["netns", "exec", self.peer.name(), "tcpdump"])
            .args(["-i", "eth0", "-n", "-e", "-l", "-v", filter]);
        let process = super::process::Process::spawn(command);
        assert!(
            process
                .stderr()
                .wait_for("listening on", std::time::Duration::from_secs(20))
                .is_some(),
            "tcpdump did not start\n{}",
            process.tails()
        );
        Listener { process }
    }

    /// Makes the bridge answer for [`CALICO_GATEWAY6`] (as Calico's host side does), beside its
    /// own link-local address.
    pub fn answer_for_calico_gateway6(&self) {
        // ip -6 addr add fe80::ecee:eeff:feee:eeee/64 dev BR nodad
        self.host.ip(&[
            "-6",
            "addr",
            "add",
            &format!("{CALICO_GATEWAY6}/64"),
            "dev",
            &self.bridge,
            "nodad",
        ]);
    }

    /// 10.N.0.`host`.
    pub fn addr(&self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, self.index, 0, host)
    }

    /// `addr/24`.
    pub fn cidr(&self, addr: Ipv4Addr) -> String {
        format!("{addr}/{}", self.prefix)
    }

    /// 10.N.0.0/24.
    pub fn subnet(&self) -> String {
        format!("10.{}.0.0/{}", self.index, self.prefix)
    }

    /// The host namespace (bridge and gateway).
    pub fn host_ns(&self) -> &Netns {
        &self.host
    }

    /// The peer namespace.
    pub fn peer_ns(&self) -> &Netns {
        &self.peer
    }

    /// Runs `sh -c SCRIPT` in the host namespace (where the bridge and gateway are).
    pub fn host_exec(&self, script: &str) -> CmdOutput {
        self.host.exec(script)
    }

    /// Runs `sh -c SCRIPT` in the peer namespace, e.g. `ping -c1 10.1.0.2` or `ip neigh`.
    pub fn peer_exec(&self, script: &str) -> CmdOutput {
        self.peer.exec(script)
    }

    /// True when the peer gets at least one answer of three pings to `addr` (about 1.5 s at most).
    pub fn peer_ping(&self, addr: Ipv4Addr) -> bool {
        self.peer_exec(&format!("ping -n -q -c 3 -i 0.2 -W 1 {addr}"))
            .success()
    }

    /// The MAC address the peer's neighbour table holds for `addr` (who answered its ARP).
    pub fn peer_neighbour_mac(&self, addr: Ipv4Addr) -> Option<String> {
        // ip neigh show ADDR → "10.1.0.2 dev eth0 lladdr 02:42:0a:01:00:02 REACHABLE"
        let out = self.peer_exec(&format!("ip neigh show {addr}"));
        let mut words = out.stdout.split_whitespace();
        words.find(|w| *w == "lladdr")?;
        words.next().map(str::to_owned)
    }

    /// The MAC the peer's neighbour table holds for `addr` (IPv4 or IPv6).
    pub fn peer_neighbour_mac_of(&self, addr: &str) -> Option<String> {
        let out = self.peer_exec(&format!("ip neigh show {addr}"));
        let mut words = out.stdout.split_whitespace();
        words.find(|w| *w == "lladdr")?;
        words.next().map(str::to_owned)
    }

    /// Forgets the peer's neighbour entries, so that the next packet asks ARP again.
    pub fn peer_flush_neighbours(&self) {
        self.peer.exec_ok("ip neigh flush dev eth0");
    }

    /// Makes the host answer ARP for [`K8S_GATEWAY`] by putting it on the bridge (as Calico's
    /// host side answers for it). Idempotent.
    pub fn answer_for_k8s_gateway(&self) {
        if !self.answers_k8s_gateway.swap(true, Ordering::SeqCst) {
            // ip addr add 169.254.1.1/32 dev BR
            let gateway = format!("{K8S_GATEWAY}/32");
            self.host
                .ip(&["addr", "add", &gateway, "dev", &self.bridge]);
        }
    }

    /// Creates a veth pair: a port on the bridge, and `name` (MTU `mtu`, down) in namespace
    /// `target`. Returns the port's name.
    pub(super) fn attach(&self, target: &str, name: &str, mtu: u32) -> String {
        let n = self.ports.fetch_add(1, Ordering::Relaxed);
        let port = ifname(&self.id, &format!("p{n}"));
        let mtu = mtu.to_string();
        // ip link add PORT type veth peer name NAME netns TARGET
        self.host.ip(&[
            "link", "add", &port, "type", "veth", "peer", "name", name, "netns", target,
        ]);
        // ip link set PORT mtu MTU master BR up
        self.host.ip(&[
            "link",
            "set",
            &port,
            "mtu",
            &mtu,
            "master",
            &self.bridge,
            "up",
        ]);
        super::cmd::run_ok(&["ip", "-n", target, "link", "set", name, "mtu", &mtu]);
        port
    }
}
