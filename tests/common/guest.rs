//! The test guest (tests/guest/build-guest.sh) and the report it prints on its console.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::cmd::{BUILD_TIMEOUT, run, run_ok, run_ok_for};

/// A kernel and an initramfs whose /init (tests/guest/init.sh) configures its NICs by DHCP,
/// prints a `GUEST-REPORT` block, obeys the ACPI power button and runs a shell on ttyS0.
#[derive(Debug, Clone)]
pub struct TestGuest {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
}

static GUEST: OnceLock<TestGuest> = OnceLock::new();

/// The test guest's line for a TPM 2.0 whose cryptography works: a full self-test of every
/// algorithm, an RSA 2048 and an ECC P-256 primary key, each answered with success.
pub const TPM_CRYPTO_OK: &str = "GUEST-TPM-CRYPTO selftest=00000000 rsa=00000000 ecc=00000000";

/// The test guest, built on first use into `$CARGO_TARGET_TMPDIR/test-guest` (a no-op when it is
/// up to date; concurrent test processes serialise on a lock file).
pub fn test_guest() -> &'static TestGuest {
    GUEST.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/guest/build-guest.sh");
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("test-guest");
        run_ok_for(
            &["sh", &script.to_string_lossy(), &out.to_string_lossy()],
            BUILD_TIMEOUT,
        );
        TestGuest {
            kernel: out.join("vmlinuz"),
            initrd: out.join("initramfs.cpio.gz"),
        }
    })
}

impl TestGuest {
    /// QEMU arguments that boot this guest on the serial console, with `extra` appended to the
    /// kernel command line (e.g. `vminit_test_write=hello`).
    pub fn qemu_args(&self, extra: &str) -> Vec<String> {
        vec![
            "-kernel".into(),
            self.kernel.to_string_lossy().into_owned(),
            "-initrd".into(),
            self.initrd.to_string_lossy().into_owned(),
            "-append".into(),
            format!("console=ttyS0 quiet no_timer_check {extra}")
                .trim_end()
                .to_owned(),
        ]
    }
}

/// Creates an empty qcow2 image of `size` (`qemu-img` syntax, e.g. `16M`) at `path`, installing
/// qemu-utils first if `qemu-img` is missing.
pub fn make_qcow2(path: &Path, size: &str) {
    if !run(&["sh", "-c", "command -v qemu-img"]).success() {
        run_ok_for(&["apt-get", "install", "-y", "qemu-utils"], BUILD_TIMEOUT);
    }
    run_ok(&[
        "qemu-img",
        "create",
        "-q",
        "-f",
        "qcow2",
        &path.to_string_lossy(),
        size,
    ]);
}

/// One NIC as the guest saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestNic {
    pub name: String,
    pub mac: String,
    /// `ADDR/PREFIX`; empty when the NIC got no address.
    pub addrs: Vec<String>,
    pub mtu: u32,
    /// The raw DHCP facts (`ip`, `mask`, `router`, `staticroutes`, `mtu`, `dns`, `domain`,
    /// `search`, `hostname`, `lease`, `serverid`; lists comma-joined, absent ones empty), or
    /// `None` when the NIC got no lease.
    pub dhcp: Option<BTreeMap<String, String>>,
}

/// The guest's `GUEST-REPORT` block, parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuestReport {
    pub nics: Vec<GuestNic>,
    /// Lines of the guest's `ip -4 route`, e.g. `default via 10.1.0.1 dev eth0`.
    pub routes: Vec<String>,
    /// Nameservers of the guest's resolv.conf.
    pub dns: Vec<String>,
    pub domain: Option<String>,
    pub search: Vec<String>,
    pub hostname: String,
    /// Every IPv6 address of the guest's NICs.
    pub addrs6: Vec<GuestAddr6>,
    /// Lines of the guest's `ip -6 route`, e.g. `default via fe80::1 dev eth0 proto ra metric
    /// 1024 pref medium`.
    pub routes6: Vec<String>,
    /// Lines of the guest's `ip -6 neigh`, e.g. `fe80::1 dev eth0 lladdr 02:42:… router STALE`.
    pub neigh6: Vec<String>,
    /// The raw DHCPv6 facts per NIC (`ip6`, `dns6`, `search6`, `lifetime`).
    pub dhcp6: BTreeMap<String, BTreeMap<String, String>>,
}

/// One IPv6 address of the guest, as `ip -6 addr` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestAddr6 {
    pub nic: String,
    /// `ADDR/PREFIX`
    pub addr: String,
    /// `global` or `link`
    pub scope: String,
    /// `tentative`, `dadfailed`, `dynamic`, … as `ip` prints them.
    pub flags: Vec<String>,
}

impl GuestReport {
    /// The last complete report in `console` (text ending in `GUEST-REPORT done`), if any.
    pub fn parse(console: &str) -> Option<GuestReport> {
        let lines: Vec<&str> = console
            .lines()
            .filter_map(|l| {
                l.split_once("GUEST-REPORT ")
                    .map(|(_, fact)| fact.trim_end())
            })
            .collect();
        let done = lines.iter().rposition(|l| *l == "done")?;
        let start = lines[..done]
            .iter()
            .rposition(|l| *l == "done")
            .map_or(0, |p| p + 1);
        let mut report = GuestReport::default();
        for line in &lines[start..done] {
            let (kind, rest) = line.split_once(' ').unwrap_or((line, ""));
            match kind {
                "nic" => report.nics.push(parse_nic(rest)),
                "dhcp" => {
                    let (name, facts) = rest.split_once(' ').unwrap_or((rest, "none"));
                    if let Some(nic) = report.nics.iter_mut().find(|n| n.name == name) {
                        nic.dhcp = (facts != "none").then(|| key_values(facts));
                    }
                }
                "route" => report.routes.push(rest.to_owned()),
                "dns" => report.dns.push(rest.to_owned()),
                "domain" => report.domain = Some(rest.to_owned()),
                "search" => report.search = rest.split_whitespace().map(str::to_owned).collect(),
                "hostname" => report.hostname = rest.to_owned(),
                "addr6" => {
                    let words: Vec<&str> = rest.split_whitespace().collect();
                    if words.len() >= 4 {
                        report.addrs6.push(GuestAddr6 {
                            nic: words[0].to_owned(),
                            addr: words[1].to_owned(),
                            scope: words[3].to_owned(),
                            flags: words[4..].iter().map(|w| (*w).to_owned()).collect(),
                        });
                    }
                }
                "route6" => report.routes6.push(rest.to_owned()),
                "neigh6" => report.neigh6.push(rest.to_owned()),
                "dhcp6" => {
                    let (name, facts) = rest.split_once(' ').unwrap_or((rest, "none"));
                    if facts != "none" {
                        report.dhcp6.insert(name.to_owned(), key_values(facts));
                    }
                }
                _ => {}
            }
        }
        Some(report)
    }

    /// The NIC named `name`.
    pub fn nic(&self, name: &str) -> Option<&GuestNic> {
        self.nics.iter().find(|n| n.name == name)
    }

    /// The global IPv6 addresses of `nic` (`ADDR/PREFIX`).
    pub fn global6(&self, nic: &str) -> Vec<&GuestAddr6> {
        self.addrs6
            .iter()
            .filter(|a| a.nic == nic && a.scope == "global")
            .collect()
    }

    /// The IPv6 default routes (`default via … dev …`); a correct setup has exactly one.
    pub fn default_routes6(&self) -> Vec<&str> {
        self.routes6
            .iter()
            .map(String::as_str)
            .filter(|r| r.starts_with("default "))
            .collect()
    }

    /// The MAC the guest's neighbour table holds for `addr` on `nic`.
    pub fn neighbour6(&self, addr: &str, nic: &str) -> Option<String> {
        self.neigh6.iter().find_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some(addr) && line.contains(&format!(" dev {nic} ")))
                .then(|| {
                    words
                        .skip_while(|w| *w != "lladdr")
                        .nth(1)
                        .map(str::to_owned)
                })
                .flatten()
        })
    }

    /// The default routes (`default via … dev …`); a correct setup has exactly one.
    pub fn default_routes(&self) -> Vec<&str> {
        self.routes
            .iter()
            .map(String::as_str)
            .filter(|r| r.starts_with("default "))
            .collect()
    }
}

/// A name lookup the guest made (`vminit_test_resolve=NAME[,NAME...]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestLookup {
    pub name: String,
    /// The first address glibc's getaddrinfo gave, `None` when the name did not resolve.
    pub addr: Option<String>,
    /// Milliseconds the lookup (and one ping of the answer) took, 10 ms resolution.
    pub ms: Option<u64>,
}

impl GuestLookup {
    /// Every lookup reported on `console` so far, in order.
    pub fn parse_all(console: &str) -> Vec<GuestLookup> {
        let mut out: Vec<GuestLookup> = Vec::new();
        for line in console.lines() {
            if let Some(rest) = line.split_once("GUEST-RESOLVE ").map(|(_, r)| r) {
                let mut words = rest.split_whitespace();
                let (Some(name), Some(addr)) = (words.next(), words.next()) else {
                    continue;
                };
                out.push(GuestLookup {
                    name: name.to_owned(),
                    addr: (addr != "none").then(|| addr.to_owned()),
                    ms: None,
                });
            } else if let Some(rest) = line.split_once("GUEST-RESOLVE-MS ").map(|(_, r)| r) {
                let mut words = rest.split_whitespace();
                let (Some(name), Some(ms)) = (words.next(), words.next()) else {
                    continue;
                };
                if let Some(lookup) = out.iter_mut().rev().find(|l| l.name == name) {
                    lookup.ms = ms.parse().ok();
                }
            }
        }
        out
    }
}

/// `eth0 mac=52:54:00:12:34:56 ip=10.0.2.15/24 mtu=1500`
fn parse_nic(text: &str) -> GuestNic {
    let (name, facts) = text.split_once(' ').unwrap_or((text, ""));
    let facts = key_values(facts);
    let get = |k: &str| facts.get(k).cloned().unwrap_or_default();
    let ip = get("ip");
    GuestNic {
        name: name.to_owned(),
        mac: get("mac"),
        addrs: if ip == "none" || ip.is_empty() {
            Vec::new()
        } else {
            ip.split(',').map(str::to_owned).collect()
        },
        mtu: get("mtu").parse().unwrap_or(0),
        dhcp: None,
    }
}

/// `a=1 b= c=x,y` → {a: 1, b: "", c: "x,y"}
fn key_values(text: &str) -> BTreeMap<String, String> {
    text.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// What the guest printed of the cloud-init seed it found (`vminit_test_cidata=1`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cidata {
    /// `DEV ro=0|1 fs=TYPE` from `GUEST-CIDATA device …`.
    pub device: String,
    /// Each file on the volume, by name, byte for byte.
    pub files: BTreeMap<String, Vec<u8>>,
}

impl Cidata {
    /// The last complete seed report in `console` (ending in `GUEST-CIDATA done`), if any;
    /// `GUEST-CIDATA none` gives an empty one.
    pub fn parse(console: &str) -> Option<Cidata> {
        let lines: Vec<&str> = console.lines().map(|l| l.trim_end_matches('\r')).collect();
        let done = lines.iter().rposition(|l| *l == "GUEST-CIDATA done")?;
        let start = lines[..done]
            .iter()
            .rposition(|l| l.starts_with("GUEST-CIDATA device "))
            .unwrap_or(done);
        let mut cidata = Cidata::default();
        let mut encoded: BTreeMap<String, String> = BTreeMap::new();
        for line in &lines[start..done] {
            if let Some(rest) = line.strip_prefix("GUEST-CIDATA device ") {
                cidata.device = rest.to_owned();
            } else if let Some((name, b64)) = line
                .strip_prefix("GUEST-CIDATA-FILE ")
                .and_then(|rest| rest.split_once(' '))
            {
                encoded.entry(name.to_owned()).or_default().push_str(b64);
            }
        }
        cidata.files = encoded
            .into_iter()
            .map(|(name, b64)| (name, base64_decode(&b64)))
            .collect();
        Some(cidata)
    }

    /// A file's text (the seed's files are UTF-8).
    pub fn text(&self, name: &str) -> String {
        String::from_utf8_lossy(self.files.get(name).map_or(&[][..], Vec::as_slice)).into_owned()
    }
}

/// Standard base64, as busybox `base64` writes it; panics on anything else.
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let mut out = Vec::new();
    for chunk in text.as_bytes().chunks(4) {
        let digits: Vec<u32> = chunk
            .iter()
            .take_while(|&&c| c != b'=')
            .map(|&c| u32::from(value(c)))
            .collect();
        let n = digits.iter().fold(0, |n, d| (n << 6) | d) << (6 * (4 - digits.len()));
        out.extend_from_slice(&n.to_be_bytes()[1..digits.len()]);
    }
    out
}
