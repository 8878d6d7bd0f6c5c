//! Turns argv and the environment into a validated `Config` (pure: no I/O).

use std::ffi::OsString;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::net::types::{Ipv4Net, Ipv6Net};
use crate::vm::display::Vnc;

/// What vminit was asked to do.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Boot the guest; the arguments are appended verbatim to QEMU's command line.
    Boot(Vec<OsString>),
    /// Prepare everything, write the QEMU command line, exec a shell (`bash`/`sh` as CMD).
    Shell,
    /// Report whether the guest runs (the image's HEALTHCHECK).
    Health,
    Help,
    Version,
}

/// Which container NICs go to the guest.
#[derive(Clone, Debug, PartialEq)]
pub enum Attach {
    /// Every NIC but loopback, bridges and kernel fallback tunnels (`AUTO_ATTACH=yes`).
    All,
    /// Exactly these, in this order (`AUTO_ATTACH=no` with `ATTACH_IFACES`).
    Only(Vec<String>),
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Accel {
    Auto,
    Kvm,
    Tcg,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Vhost {
    Auto,
    On,
    Off,
}

/// How the guest's NICs reach the container's network (`NET_DATAPATH`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum NetDatapath {
    /// macvtap when its device nodes can be made and opened, else tap; user mode when
    /// neither can be had.
    Auto,
    Macvtap,
    Tap,
    /// passt: no takeover, no capability needed.
    User,
}

/// The datapath a run uses, once `NetDatapath::Auto` is decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Datapath {
    /// A macvtap on the container NIC, read and written through /dev/tapN.
    #[default]
    Macvtap,
    /// A tap from /dev/net/tun joined to the container NIC by tc.
    Tap,
    /// One passt per NIC, QEMU connected to its Unix socket; the namespace is not changed.
    User,
}

/// Which of the container's TCP and UDP ports passt forwards to the guest (`USER_PORTS`).
#[derive(Clone, Debug, PartialEq)]
pub enum UserPorts {
    None,
    /// passt's `all`: every port that is not ephemeral and not bound (one socket each).
    All,
    /// A passt port list: ports and ranges, `~` exclusions, `:` target ports (`22,80,8000-8100`).
    List(String),
}

/// `USER_PORTS`' default: the well-known ports, which any file limit affords (passt holds
/// one socket per port, protocol and address family).
pub const USER_PORTS_DEFAULT: &str = "1-1023";

/// A test hook: stop working after a number of network changes, so that a test can kill
/// vminit at exactly that point (`VMINIT_TEST_PAUSE=setup:N` or `teardown:N`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Pause {
    /// After the Nth step of the takeover.
    Setup(usize),
    /// After the Nth step of putting the network back.
    Teardown(usize),
}

/// What QEMU keeps of vminit's privileges (`QEMU_CAPS`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum QemuCaps {
    /// No capabilities (bounding, ambient, inheritable, permitted and effective sets
    /// empty) and `no_new_privs`.
    Drop,
    /// vminit's own (root with the container's capabilities).
    Keep,
}

/// Where vminit finds and puts things; overridable so tests can point elsewhere.
#[derive(Clone, Debug, PartialEq)]
pub struct Paths {
    pub qemu: PathBuf,
    /// `qemu-img`, which creates and grows the disk (`DISK_SIZE`, `DISK_BASE`).
    pub qemu_img: PathBuf,
    /// `swtpm`, the guest's TPM (`TPM=yes`).
    pub swtpm: PathBuf,
    pub dnsmasq: PathBuf,
    pub passt: PathBuf,
    /// Where OVMF's files are (`BOOT_MODE=uefi`, `secure`): the image's compressed copies,
    /// or Debian's ovmf package's raw ones.
    pub ovmf_dir: PathBuf,
    pub disk: PathBuf,
    pub run_dir: PathBuf,
    pub resolv_conf: PathBuf,
    pub passwd: PathBuf,
    pub dev: PathBuf,
    pub sys_class_net: PathBuf,
    pub proc_devices: PathBuf,
}

impl Default for Paths {
    fn default() -> Self {
        Paths {
            qemu: "/usr/bin/qemu-system-x86_64".into(),
            qemu_img: "/usr/bin/qemu-img".into(),
            swtpm: "/usr/bin/swtpm".into(),
            dnsmasq: "/usr/sbin/dnsmasq".into(),
            passt: "/usr/bin/passt".into(),
            ovmf_dir: "/usr/share/OVMF".into(),
            disk: "/image/image.qcow2".into(),
            run_dir: "/run/vminit".into(),
            resolv_conf: "/etc/resolv.conf".into(),
            passwd: "/etc/passwd".into(),
            dev: "/dev".into(),
            sys_class_net: "/sys/class/net".into(),
            proc_devices: "/proc/devices".into(),
        }
    }
}

/// Queue pairs a guest NIC gets by default: one. Measured against two at two vCPUs
/// (BENCHMARKS.md, section 4b), one queue carried more in both directions and more short
/// connections on the bench machine, so multiqueue is asked for, not assumed.
pub const DEFAULT_QUEUES: u32 = 1;
/// `NIC_QUEUES=auto`: one queue pair per vCPU up to this many.
pub const AUTO_MAX_QUEUES: u32 = 8;
/// The most `NIC_QUEUES` may ask for (each queue pair is one open descriptor of the tap
/// and two MSI-X vectors in the guest).
pub const MAX_QUEUES: u32 = 64;

/// Everything vminit was told, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub command: Command,
    pub attach: Attach,
    pub selected_network: Option<Ipv4Net>,
    /// `SELECTED_NETWORK`'s IPv6 network (`fd00:1::/64`), if it names one.
    pub selected_network6: Option<Ipv6Net>,
    pub dhcp: bool,
    pub ram: String,
    pub cpus: u32,
    /// Queue pairs per guest NIC (`NIC_QUEUES`: a number, or `auto`, one per vCPU up to
    /// `AUTO_MAX_QUEUES`; default `DEFAULT_QUEUES`).
    pub nic_queues: u32,
    pub accel: Accel,
    pub vhost: Vhost,
    pub datapath: NetDatapath,
    /// `USER_PORTS`: what passt forwards to the guest in user mode.
    pub user_ports: UserPorts,
    pub stop_timeout: Duration,
    pub iface_wait: Duration,
    /// `HEALTH_GRACE`: how long `vminit health` tolerates a handed-over address the guest
    /// held and no longer answers for.
    pub health_grace: Duration,
    /// `GUEST_DNS`: resolvers the guest asks itself, after the container's own (empty: none).
    pub guest_dns: Vec<Ipv4Addr>,
    pub log_level: log::LevelFilter,
    /// QEMU's seccomp sandbox (`QEMU_SANDBOX`).
    pub qemu_sandbox: bool,
    pub qemu_caps: QemuCaps,
    pub paths: Paths,
    /// The graphical console (`DISPLAY=vnc`); `None`: QEMU runs with `-display none`.
    pub display: Option<Vnc>,
    /// Test hook (`VMINIT_TEST_PAUSE`); `None` in every real run.
    pub pause: Option<Pause>,
    /// The NoCloud seed the `CLOUD_INIT_*` inputs ask for; `None` when none is set.
    pub seed: Option<crate::vm::seed::Request>,
    /// The disk's size and base, the boot ISO, the NIC model (`DISK_SIZE`, ...).
    pub machine: crate::vm::machine::Machine,
}

/// Parses argv (without the program name) and the environment, seen through `env`.
pub fn parse<I>(args: I, env: &dyn Fn(&str) -> Option<String>) -> Result<Config>
where
    I: IntoIterator<Item = OsString>,
{
    let command = parse_command(args)?;
    let log_level = parse_log_level(env)?;
    let paths = parse_paths(env);
    if paths
        .run_dir
        .to_string_lossy()
        .chars()
        .any(char::is_control)
    {
        // dnsmasq's configuration names files in it, one directive per line.
        return Err(bad(
            "VMINIT_RUN_DIR",
            format!(
                "{:?} contains a control character; use a plain path such as /run/vminit",
                paths.run_dir
            ),
        ));
    }
    let mut config = Config {
        command,
        attach: Attach::All,
        selected_network: None,
        selected_network6: None,
        dhcp: true,
        ram: "1G".into(),
        cpus: 1,
        nic_queues: 1,
        accel: Accel::Auto,
        vhost: Vhost::Auto,
        datapath: NetDatapath::Auto,
        user_ports: UserPorts::List(USER_PORTS_DEFAULT.into()),
        stop_timeout: Duration::from_secs(8),
        health_grace: Duration::from_secs(20),
        iface_wait: Duration::from_secs(2),
        guest_dns: Vec::new(),
        log_level,
        qemu_sandbox: true,
        qemu_caps: QemuCaps::Drop,
        paths,
        display: None,
        pause: None,
        seed: None,
        machine: crate::vm::machine::Machine::default(),
    };
    if let Some(t) = parse_seconds(env, "HEALTH_GRACE")? {
        config.health_grace = t;
    }
    if matches!(
        config.command,
        Command::Health | Command::Help | Command::Version
    ) {
        // These never touch the network: AUTO_ATTACH and friends are not needed.
        return Ok(config);
    }
    config.attach = parse_attach(env)?;
    if let Some(v) = nonempty(env, "SELECTED_NETWORK") {
        (config.selected_network, config.selected_network6) = parse_selected(&v)?;
    }
    config.dhcp = yes_no(env, "ENABLE_DHCP", true)?;
    if let Some(ram) = nonempty(env, "RAM_SIZE") {
        config.ram = parse_ram(&ram)?;
    }
    if let Some(cpus) = nonempty(env, "CPU_CORES") {
        config.cpus = match cpus.parse::<u32>() {
            Ok(n) if (1..=255).contains(&n) => n,
            _ => {
                return Err(bad(
                    "CPU_CORES",
                    format!("{cpus:?} is not a number of CPUs; use 1 to 255"),
                ));
            }
        };
    }
    config.nic_queues = match nonempty(env, "NIC_QUEUES").as_deref() {
        None => DEFAULT_QUEUES,
        Some("auto") => config.cpus.min(AUTO_MAX_QUEUES),
        Some(n) => match n.parse::<u32>() {
            Ok(q) if (1..=MAX_QUEUES).contains(&q) => q,
            _ => {
                return Err(bad(
                    "NIC_QUEUES",
                    format!(
                        "{n:?} is not a number of queues per NIC; use 1 (no multiqueue) to {MAX_QUEUES}, or auto (one per vCPU, at most {AUTO_MAX_QUEUES})"
                    ),
                ));
            }
        },
    };
    config.accel = match nonempty(env, "ACCEL").as_deref() {
        None | Some("auto") => Accel::Auto,
        Some("kvm") => Accel::Kvm,
        Some("tcg") => Accel::Tcg,
        Some(v) => return Err(bad("ACCEL", format!("{v:?} is not one of auto, kvm, tcg"))),
    };
    config.vhost = match nonempty(env, "VHOST").as_deref() {
        None | Some("auto") => Vhost::Auto,
        Some("on") | Some("yes") => Vhost::On,
        Some("off") | Some("no") => Vhost::Off,
        Some(v) => return Err(bad("VHOST", format!("{v:?} is not one of auto, on, off"))),
    };
    config.datapath = match nonempty(env, "NET_DATAPATH").as_deref() {
        None | Some("auto") => NetDatapath::Auto,
        Some("macvtap") => NetDatapath::Macvtap,
        Some("tap") => NetDatapath::Tap,
        Some("user") => NetDatapath::User,
        Some(v) => {
            return Err(bad(
                "NET_DATAPATH",
                format!("{v:?} is not one of auto, macvtap, tap, user"),
            ));
        }
    };
    if let Some(v) = nonempty(env, "USER_PORTS") {
        config.user_ports = parse_user_ports(&v)?;
    }
    if let Some(t) = parse_seconds(env, "STOP_TIMEOUT")? {
        config.stop_timeout = t;
    }
    if let Some(t) = parse_seconds(env, "IFACE_WAIT")? {
        config.iface_wait = t;
    }
    config.display = crate::vm::display::parse(&|var| nonempty(env, var))?;
    config.guest_dns = parse_guest_dns(env)?;
    config.pause = parse_pause(env)?;
    config.seed = crate::vm::seed::request_from_env(env).map_err(|e| bad(e.var, e.msg))?;
    config.machine =
        crate::vm::machine::parse(&|var| nonempty(env, var)).map_err(|(var, msg)| bad(var, msg))?;
    config.qemu_sandbox = match nonempty(env, "QEMU_SANDBOX").as_deref() {
        None | Some("on") | Some("yes") => true,
        Some("off") | Some("no") => false,
        Some(v) => return Err(bad("QEMU_SANDBOX", format!("{v:?} is not on or off"))),
    };
    config.qemu_caps = match nonempty(env, "QEMU_CAPS").as_deref() {
        None | Some("drop") => QemuCaps::Drop,
        Some("keep") => QemuCaps::Keep,
        Some(v) => {
            return Err(bad("QEMU_CAPS", format!("{v:?} is not drop or keep")));
        }
    };
    Ok(config)
}

/// The debug shell to exec: bash, sh, else the busybox a user mounts (`-v
/// /path/busybox:/bin/busybox:ro`); `None` when there is none (`exists` sees the filesystem).
pub fn debug_shell(exists: &dyn Fn(&str) -> bool) -> Option<Vec<OsString>> {
    if let Some(sh) = ["/bin/bash", "/bin/sh"].into_iter().find(|p| exists(p)) {
        return Some(vec![sh.into()]);
    }
    exists("/bin/busybox").then(|| vec!["/bin/busybox".into(), "sh".into()])
}

fn bad(var: &str, msg: String) -> Error {
    Error::config(var, msg)
}

fn nonempty(env: &dyn Fn(&str) -> Option<String>, var: &str) -> Option<String> {
    env(var)
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

fn parse_command<I>(args: I) -> Result<Command>
where
    I: IntoIterator<Item = OsString>,
{
    let args: Vec<OsString> = args.into_iter().collect();
    let mut parser = lexopt::Parser::from_args(args.clone());
    let first = match parser.next() {
        Ok(Some(arg)) => arg,
        Ok(None) => return Ok(Command::Boot(Vec::new())),
        // Anything lexopt cannot classify is a QEMU argument.
        Err(_) => return Ok(Command::Boot(args)),
    };
    let alone = args.len() == 1;
    Ok(match first {
        lexopt::Arg::Long("help") | lexopt::Arg::Short('h') if alone => Command::Help,
        lexopt::Arg::Long("version") if alone => Command::Version,
        lexopt::Arg::Value(ref v) if alone && (v == "bash" || v == "sh") => Command::Shell,
        lexopt::Arg::Value(ref v) if alone && v == "health" => Command::Health,
        // `--` ends vminit's arguments: everything after it is QEMU's.
        _ if args[0] == "--" => Command::Boot(args[1..].to_vec()),
        _ => Command::Boot(args),
    })
}

fn parse_attach(env: &dyn Fn(&str) -> Option<String>) -> Result<Attach> {
    let ifaces = nonempty(env, "ATTACH_IFACES").or_else(|| nonempty(env, "ATTACH_IFS"));
    match nonempty(env, "AUTO_ATTACH").as_deref() {
        Some("yes") => Ok(Attach::All),
        Some("no") => {
            let names: Vec<String> = ifaces
                .unwrap_or_default()
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            if names.is_empty() {
                return Err(bad(
                    "ATTACH_IFACES",
                    "AUTO_ATTACH=no needs the interfaces to attach; set ATTACH_IFACES=\"eth0 eth1\"".into(),
                ));
            }
            if let Some(n) = names.iter().find(|n| n.len() > 15 || n.contains('/')) {
                return Err(bad(
                    "ATTACH_IFACES",
                    format!("{n:?} is not a valid interface name"),
                ));
            }
            let mut seen = Vec::new();
            for n in names {
                if !seen.contains(&n) {
                    seen.push(n);
                }
            }
            Ok(Attach::Only(seen))
        }
        None => Err(bad(
            "AUTO_ATTACH",
            "not set; use -e AUTO_ATTACH=yes to give every NIC to the VM, or AUTO_ATTACH=no with ATTACH_IFACES".into(),
        )),
        Some(v) => Err(bad(
            "AUTO_ATTACH",
            format!("{v:?} is not yes or no; use -e AUTO_ATTACH=yes or -e AUTO_ATTACH=no"),
        )),
    }
}

/// `SELECTED_NETWORK`: an IPv4 network, an IPv6 network, or one of each, separated by a
/// comma or spaces (`10.1.0.0/16,fd00:1::/64`). Each picks the address of its own family.
fn parse_selected(value: &str) -> Result<(Option<Ipv4Net>, Option<Ipv6Net>)> {
    let mut v4 = None;
    let mut v6 = None;
    for word in value
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|w| !w.is_empty())
    {
        let twice = |family: &str| {
            bad(
                "SELECTED_NETWORK",
                format!(
                    "{value:?} names two {family} networks; give at most one of each family, such as 10.1.0.0/16,fd00:1::/64"
                ),
            )
        };
        if word.contains(':') {
            let net = word.parse::<Ipv6Net>().map_err(|e| {
                bad(
                    "SELECTED_NETWORK",
                    format!("{word:?}: {e}; expected an IPv6 network such as fd00:1::/64"),
                )
            })?;
            if v6.replace(net).is_some() {
                return Err(twice("IPv6"));
            }
        } else {
            let net = word.parse::<Ipv4Net>().map_err(|e| {
                bad(
                    "SELECTED_NETWORK",
                    format!("{word:?}: {e}; expected IP/MASK such as 10.1.0.0/16"),
                )
            })?;
            if v4.replace(net).is_some() {
                return Err(twice("IPv4"));
            }
        }
    }
    Ok((v4, v6))
}

fn yes_no(env: &dyn Fn(&str) -> Option<String>, var: &str, default: bool) -> Result<bool> {
    match nonempty(env, var).as_deref() {
        None => Ok(default),
        Some("yes") | Some("true") | Some("1") | Some("on") => Ok(true),
        Some("no") | Some("false") | Some("0") | Some("off") => Ok(false),
        Some(v) => Err(bad(var, format!("{v:?} is not yes or no"))),
    }
}

/// `RAM_SIZE` as QEMU's `-m` takes it: a number with an optional K/M/G/T suffix.
fn parse_ram(v: &str) -> Result<String> {
    let digits = v.trim_end_matches(|c: char| "KkMmGgTt".contains(c));
    let suffix = &v[digits.len()..];
    let valid = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && suffix.len() <= 1
        && digits.parse::<u64>().map(|n| n > 0).unwrap_or(false);
    if !valid {
        return Err(bad(
            "RAM_SIZE",
            format!("{v:?} is not a memory size; use a number with M or G, such as 512M or 2G"),
        ));
    }
    if ram_bytes(v).is_none() {
        return Err(bad(
            "RAM_SIZE",
            format!("{v} is more memory than QEMU can address; use a size such as 512M or 2G"),
        ));
    }
    // A bare number means MiB to QEMU; keep it that way.
    Ok(v.to_ascii_uppercase())
}

/// `RAM_SIZE` (as `parse_ram` keeps it) in bytes; `None` beyond 2^63, which QEMU refuses.
pub fn ram_bytes(ram: &str) -> Option<u64> {
    let digits = ram.trim_end_matches(|c: char| "KkMmGgTt".contains(c));
    let shift = match ram[digits.len()..].to_ascii_uppercase().as_str() {
        "K" => 10,
        "" | "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return None,
    };
    let n: u64 = digits.parse().ok()?;
    n.checked_mul(1 << shift).filter(|b| *b < 1 << 63)
}

/// Whether the host can give the guest `ram` (`RAM_SIZE`): under the kernel's default
/// overcommit rule (`overcommit` is `vm.overcommit_memory`, 0) one allocation may not
/// exceed memory and swap together (`/proc/meminfo`'s `MemTotal` + `SwapTotal`), and QEMU
/// allocates the guest's RAM at start. Other rules, or an unreadable `meminfo`, allow it.
pub fn check_ram_fits(
    ram: &str,
    meminfo: &str,
    overcommit: &str,
) -> std::result::Result<(), String> {
    if overcommit.trim() != "0" {
        return Ok(());
    }
    let kib = |key: &str| -> Option<u64> {
        meminfo
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
    };
    let (Some(mem), Some(bytes)) = (kib("MemTotal:"), ram_bytes(ram)) else {
        return Ok(());
    };
    let total = (mem + kib("SwapTotal:").unwrap_or(0)) * 1024;
    if bytes > total {
        return Err(format!(
            "{ram} is more than this host's memory and swap ({} MiB), so QEMU cannot allocate it; use at most {}M",
            total >> 20,
            total >> 20
        ));
    }
    Ok(())
}

fn parse_seconds(env: &dyn Fn(&str) -> Option<String>, var: &str) -> Result<Option<Duration>> {
    let Some(v) = nonempty(env, var) else {
        return Ok(None);
    };
    match v.parse::<f64>() {
        Ok(s) if s.is_finite() && (0.0..=86400.0).contains(&s) => {
            Ok(Some(Duration::from_secs_f64(s)))
        }
        _ => Err(bad(var, format!("{v:?} is not a number of seconds"))),
    }
}

/// `GUEST_DNS=ip[,ip...]` (commas or spaces): resolvers the guest reaches itself, so never a
/// loopback address (the guest's loopback is its own) nor one no resolver can have.
fn parse_guest_dns(env: &dyn Fn(&str) -> Option<String>) -> Result<Vec<Ipv4Addr>> {
    let Some(v) = nonempty(env, "GUEST_DNS") else {
        return Ok(Vec::new());
    };
    let example = "use GUEST_DNS=ip[,ip...] with resolvers the guest reaches on its network, such as GUEST_DNS=10.0.0.53,1.1.1.1";
    let mut out = Vec::new();
    for word in v
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|w| !w.is_empty())
    {
        let Ok(ip) = word.parse::<Ipv4Addr>() else {
            return Err(bad(
                "GUEST_DNS",
                format!("{word:?} is not an IPv4 address; {example}"),
            ));
        };
        let unusable = if ip.is_loopback() {
            Some("a loopback address, which in the guest is the guest itself")
        } else if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() {
            Some("not the address of a host")
        } else {
            None
        };
        if let Some(why) = unusable {
            return Err(bad("GUEST_DNS", format!("{ip} is {why}; {example}")));
        }
        if !out.contains(&ip) {
            out.push(ip);
        }
    }
    Ok(out)
}

/// `USER_PORTS`: `none`, `all`, or ports and ranges as passt takes them (`22,80,8000-8100`,
/// `~` to exclude, `:` for a different guest port). vminit adds each NIC's address itself.
fn parse_user_ports(v: &str) -> Result<UserPorts> {
    match v {
        "none" => return Ok(UserPorts::None),
        "all" => return Ok(UserPorts::All),
        _ => {}
    }
    let list: String = v.chars().filter(|c| !c.is_whitespace()).collect();
    let item_ok = |item: &str| {
        let item = item.strip_prefix('~').unwrap_or(item);
        let ports = |s: &str| {
            let mut ends = s.splitn(2, '-');
            ends.all(|p| matches!(p.parse::<u32>(), Ok(1..=65535)))
        };
        match item.split_once(':') {
            Some((from, to)) => ports(from) && ports(to),
            None => ports(item),
        }
    };
    if list.split(',').all(item_ok) {
        Ok(UserPorts::List(list))
    } else {
        Err(bad(
            "USER_PORTS",
            format!(
                "{v:?} is not none, all, or a list of ports and ranges; use for example USER_PORTS=22,80,443,8000-8100"
            ),
        ))
    }
}

fn parse_pause(env: &dyn Fn(&str) -> Option<String>) -> Result<Option<Pause>> {
    let Some(v) = nonempty(env, "VMINIT_TEST_PAUSE") else {
        return Ok(None);
    };
    let parsed = v.split_once(':').and_then(|(when, n)| {
        let n = n.parse::<usize>().ok().filter(|n| *n > 0)?;
        match when {
            "setup" => Some(Pause::Setup(n)),
            "teardown" => Some(Pause::Teardown(n)),
            _ => None,
        }
    });
    parsed.map(Some).ok_or_else(|| {
        bad(
            "VMINIT_TEST_PAUSE",
            format!("{v:?} is not setup:N or teardown:N (a test hook)"),
        )
    })
}

fn parse_log_level(env: &dyn Fn(&str) -> Option<String>) -> Result<log::LevelFilter> {
    match nonempty(env, "LOG_LEVEL") {
        None => Ok(log::LevelFilter::Info),
        Some(v) => v.parse().map_err(|_| {
            bad(
                "LOG_LEVEL",
                format!("{v:?} is not one of error, warn, info, debug, trace"),
            )
        }),
    }
}

fn parse_paths(env: &dyn Fn(&str) -> Option<String>) -> Paths {
    let mut paths = Paths::default();
    let overrides: [(&str, &mut PathBuf); 9] = [
        ("VMINIT_QEMU", &mut paths.qemu),
        ("VMINIT_QEMU_IMG", &mut paths.qemu_img),
        ("VMINIT_SWTPM", &mut paths.swtpm),
        ("VMINIT_DNSMASQ", &mut paths.dnsmasq),
        ("VMINIT_PASST", &mut paths.passt),
        ("VMINIT_OVMF_DIR", &mut paths.ovmf_dir),
        ("VMINIT_DISK", &mut paths.disk),
        ("VMINIT_RUN_DIR", &mut paths.run_dir),
        ("VMINIT_RESOLV_CONF", &mut paths.resolv_conf),
    ];
    for (var, slot) in overrides {
        if let Some(v) = nonempty(env, var) {
            *slot = v.into();
        }
    }
    paths
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn parse_with(args: &[&str], vars: &[(&str, &str)]) -> Result<Config> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        parse(args.iter().map(OsString::from), &move |k: &str| {
            map.get(k).cloned()
        })
    }

    fn var_of(err: Error) -> String {
        match err {
            Error::Config { var, .. } => var,
            other => panic!("expected a config error, got {other}"),
        }
    }

    #[test]
    fn auto_attach_yes_attaches_everything_with_defaults() {
        let c = parse_with(&[], &[("AUTO_ATTACH", "yes")]).unwrap();
        assert_eq!(c.attach, Attach::All);
        assert_eq!(c.command, Command::Boot(vec![]));
        assert_eq!((c.ram.as_str(), c.cpus), ("1G", 1));
        assert_eq!((c.accel, c.vhost, c.dhcp), (Accel::Auto, Vhost::Auto, true));
        assert_eq!(c.paths.disk, PathBuf::from("/image/image.qcow2"));
        assert_eq!(c.display, None);
        assert_eq!((c.qemu_sandbox, c.qemu_caps), (true, QemuCaps::Drop));
    }

    #[test]
    fn auto_attach_unset_or_invalid_names_the_variable() {
        assert_eq!(var_of(parse_with(&[], &[]).unwrap_err()), "AUTO_ATTACH");
        assert_eq!(
            var_of(parse_with(&[], &[("AUTO_ATTACH", "maybe")]).unwrap_err()),
            "AUTO_ATTACH"
        );
    }

    #[test]
    fn attach_ifaces_accepts_spaces_commas_and_the_old_name() {
        let c = parse_with(
            &[],
            &[("AUTO_ATTACH", "no"), ("ATTACH_IFACES", "eth1, eth0 eth1")],
        )
        .unwrap();
        assert_eq!(c.attach, Attach::Only(vec!["eth1".into(), "eth0".into()]));
        let c = parse_with(&[], &[("AUTO_ATTACH", "no"), ("ATTACH_IFS", "eth2")]).unwrap();
        assert_eq!(c.attach, Attach::Only(vec!["eth2".into()]));
    }

    #[test]
    fn auto_attach_no_without_interfaces_is_an_error() {
        let e = parse_with(&[], &[("AUTO_ATTACH", "no")]).unwrap_err();
        assert_eq!(var_of(e), "ATTACH_IFACES");
    }

    #[test]
    fn selected_network_must_be_ip_slash_mask() {
        let c = parse_with(
            &[],
            &[("AUTO_ATTACH", "yes"), ("SELECTED_NETWORK", "10.1.0.0/16")],
        )
        .unwrap();
        assert_eq!(c.selected_network, Some("10.1.0.0/16".parse().unwrap()));
        for bad in ["10.1.0.0", "10.1.0/16", "10.1.0.0/40", "banana"] {
            let e =
                parse_with(&[], &[("AUTO_ATTACH", "yes"), ("SELECTED_NETWORK", bad)]).unwrap_err();
            assert_eq!(var_of(e), "SELECTED_NETWORK", "{bad}");
        }
    }

    #[test]
    fn selected_network_takes_one_ipv4_and_one_ipv6_network_in_any_order() {
        let sel = |v: &str| {
            parse_with(&[], &[("AUTO_ATTACH", "yes"), ("SELECTED_NETWORK", v)])
                .map(|c| (c.selected_network, c.selected_network6))
        };
        let both = (
            Some("10.1.0.0/16".parse().unwrap()),
            Some("fd00:1::/64".parse().unwrap()),
        );
        assert_eq!(sel("10.1.0.0/16,fd00:1::/64").unwrap(), both);
        assert_eq!(sel("fd00:1::/64 10.1.0.0/255.255.0.0").unwrap(), both);
        assert_eq!(
            sel("fd00:1::/64").unwrap(),
            (None, Some("fd00:1::/64".parse().unwrap()))
        );
        for bad in [
            "10.1.0.0/16,10.2.0.0/16",
            "fd00::/8,fd01::/16",
            "fd00::/129",
            "fd00:::1/64",
        ] {
            let e = sel(bad).unwrap_err();
            assert_eq!(var_of(e), "SELECTED_NETWORK", "{bad}");
        }
    }

    #[test]
    fn cmd_arguments_reach_qemu_verbatim() {
        let c = parse_with(&["-vnc", ":0", "-append", "a b"], &[("AUTO_ATTACH", "yes")]).unwrap();
        assert_eq!(
            c.command,
            Command::Boot(vec![
                "-vnc".into(),
                ":0".into(),
                "-append".into(),
                "a b".into()
            ])
        );
        let c = parse_with(&["--", "--help"], &[("AUTO_ATTACH", "yes")]).unwrap();
        assert_eq!(c.command, Command::Boot(vec!["--help".into()]));
    }

    #[test]
    fn bash_or_sh_alone_is_the_debug_shell() {
        for word in ["bash", "sh"] {
            let c = parse_with(&[word], &[("AUTO_ATTACH", "yes")]).unwrap();
            assert_eq!(c.command, Command::Shell);
        }
        let c = parse_with(&["bash", "-x"], &[("AUTO_ATTACH", "yes")]).unwrap();
        assert!(matches!(c.command, Command::Boot(_)));
    }

    #[test]
    fn the_debug_shell_is_bash_sh_or_a_mounted_busybox() {
        let only = |have: &'static [&'static str]| move |p: &str| have.contains(&p);
        assert_eq!(
            debug_shell(&only(&["/bin/sh", "/bin/bash"])),
            Some(vec!["/bin/bash".into()])
        );
        assert_eq!(
            debug_shell(&only(&["/bin/busybox"])),
            Some(vec!["/bin/busybox".into(), "sh".into()])
        );
        assert_eq!(debug_shell(&only(&[])), None);
    }

    #[test]
    fn health_needs_no_network_settings() {
        let c = parse_with(&["health"], &[]).unwrap();
        assert_eq!(c.command, Command::Health);
    }

    #[test]
    fn a_nic_gets_one_queue_unless_nic_queues_asks_for_more_or_one_per_vcpu() {
        let queues = |env: &[(&str, &str)]| {
            let mut env = env.to_vec();
            env.push(("AUTO_ATTACH", "yes"));
            parse_with(&[], &env).unwrap().nic_queues
        };
        assert_eq!(queues(&[]), 1);
        assert_eq!(queues(&[("CPU_CORES", "4")]), 1);
        assert_eq!(queues(&[("CPU_CORES", "2"), ("NIC_QUEUES", "auto")]), 2);
        assert_eq!(queues(&[("CPU_CORES", "32"), ("NIC_QUEUES", "auto")]), 8);
        assert_eq!(queues(&[("CPU_CORES", "4"), ("NIC_QUEUES", "1")]), 1);
        assert_eq!(queues(&[("CPU_CORES", "2"), ("NIC_QUEUES", "16")]), 16);
    }

    #[test]
    fn sizes_counts_and_modes_are_validated() {
        let ok = parse_with(
            &[],
            &[
                ("AUTO_ATTACH", "yes"),
                ("RAM_SIZE", "512m"),
                ("CPU_CORES", "2"),
                ("ACCEL", "tcg"),
                ("VHOST", "off"),
                ("ENABLE_DHCP", "no"),
                ("STOP_TIMEOUT", "3.5"),
                ("QEMU_SANDBOX", "off"),
                ("QEMU_CAPS", "keep"),
                ("NET_DATAPATH", "tap"),
            ],
        )
        .unwrap();
        assert_eq!((ok.qemu_sandbox, ok.qemu_caps), (false, QemuCaps::Keep));
        assert_eq!(ok.datapath, NetDatapath::Tap);
        assert_eq!((ok.ram.as_str(), ok.cpus), ("512M", 2));
        assert_eq!(
            (ok.accel, ok.vhost, ok.dhcp),
            (Accel::Tcg, Vhost::Off, false)
        );
        assert_eq!(ok.stop_timeout, Duration::from_millis(3500));
        for (var, v) in [
            ("RAM_SIZE", "lots"),
            ("RAM_SIZE", "0"),
            ("RAM_SIZE", "2GB"),
            ("CPU_CORES", "0"),
            ("NIC_QUEUES", "0"),
            ("NIC_QUEUES", "65"),
            ("NIC_QUEUES", "many"),
            ("ACCEL", "hvf"),
            ("VHOST", "maybe"),
            ("NET_DATAPATH", "macvlan"),
            ("ENABLE_DHCP", "sometimes"),
            ("STOP_TIMEOUT", "-1"),
            ("IFACE_WAIT", "soon"),
            ("LOG_LEVEL", "loud"),
            ("QEMU_SANDBOX", "strict"),
            ("QEMU_CAPS", "some"),
            ("NET_DATAPATH", "slirp"),
            ("USER_PORTS", "ssh"),
            ("USER_PORTS", "0-80"),
            ("USER_PORTS", "10.0.0.2/80"),
            ("USER_PORTS", "22,"),
        ] {
            let e = parse_with(&[], &[("AUTO_ATTACH", "yes"), (var, v)]).unwrap_err();
            assert_eq!(var_of(e), var, "{var}={v}");
        }
    }

    #[test]
    fn user_mode_forwards_the_well_known_ports_unless_told_otherwise() {
        let c = parse_with(&[], &[("AUTO_ATTACH", "yes")]).unwrap();
        assert_eq!(c.datapath, NetDatapath::Auto);
        assert_eq!(c.user_ports, UserPorts::List("1-1023".into()));
        let c = parse_with(
            &[],
            &[
                ("AUTO_ATTACH", "yes"),
                ("NET_DATAPATH", "user"),
                ("USER_PORTS", "22, 80,8000-8100,~8050,2222:22"),
            ],
        )
        .unwrap();
        assert_eq!(c.datapath, NetDatapath::User);
        assert_eq!(
            c.user_ports,
            UserPorts::List("22,80,8000-8100,~8050,2222:22".into())
        );
        for (v, want) in [("none", UserPorts::None), ("all", UserPorts::All)] {
            let c = parse_with(&[], &[("AUTO_ATTACH", "yes"), ("USER_PORTS", v)]).unwrap();
            assert_eq!(c.user_ports, want);
        }
    }

    #[test]
    fn display_vnc_turns_the_graphical_console_on() {
        let c = parse_with(
            &[],
            &[
                ("AUTO_ATTACH", "yes"),
                ("DISPLAY", "vnc"),
                ("VNC_DIR", " /srv/console "),
            ],
        )
        .unwrap();
        let vnc = c.display.expect("a console");
        assert_eq!(vnc.socket(), PathBuf::from("/srv/console/vnc.sock"));
        let e = parse_with(&[], &[("AUTO_ATTACH", "yes"), ("DISPLAY", "gtk")]).unwrap_err();
        assert_eq!(var_of(e), "DISPLAY");
    }

    #[test]
    fn guest_dns_takes_ipv4_resolvers_the_guest_can_reach() {
        let c = parse_with(
            &[],
            &[
                ("AUTO_ATTACH", "yes"),
                ("GUEST_DNS", "10.0.0.53, 1.1.1.1 10.0.0.53"),
            ],
        )
        .unwrap();
        assert_eq!(
            c.guest_dns,
            vec![Ipv4Addr::new(10, 0, 0, 53), Ipv4Addr::new(1, 1, 1, 1)]
        );
        let c = parse_with(&[], &[("AUTO_ATTACH", "yes")]).unwrap();
        assert!(c.guest_dns.is_empty());
        for v in [
            "127.0.0.11",
            "dns.example",
            "10.0.0.53;1.1.1.1",
            "fd00::53",
            "0.0.0.0",
            "224.0.0.251",
            "10.0.0.0/8",
        ] {
            let e = parse_with(&[], &[("AUTO_ATTACH", "yes"), ("GUEST_DNS", v)]).unwrap_err();
            let line = e.to_string();
            assert_eq!(var_of(e), "GUEST_DNS", "{v}");
            assert!(
                !line.contains('\n') && line.contains("GUEST_DNS=ip"),
                "{line}"
            );
        }
    }

    #[test]
    fn the_test_pause_names_a_phase_and_a_step() {
        let at = |v: &str| parse_with(&[], &[("AUTO_ATTACH", "yes"), ("VMINIT_TEST_PAUSE", v)]);
        assert_eq!(at("setup:3").unwrap().pause, Some(Pause::Setup(3)));
        assert_eq!(at("teardown:1").unwrap().pause, Some(Pause::Teardown(1)));
        for bad in ["setup", "setup:0", "later:2", "teardown:x"] {
            assert_eq!(var_of(at(bad).unwrap_err()), "VMINIT_TEST_PAUSE", "{bad}");
        }
        let c = parse_with(&[], &[("AUTO_ATTACH", "yes")]).unwrap();
        assert_eq!(c.pause, None);
    }

    #[test]
    fn paths_can_be_overridden() {
        let c = parse_with(
            &[],
            &[
                ("AUTO_ATTACH", "yes"),
                ("VMINIT_QEMU", "/opt/q"),
                ("VMINIT_DISK", "/d.qcow2"),
            ],
        )
        .unwrap();
        assert_eq!(c.paths.qemu, PathBuf::from("/opt/q"));
        assert_eq!(c.paths.disk, PathBuf::from("/d.qcow2"));
        let e = parse_with(
            &[],
            &[
                ("AUTO_ATTACH", "yes"),
                ("VMINIT_RUN_DIR", "/run/x\nport=53"),
            ],
        )
        .unwrap_err();
        assert_eq!(var_of(e), "VMINIT_RUN_DIR");
    }

    #[test]
    fn ram_beyond_what_qemu_addresses_or_the_host_holds_is_refused() {
        assert_eq!(ram_bytes("512M"), Some(512 << 20));
        assert_eq!(ram_bytes("2"), Some(2 << 20), "a bare number is MiB");
        assert_eq!(ram_bytes("99999999999T"), None);
        let env = |k: &str| (k == "RAM_SIZE").then(|| "99999999999T".to_string());
        let e = parse_ram(&env("RAM_SIZE").unwrap()).unwrap_err();
        assert!(
            e.to_string().contains("more memory than QEMU can address"),
            "{e}"
        );
        let meminfo = "MemTotal:        1024000 kB\nSwapTotal:        1024000 kB\n";
        assert!(check_ram_fits("1G", meminfo, "0\n").is_ok());
        let e = check_ram_fits("4G", meminfo, "0\n").unwrap_err();
        assert!(e.contains("use at most 2000M"), "{e}");
        assert!(
            check_ram_fits("4G", meminfo, "1\n").is_ok(),
            "overcommit always"
        );
        assert!(check_ram_fits("4G", "", "0\n").is_ok(), "nothing known");
    }
}
