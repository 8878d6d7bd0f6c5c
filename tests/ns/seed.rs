//! The cloud-init seed (`CLOUD_INIT_*`): cloud-init itself (Debian's package) judges what vminit
//! writes — its schema validator accepts the user-data, its network converter and netplan render
//! the network-config per MAC — and a real guest finds the seed by its label, read-only, with the
//! keys, hostname and network the inputs asked for, the same network DHCP gives it, and an
//! instance id that survives a restart of the container.

use crate::common;
use crate::common::stop;

// The very module vminit is built from: std only, so it compiles here as it is.
#[path = "../../src/vm/seed.rs"]
#[allow(clippy::module_inception)] // the test module of the seed holds the seed module itself
#[allow(dead_code)]
mod seed;

use std::fs;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use common::{
    Cidata, CmdOutput, Container, GuestNic, GuestReport, Network, NicSpec, ScratchDisk, Vminit,
    VminitBuilder, run, run_ok, test_guest, unique_id, vminit_binary,
};

/// TCG boots the guest to its report in a few seconds; parallel tests share two cores.
const BOOT: Duration = Duration::from_secs(120);
/// Debian's own Python, with python3-yaml and cloud-init's modules (not a pyenv on PATH).
const PYTHON: &str = "/usr/bin/python3";

const ED25519: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAPFPMcJf+JBN2T9sgjx88buoVWz0EfiCGaLNOJ3CJYb alice@laptop";
const RSA: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQCYJvBA3C7n2xjgjvpU6m2PzT92sUDZfX0lJYGzhyv9dYBuLS0vMPuf5TBe2qOtLmiJ8IzoFzEVLsP19oKBNyc2o2aV09Fgl0vgetvVZzUF5P4d42ZkqBGfilRXkIrILLMGXyATEznyNI/CxSnrAoSpPRMHN5Xk8ac9EhBQvYqYxQ== bob: the #1 \"admin\"";
const ECDSA: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBN8lpx622PjIe/fpKC8QU5ANyabRPk/QIPGi0gsaWxqtVCjm2t/A1G3EqYGw9OPG46GZ4DKkwx625zPStVNadyc= carol";
const HASH: &str = "$6$rounds=4096$saltsalt$0bfsK6Dz0k0v0J0x5Vv2b1kXo1mW6bWz3g5tqZ8l6kQ1v3b6Y2x7r2F0e9yq4bq8rW1v5x2c3d4e5f6g7h8i9j.";

// ---------------------------------------------------------------------------------------------
// Tools: cloud-init, netplan and PyYAML from Debian, installed on first use.

/// Debian's cloud-init (schema validator, network converter), netplan.io (what Debian 12+ and
/// Ubuntu cloud images render network-config with) and python3-yaml, installed when missing.
/// A cloud-init installed here is disabled first (/etc/cloud/cloud-init.disabled), so that it
/// never configures this machine at boot.
fn tools() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let missing: Vec<&str> = ["cloud-init", "netplan.io", "python3-yaml"]
            .into_iter()
            .filter(|p| !run(&["dpkg", "-s", p]).success())
            .collect();
        if missing.is_empty() {
            return;
        }
        if missing.contains(&"cloud-init") && !Path::new("/etc/cloud/cloud-init.disabled").exists()
        {
            fs::create_dir_all("/etc/cloud").expect("create /etc/cloud");
            fs::write("/etc/cloud/cloud-init.disabled", "").expect("disable cloud-init here");
        }
        run_ok(&[
            "sh",
            "-c",
            &format!(
                "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends {}",
                missing.join(" ")
            ),
        ]);
    });
}

/// A directory for one test's files, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{}-seed", unique_id()));
        fs::create_dir_all(&dir).expect("create a scratch directory");
        Scratch(dir)
    }

    /// Writes `bytes` to `name` in the directory and returns its path.
    fn file(&self, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
        let path = self.0.join(name);
        fs::write(&path, bytes).expect("write a scratch file");
        path
    }

    fn path(&self, name: &str) -> String {
        self.0.join(name).to_string_lossy().into_owned()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// `cloud-init schema --config-file FILE`: its verdict.
fn cloud_init_schema(file: &Path) -> CmdOutput {
    tools();
    run(&[
        "cloud-init",
        "schema",
        "--config-file",
        &file.to_string_lossy(),
    ])
}

/// A value read from a YAML file by PyYAML.
#[derive(Debug, Clone, PartialEq)]
enum Yaml {
    Missing,
    Str(String),
    List(usize),
    Map(Vec<String>),
    Other(String),
}

/// The value at `path` (keys and list indexes joined by `.`, e.g. `users.0.name`) of the YAML
/// document in `file`, as PyYAML's safe_load reads it.
fn yaml_get(file: &Path, path: &str) -> Yaml {
    tools();
    const SCRIPT: &str = r#"
import sys, yaml
doc = yaml.safe_load(open(sys.argv[1], 'rb'))
for part in [p for p in sys.argv[2].split('.') if p]:
    if isinstance(doc, list) and part.isdigit() and int(part) < len(doc):
        doc = doc[int(part)]
    elif isinstance(doc, dict) and part in doc:
        doc = doc[part]
    else:
        doc = None
        break
if doc is None:
    print('missing')
elif isinstance(doc, str):
    print('str:' + doc.encode('utf-8').hex())
elif isinstance(doc, list):
    print('list:%d' % len(doc))
elif isinstance(doc, dict):
    print('map:' + ','.join(sorted(str(k) for k in doc)))
else:
    print('other:' + repr(doc))
"#;
    let out = run_ok(&[PYTHON, "-c", SCRIPT, &file.to_string_lossy(), path]);
    let out = out.trim();
    match out.split_once(':') {
        Some(("str", hex)) => Yaml::Str(String::from_utf8(unhex(hex)).expect("UTF-8")),
        Some(("list", n)) => Yaml::List(n.parse().expect("a length")),
        Some(("map", keys)) => Yaml::Map(keys.split(',').map(str::to_owned).collect()),
        Some(("other", v)) => Yaml::Other(v.to_owned()),
        _ => Yaml::Missing,
    }
}

fn s(v: &str) -> Yaml {
    Yaml::Str(v.to_owned())
}

fn unhex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect()
}

/// One systemd-networkd unit: its sections in order, each with its `Key=Value` lines.
#[derive(Debug, Clone)]
struct Unit {
    name: String,
    sections: Vec<(String, Vec<(String, String)>)>,
}

impl Unit {
    /// Every value of `key` in every section named `section`.
    fn values(&self, section: &str, key: &str) -> Vec<String> {
        self.sections
            .iter()
            .filter(|(name, _)| name == section)
            .flat_map(|(_, lines)| lines.iter().filter(|(k, _)| k == key))
            .flat_map(|(_, v)| v.split_whitespace().map(str::to_owned))
            .collect()
    }

    /// The `[Route]` sections as (destination, gateway) pairs, the gateway `0.0.0.0` for an
    /// on-link route (no gateway, a /32 route via its own destination, on-link, or via the
    /// NIC's own address).
    fn routes(&self) -> Vec<(String, String)> {
        self.sections
            .iter()
            .filter(|(name, _)| name == "Route")
            .map(|(_, lines)| {
                let get = |key: &str| {
                    lines
                        .iter()
                        .find(|(k, _)| k == key)
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default()
                };
                let dst = get("Destination");
                let gw = get("Gateway");
                // A host route via the NIC's own address is on-link: the kernel resolves the
                // host itself.
                let own = self
                    .values("Network", "Address")
                    .iter()
                    .chain(self.values("Address", "Address").iter())
                    .any(|a| a.split('/').next() == Some(gw.as_str()));
                let on_link = gw.is_empty() || format!("{gw}/32") == dst || own;
                (dst, if on_link { "0.0.0.0".into() } else { gw })
            })
            .collect()
    }
}

/// The `*.network` units under `dir`.
fn network_units(dir: &Path) -> Vec<Unit> {
    let mut units = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "network") {
                let text = fs::read_to_string(&path).expect("read a unit");
                let mut sections: Vec<(String, Vec<(String, String)>)> = Vec::new();
                for line in text.lines().map(str::trim) {
                    if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                        sections.push((name.to_owned(), Vec::new()));
                    } else if let (Some((k, v)), Some((_, lines))) =
                        (line.split_once('='), sections.last_mut())
                    {
                        lines.push((k.to_owned(), v.to_owned()));
                    }
                }
                units.push(Unit {
                    name: path.to_string_lossy().into_owned(),
                    sections,
                });
            }
        }
    }
    units
}

/// cloud-init's network converter renders `network_config` for a Debian guest with `renderer`
/// (`netplan`, `networkd`, `eni`) into `out`.
fn net_convert(network_config: &Path, renderer: &str, out: &Path) -> CmdOutput {
    net_convert_for("debian", network_config, renderer, out)
}

/// The same for a guest of `distro` (`rhel` for the `sysconfig` renderer).
fn net_convert_for(distro: &str, network_config: &Path, renderer: &str, out: &Path) -> CmdOutput {
    tools();
    run(&[
        "cloud-init",
        "devel",
        "net-convert",
        "-p",
        &network_config.to_string_lossy(),
        "-k",
        "yaml",
        "-d",
        &out.to_string_lossy(),
        "-D",
        distro,
        "-O",
        renderer,
    ])
}

/// The systemd-networkd units a Debian 12+/Ubuntu guest ends with: cloud-init's netplan
/// renderer, then `netplan generate`.
fn netplan_units(network_config: &Path, out: &Path) -> Vec<Unit> {
    let converted = net_convert(network_config, "netplan", out);
    assert!(converted.success(), "{converted}");
    let generated = run(&["netplan", "generate", "--root-dir", &out.to_string_lossy()]);
    assert!(generated.success(), "{generated}");
    network_units(&out.join("run/systemd/network"))
}

/// The unit that matches `mac` (netplan: PermanentMACAddress=, cloud-init: MACAddress=).
fn unit_for<'u>(units: &'u [Unit], mac: &str) -> &'u Unit {
    units
        .iter()
        .find(|u| {
            u.values("Match", "PermanentMACAddress")
                .iter()
                .chain(u.values("Match", "MACAddress").iter())
                .any(|m| m == mac)
        })
        .unwrap_or_else(|| panic!("no unit matches {mac}: {units:#?}"))
}

// ---------------------------------------------------------------------------------------------
// What vminit writes, judged by cloud-init and PyYAML.

fn docker_nics() -> Vec<seed::SeedNic> {
    let route = |net: [u8; 4], prefix, gateway: Option<[u8; 4]>| seed::SeedRoute {
        network: Ipv4Addr::from(net),
        prefix,
        gateway: gateway.map(Ipv4Addr::from),
    };
    vec![
        seed::SeedNic {
            name: "eth0".into(),
            mac: "02:42:0a:01:00:02".into(),
            addr: Some((Ipv4Addr::new(10, 1, 0, 2), 24)),
            mtu: 1450,
            routes: vec![
                route([169, 254, 0, 2], 32, None),
                route([10, 7, 0, 0], 16, Some([10, 1, 0, 254])),
                route([0, 0, 0, 0], 0, Some([10, 1, 0, 1])),
            ],
            dns: vec![Ipv4Addr::new(169, 254, 0, 2), Ipv4Addr::new(10, 96, 0, 10)],
            search: vec!["example.test".into(), "svc.cluster.local".into()],
            v6: None,
        },
        seed::SeedNic {
            name: "eth1".into(),
            mac: "02:42:0a:02:00:05".into(),
            addr: Some((Ipv4Addr::new(10, 2, 0, 5), 24)),
            mtu: 1400,
            routes: vec![route([169, 254, 0, 5], 32, None)],
            dns: vec![],
            search: vec![],
            v6: None,
        },
    ]
}

/// A Calico pod: a /32 address, its gateway 169.254.1.1 outside the subnet, on-link.
fn pod_nic() -> seed::SeedNic {
    seed::SeedNic {
        name: "eth0".into(),
        mac: "0a:58:0a:f4:01:07".into(),
        addr: Some((Ipv4Addr::new(10, 244, 1, 7), 32)),
        mtu: 1480,
        routes: vec![
            seed::SeedRoute {
                network: Ipv4Addr::new(169, 254, 1, 7),
                prefix: 32,
                gateway: None,
            },
            seed::SeedRoute {
                network: Ipv4Addr::new(169, 254, 1, 1),
                prefix: 32,
                gateway: None,
            },
            seed::SeedRoute {
                network: Ipv4Addr::UNSPECIFIED,
                prefix: 0,
                gateway: Some(Ipv4Addr::new(169, 254, 1, 1)),
            },
        ],
        dns: vec![Ipv4Addr::new(10, 96, 0, 10)],
        search: vec!["default.svc.cluster.local".into()],
        v6: None,
    }
}

fn login_seed(vars: &[(&str, &str)]) -> seed::Seed {
    let env = |k: &str| {
        vars.iter()
            .find(|(var, _)| *var == k)
            .map(|(_, v)| v.to_string())
    };
    let request = seed::request_from_env(&env)
        .expect("valid inputs")
        .expect("a seed");
    seed::seed(&request, None, None, "3f2a9c1b7d0e").expect("a seed")
}

#[test]
fn cloud_init_schema_accepts_the_user_data_vminit_writes() {
    let dir = Scratch::new();
    let keys = format!("{ED25519}\nfrom=\"10.0.0.0/8,192.168.1.1\" {RSA}\n{ECDSA}");
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("keys-only", vec![(seed::SSH_KEYS, keys.as_str())]),
        (
            "user",
            vec![
                (seed::USER, "alice"),
                (seed::PASSWORD_HASH, HASH),
                (seed::SSH_KEYS, keys.as_str()),
            ],
        ),
        ("user-locked", vec![(seed::USER, "bob_2")]),
        (
            "hostname-only",
            vec![(seed::HOSTNAME, "web-1.example.test")],
        ),
    ];
    for (name, vars) in cases {
        let file = dir.file(name, seed::user_data(&login_seed(&vars)));
        let verdict = cloud_init_schema(&file);
        assert!(
            verdict.success() && verdict.stdout.contains("Valid cloud-config"),
            "{name}: {verdict}"
        );
        assert_eq!(
            yaml_get(&file, "updates.network.when.0"),
            s("boot"),
            "{name}"
        );
    }
    // What PyYAML reads back is what was asked for, quotes, colons and hashes included.
    let file = dir.path("user");
    let file = Path::new(&file);
    assert_eq!(yaml_get(file, "users"), Yaml::List(1));
    assert_eq!(yaml_get(file, "users.0.name"), s("alice"));
    assert_eq!(yaml_get(file, "users.0.hashed_passwd"), s(HASH));
    assert_eq!(
        yaml_get(file, "users.0.lock_passwd"),
        Yaml::Other("False".into())
    );
    assert_eq!(yaml_get(file, "users.0.ssh_authorized_keys"), Yaml::List(3));
    assert_eq!(
        yaml_get(file, "users.0.ssh_authorized_keys.1"),
        s(&format!("from=\"10.0.0.0/8,192.168.1.1\" {RSA}"))
    );
    let keys_only = dir.0.join("keys-only");
    assert_eq!(yaml_get(&keys_only, "users"), Yaml::Missing);
    assert_eq!(yaml_get(&keys_only, "ssh_authorized_keys.2"), s(ECDSA));
}

#[test]
fn cloud_init_reapplies_vminit_network_config_on_every_boot() {
    // cloud-init applies network-config on the first boot of an instance only, unless the
    // user-data enables the boot event; the container's MACs may change while its id does not.
    let dir = Scratch::new();
    let file = dir.file(
        "user-data",
        seed::user_data(&login_seed(&[(seed::SSH_KEYS, ED25519)])),
    );
    const SCRIPT: &str = r#"
import sys, yaml
from cloudinit import helpers, stages
from cloudinit.event import EventScope, EventType
from cloudinit.sources.DataSourceNoCloud import DataSourceNoCloud
ds = DataSourceNoCloud(sys_cfg={}, distro=None, paths=helpers.Paths({}))
cfg = yaml.safe_load(open(sys.argv[1]))
print(stages.update_event_enabled(ds, cfg, EventType.BOOT, EventScope.NETWORK),
      stages.update_event_enabled(ds, {}, EventType.BOOT, EventScope.NETWORK))
"#;
    tools();
    let out = run_ok(&[PYTHON, "-c", SCRIPT, &file.to_string_lossy()]);
    assert_eq!(out.trim(), "True False", "with vminit's user-data, without");
}

#[test]
fn cloud_init_renders_the_network_config_per_mac_with_what_dhcp_would_give() {
    let dir = Scratch::new();
    let nics = docker_nics();
    let file = dir.file("network-config", seed::network_config(&nics));
    assert_eq!(yaml_get(&file, "version"), Yaml::Other("2".into()));
    assert_eq!(
        yaml_get(&file, "ethernets.eth1.match.macaddress"),
        s("02:42:0a:02:00:05")
    );

    // Netplan (Debian 12+, Ubuntu): every fact, per MAC.
    let units = netplan_units(&file, &dir.0.join("netplan"));
    assert_eq!(units.len(), 2, "{units:#?}");
    let eth0 = unit_for(&units, "02:42:0a:01:00:02");
    assert_eq!(
        eth0.values("Network", "Address"),
        ["10.1.0.2/24"],
        "{}",
        eth0.name
    );
    assert_eq!(eth0.values("Link", "MTUBytes"), ["1450"]);
    assert_eq!(eth0.values("Network", "DNS"), ["169.254.0.2", "10.96.0.10"]);
    assert_eq!(
        eth0.values("Network", "Domains"),
        ["example.test", "svc.cluster.local"]
    );
    assert_eq!(
        eth0.routes(),
        [
            ("169.254.0.2/32".into(), "0.0.0.0".into()),
            ("10.7.0.0/16".into(), "10.1.0.254".into()),
            ("0.0.0.0/0".into(), "10.1.0.1".into()),
        ]
    );
    assert_eq!(
        eth0.values("Route", "GatewayOnLink"),
        ["true", "true"],
        "the gateways' routes; the door's is via the guest's own address"
    );
    assert_eq!(
        eth0.values("Network", "DHCP"),
        Vec::<String>::new(),
        "static"
    );
    let eth1 = unit_for(&units, "02:42:0a:02:00:05");
    assert_eq!(eth1.values("Network", "Address"), ["10.2.0.5/24"]);
    assert_eq!(eth1.values("Link", "MTUBytes"), ["1400"]);
    assert_eq!(eth1.routes(), [("169.254.0.5/32".into(), "0.0.0.0".into())]);
    assert!(
        eth1.values("Route", "Destination")
            .iter()
            .all(|d| d != "0.0.0.0/0"),
        "one default route"
    );

    // cloud-init's own networkd renderer matches by MAC too.
    let out = dir.0.join("networkd");
    let converted = net_convert(&file, "networkd", &out);
    assert!(converted.success(), "{converted}");
    let units = network_units(&out);
    let eth0 = unit_for(&units, "02:42:0a:01:00:02");
    assert_eq!(eth0.values("Address", "Address"), ["10.1.0.2/24"]);
    assert_eq!(eth0.values("Link", "MTUBytes"), ["1450"]);

    // Its ENI renderer (ifupdown guests) does not fail on it: on-link host routes are written
    // as routes via themselves, since it cannot render a route without a gateway.
    let out = dir.0.join("eni");
    let converted = net_convert(&file, "eni", &out);
    assert!(converted.success(), "{converted}");
    let eni = fs::read_to_string(out.join("etc/network/interfaces.d/50-cloud-init"))
        .or_else(|_| fs::read_to_string(out.join("etc/network/interfaces")))
        .expect("an interfaces file");
    assert!(
        eni.contains("address 10.1.0.2/24") && eni.contains("mtu 1450"),
        "{eni}"
    );
    assert!(eni.contains("route add default gw 10.1.0.1"), "{eni}");
}

#[test]
fn a_pod_with_a_slash_32_address_gets_its_off_subnet_gateway_on_link() {
    let dir = Scratch::new();
    let file = dir.file("network-config", seed::network_config(&[pod_nic()]));
    let units = netplan_units(&file, &dir.0.join("netplan"));
    let pod = unit_for(&units, "0a:58:0a:f4:01:07");
    assert_eq!(pod.values("Network", "Address"), ["10.244.1.7/32"]);
    assert_eq!(
        pod.routes(),
        [
            ("169.254.1.7/32".into(), "0.0.0.0".into()),
            ("169.254.1.1/32".into(), "0.0.0.0".into()),
            ("0.0.0.0/0".into(), "169.254.1.1".into()),
        ]
    );
    assert_eq!(pod.values("Route", "GatewayOnLink"), ["true"]);
    let converted = net_convert(&file, "eni", &dir.0.join("eni"));
    assert!(converted.success(), "{converted}");
}

fn ip6(s: &str) -> Ipv6Addr {
    s.parse().expect("an IPv6 address")
}

/// A dual-stack container: eth0 on a Docker `--ipv6` network (both default routes, an IPv6
/// resolver), eth1 on an IPv6-only network with a route through another router.
fn dual_stack_nics() -> Vec<seed::SeedNic> {
    let mut eth0 = docker_nics().remove(0);
    eth0.v6 = Some(seed::SeedNic6 {
        addr: ip6("fd00:1::2"),
        prefix: 64,
        gateway: Some(ip6("fd00:1::1")),
        routes: vec![],
        dns: vec![ip6("fd00:1::53")],
        search: vec!["example.test".into()],
    });
    let eth1 = seed::SeedNic {
        name: "eth1".into(),
        mac: "02:42:ff:00:00:05".into(),
        addr: None,
        mtu: 1400,
        routes: vec![],
        dns: vec![],
        search: vec![],
        v6: Some(seed::SeedNic6 {
            addr: ip6("fd00:2::5"),
            prefix: 64,
            gateway: None,
            routes: vec![seed::SeedRoute6 {
                network: ip6("fd00:99::"),
                prefix: 64,
                gateway: Some(ip6("fd00:2::254")),
            }],
            dns: vec![],
            search: vec![],
        }),
    };
    vec![eth0, eth1]
}

/// Every file under `dir`, as one text (for what a renderer must never write).
fn all_text(dir: &Path) -> String {
    let out = run_ok(&[
        "sh",
        "-c",
        &format!("find {} -type f | xargs cat", dir.display()),
    ]);
    out.to_string()
}

/// The lines of the ENI stanza that starts with `head`, trimmed, up to the next blank line.
fn stanza(eni: &str, head: &str) -> Vec<String> {
    eni.lines()
        .skip_while(|l| *l != head)
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .map(|l| l.trim().to_owned())
        .collect()
}

/// The IPv6 default routes of networkd units: `Gateway=` of `[Network]` (netplan's rendering of
/// `gateway6`), and `[Route]`s to `::/0` or without a destination (cloud-init's).
fn ipv6_defaults(units: &[Unit]) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for u in units {
        for gw in u
            .values("Network", "Gateway")
            .into_iter()
            .filter(|g| g.contains(':'))
        {
            found.push((u.name.clone(), gw));
        }
        for (_, lines) in u.sections.iter().filter(|(name, _)| name == "Route") {
            let get = |key: &str| lines.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
            let gw = get("Gateway").unwrap_or_default();
            let default = matches!(get("Destination").as_deref(), None | Some("::/0"));
            if gw.contains(':') && default {
                found.push((u.name.clone(), gw));
            }
        }
    }
    found
}

#[test]
fn cloud_init_renders_a_dual_stack_nic_and_an_ipv6_only_one_with_one_ipv6_default_route() {
    let dir = Scratch::new();
    let file = dir.file("network-config", seed::network_config(&dual_stack_nics()));
    assert_eq!(yaml_get(&file, "ethernets.eth1.addresses"), Yaml::List(1));
    assert_eq!(
        yaml_get(&file, "ethernets.eth1.dhcp6"),
        Yaml::Other("False".into())
    );

    // Netplan (Debian 12+, Ubuntu), which parses it strictly: both families on eth0, IPv6 alone
    // on eth1, nothing taken from router advertisements, one IPv6 default route.
    let units = netplan_units(&file, &dir.0.join("netplan"));
    assert_eq!(units.len(), 2, "{units:#?}");
    let eth0 = unit_for(&units, "02:42:0a:01:00:02");
    assert_eq!(
        eth0.values("Network", "Address"),
        ["10.1.0.2/24", "fd00:1::2/64"]
    );
    assert_eq!(eth0.values("Network", "IPv6AcceptRA"), ["no"]);
    assert_eq!(
        eth0.values("Network", "DNS"),
        ["169.254.0.2", "10.96.0.10", "fd00:1::53"]
    );
    assert_eq!(
        eth0.values("Network", "Domains"),
        ["example.test", "svc.cluster.local"]
    );
    let eth1 = unit_for(&units, "02:42:ff:00:00:05");
    assert_eq!(
        eth1.values("Network", "Address"),
        ["fd00:2::5/64"],
        "no IPv4"
    );
    assert_eq!(eth1.values("Network", "IPv6AcceptRA"), ["no"]);
    assert_eq!(eth1.values("Link", "MTUBytes"), ["1400"]);
    assert_eq!(
        eth1.routes(),
        [("fd00:99::/64".into(), "fd00:2::254".into())]
    );
    for unit in [eth0, eth1] {
        assert_eq!(
            unit.values("Network", "DHCP"),
            Vec::<String>::new(),
            "static"
        );
    }
    assert_eq!(
        ipv6_defaults(&units),
        [(eth0.name.clone(), "fd00:1::1".into())],
        "one IPv6 default route, on eth0"
    );

    // cloud-init's own networkd renderer: the same default route, never cloud-init 22.4's
    // `::/64` for a route to `::/0` (LP #2003562).
    let out = dir.0.join("networkd");
    let converted = net_convert(&file, "networkd", &out);
    assert!(converted.success(), "{converted}");
    let units = network_units(&out);
    let eth0 = unit_for(&units, "02:42:0a:01:00:02");
    assert_eq!(
        eth0.values("Address", "Address"),
        ["10.1.0.2/24", "fd00:1::2/64"]
    );
    let eth1 = unit_for(&units, "02:42:ff:00:00:05");
    assert_eq!(eth1.values("Address", "Address"), ["fd00:2::5/64"]);
    assert_eq!(
        ipv6_defaults(&units),
        [(eth0.name.clone(), "fd00:1::1".into())]
    );
    let text = all_text(&out);
    assert!(!text.contains("Destination=::/64"), "{text}");

    // ENI (ifupdown guests): an inet6 stanza with the gateway; eth1 has no inet one.
    let out = dir.0.join("eni");
    let converted = net_convert(&file, "eni", &out);
    assert!(converted.success(), "{converted}");
    let eni = all_text(&out);
    let eth0 = stanza(&eni, "iface eth0 inet6 static");
    for line in ["address fd00:1::2/64", "gateway fd00:1::1"] {
        assert!(eth0.contains(&line.to_string()), "{line}: {eni}");
    }
    let eth1 = stanza(&eni, "iface eth1 inet6 static");
    for line in ["address fd00:2::5/64", "accept_ra 0", "mtu 1400"] {
        assert!(eth1.contains(&line.to_string()), "{line}: {eni}");
    }
    assert!(
        eth1.iter()
            .any(|l| l.contains("route add -A inet6 fd00:99::/64 gw fd00:2::254")),
        "{eni}"
    );
    assert!(!eni.contains("iface eth1 inet "), "no IPv4 stanza: {eni}");
    assert!(!eni.contains(" ::/64 gw "), "{eni}");

    // sysconfig (RHEL, Rocky, Fedora's network-scripts).
    let out = dir.0.join("sysconfig");
    let converted = net_convert_for("rhel", &file, "sysconfig", &out);
    assert!(converted.success(), "{converted}");
    let scripts = out.join("etc/sysconfig/network-scripts");
    let ifcfg = |name: &str| fs::read_to_string(scripts.join(name)).expect("an ifcfg file");
    let eth0 = ifcfg("ifcfg-eth0");
    assert!(
        eth0.contains("IPV6ADDR=fd00:1::2/64") && eth0.contains("IPV6_DEFAULTGW=fd00:1::1"),
        "{eth0}"
    );
    let eth1 = ifcfg("ifcfg-eth1");
    assert!(eth1.contains("IPV6ADDR=fd00:2::5/64"), "{eth1}");
    assert!(
        !eth1.contains("IPADDR=") && !eth1.contains("IPV6_DEFAULTGW"),
        "{eth1}"
    );
    assert!(
        ifcfg("route6-eth1").contains("fd00:99::/64 via fd00:2::254"),
        "{}",
        ifcfg("route6-eth1")
    );
}

#[test]
fn an_ipv6_only_pod_gets_its_default_route_through_the_link_local_gateway_with_every_renderer() {
    // Calico: fd00:10::7/128, `default via fe80::ecee:eeff:feee:eeee`, an IPv6 resolver.
    let gateway = ip6("fe80::ecee:eeff:feee:eeee");
    let pod = seed::SeedNic {
        name: "eth0".into(),
        mac: "0a:58:0a:f4:01:07".into(),
        addr: None,
        mtu: 1480,
        routes: vec![],
        dns: vec![],
        search: vec![],
        v6: Some(seed::SeedNic6 {
            addr: ip6("fd00:10::7"),
            prefix: 128,
            gateway: Some(gateway),
            routes: vec![],
            dns: vec![ip6("fd00:10::53")],
            search: vec!["default.svc.cluster.local".into()],
        }),
    };
    let dir = Scratch::new();
    let file = dir.file("network-config", seed::network_config(&[pod]));
    let units = netplan_units(&file, &dir.0.join("netplan"));
    let unit = unit_for(&units, "0a:58:0a:f4:01:07");
    assert_eq!(unit.values("Network", "Address"), ["fd00:10::7/128"]);
    assert_eq!(unit.values("Network", "DNS"), ["fd00:10::53"]);
    assert_eq!(
        unit.values("Network", "Domains"),
        ["default.svc.cluster.local"]
    );
    assert_eq!(
        ipv6_defaults(&units),
        [(unit.name.clone(), gateway.to_string())]
    );

    let out = dir.0.join("networkd");
    assert!(net_convert(&file, "networkd", &out).success());
    assert_eq!(ipv6_defaults(&network_units(&out)).len(), 1);
    let out = dir.0.join("eni");
    assert!(net_convert(&file, "eni", &out).success());
    let eni = all_text(&out);
    let eth0 = stanza(&eni, "iface eth0 inet6 static");
    assert!(
        eth0.contains(&"address fd00:10::7/128".to_string()),
        "{eni}"
    );
    assert!(eth0.contains(&format!("gateway {gateway}")), "{eni}");
    let out = dir.0.join("sysconfig");
    assert!(net_convert_for("rhel", &file, "sysconfig", &out).success());
    assert!(all_text(&out).contains(&format!("IPV6_DEFAULTGW={gateway}")));
}

#[test]
fn yaml_quoting_round_trips_arbitrary_strings_through_pyyaml() {
    // Strings built from a pool of troublesome pieces by a fixed pseudo-random sequence.
    const PIECES: &[&str] = &[
        "a",
        "Z",
        "9",
        " ",
        "  ",
        ":",
        ": ",
        "#",
        " #",
        "-",
        "- ",
        "?",
        "!",
        "&",
        "*",
        "|",
        ">",
        "'",
        "\"",
        "\\",
        "%",
        "@",
        "`",
        ",",
        "[",
        "]",
        "{",
        "}",
        "~",
        "null",
        "yes",
        "no",
        "true",
        "1e3",
        "0x1F",
        "0o7",
        ".inf",
        "---",
        "...",
        "<<",
        "=",
        "\n",
        "\r",
        "\t",
        "\r\n",
        "\u{0}",
        "\u{7}",
        "\u{1b}",
        "\u{7f}",
        "\u{80}",
        "\u{85}",
        "\u{9f}",
        "\u{a0}",
        "é",
        "ß",
        "\u{2028}",
        "\u{2029}",
        "\u{feff}",
        "\u{fffe}",
        "\u{ffff}",
        "\u{e000}",
        "中文",
        "😀",
        "\u{10ffff}",
    ];
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    let mut strings: Vec<String> = PIECES.iter().map(|p| p.to_string()).collect();
    strings.push(String::new());
    for _ in 0..3000 {
        let len = next(12);
        strings.push((0..len).map(|_| PIECES[next(PIECES.len())]).collect());
    }
    // Every char, one at a time, across the ranges YAML treats differently.
    for c in (0u32..0x300)
        .chain(0x2000..0x2100)
        .chain(0xfff0..0x10000)
        .filter_map(char::from_u32)
    {
        strings.push(format!("x{c}y"));
    }
    let dir = Scratch::new();
    let doc: String = strings
        .iter()
        .map(|s| format!("- {}\n", seed::quote(s)))
        .collect();
    let yaml = dir.file("strings.yaml", doc);
    let expected: String = strings
        .iter()
        .map(|s| s.bytes().map(|b| format!("{b:02x}")).collect::<String>() + "\n")
        .collect();
    let expected = dir.file("expected.hex", expected);
    const SCRIPT: &str = r#"
import sys, yaml
got = yaml.safe_load(open(sys.argv[1], 'rb'))
want = [bytes.fromhex(l).decode('utf-8') for l in open(sys.argv[2]).read().split('\n')[:-1]]
bad = [i for i, (g, w) in enumerate(zip(got, want)) if g != w]
print(len(got), len(want), len(bad), [(want[i], got[i]) for i in bad[:5]])
"#;
    tools();
    let out = run_ok(&[
        PYTHON,
        "-c",
        SCRIPT,
        &yaml.to_string_lossy(),
        &expected.to_string_lossy(),
    ]);
    let n = strings.len();
    assert_eq!(
        out.trim(),
        format!("{n} {n} 0 []"),
        "PyYAML read back something else"
    );
}

#[test]
fn qemu_presents_the_seed_directory_as_a_fat_volume_that_blkid_labels_cidata() {
    let dir = Scratch::new();
    let files = dir.0.join("seed");
    fs::create_dir(&files).expect("create the seed directory");
    let s = login_seed(&[(seed::SSH_KEYS, ED25519)]);
    fs::write(files.join("meta-data"), seed::meta_data(&s)).expect("write meta-data");
    fs::write(files.join("user-data"), seed::user_data(&s)).expect("write user-data");
    fs::write(
        files.join("network-config"),
        seed::network_config(&docker_nics()),
    )
    .expect("write network-config");
    // The same driver and options vminit gives QEMU (-drive driver=vvfat,dir=..,label=cidata),
    // read out by qemu-img, and the filesystem looked at by util-linux's blkid as cloud-init does.
    let spec = format!(
        "json:{{\"driver\":\"vvfat\",\"dir\":\"{}\",\"label\":\"{}\"}}",
        files.display(),
        seed::LABEL
    );
    let raw = dir.path("seed.raw");
    run_ok(&["qemu-img", "convert", "-O", "raw", &spec, &raw]);
    // vvfat puts the filesystem in a partition at sector 63, behind an MBR.
    let probe = run_ok(&[
        "blkid",
        "-p",
        "-o",
        "export",
        "-O",
        &(63 * 512).to_string(),
        &raw,
    ]);
    assert!(probe.lines().any(|l| l == "LABEL=cidata"), "{probe}");
    assert!(probe.lines().any(|l| l == "TYPE=vfat"), "{probe}");
}

// ---------------------------------------------------------------------------------------------
// End to end: a real guest finds the seed.

/// vminit booting the test guest, which prints the seed it finds.
fn vminit<'c>(ctr: &'c Container, disk: &ScratchDisk) -> VminitBuilder<'c> {
    ctr.vminit_with_guest(disk, "vminit_test_cidata=1")
}

/// Waits for the guest's seed report and decodes it.
fn cidata(vm: &Vminit) -> Cidata {
    vm.expect_console("GUEST-CIDATA done", BOOT);
    let console = vm.console().text();
    assert!(
        !console.contains("GUEST-ERROR"),
        "the guest reports an error\n{}",
        vm.tails()
    );
    let found = Cidata::parse(&console).expect("a seed report");
    assert!(
        !found.files.is_empty(),
        "the seed holds no file\n{}",
        vm.tails()
    );
    found
}

/// The routes DHCP gave (`staticroutes=DST,GW,DST,GW,...`) as (destination, gateway) pairs.
fn dhcp_routes(nic: &GuestNic) -> Vec<(String, String)> {
    let dhcp = nic.dhcp.as_ref().expect("a DHCP lease");
    let words: Vec<&str> = dhcp["staticroutes"].split(',').collect();
    words
        .chunks(2)
        .map(|pair| (pair[0].to_owned(), pair[1].to_owned()))
        .collect()
}

fn list(text: &str) -> Vec<String> {
    text.split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_guest_finds_a_read_only_cidata_volume_with_the_keys_hostname_and_network_asked_for() {
    let front = Network::new(1);
    let back = Network::with_mtu(2, 1400);
    let ctr = Container::new();
    ctr.add_nic(&front, NicSpec::docker(&front, 3));
    ctr.add_nic(&back, NicSpec::docker(&back, 5));
    ctr.set_default_route(front.gateway, "eth0");
    let disk = ScratchDisk::new();
    let scratch = Scratch::new();
    let keys_file = scratch.file("keys.pub", format!("# Carol's key\n{ECDSA}\n"));
    let vm = vminit(&ctr, &disk)
        .resolv_conf("nameserver 127.0.0.11\nsearch corp.example.test\noptions ndots:0\n")
        .env(seed::SSH_KEYS, format!("{ED25519}\n{RSA}"))
        .env(seed::SSH_KEYS_FILE, &keys_file)
        .env(seed::USER, "alice")
        .env(seed::PASSWORD_HASH, HASH)
        .env(seed::HOSTNAME, "web-1")
        .spawn();
    let found = cidata(&vm);
    let report = GuestReport::parse(&vm.console().text()).expect("a complete guest report");

    // The volume: found by its label, a read-only FAT disk with the three files.
    assert!(
        found.device.contains(" ro=1 ") && found.device.ends_with(" fs=vfat"),
        "{found:?}"
    );
    let names: Vec<&str> = found.files.keys().map(String::as_str).collect();
    assert_eq!(names, ["meta-data", "network-config", "user-data"]);
    let meta = scratch.file("meta-data", &found.files["meta-data"]);
    let user = scratch.file("user-data", &found.files["user-data"]);
    let net = scratch.file("network-config", &found.files["network-config"]);

    // meta-data: the hostname asked for, the instance id of this container.
    assert_eq!(yaml_get(&meta, "local-hostname"), s("web-1"));
    assert_eq!(
        yaml_get(&meta, "instance-id"),
        s(&seed::instance_id(ctr.id()))
    );
    assert_eq!(report.hostname, "web-1", "DHCP gives the same hostname");

    // user-data: valid for cloud-init; the user with the password hash and every key.
    let verdict = cloud_init_schema(&user);
    assert!(verdict.success(), "{verdict}");
    assert_eq!(yaml_get(&user, "users.0.name"), s("alice"));
    assert_eq!(yaml_get(&user, "users.0.hashed_passwd"), s(HASH));
    assert_eq!(
        yaml_get(&user, "users.0.ssh_authorized_keys"),
        Yaml::List(3)
    );
    for (i, key) in [ED25519, RSA, ECDSA].iter().enumerate() {
        assert_eq!(
            yaml_get(&user, &format!("users.0.ssh_authorized_keys.{i}")),
            s(key)
        );
    }

    // network-config: as a Debian 12+/Ubuntu guest renders it (cloud-init's netplan renderer,
    // then netplan), each NIC matched by its MAC gets exactly what DHCP gave it.
    let units = netplan_units(&net, &scratch.0.join("netplan"));
    assert_eq!(units.len(), 2, "{units:#?}");
    assert_eq!(report.nics.len(), 2, "{report:?}");
    for nic in &report.nics {
        let dhcp = nic.dhcp.as_ref().expect("a DHCP lease");
        let unit = unit_for(&units, &nic.mac);
        assert_eq!(unit.values("Network", "Address"), nic.addrs, "{}", nic.name);
        assert_eq!(
            unit.values("Link", "MTUBytes"),
            [dhcp["mtu"].clone()],
            "{}",
            nic.name
        );
        assert_eq!(
            unit.values("Network", "DNS"),
            list(&dhcp["dns"]),
            "{}",
            nic.name
        );
        assert_eq!(
            unit.values("Network", "Domains"),
            list(&dhcp["search"]),
            "{}",
            nic.name
        );
        assert_eq!(unit.routes(), dhcp_routes(nic), "{}", nic.name);
    }
    let eth0 = report.nic("eth0").expect("guest eth0");
    assert!(
        dhcp_routes(eth0).contains(&("0.0.0.0/0".into(), front.gateway.to_string())),
        "the default route, on the NIC that has it: {eth0:?}"
    );
    assert_eq!(eth0.addrs, [front.cidr(front.addr(3))]);
    stop(&vm);
}

#[test]
fn the_seed_states_each_nics_ipv6_as_the_guest_gets_it_on_a_dual_stack_nic_and_an_ipv6_only_one() {
    let front = Network::dual_stack(1);
    let back = Network::dual_stack(2);
    let (f6, b6) = (front.net6().clone(), back.net6().clone());
    let ctr = Container::with_ipv6();
    // eth0: dual stack, the IPv4 default route; eth1: IPv6 only, the IPv6 default route.
    let eth0 = ctr.add_nic(
        &front,
        NicSpec::docker(&front, 3).addr6(&f6.cidr(f6.addr(3))),
    );
    let eth1 = ctr.add_nic(
        &back,
        NicSpec::new()
            .mac("02:42:fd:00:02:05")
            .addr6(&b6.cidr(b6.addr(5))),
    );
    ctr.set_default_route(front.gateway, "eth0");
    ctr.set_default_route6(b6.gateway, "eth1");
    let disk = ScratchDisk::new();
    let scratch = Scratch::new();
    let vm = ctr
        .vminit_with_guest(&disk, "vminit_test_cidata=1 vminit_test_ipv6=eth0,eth1")
        .resolv_conf("nameserver 127.0.0.11\nnameserver fd00:2::53\nsearch corp.example.test\n")
        .env(seed::SSH_KEYS, ED25519)
        .spawn();
    let found = cidata(&vm);
    let report = GuestReport::parse(&vm.console().text()).expect("a complete guest report");
    let net = scratch.file("network-config", &found.files["network-config"]);
    let units = netplan_units(&net, &scratch.0.join("netplan"));
    assert_eq!(units.len(), 2, "{units:#?}");

    // Each NIC, matched by MAC: the addresses, MTU and resolvers the guest got by DHCPv4 and
    // DHCPv6. The guest holds the DHCPv6 address as a /128 with the container's prefix on-link
    // (from the router advertisement); the seed states it with that prefix.
    // DHCPv4 gives the guest a resolver (the door on eth0), so DHCPv6 carries no resolver and no
    // search list (a client that writes resolv.conf from its last lease alone would lose the
    // door): the IPv6 resolver and the search list go by the router advertisements (RDNSS,
    // DNSSL) alone, which this guest's kernel ignores. What they say, per NIC: fd00:2::53 is in
    // eth1's prefix, and eth1, the IPv6 default-route NIC, has the search list.
    let advertised: [(&[&str], &[&str]); 2] =
        [(&[], &[]), (&["fd00:2::53"], &["corp.example.test"])];
    for ((nic, ip6), (rdnss, dnssl)) in [(&eth0, eth0.ip6()), (&eth1, eth1.ip6())]
        .into_iter()
        .zip(advertised)
    {
        let guest = report
            .nics
            .iter()
            .find(|n| n.mac == nic.mac)
            .expect("the NIC in the guest");
        let unit = unit_for(&units, &nic.mac);
        let global: Vec<&str> = report
            .global6(&guest.name)
            .iter()
            .map(|a| a.addr.as_str())
            .collect();
        assert_eq!(global, [format!("{ip6}/128")], "{report:#?}");
        let prefix = format!(
            "{}/64",
            std::net::Ipv6Addr::from(u128::from(ip6) & !0xffff_ffff_ffff_ffff)
        );
        assert!(
            report
                .routes6
                .iter()
                .any(|l| l.starts_with(&format!("{prefix} dev {} ", guest.name))),
            "{:#?}",
            report.routes6
        );
        let mut addresses = guest.addrs.clone();
        addresses.push(format!("{ip6}/64"));
        assert_eq!(
            unit.values("Network", "Address"),
            addresses,
            "{}",
            guest.name
        );
        assert_eq!(unit.values("Link", "MTUBytes"), [guest.mtu.to_string()]);
        assert_eq!(unit.values("Network", "IPv6AcceptRA"), ["no"]);
        let dhcp6 = &report.dhcp6[&guest.name];
        assert_eq!(
            (dhcp6["dns6"].as_str(), dhcp6["search6"].as_str()),
            ("", ""),
            "{}: DHCPv6 carries no resolver",
            guest.name
        );
        let mut dns = guest.dhcp.as_ref().map_or(vec![], |d| list(&d["dns"]));
        dns.extend(rdnss.iter().map(|s| s.to_string()));
        assert_eq!(unit.values("Network", "DNS"), dns, "{}", guest.name);
        let mut search = guest.dhcp.as_ref().map_or(vec![], |d| list(&d["search"]));
        for name in dnssl {
            if !search.iter().any(|s| s == name) {
                search.push(name.to_string());
            }
        }
        assert_eq!(unit.values("Network", "Domains"), search, "{}", guest.name);
    }
    // eth0: its IPv4 lease (with the IPv4 default route) is what the seed states.
    let g0 = report
        .nics
        .iter()
        .find(|n| n.mac == eth0.mac)
        .expect("eth0");
    assert_eq!(g0.addrs, [front.cidr(front.addr(3))]);
    assert_eq!(unit_for(&units, &eth0.mac).routes(), dhcp_routes(g0));
    // eth1: no IPv4 at all, in the seed as by DHCP; its IPv6 resolver, reached on its link.
    let g1 = report
        .nics
        .iter()
        .find(|n| n.mac == eth1.mac)
        .expect("eth1");
    assert!(g1.addrs.is_empty() && g1.dhcp.is_none(), "{g1:?}");
    let u1 = unit_for(&units, &eth1.mac);
    assert!(u1.routes().is_empty(), "{u1:#?}");
    assert_eq!(u1.values("Network", "DNS"), ["fd00:2::53"]);
    // One IPv6 default route, on eth1 only, through the same router as the guest's: the seed
    // names the container's gateway, the advertisement the gateway's link-local address (at the
    // gateway's MAC, which the guest found).
    assert_eq!(
        ipv6_defaults(&units),
        [(u1.name.clone(), b6.gateway.to_string())]
    );
    let defaults6 = report.default_routes6();
    assert_eq!(defaults6.len(), 1, "{:#?}", report.routes6);
    assert!(
        defaults6[0].starts_with(&format!("default via {} dev {} ", b6.gateway_ll, g1.name)),
        "{defaults6:?}"
    );
    assert_eq!(
        report
            .neighbour6(&b6.gateway_ll.to_string(), &g1.name)
            .as_deref(),
        Some(b6.gateway_mac.as_str())
    );
    let bridge = back
        .host_exec(&format!("ip -6 -o addr show dev {}", back.bridge))
        .stdout;
    assert!(
        bridge.contains(&format!(" {}/", b6.gateway))
            && bridge.contains(&format!(" {}/", b6.gateway_ll)),
        "one router: {bridge}"
    );
    stop(&vm);
}

#[test]
fn without_cloud_init_inputs_the_guest_gets_no_seed() {
    let net = Network::new(1);
    let (ctr, _) = Container::docker_on(&net);
    let disk = ScratchDisk::new();
    let vm = vminit(&ctr, &disk).spawn();
    vm.expect_console("GUEST-CIDATA none", BOOT);
    let log = vm.log().text();
    assert!(
        !log.contains("cloud-init seed") && !log.contains("vvfat"),
        "{log}"
    );
    stop(&vm);
}

#[test]
fn a_bootable_vm_disk_still_boots_first_with_the_seed_attached() {
    // The seed is a second disk with an MBR: the BIOS must still boot the VM disk, as a user's
    // cloud image is booted (no -kernel).
    let guest_dir = test_guest().kernel.parent().expect("the guest's directory");
    let scratch = Scratch::new();
    let disk = scratch.path("image.qcow2");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/docker/build-boot-disk.sh");
    run_ok(&[
        "sh",
        &script.to_string_lossy(),
        &guest_dir.to_string_lossy(),
        &disk,
    ]);
    let net = Network::new(1);
    let (ctr, _) = Container::docker_on(&net);
    let vm = ctr
        .vminit(&vminit_binary())
        .env("AUTO_ATTACH", "yes")
        .env("ACCEL", "tcg")
        .env("RAM_SIZE", "256M")
        .env("VMINIT_DISK", &disk)
        .env(seed::SSH_KEYS, ED25519)
        .spawn();
    vm.expect_console("GUEST-REPORT done", BOOT);
    assert!(
        vm.log().text().contains("driver=vvfat"),
        "the seed is attached\n{}",
        vm.tails()
    );
    stop(&vm);
}

#[test]
fn the_instance_id_survives_a_restart_of_the_container_and_differs_in_another_container() {
    let net = Network::new(1);
    let disk = ScratchDisk::new();
    let scratch = Scratch::new();
    let a = Container::new();
    a.add_nic(&net, NicSpec::docker(&net, 2));
    a.set_default_route(net.gateway, "eth0");

    let vm = vminit(&a, &disk).env(seed::SSH_KEYS, ED25519).spawn();
    let first = cidata(&vm);
    let id = yaml_get(
        &scratch.file("a1", &first.files["meta-data"]),
        "instance-id",
    );
    assert_eq!(id, s(&seed::instance_id(a.id())));
    stop(&vm);

    // The same container again, now with the user's own user-data: passed on byte for byte,
    // and the instance id does not change with it.
    let own = b"#cloud-config\n# mine: keep \"as is\"\nruncmd:\n  - [sh, -c, \"echo hi: #1\"]\nupdates:\n  network:\n    when: [boot]\n";
    let own_file = scratch.file("own-user-data", own);
    let vm = vminit(&a, &disk).env(seed::USER_DATA, &own_file).spawn();
    let again = cidata(&vm);
    assert_eq!(
        again.files["user-data"], own,
        "the user's own user-data, verbatim"
    );
    let id_again = yaml_get(
        &scratch.file("a2", &again.files["meta-data"]),
        "instance-id",
    );
    assert_eq!(id_again, id, "the same container keeps its instance id");
    stop(&vm);

    // Another container on the same network.
    let b = Container::new();
    b.add_nic(&net, NicSpec::docker(&net, 3));
    b.set_default_route(net.gateway, "eth0");
    let vm = vminit(&b, &disk).env(seed::SSH_KEYS, ED25519).spawn();
    let other = cidata(&vm);
    let id_other = yaml_get(&scratch.file("b", &other.files["meta-data"]), "instance-id");
    assert_ne!(id_other, id, "another container, another instance");
    assert_eq!(id_other, s(&seed::instance_id(b.id())));
    stop(&vm);
}

// ---------------------------------------------------------------------------------------------
// Bad input: one line, exit 64, nothing changed.

/// Runs vminit on a one-NIC container; expects exit 64 within two seconds, exactly one error
/// line containing every needle, no console output (no QEMU) and the network unchanged.
fn expect_refusal(settings: &[(&str, &str)], needles: &[&str]) {
    let net = Network::new(1);
    let (ctr, _) = Container::docker_on(&net);
    let disk = ScratchDisk::new();
    let before = ctr.net_state();
    let mut builder = vminit(&ctr, &disk);
    for (k, v) in settings {
        builder = builder.env(k, v);
    }
    let log = builder.expect_refusal(64, needles, Duration::from_secs(2));
    assert_eq!(ctr.net_state(), before, "the network changed\n{log}");
}

#[test]
fn an_unreadable_ssh_key_file_is_refused_before_anything_changes() {
    let missing = "/nonexistent/vminit-test/id_ed25519.pub";
    expect_refusal(
        &[(seed::SSH_KEYS_FILE, missing)],
        &["CLOUD_INIT_SSH_KEYS_FILE", missing, "-v FILE:"],
    );
}

#[test]
fn a_private_key_instead_of_a_public_one_is_refused() {
    let scratch = Scratch::new();
    let private = scratch.file(
        "id_ed25519",
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ==\n-----END OPENSSH PRIVATE KEY-----\n",
    );
    expect_refusal(
        &[(seed::SSH_KEYS_FILE, &private.to_string_lossy())],
        &[
            "CLOUD_INIT_SSH_KEYS_FILE",
            &private.to_string_lossy(),
            "private key",
            ".pub",
        ],
    );
    expect_refusal(
        &[(seed::SSH_KEYS, "hunter2")],
        &["CLOUD_INIT_SSH_KEYS", "no SSH public key on line 1"],
    );
}

#[test]
fn user_data_that_cloud_inits_schema_rejects_is_refused_before_anything_changes() {
    let scratch = Scratch::new();
    for (name, text) in [
        ("list", "#cloud-config\n- users\n"),
        ("word", "#cloud-config\nhello\n"),
        ("empty", "#cloud-config\n# nothing yet\n"),
        ("no-header", "users:\n  - name: alice\n"),
    ] {
        let file = scratch.file(name, text);
        let verdict = cloud_init_schema(&file);
        assert!(!verdict.success(), "cloud-init accepts {name}: {verdict}");
        expect_refusal(
            &[(seed::USER_DATA, &file.to_string_lossy())],
            &["CLOUD_INIT_USER_DATA", &file.to_string_lossy()],
        );
    }
}

#[test]
fn a_plain_password_or_a_hash_without_a_user_is_refused() {
    expect_refusal(
        &[(seed::USER, "alice"), (seed::PASSWORD_HASH, "hunter2")],
        &["CLOUD_INIT_PASSWORD_HASH", "mkpasswd"],
    );
    expect_refusal(
        &[(seed::PASSWORD_HASH, HASH)],
        &["CLOUD_INIT_PASSWORD_HASH", "CLOUD_INIT_USER"],
    );
}

/// The route commands a guest runs for `nic` when cloud-init 22.4 renders the seed with
/// `renderer`: ENI's `post-up route add ...` lines, or `ip route add` for each `[Route]` of
/// its networkd units (what systemd-networkd asks the kernel for; that renderer never writes
/// `GatewayOnLink`).
fn rendered_route_commands(nic: &seed::SeedNic, renderer: &str) -> Vec<String> {
    let dir = Scratch::new();
    let file = dir.file(
        "network-config",
        seed::network_config(std::slice::from_ref(nic)),
    );
    let out = dir.0.join(renderer);
    let converted = net_convert(&file, renderer, &out);
    assert!(converted.success(), "{converted}");
    if renderer == "eni" {
        let eni = fs::read_to_string(out.join("etc/network/interfaces.d/50-cloud-init"))
            .or_else(|_| fs::read_to_string(out.join("etc/network/interfaces")))
            .expect("an interfaces file");
        return eni
            .lines()
            .filter_map(|l| l.trim().strip_prefix("post-up "))
            .filter(|l| l.starts_with("route add"))
            .map(|l| l.trim_end_matches(" || true").to_string())
            .collect();
    }
    let units = network_units(&out);
    let unit = unit_for(&units, &nic.mac);
    unit.sections
        .iter()
        .filter(|(name, _)| name == "Route")
        .map(|(_, lines)| {
            let get = |key: &str| lines.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
            let mut cmd = format!(
                "ip route add {}",
                get("Destination").expect("a destination")
            );
            if let Some(gw) = get("Gateway") {
                cmd += &format!(" via {gw}");
            }
            cmd + " dev eth0"
        })
        .collect()
}

#[test]
fn every_renderer_of_cloud_init_22_4_leaves_the_door_and_a_pods_gateway_reachable() {
    // Debian 12's cloud-init drops `on-link` in its ENI (ifupdown) and networkd renderers: the
    // host routes to the door (the first resolver) and to a /32 pod's gateway must work
    // without it. Each rendering runs in a namespace shaped like the guest, beside one that
    // holds the door and the gateway.
    let nics = [docker_nics().remove(0), pod_nic()];
    for nic in &nics {
        let (addr, prefix) = nic.addr.expect("an IPv4 address");
        let hosts: Vec<Ipv4Addr> = nic
            .routes
            .iter()
            .filter(|r| r.prefix == 32 && r.gateway.is_none())
            .map(|r| r.network)
            .collect();
        assert!(!hosts.is_empty());
        for renderer in ["eni", "networkd"] {
            let what = format!("{} with {renderer}", nic.mac);
            let id = unique_id();
            let guest = common::Netns::create(&id, "guest");
            let door = common::Netns::create(&id, "door");
            guest.ip(&[
                "link",
                "add",
                "eth0",
                "type",
                "veth",
                "peer",
                "name",
                "d0",
                "netns",
                door.name(),
            ]);
            guest.ip(&["addr", "add", &format!("{addr}/{prefix}"), "dev", "eth0"]);
            guest.ip(&["link", "set", "eth0", "up"]);
            door.ip(&["link", "set", "d0", "up"]);
            for host in &hosts {
                door.ip(&["addr", "add", &format!("{host}/32"), "dev", "d0"]);
            }
            door.ip(&["route", "add", &format!("{addr}/32"), "dev", "d0"]);
            for cmd in rendered_route_commands(nic, renderer) {
                let out = guest.exec(&cmd);
                // A limit of that networkd renderer, not of the seed: without `on-link` the
                // kernel takes no gateway outside the NIC's subnet over netlink (the pod's
                // default route through 169.254.1.1). ifupdown's `route` makes the host
                // route a plain link route, and the default route then works.
                let off_subnet_default = renderer == "networkd"
                    && cmd.starts_with("ip route add 0.0.0.0/0")
                    && prefix == 32;
                assert!(out.success() || off_subnet_default, "{what}: {cmd}: {out}");
            }
            if renderer == "eni" && nic.routes.iter().any(|r| r.prefix == 0) {
                let routes = guest.ip(&["route"]);
                assert!(routes.contains("default via"), "{what}: {routes}");
            }
            for host in &hosts {
                let ping = guest.exec(&format!("ping -n -c 1 -W 2 {host}"));
                assert!(
                    ping.success(),
                    "{what}: {host} unreachable: {ping}\n{}",
                    guest.ip(&["route"])
                );
            }
        }
    }
}
