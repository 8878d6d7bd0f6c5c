//! A container's network namespace, with NICs set up the way Docker and Kubernetes set them up.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Mutex;

use super::cmd::CmdOutput;
use super::names::unique_id;
use super::netns::Netns;
use super::network::{CALICO_GATEWAY6, K8S_GATEWAY, Network};

/// How to attach one NIC; unset fields get Docker's choices.
#[derive(Debug, Clone, Default)]
pub struct NicSpec {
    name: Option<String>,
    mac: Option<String>,
    addrs: Vec<String>,
    addrs6: Vec<String>,
    mtu: Option<u32>,
}

impl NicSpec {
    /// A NIC with no address yet.
    pub fn new() -> NicSpec {
        NicSpec::default()
    }

    /// What `docker run --network NET` gives: 10.N.0.`host`/24 and MAC 02:42:0a:NN:00:HH.
    pub fn docker(net: &Network, host: u8) -> NicSpec {
        NicSpec::new().addr(&net.cidr(net.addr(host)))
    }

    /// A Calico-style pod address: 10.N.0.`host`/32 (pair it with
    /// [`Container::set_k8s_default_route`]).
    pub fn k8s(net: &Network, host: u8) -> NicSpec {
        NicSpec::new().addr(&format!("{}/32", net.addr(host)))
    }

    /// The interface name (default: the lowest free `ethN`).
    pub fn name(mut self, name: &str) -> NicSpec {
        self.name = Some(name.to_owned());
        self
    }

    /// The MAC address (default: Docker's 02:42 + the first IPv4 address).
    pub fn mac(mut self, mac: &str) -> NicSpec {
        self.mac = Some(mac.to_owned());
        self
    }

    /// One more IPv4 address, as `ADDR/PREFIX`; Kubernetes can give a NIC two.
    pub fn addr(mut self, cidr: &str) -> NicSpec {
        self.addrs.push(cidr.to_owned());
        self
    }

    /// One more IPv6 address, as `ADDR/PREFIX`, added as Docker adds them (`nodad`).
    pub fn addr6(mut self, cidr: &str) -> NicSpec {
        self.addrs6.push(cidr.to_owned());
        self
    }

    /// The MTU (default: the network's).
    pub fn mtu(mut self, mtu: u32) -> NicSpec {
        self.mtu = Some(mtu);
        self
    }
}

/// A NIC as it was attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nic {
    /// `eth0`, `eth1`, … inside the container.
    pub name: String,
    pub mac: String,
    /// `ADDR/PREFIX`, in the order they were added.
    pub addrs: Vec<String>,
    /// IPv6 `ADDR/PREFIX`, in the order they were added.
    pub addrs6: Vec<String>,
    pub mtu: u32,
    /// The other end of the veth, on the network's bridge.
    pub port: String,
}

impl Nic {
    /// The first address, without its prefix.
    pub fn ip(&self) -> Ipv4Addr {
        let first = self.addrs.first().expect("NIC has an address");
        first
            .split('/')
            .next()
            .and_then(|a| a.parse().ok())
            .expect("ADDR/PREFIX")
    }

    /// The first IPv6 address, without its prefix.
    pub fn ip6(&self) -> Ipv6Addr {
        let first = self.addrs6.first().expect("NIC has an IPv6 address");
        first
            .split('/')
            .next()
            .and_then(|a| a.parse().ok())
            .expect("ADDR/PREFIX")
    }
}

/// A container's network namespace, deleted on drop (after every NIC in it).
#[derive(Debug)]
pub struct Container {
    id: String,
    ns: Netns,
    nics: Mutex<Vec<Nic>>,
}

impl Container {
    /// An empty namespace with only `lo`, like `docker create --network none`.
    pub fn new() -> Container {
        Container::build(false)
    }

    /// A container on a Docker network: `eth0` with 10.N.0.2/24 and its Docker MAC, the
    /// default route through the network's gateway.
    pub fn docker_on(net: &Network) -> (Container, Nic) {
        let ctr = Container::new();
        let nic = ctr.add_nic(net, NicSpec::docker(net, 2));
        ctr.set_default_route(net.gateway, "eth0");
        (ctr, nic)
    }

    /// An empty namespace with only `lo` and IPv6 enabled, like a container on a Docker
    /// `--ipv6` network (or a dual-stack pod) before its NICs are attached.
    pub fn with_ipv6() -> Container {
        Container::build(true)
    }

    fn build(ipv6: bool) -> Container {
        let id = unique_id();
        let ns = if ipv6 {
            Netns::create_ipv6(&id, "ctr")
        } else {
            Netns::create(&id, "ctr")
        };
        Container {
            id,
            ns,
            nics: Mutex::new(Vec::new()),
        }
    }

    /// The unique id this container's names are made from; also its default hostname.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The container's network namespace.
    pub fn ns(&self) -> &Netns {
        &self.ns
    }

    /// Attaches a NIC to `net`, as `docker network connect` does: a veth whose other end is a port
    /// of the network's bridge, renamed to `ethN`, with its MAC, MTU and addresses, up. No route
    /// is added but the kernel's prefix routes. May be called while vminit runs.
    pub fn add_nic(&self, net: &Network, spec: NicSpec) -> Nic {
        let mut nics = self.nics.lock().expect("nic list lock");
        let name = spec.name.unwrap_or_else(|| {
            (0..)
                .map(|k| format!("eth{k}"))
                .find(|n| nics.iter().all(|nic| &nic.name != n))
                .expect("a free ethN")
        });
        let mtu = spec.mtu.unwrap_or(net.mtu);
        let mac = spec.mac.unwrap_or_else(|| match spec.addrs.first() {
            Some(cidr) => docker_mac(cidr),
            None => format!("02:42:ff:00:00:{:02x}", nics.len()),
        });
        let port = net.attach(self.ns.name(), &name, mtu);
        // ip link set ethN address MAC
        self.ns.ip(&["link", "set", &name, "address", &mac]);
        for cidr in &spec.addrs {
            // ip addr add ADDR/PREFIX brd + dev ethN (Docker's netlink library sets the
            // broadcast address of prefixes shorter than /31 too)
            let prefix: u8 = cidr
                .rsplit('/')
                .next()
                .and_then(|p| p.parse().ok())
                .unwrap_or(32);
            if prefix < 31 {
                self.ns.ip(&["addr", "add", cidr, "brd", "+", "dev", &name]);
            } else {
                self.ns.ip(&["addr", "add", cidr, "dev", &name]);
            }
        }
        for cidr in &spec.addrs6 {
            // ip -6 addr add ADDR/PREFIX dev ethN nodad (as Docker's libnetwork does)
            self.ns
                .ip(&["-6", "addr", "add", cidr, "dev", &name, "nodad"]);
        }
        self.ns.ip(&["link", "set", &name, "up"]);
        // The bridge's side comes up asynchronously; a snapshot taken before that differs
        // from one taken after only by NO-CARRIER.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
        while self
            .ns
            .ip(&["-o", "link", "show", "dev", &name])
            .contains("NO-CARRIER")
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let nic = Nic {
            name,
            mac,
            addrs: spec.addrs,
            addrs6: spec.addrs6,
            mtu,
            port,
        };
        nics.push(nic.clone());
        nic
    }

    /// Gives the container an `eth0` as `docker network create -d macvlan -o parent=HOSTNIC`
    /// does: a bridge-mode macvlan on a NIC of the host (here the network's bridge), moved
    /// into the container, with `mac` and the address `cidr`, up. (It has no `port`.)
    pub fn add_macvlan_nic(&self, net: &Network, mac: &str, cidr: &str) -> Nic {
        let made = format!("mv{}", unique_id());
        let moved = net.host_exec(&format!(
            "ip link add link {} name {made} type macvlan mode bridge && ip link set {made} netns {}",
            net.bridge,
            self.ns.name()
        ));
        assert!(moved.success(), "{moved}");
        self.ns.ip(&["link", "set", &made, "name", "eth0"]);
        self.ns.ip(&["link", "set", "eth0", "address", mac]);
        self.ns
            .ip(&["addr", "add", cidr, "brd", "+", "dev", "eth0"]);
        self.ns.ip(&["link", "set", "eth0", "up"]);
        Nic {
            name: "eth0".into(),
            mac: mac.into(),
            addrs: vec![cidr.into()],
            addrs6: Vec::new(),
            mtu: 1500,
            port: String::new(),
        }
    }

    /// Detaches the NIC `name`, as `docker network disconnect` does: its veth pair is deleted
    /// (and with it whatever was stacked on it). May be called while vminit runs.
    pub fn remove_nic(&self, name: &str) {
        let mut nics = self.nics.lock().expect("nic list lock");
        // ip link del NAME
        self.ns.ip(&["link", "del", name]);
        nics.retain(|n| n.name != name);
    }

    /// The NICs attached so far, in the order they were attached.
    pub fn nics(&self) -> Vec<Nic> {
        self.nics.lock().expect("nic list lock").clone()
    }

    /// `ip route add default via VIA dev DEV`, as Docker does for the network that holds the
    /// container's gateway.
    pub fn set_default_route(&self, via: Ipv4Addr, dev: &str) {
        self.ns.ip(&[
            "route",
            "add",
            "default",
            "via",
            &via.to_string(),
            "dev",
            dev,
        ]);
    }

    /// The Calico pod routes: `169.254.1.1 dev DEV scope link` and `default via 169.254.1.1 dev
    /// DEV onlink`; `net`'s host answers ARP for 169.254.1.1 from then on.
    pub fn set_k8s_default_route(&self, net: &Network, dev: &str) {
        net.answer_for_k8s_gateway();
        let gateway = K8S_GATEWAY.to_string();
        self.ns
            .ip(&["route", "add", &gateway, "dev", dev, "scope", "link"]);
        self.ns.ip(&[
            "route", "add", "default", "via", &gateway, "dev", dev, "onlink",
        ]);
    }

    /// `ip -6 route add default via VIA dev DEV`, as Docker does for an `--ipv6` network that
    /// holds the container's gateway.
    pub fn set_default_route6(&self, via: Ipv6Addr, dev: &str) {
        self.ns.ip(&[
            "-6",
            "route",
            "add",
            "default",
            "via",
            &via.to_string(),
            "dev",
            dev,
        ]);
    }

    /// Calico's IPv6 pod route: `default via fe80::ecee:eeff:feee:eeee dev DEV`; `net`'s bridge
    /// answers for that address from then on.
    pub fn set_calico_default_route6(&self, net: &Network, dev: &str) {
        net.answer_for_calico_gateway6();
        self.ns.ip(&[
            "-6",
            "route",
            "add",
            "default",
            "via",
            &CALICO_GATEWAY6.to_string(),
            "dev",
            dev,
        ]);
    }

    /// Adds `pairs` veth pairs (`vaI`, `vbI`), each end up with an address of its own
    /// (10.200.I.1/24, 10.201.I.1/24): 2 × `pairs` more NICs for vminit to take.
    pub fn add_veth_pairs(&self, pairs: usize) {
        let mut script = String::from("set -e\n");
        for i in 0..pairs {
            script += &format!(
                "ip link add va{i} type veth peer name vb{i}
                ip addr add 10.200.{i}.1/24 dev va{i}
                ip addr add 10.201.{i}.1/24 dev vb{i}
                ip link set va{i} up
                ip link set vb{i} up\n"
            );
        }
        let made = self.exec(&script);
        assert!(made.success(), "{made}");
    }

    /// Runs `sh -c SCRIPT` in the container's network namespace (not in vminit's other
    /// namespaces; see `Vminit::exec_inside` for that).
    pub fn exec(&self, script: &str) -> CmdOutput {
        self.ns.exec(script)
    }

    /// The container's links, addresses, routes of every table, policy rules, permanent
    /// neighbours and every link's IPv4 settings (`net.ipv4.conf.*`) now, normalised so that
    /// two snapshots compare equal when nothing changed.
    pub fn net_state(&self) -> NetState {
        // An IPv6 address put back runs duplicate address detection (about a second) before it
        // is usable: wait for it, as a user would, rather than compare a passing state.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while self.ns.ip(&["-6", "addr", "show"]).contains("tentative")
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        NetState {
            links: normalise(&self.ns.ip(&["-d", "link", "show"])),
            addrs: normalise(&self.ns.ip(&["addr", "show"])),
            routes: normalise(&self.ns.ip(&["route", "show", "table", "all"])),
            rules: normalise(&self.ns.ip(&["rule", "show"])),
            neighbours: normalise(&self.ns.ip(&["neigh", "show", "nud", "permanent"])),
            routes6: normalise(&self.ns.ip(&["-6", "route", "show", "table", "all"])),
            rules6: normalise(&self.ns.ip(&["-6", "rule", "show"])),
            // sysctl -a -r '^net.ipv4.conf.' (per namespace: /proc/sys/net is the reader's)
            ipv4_conf: self
                .ns
                .exec_ok("cd /proc/sys/net/ipv4/conf && grep -r . . | sort"),
        }
    }
}

/// A snapshot of a namespace's network configuration (`ip -d link`, `ip addr` (both families),
/// `ip route show table all`, `ip rule`, `ip neigh show nud permanent` (both families), `ip -6
/// route show table all`, `ip -6 rule`, `net.ipv4.conf.*`), for `assert_eq!(before, after)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetState {
    pub links: String,
    pub addrs: String,
    pub routes: String,
    pub rules: String,
    pub neighbours: String,
    pub routes6: String,
    pub rules6: String,
    /// `net.ipv4.conf.LINK.KEY` of every link (and `all`, `default`), one `./LINK/KEY:VALUE` a
    /// line: vminit changes `arp_ignore` of a macvlan NIC and must put it back.
    pub ipv4_conf: String,
}

/// Whitespace collapsed, address lifetimes and route expiry times (which count down) dropped.
fn normalise(text: &str) -> String {
    text.lines()
        .filter(|line| !line.contains("valid_lft"))
        .map(|line| {
            let mut words: Vec<&str> = line.split_whitespace().collect();
            if let Some(i) = words.iter().position(|w| *w == "expires") {
                words.drain(i..(i + 2).min(words.len()));
            }
            words.join(" ")
        })
        .filter(|line| !line.is_empty())
        .map(|line| line + "\n")
        .collect()
}

/// Docker's MAC for an address: 02:42 followed by the four bytes of the IPv4 address.
fn docker_mac(cidr: &str) -> String {
    let addr: Ipv4Addr = cidr
        .split('/')
        .next()
        .and_then(|a| a.parse().ok())
        .expect("ADDR/PREFIX");
    let [a, b, c, d] = addr.octets();
    format!("02:42:{a:02x}:{b:02x}:{c:02x}:{d:02x}")
}
