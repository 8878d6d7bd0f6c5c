//! The NoCloud seed that lets an unmodified cloud image boot with the user's SSH keys, user,
//! hostname and network (pure): the `CLOUD_INIT_*` inputs and the guest's NICs in, the texts of
//! `meta-data`, `user-data` and `network-config` out.
//!
//! QEMU presents the directory these files are written to as a read-only FAT disk labelled
//! `cidata` (its vvfat driver), which cloud-init's NoCloud datasource finds by that label.
//! This module uses nothing but `std`, so `tests/ns/seed.rs` can compile it as it is and check its
//! output with cloud-init itself and with PyYAML.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

/// The volume label cloud-init's NoCloud datasource looks for.
pub const LABEL: &str = "cidata";

pub const SSH_KEYS: &str = "CLOUD_INIT_SSH_KEYS";
pub const SSH_KEYS_FILE: &str = "CLOUD_INIT_SSH_KEYS_FILE";
pub const USER: &str = "CLOUD_INIT_USER";
pub const PASSWORD_HASH: &str = "CLOUD_INIT_PASSWORD_HASH";
pub const HOSTNAME: &str = "CLOUD_INIT_HOSTNAME";
pub const USER_DATA: &str = "CLOUD_INIT_USER_DATA";
pub const INSTANCE_ID: &str = "CLOUD_INIT_INSTANCE_ID";

/// A `CLOUD_INIT_*` input that cannot be used: the variable, and what is wrong with the fix.
#[derive(Clone, Debug, PartialEq)]
pub struct Invalid {
    pub var: &'static str,
    pub msg: String,
}

fn invalid(var: &'static str, msg: impl Into<String>) -> Invalid {
    Invalid {
        var,
        msg: msg.into(),
    }
}

/// What the `CLOUD_INIT_*` variables ask for, checked as far as their text allows (the files
/// they name are read later, before anything changes).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Request {
    /// `CLOUD_INIT_SSH_KEYS`, one authorized_keys line each.
    pub ssh_keys: Vec<String>,
    pub ssh_keys_file: Option<PathBuf>,
    pub user: Option<String>,
    pub password_hash: Option<String>,
    pub hostname: Option<String>,
    pub user_data_file: Option<PathBuf>,
    pub instance_id: Option<String>,
}

/// Reads the `CLOUD_INIT_*` variables through `env`. `None` when none is set: no seed at all.
pub fn request_from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<Option<Request>, Invalid> {
    let get = |var: &str| {
        env(var)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let keys = get(SSH_KEYS);
    let request = Request {
        ssh_keys: match &keys {
            Some(text) => {
                parse_ssh_keys(text).map_err(|msg| invalid(SSH_KEYS, format!("the value {msg}")))?
            }
            None => Vec::new(),
        },
        ssh_keys_file: get(SSH_KEYS_FILE).map(PathBuf::from),
        user: get(USER),
        password_hash: get(PASSWORD_HASH),
        hostname: get(HOSTNAME),
        user_data_file: get(USER_DATA).map(PathBuf::from),
        instance_id: get(INSTANCE_ID),
    };
    if request == Request::default() {
        return Ok(None);
    }
    if let Some(user) = &request.user {
        check_user(user).map_err(|msg| invalid(USER, msg))?;
    }
    if let Some(hash) = &request.password_hash {
        check_password_hash(hash)
            .map_err(|msg| invalid(PASSWORD_HASH, format!("the value {msg}")))?;
        if request.user.is_none() {
            return Err(invalid(
                PASSWORD_HASH,
                "needs CLOUD_INIT_USER, the user whose password it is",
            ));
        }
    }
    if let Some(hostname) = &request.hostname {
        check_hostname(hostname).map_err(|msg| invalid(HOSTNAME, msg))?;
    }
    if let Some(id) = &request.instance_id {
        check_instance_id(id).map_err(|msg| invalid(INSTANCE_ID, msg))?;
    }
    if request.user_data_file.is_some() {
        // The user's own user-data is passed on as it is; settings vminit would have to write
        // into it are refused rather than silently dropped.
        let login = [
            (SSH_KEYS, keys.is_some()),
            (SSH_KEYS_FILE, request.ssh_keys_file.is_some()),
            (USER, request.user.is_some()),
            (PASSWORD_HASH, request.password_hash.is_some()),
        ];
        if let Some((var, _)) = login.into_iter().find(|(_, set)| *set) {
            return Err(invalid(
                var,
                "cannot be combined with CLOUD_INIT_USER_DATA (vminit passes your user-data on as it is); put it in your user-data",
            ));
        }
    }
    Ok(Some(request))
}

/// Everything the seed's files are made of, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Seed {
    pub instance_id: String,
    pub hostname: String,
    pub user_data: UserData,
}

#[derive(Clone, Debug, PartialEq)]
pub enum UserData {
    /// The user's own file (`CLOUD_INIT_USER_DATA`), byte for byte.
    Own(Vec<u8>),
    /// Written by vminit from the login inputs.
    Login {
        /// `None`: the keys go to the image's default user (`debian`, `ubuntu`, ...).
        user: Option<String>,
        password_hash: Option<String>,
        ssh_keys: Vec<String>,
    },
}

/// The seed, from the request, the contents of the files it names (`keys_file`, `user_data`),
/// and the container's hostname (the default hostname, and what the instance id comes from).
pub fn seed(
    request: &Request,
    keys_file: Option<&[u8]>,
    user_data: Option<Vec<u8>>,
    container_hostname: &str,
) -> Result<Seed, Invalid> {
    // File contents are judged with the file's name in front: "/run/user-data is empty".
    let named = |path: &Option<PathBuf>, msg: String| match path {
        Some(path) => format!("{} {msg}", path.display()),
        None => format!("the file {msg}"),
    };
    let user_data = match user_data {
        Some(bytes) => {
            check_user_data(&bytes)
                .map_err(|msg| invalid(USER_DATA, named(&request.user_data_file, msg)))?;
            UserData::Own(bytes)
        }
        None => {
            let mut ssh_keys = request.ssh_keys.clone();
            if let Some(bytes) = keys_file {
                let file = &request.ssh_keys_file;
                let text = std::str::from_utf8(bytes).map_err(|_| {
                    invalid(
                        SSH_KEYS_FILE,
                        named(file, "is not text; give a .pub file".into()),
                    )
                })?;
                let keys =
                    parse_ssh_keys(text).map_err(|msg| invalid(SSH_KEYS_FILE, named(file, msg)))?;
                ssh_keys.extend(keys);
            }
            UserData::Login {
                user: request.user.clone(),
                password_hash: request.password_hash.clone(),
                ssh_keys,
            }
        }
    };
    Ok(Seed {
        instance_id: request
            .instance_id
            .clone()
            .unwrap_or_else(|| instance_id(container_hostname)),
        hostname: request
            .hostname
            .clone()
            .unwrap_or_else(|| container_hostname.to_string()),
        user_data,
    })
}

/// The instance id of a container with this hostname: stable across restarts of the container
/// (Docker keeps the hostname, by default the container id; Kubernetes keeps the pod name), and
/// different for containers with different hostnames. Not the MACs: Docker does not keep a
/// generated MAC across a restart (they are random since moby/moby#48808), and cloud-init would
/// then run its first-boot modules again on `docker restart`.
pub fn instance_id(hostname: &str) -> String {
    // FNV-1a, 64 bits: short, stable across versions and platforms, no dependency.
    let hash = hostname.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("vminit-{hash:016x}")
}

/// The `meta-data` file: the instance id and the hostname.
pub fn meta_data(seed: &Seed) -> String {
    format!(
        "# Written by vminit.\ninstance-id: {}\nlocal-hostname: {}\n",
        quote(&seed.instance_id),
        quote(&seed.hostname)
    )
}

/// The `user-data` file: the user's own, or a cloud-config with the login inputs.
pub fn user_data(seed: &Seed) -> Vec<u8> {
    let (user, password_hash, ssh_keys) = match &seed.user_data {
        UserData::Own(bytes) => return bytes.clone(),
        UserData::Login {
            user,
            password_hash,
            ssh_keys,
        } => (user, password_hash, ssh_keys),
    };
    let mut y =
        String::from("#cloud-config\n# Written by vminit from the CLOUD_INIT_* settings.\n");
    let list = |y: &mut String, indent: &str, items: &[String]| {
        for item in items {
            let _ = writeln!(y, "{indent}- {}", quote(item));
        }
    };
    match user {
        Some(name) => {
            // Only this user: the image's default user is not created.
            y.push_str("users:\n");
            let _ = writeln!(y, "  - name: {}", quote(name));
            y.push_str("    shell: \"/bin/bash\"\n");
            y.push_str("    sudo: \"ALL=(ALL) NOPASSWD:ALL\"\n");
            match password_hash {
                Some(hash) => {
                    y.push_str("    lock_passwd: false\n");
                    let _ = writeln!(y, "    hashed_passwd: {}", quote(hash));
                }
                None => y.push_str("    lock_passwd: true\n"),
            }
            if !ssh_keys.is_empty() {
                y.push_str("    ssh_authorized_keys:\n");
                list(&mut y, "      ", ssh_keys);
            }
        }
        None if !ssh_keys.is_empty() => {
            // The image's default user (debian, ubuntu, fedora, ...) gets the keys.
            y.push_str("ssh_authorized_keys:\n");
            list(&mut y, "  ", ssh_keys);
        }
        None => {}
    }
    // Apply network-config on every boot, not only the first one of an instance: the
    // container's MACs and addresses may change across restarts while its instance id does not.
    y.push_str("updates:\n  network:\n    when: [\"boot\"]\n");
    y.into_bytes()
}

/// One guest NIC as the network-config states it: what DHCP would give it.
#[derive(Clone, Debug, PartialEq)]
pub struct SeedNic {
    /// The container NIC it came from (`eth0`), the entry's name; the guest matches by MAC.
    pub name: String,
    /// `02:42:ac:13:00:02`.
    pub mac: String,
    /// The IPv4 address and its prefix length; `None` for an IPv6-only NIC.
    pub addr: Option<(Ipv4Addr, u8)>,
    pub mtu: u32,
    /// Classless static routes, in order, the default route included on one NIC only.
    pub routes: Vec<SeedRoute>,
    pub dns: Vec<Ipv4Addr>,
    pub search: Vec<String>,
    /// What vminit's router advertisements and DHCPv6 give it; `None` without IPv6.
    pub v6: Option<SeedNic6>,
}

/// The IPv6 side of one guest NIC: what the router advertisements and DHCPv6 give it.
#[derive(Clone, Debug, PartialEq)]
pub struct SeedNic6 {
    /// The address, with the container's prefix length (DHCPv6 gives the address, the
    /// advertisement its on-link prefix: the same thing).
    pub addr: Ipv6Addr,
    pub prefix: u8,
    /// The default route's gateway, as the container's route names it (global, or
    /// link-local as Calico's); only on the NIC that held the container's IPv6 default route.
    pub gateway: Option<Ipv6Addr>,
    /// The NIC's other IPv6 routes: other on-link prefixes (no gateway), and routes through a
    /// gateway.
    pub routes: Vec<SeedRoute6>,
    pub dns: Vec<Ipv6Addr>,
    pub search: Vec<String>,
}

/// An IPv6 route: `network/prefix`, via `gateway` or on-link when `None`.
#[derive(Clone, Debug, PartialEq)]
pub struct SeedRoute6 {
    pub network: Ipv6Addr,
    pub prefix: u8,
    pub gateway: Option<Ipv6Addr>,
}

/// A route: `network/prefix`, via `gateway` or on-link when `None`.
#[derive(Clone, Debug, PartialEq)]
pub struct SeedRoute {
    pub network: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Option<Ipv4Addr>,
}

/// The `network-config` file (version 2): each NIC matched by its MAC, with its address, MTU,
/// routes and DNS: exactly what dnsmasq would give it by DHCP, and what vminit's router
/// advertisements and DHCPv6 would give it in IPv6.
///
/// IPv6, where a NIC has it: the address with its prefix, `dhcp6: false` and `accept-ra:
/// false` (the static configuration is complete, as with `dhcp4: false`: the guest does not
/// also take a second default route from vminit's advertisements), and the default route as
/// `gateway6`. Not as a route to `::/0`: cloud-init before 23.1 renders that as a route to
/// `::/64` with every renderer but netplan (LP #2003562; Debian 12 ships 22.4), while it
/// renders `gateway6` as the default route with each of them (netplan only warns that it is
/// deprecated). A gateway that is neither link-local nor inside the address's prefix needs
/// `on-link`, which only a route has: then it is a route to `::/0`.
pub fn network_config(nics: &[SeedNic]) -> String {
    let mut y = String::from(
        "# Written by vminit: each NIC the guest took over, matched by MAC, configured as DHCP\n\
         # would configure it (the same address, routes, MTU and DNS).\n\
         version: 2\nethernets:\n",
    );
    for nic in nics {
        let _ = writeln!(y, "  {}:", quote(&nic.name));
        let _ = writeln!(y, "    match:\n      macaddress: {}", quote(&nic.mac));
        y.push_str("    dhcp4: false\n");
        if nic.v6.is_some() {
            y.push_str("    dhcp6: false\n    accept-ra: false\n");
        }
        y.push_str("    addresses:\n");
        if let Some((addr, prefix)) = nic.addr {
            let _ = writeln!(y, "      - {}", quote(&format!("{addr}/{prefix}")));
        }
        if let Some(v6) = &nic.v6 {
            let _ = writeln!(
                y,
                "      - {}",
                quote(&format!("{}/{}", v6.addr, v6.prefix))
            );
        }
        let default6 = nic.v6.as_ref().and_then(|v6| v6.gateway.map(|gw| (v6, gw)));
        let default6_onlink = default6.filter(|(v6, gw)| needs_onlink6(v6, *gw));
        if let Some((_, gw)) = default6.filter(|_| default6_onlink.is_none()) {
            let _ = writeln!(y, "    gateway6: {}", quote(&gw.to_string()));
        }
        let _ = writeln!(y, "    mtu: {}", nic.mtu);
        let routes6: &[SeedRoute6] = nic.v6.as_ref().map_or(&[], |v6| &v6.routes);
        if !nic.routes.is_empty() || !routes6.is_empty() || default6_onlink.is_some() {
            y.push_str("    routes:\n");
        }
        for r in &nic.routes {
            let _ = writeln!(
                y,
                "      - to: {}",
                quote(&format!("{}/{}", r.network, r.prefix))
            );
            match (r.gateway, r.prefix) {
                // `on-link`: the gateway may lie outside the NIC's subnet (a /32 pod).
                (Some(gw), _) => {
                    let _ = writeln!(
                        y,
                        "        via: {}\n        on-link: true",
                        quote(&gw.to_string())
                    );
                }
                // A host on the link (the door, a /32 pod's gateway), written as a route via
                // the guest's own address: the kernel then resolves the host itself on the
                // link, as for `dev eth0` alone. Every renderer of cloud-init 22.4 keeps
                // `to` and `via` (its ENI and networkd renderers drop `on-link` and `scope`,
                // and ENI fails on a route without a gateway); `on-link` would make the
                // kernel refuse a local gateway.
                (None, 32) => match nic.addr {
                    Some((own, _)) => {
                        let _ = writeln!(y, "        via: {}", quote(&own.to_string()));
                    }
                    None => {
                        let _ = writeln!(
                            y,
                            "        via: {}\n        on-link: true",
                            quote(&r.network.to_string())
                        );
                    }
                },
                (None, _) => y.push_str("        scope: link\n"),
            }
        }
        if let Some(v6) = &nic.v6 {
            for r in &v6.routes {
                route6(&mut y, v6, r.network, r.prefix, r.gateway);
            }
            if let Some((v6, gw)) = default6_onlink {
                route6(&mut y, v6, Ipv6Addr::UNSPECIFIED, 0, Some(gw));
            }
        }
        let mut dns: Vec<String> = nic.dns.iter().map(Ipv4Addr::to_string).collect();
        let mut search = nic.search.clone();
        if let Some(v6) = &nic.v6 {
            dns.extend(v6.dns.iter().map(Ipv6Addr::to_string));
            for name in &v6.search {
                if !search.contains(name) {
                    search.push(name.clone());
                }
            }
        }
        if !dns.is_empty() || !search.is_empty() {
            y.push_str("    nameservers:\n");
        }
        if !dns.is_empty() {
            y.push_str("      addresses:\n");
            for s in &dns {
                let _ = writeln!(y, "        - {}", quote(s));
            }
        }
        if !search.is_empty() {
            y.push_str("      search:\n");
            for s in &search {
                let _ = writeln!(y, "        - {}", quote(s));
            }
        }
    }
    y
}

/// Whether a route through `gateway` needs `on-link`: the gateway is not link-local and not
/// inside the NIC's prefix (a `/128` pod with a global gateway).
fn needs_onlink6(v6: &SeedNic6, gateway: Ipv6Addr) -> bool {
    let link_local = gateway.segments()[0] & 0xffc0 == 0xfe80;
    let mask = match v6.prefix {
        0 => 0,
        p => u128::MAX << (128 - u32::from(p.min(128))),
    };
    let inside = u128::from(gateway) & mask == u128::from(v6.addr) & mask && v6.prefix < 128;
    let reachable = link_local || inside;
    !reachable
}

/// One IPv6 route of `v6`'s NIC, written as the IPv4 ones are: through a gateway (`on-link`
/// where it needs it), a host on the link as a route via itself, other on-link prefixes with
/// `scope: link`.
fn route6(y: &mut String, v6: &SeedNic6, network: Ipv6Addr, prefix: u8, gw: Option<Ipv6Addr>) {
    let _ = writeln!(y, "      - to: {}", quote(&format!("{network}/{prefix}")));
    match (gw, prefix) {
        (Some(gw), _) => {
            let _ = writeln!(y, "        via: {}", quote(&gw.to_string()));
            if needs_onlink6(v6, gw) {
                y.push_str("        on-link: true\n");
            }
        }
        (None, 128) => {
            let _ = writeln!(
                y,
                "        via: {}\n        on-link: true",
                quote(&network.to_string())
            );
        }
        (None, _) => y.push_str("        scope: link\n"),
    }
}

/// `s` as a YAML double-quoted scalar that reads back as exactly `s`: `"` and `\` escaped, and
/// every character YAML does not allow raw, or would fold as a line break, as an escape.
pub fn quote(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            '\n' => q.push_str("\\n"),
            '\t' => q.push_str("\\t"),
            '\r' => q.push_str("\\r"),
            c if needs_escape(c) => {
                let n = u32::from(c);
                if n <= 0xff {
                    let _ = write!(q, "\\x{n:02x}");
                } else {
                    let _ = write!(q, "\\u{n:04x}");
                }
            }
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

/// Characters outside YAML's printable set (C0, DEL, C1 including NEL, U+FFFE/U+FFFF), and the
/// ones a YAML reader takes for line breaks or a byte order mark.
fn needs_escape(c: char) -> bool {
    let n = u32::from(c);
    n < 0x20
        || (0x7f..=0x9f).contains(&n)
        || matches!(n, 0x2028 | 0x2029 | 0xfeff | 0xfffe | 0xffff)
}

/// The public keys in authorized_keys text, one line each; blank lines and `#` comments are
/// skipped. A line must hold `TYPE BASE64` (options before and a comment after are kept), where
/// the base64 blob decodes to a key of that TYPE.
pub fn parse_ssh_keys(text: &str) -> Result<Vec<String>, String> {
    let mut keys = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.contains("PRIVATE KEY") {
            return Err(
                "holds a private key; give the public key (the .pub file, e.g. ~/.ssh/id_ed25519.pub)"
                    .into(),
            );
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let is_key = words
            .windows(2)
            .any(|w| is_key_type(w[0]) && blob_is_key_of_type(w[1], w[0]));
        if !is_key {
            return Err(format!(
                "has no SSH public key on line {}; expected TYPE BASE64 [COMMENT], such as the contents of ~/.ssh/id_ed25519.pub",
                i + 1
            ));
        }
        keys.push(line.to_string());
    }
    if keys.is_empty() {
        return Err("holds no SSH public key; give the contents of a .pub file such as ~/.ssh/id_ed25519.pub".into());
    }
    Ok(keys)
}

fn is_key_type(word: &str) -> bool {
    ["ssh-", "ecdsa-sha2-", "sk-"]
        .iter()
        .any(|p| word.starts_with(p))
}

/// Whether `b64` decodes to an SSH public key blob whose first field is `key_type`.
fn blob_is_key_of_type(b64: &str, key_type: &str) -> bool {
    let Some(blob) = base64_decode(b64) else {
        return false;
    };
    let Some(len) = blob.get(..4) else {
        return false;
    };
    let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
    if blob.get(4..4 + len) != Some(key_type.as_bytes()) {
        return false;
    }
    // A plain key is a sequence of length-prefixed fields (RFC 4253 6.6, RFC 5656, RFC 8709)
    // that fills the blob exactly; a certificate also holds integers, so only its type is checked.
    let mut rest = &blob[4 + len..];
    if key_type.ends_with("-cert-v01@openssh.com") {
        return !rest.is_empty();
    }
    let mut fields = 0;
    while !rest.is_empty() {
        let Some(n) = rest.get(..4) else {
            return false;
        };
        let n = u32::from_be_bytes([n[0], n[1], n[2], n[3]]) as usize;
        let Some(next) = rest.get(4 + n..) else {
            return false;
        };
        rest = next;
        fields += 1;
    }
    fields > 0
}

/// Standard base64 with padding; `None` when `s` is not that.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.as_bytes();
    if s.is_empty() || !s.len().is_multiple_of(4) {
        return None;
    }
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let chunks = s.len() / 4;
    for (i, chunk) in s.chunks(4).enumerate() {
        let pad = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && i + 1 != chunks) {
            return None;
        }
        let mut n = 0u32;
        for &c in &chunk[..4 - pad] {
            n = (n << 6) | value(c)?;
        }
        n <<= 6 * pad as u32;
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..4 - pad]);
    }
    Some(out)
}

/// A login name cloud images' `useradd` accepts, not root (cloud images refuse root over SSH).
pub fn check_user(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let valid = name.len() <= 32
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if !valid {
        return Err(format!(
            "{name:?} is not a user name; use up to 32 lower-case letters, digits, - and _, starting with a letter"
        ));
    }
    if name == "root" {
        return Err(
            "root cannot log in over SSH on cloud images; choose another name (it gets sudo)"
                .into(),
        );
    }
    Ok(())
}

/// A crypt(3) hash: `$ID$[PARAMS$]SALT$HASH` with a known ID (1 md5, 2a/2b/2y bcrypt, 5/6 sha,
/// 7 scrypt, y/gy yescrypt). A plain password is refused.
pub fn check_password_hash(hash: &str) -> Result<(), String> {
    let fields: Vec<&str> = hash.split('$').collect();
    let valid = fields.len() >= 4
        && fields[0].is_empty()
        && ["1", "2a", "2b", "2y", "5", "6", "7", "y", "gy"].contains(&fields[1])
        && fields.last().is_some_and(|h| !h.is_empty())
        && hash
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"$./=,".contains(&b));
    if !valid {
        return Err(
            "is not a crypt(3) password hash such as $6$SALT$HASH; make one with `mkpasswd -m sha-512` or `openssl passwd -6` (a plain password is refused)"
                .into(),
        );
    }
    Ok(())
}

/// A hostname (RFC 1123): dot-separated labels of letters, digits and inner hyphens.
pub fn check_hostname(name: &str) -> Result<(), String> {
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if name.len() > 253 || !name.split('.').all(label_ok) {
        return Err(format!(
            "{name:?} is not a hostname; use letters, digits and hyphens, with dots between labels"
        ));
    }
    Ok(())
}

/// An instance id that can name a directory (cloud-init keeps /var/lib/cloud/instances/ID).
pub fn check_instance_id(id: &str) -> Result<(), String> {
    let valid = id.len() <= 128
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !valid {
        return Err(format!(
            "{id:?} is not an instance id; use up to 128 letters, digits, '.', '_' and '-'"
        ));
    }
    Ok(())
}

/// The user-data prefixes cloud-init recognises (it compares in lower case, after leading
/// whitespace), longest first.
const USER_DATA_HEADERS: [&str; 9] = [
    "#cloud-config-archive",
    "#cloud-config-jsonp",
    "#cloud-boothook",
    "#cloud-config",
    "#include-once",
    "#part-handler",
    "## template: jinja",
    "#include",
    "#!",
];

/// What vminit can check of user-data without running cloud-init: gzip passes as it is; anything
/// else must be UTF-8 and either a MIME multipart message or start with a header cloud-init
/// recognises (it ignores anything else); a `#cloud-config` must hold a YAML mapping (a list, a
/// bare word or nothing but comments is what cloud-init's schema rejects as "not a YAML dict").
pub fn check_user_data(bytes: &[u8]) -> Result<(), String> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        return Ok(()); // gzip: cloud-init inflates it first
    }
    let text =
        std::str::from_utf8(bytes).map_err(|_| "is neither UTF-8 text nor gzip".to_string())?;
    if text.trim().is_empty() {
        return Err("is empty".into());
    }
    let head: String = text.chars().take(4096).collect::<String>().to_lowercase();
    if head.contains("mime-version:") {
        return Ok(());
    }
    let start = head.trim_start();
    let Some(header) = USER_DATA_HEADERS.iter().find(|h| start.starts_with(*h)) else {
        return Err(
            "does not start with #cloud-config (or #!, #include, ## template: jinja, or a MIME message), so cloud-init would ignore it"
                .into(),
        );
    };
    if *header == "#cloud-config" {
        check_cloud_config(text)?;
    }
    Ok(())
}

/// The top level of a `#cloud-config` must be a mapping: judged from its first line of content.
fn check_cloud_config(text: &str) -> Result<(), String> {
    let mut first = None;
    for line in text.lines() {
        let line = line.trim_end();
        let content = match line.strip_prefix("---") {
            Some(rest) if rest.is_empty() || rest.starts_with([' ', '\t']) => rest.trim(),
            _ => line,
        };
        if content.is_empty()
            || content.starts_with('#')
            || content.starts_with('%')
            || content == "..."
        {
            continue;
        }
        first = Some(content);
        break;
    }
    let Some(first) = first else {
        return Err(
            "has no settings after #cloud-config (cloud-init's schema rejects it: not a YAML dict)"
                .into(),
        );
    };
    let list = first == "-" || first.starts_with("- ") || first.starts_with('[');
    let bare_word = first.starts_with(|c: char| c.is_ascii_alphanumeric()) && !first.contains(':');
    if list || bare_word {
        return Err(format!(
            "is not a YAML mapping of settings (it starts with {first:?}); a cloud-config looks like `key: value`"
        ));
    }
    Ok(())
}

/// Whether the user's own cloud-config leaves network-config to the first boot only (it has no
/// top-level `updates:`), so the guest keeps old MACs and addresses when the container's change.
pub fn own_cloud_config_lacks_updates(seed: &Seed) -> bool {
    let UserData::Own(bytes) = &seed.user_data else {
        return false;
    };
    let Ok(text) = std::str::from_utf8(bytes) else {
        return false;
    };
    let header = text.trim_start().lines().next().unwrap_or("").trim_end();
    header.eq_ignore_ascii_case("#cloud-config") && !text.lines().any(|l| l.starts_with("updates:"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const ED25519: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAPFPMcJf+JBN2T9sgjx88buoVWz0EfiCGaLNOJ3CJYb alice@laptop";
    const RSA: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQCYJvBA3C7n2xjgjvpU6m2PzT92sUDZfX0lJYGzhyv9dYBuLS0vMPuf5TBe2qOtLmiJ8IzoFzEVLsP19oKBNyc2o2aV09Fgl0vgetvVZzUF5P4d42ZkqBGfilRXkIrILLMGXyATEznyNI/CxSnrAoSpPRMHN5Xk8ac9EhBQvYqYxQ== bob";
    const ECDSA: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBN8lpx622PjIe/fpKC8QU5ANyabRPk/QIPGi0gsaWxqtVCjm2t/A1G3EqYGw9OPG46GZ4DKkwx625zPStVNadyc= carol";

    fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k: &str| map.get(k).cloned()
    }

    fn request(vars: &[(&str, &str)]) -> Result<Option<Request>, Invalid> {
        request_from_env(&env_of(vars))
    }

    fn var_of(vars: &[(&str, &str)]) -> &'static str {
        request(vars).unwrap_err().var
    }

    #[test]
    fn no_cloud_init_input_means_no_seed() {
        assert_eq!(request(&[]).unwrap(), None);
        assert_eq!(request(&[(SSH_KEYS, "  ")]).unwrap(), None);
    }

    #[test]
    fn any_one_input_turns_the_seed_on() {
        for (var, value) in [
            (SSH_KEYS, ED25519),
            (SSH_KEYS_FILE, "/run/keys"),
            (USER, "alice"),
            (HOSTNAME, "web1"),
            (USER_DATA, "/run/user-data"),
            (INSTANCE_ID, "i-1"),
        ] {
            assert!(request(&[(var, value)]).unwrap().is_some(), "{var}");
        }
    }

    #[test]
    fn ssh_keys_are_checked_line_by_line_and_kept_whole() {
        let text = format!("{ED25519}\n\n# a comment\nfrom=\"10.0.0.0/8\" {RSA}\r\n{ECDSA}");
        let keys = parse_ssh_keys(&text).unwrap();
        assert_eq!(
            keys,
            vec![
                ED25519.to_string(),
                format!("from=\"10.0.0.0/8\" {RSA}"),
                ECDSA.to_string()
            ]
        );
        let cut = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 bob";
        assert!(parse_ssh_keys(cut).is_err(), "a blob cut short");
        let swapped = ED25519.replacen("ssh-ed25519", "ssh-rsa", 1);
        assert!(
            parse_ssh_keys(&swapped).is_err(),
            "an ed25519 blob under the rsa type"
        );
        assert!(parse_ssh_keys("hunter2").unwrap_err().contains("line 1"));
        assert!(parse_ssh_keys("# only a comment\n").is_err());
        let private = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n";
        assert!(parse_ssh_keys(private).unwrap_err().contains(".pub"));
        assert_eq!(var_of(&[(SSH_KEYS, "not a key")]), SSH_KEYS);
    }

    #[test]
    fn base64_decodes_with_and_without_padding_and_refuses_garbage() {
        assert_eq!(base64_decode("aGk=").unwrap(), b"hi");
        assert_eq!(base64_decode("aGV5").unwrap(), b"hey");
        assert_eq!(base64_decode("aA==").unwrap(), b"h");
        for bad in ["", "aGk", "a===", "aG=k", "aA==aGV5", "a*Gk"] {
            assert_eq!(base64_decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn user_password_hash_hostname_and_instance_id_are_validated() {
        assert!(request(&[(USER, "alice"), (PASSWORD_HASH, "$6$salt$hash")]).is_ok());
        assert!(request(&[(USER, "a"), (PASSWORD_HASH, "$y$j9T$salt$hash/.")]).is_ok());
        assert!(request(&[(USER, "a"), (PASSWORD_HASH, "$6$rounds=5000$salt$hash")]).is_ok());
        for user in ["Alice", "1x", "a b", "root", "a:b", &"a".repeat(33)] {
            assert_eq!(var_of(&[(USER, user)]), USER, "{user}");
        }
        for hash in [
            "hunter2",
            "$6$",
            "$9$salt$hash",
            "$6$salt$",
            "$6$sa lt$hash",
            "6$salt$hash",
        ] {
            assert_eq!(
                var_of(&[(USER, "a"), (PASSWORD_HASH, hash)]),
                PASSWORD_HASH,
                "{hash}"
            );
        }
        let e = request(&[(PASSWORD_HASH, "$6$salt$hash")]).unwrap_err();
        assert_eq!(e.var, PASSWORD_HASH);
        assert!(e.msg.contains("CLOUD_INIT_USER"));
        for name in ["web-1.example.test", "a", "x1"] {
            assert!(request(&[(HOSTNAME, name)]).is_ok(), "{name}");
        }
        for name in ["-a", "a_b", "a..b", "a:b", "ä", &"a".repeat(64)] {
            assert_eq!(var_of(&[(HOSTNAME, name)]), HOSTNAME, "{name}");
        }
        for id in ["a/b", "..", "a b"] {
            assert_eq!(var_of(&[(INSTANCE_ID, id)]), INSTANCE_ID, "{id}");
        }
    }

    #[test]
    fn own_user_data_excludes_the_login_inputs() {
        for var in [SSH_KEYS, SSH_KEYS_FILE, USER] {
            let value = if var == SSH_KEYS { ED25519 } else { "alice" };
            let e = request(&[(USER_DATA, "/u"), (var, value)]).unwrap_err();
            assert_eq!(e.var, var);
            assert!(e.msg.contains("CLOUD_INIT_USER_DATA"));
        }
        assert!(request(&[(USER_DATA, "/u"), (HOSTNAME, "h"), (INSTANCE_ID, "i")]).is_ok());
    }

    #[test]
    fn user_data_needs_a_header_cloud_init_knows() {
        for ok in [
            "#cloud-config\nusers: []\n",
            "  #Cloud-Config\r\npackages: [htop]\r\n",
            "#cloud-config\n# comment\n---\nruncmd: [ls]\n",
            "#cloud-config\n--- {a: 1}\n",
            "#!/bin/sh\necho hi\n",
            "#include\nhttp://example.test/x\n",
            "## template: jinja\n#cloud-config\nhostname: {{ v1.local_hostname }}\n",
            "Content-Type: multipart/mixed; boundary=\"X\"\nMIME-Version: 1.0\n\n--X--\n",
            "#cloud-config-archive\n- type: text/x-shellscript\n",
        ] {
            assert_eq!(check_user_data(ok.as_bytes()), Ok(()), "{ok:?}");
        }
        assert_eq!(check_user_data(&[0x1f, 0x8b, 8, 0, 0xff]), Ok(()));
        for bad in [
            "",
            " \n",
            "users: []\n",
            "#cloud-config\n",
            "#cloud-config\n# only comments\n",
            "#cloud-config\n- a\n",
            "#cloud-config\n[a, b]\n",
            "#cloud-config\nhello\n",
            "# cloud-config\nusers: []\n",
        ] {
            assert!(check_user_data(bad.as_bytes()).is_err(), "{bad:?}");
        }
        assert!(check_user_data(&[0xff, 0xfe, b'#']).is_err());
    }

    #[test]
    fn the_instance_id_follows_the_hostname_only() {
        let a = instance_id("3f2a9c1b7d0e");
        assert_eq!(a, instance_id("3f2a9c1b7d0e"));
        assert_ne!(a, instance_id("3f2a9c1b7d0f"));
        assert!(a.starts_with("vminit-") && a.len() == 7 + 16);
        assert_eq!(instance_id(""), "vminit-cbf29ce484222325");
        let r = request(&[(HOSTNAME, "web1")]).unwrap().unwrap();
        let s = seed(&r, None, None, "3f2a9c1b7d0e").unwrap();
        assert_eq!(
            (s.hostname.as_str(), s.instance_id),
            ("web1", a),
            "CLOUD_INIT_HOSTNAME does not change it"
        );
        let r = request(&[(INSTANCE_ID, "mine")]).unwrap().unwrap();
        assert_eq!(seed(&r, None, None, "x").unwrap().instance_id, "mine");
    }

    #[test]
    fn the_keys_file_adds_to_the_keys_value() {
        let r = request(&[(SSH_KEYS, ED25519), (SSH_KEYS_FILE, "/k")])
            .unwrap()
            .unwrap();
        let file = format!("from=\"10.0.0.1\" {ED25519}\n");
        let s = seed(&r, Some(file.as_bytes()), None, "h").unwrap();
        let UserData::Login { ssh_keys, user, .. } = s.user_data else {
            panic!("generated user-data");
        };
        assert_eq!(ssh_keys.len(), 2);
        assert_eq!(user, None);
        let e = seed(&r, Some(b"nope\n"), None, "h").unwrap_err();
        assert_eq!(e.var, SSH_KEYS_FILE);
        let e = seed(&r, Some(&[0xff, 0xfe]), None, "h").unwrap_err();
        assert_eq!(e.var, SSH_KEYS_FILE);
    }

    #[test]
    fn generated_user_data_gives_the_keys_to_the_named_user_or_the_default_one() {
        let r = request(&[
            (USER, "alice"),
            (PASSWORD_HASH, "$6$s$h"),
            (SSH_KEYS, ED25519),
        ])
        .unwrap()
        .unwrap();
        let text = String::from_utf8(user_data(&seed(&r, None, None, "h").unwrap())).unwrap();
        assert!(text.starts_with("#cloud-config\n"));
        assert!(text.contains("users:\n  - name: \"alice\"\n"));
        assert!(text.contains("    lock_passwd: false\n    hashed_passwd: \"$6$s$h\"\n"));
        assert!(text.contains(&format!(
            "    ssh_authorized_keys:\n      - \"{ED25519}\"\n"
        )));
        assert!(text.ends_with("updates:\n  network:\n    when: [\"boot\"]\n"));
        let r = request(&[(SSH_KEYS, ED25519)]).unwrap().unwrap();
        let text = String::from_utf8(user_data(&seed(&r, None, None, "h").unwrap())).unwrap();
        assert!(!text.contains("users:"));
        assert!(text.contains(&format!("\nssh_authorized_keys:\n  - \"{ED25519}\"\n")));
    }

    #[test]
    fn own_user_data_passes_byte_for_byte() {
        let r = request(&[(USER_DATA, "/u")]).unwrap().unwrap();
        let own = b"#cloud-config\nruncmd: [\"echo hi\"]\n".to_vec();
        let s = seed(&r, None, Some(own.clone()), "h").unwrap();
        assert_eq!(user_data(&s), own);
        assert!(own_cloud_config_lacks_updates(&s));
        assert_eq!(
            seed(&r, None, Some(b"users: []\n".to_vec()), "h")
                .unwrap_err()
                .var,
            USER_DATA
        );
    }

    #[test]
    fn meta_data_holds_the_instance_id_and_the_hostname_quoted() {
        let s = Seed {
            instance_id: "vminit-1".into(),
            hostname: "a#b: c".into(),
            user_data: UserData::Own(Vec::new()),
        };
        assert_eq!(
            meta_data(&s),
            "# Written by vminit.\ninstance-id: \"vminit-1\"\nlocal-hostname: \"a#b: c\"\n"
        );
    }

    fn docker_nic() -> SeedNic {
        SeedNic {
            name: "eth0".into(),
            mac: "02:42:0a:01:00:02".into(),
            addr: Some((Ipv4Addr::new(10, 1, 0, 2), 24)),
            mtu: 1450,
            routes: vec![
                SeedRoute {
                    network: Ipv4Addr::new(169, 254, 0, 2),
                    prefix: 32,
                    gateway: None,
                },
                SeedRoute {
                    network: Ipv4Addr::new(10, 9, 0, 0),
                    prefix: 16,
                    gateway: None,
                },
                SeedRoute {
                    network: Ipv4Addr::UNSPECIFIED,
                    prefix: 0,
                    gateway: Some(Ipv4Addr::new(10, 1, 0, 1)),
                },
            ],
            dns: vec![Ipv4Addr::new(169, 254, 0, 2)],
            search: vec!["example.test".into()],
            v6: None,
        }
    }

    #[test]
    fn network_config_matches_by_mac_and_states_the_dhcp_facts() {
        let y = network_config(&[docker_nic()]);
        let expected = "version: 2\nethernets:\n  \"eth0\":\n    match:\n      macaddress: \"02:42:0a:01:00:02\"\n    dhcp4: false\n    addresses:\n      - \"10.1.0.2/24\"\n    mtu: 1450\n    routes:\n      - to: \"169.254.0.2/32\"\n        via: \"10.1.0.2\"\n      - to: \"10.9.0.0/16\"\n        scope: link\n      - to: \"0.0.0.0/0\"\n        via: \"10.1.0.1\"\n        on-link: true\n    nameservers:\n      addresses:\n        - \"169.254.0.2\"\n      search:\n        - \"example.test\"\n";
        assert!(y.ends_with(expected), "{y}");
    }

    #[test]
    fn network_config_of_a_nic_without_routes_or_dns_has_neither_key() {
        let nic = SeedNic {
            routes: vec![],
            dns: vec![],
            search: vec![],
            ..docker_nic()
        };
        let y = network_config(&[nic]);
        assert!(!y.contains("routes:") && !y.contains("nameservers:"), "{y}");
    }

    fn ip6(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    /// A Docker `--ipv6` network's NIC: fd00:1::2/64, the default route via fd00:1::1.
    fn docker_v6() -> SeedNic6 {
        SeedNic6 {
            addr: ip6("fd00:1::2"),
            prefix: 64,
            gateway: Some(ip6("fd00:1::1")),
            routes: vec![],
            dns: vec![ip6("fd00:1::53")],
            search: vec!["example.test".into(), "v6.test".into()],
        }
    }

    #[test]
    fn a_dual_stack_nic_states_both_families_and_takes_nothing_from_dhcpv6_or_advertisements() {
        let nic = SeedNic {
            v6: Some(docker_v6()),
            ..docker_nic()
        };
        let y = network_config(&[nic]);
        let expected = "    dhcp4: false\n    dhcp6: false\n    accept-ra: false\n    addresses:\n      - \"10.1.0.2/24\"\n      - \"fd00:1::2/64\"\n    gateway6: \"fd00:1::1\"\n    mtu: 1450\n    routes:\n";
        assert!(y.contains(expected), "{y}");
        assert!(!y.contains("::/0"), "the default route is gateway6: {y}");
        let expected = "    nameservers:\n      addresses:\n        - \"169.254.0.2\"\n        - \"fd00:1::53\"\n      search:\n        - \"example.test\"\n        - \"v6.test\"\n";
        assert!(y.ends_with(expected), "{y}");
    }

    #[test]
    fn an_ipv6_only_nic_states_no_ipv4() {
        let nic = SeedNic {
            name: "eth1".into(),
            mac: "02:42:ff:00:00:01".into(),
            addr: None,
            mtu: 1500,
            routes: vec![],
            dns: vec![],
            search: vec![],
            v6: Some(SeedNic6 {
                addr: ip6("fd00:10::7"),
                prefix: 128,
                gateway: Some(ip6("fe80::ecee:eeff:feee:eeee")),
                routes: vec![SeedRoute6 {
                    network: ip6("fd00:99::"),
                    prefix: 64,
                    gateway: Some(ip6("fe80::ecee:eeff:feee:eeee")),
                }],
                dns: vec![],
                search: vec![],
            }),
        };
        let y = network_config(&[nic]);
        let expected = "  \"eth1\":\n    match:\n      macaddress: \"02:42:ff:00:00:01\"\n    dhcp4: false\n    dhcp6: false\n    accept-ra: false\n    addresses:\n      - \"fd00:10::7/128\"\n    gateway6: \"fe80::ecee:eeff:feee:eeee\"\n    mtu: 1500\n    routes:\n      - to: \"fd00:99::/64\"\n        via: \"fe80::ecee:eeff:feee:eeee\"\n";
        assert!(y.ends_with(expected), "{y}");
    }

    #[test]
    fn a_global_ipv6_gateway_outside_the_prefix_is_a_default_route_on_link() {
        let v6 = SeedNic6 {
            addr: ip6("fd00:10::7"),
            prefix: 128,
            gateway: Some(ip6("fd00:10::1")),
            routes: vec![SeedRoute6 {
                network: ip6("fd00:10::1"),
                prefix: 128,
                gateway: None,
            }],
            ..docker_v6()
        };
        let y = network_config(&[SeedNic {
            v6: Some(v6),
            ..docker_nic()
        }]);
        assert!(!y.contains("gateway6"), "{y}");
        assert!(
            y.contains("      - to: \"fd00:10::1/128\"\n        via: \"fd00:10::1\"\n        on-link: true\n      - to: \"::/0\"\n        via: \"fd00:10::1\"\n        on-link: true\n"),
            "{y}"
        );
        // Inside the prefix, or link-local: no on-link needed.
        assert!(!needs_onlink6(&docker_v6(), ip6("fd00:1::1")));
        assert!(!needs_onlink6(&docker_v6(), ip6("fe80::1")));
        assert!(needs_onlink6(&docker_v6(), ip6("fd00:2::1")));
    }

    #[test]
    fn quote_escapes_what_yaml_would_misread() {
        assert_eq!(quote("plain"), "\"plain\"");
        assert_eq!(quote("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(quote("a: b # c"), "\"a: b # c\"");
        assert_eq!(quote("\n\t\r\u{0}\u{7f}\u{85}"), r#""\n\t\r\x00\x7f\x85""#);
        assert_eq!(quote("\u{2028}\u{feff}é😀"), "\"\\u2028\\ufeffé😀\"");
    }
}
