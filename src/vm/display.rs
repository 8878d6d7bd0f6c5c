//! The guest's graphical console (`DISPLAY=vnc`): its inputs, its paths and the QEMU options
//! they make (pure: no I/O).
//!
//! The container's NICs all belong to the guest, so the container has no address of its own a
//! browser could reach: QEMU serves VNC on a Unix socket in a directory meant to be mounted from
//! the host, and, when asked, over TCP on an interface the guest does not take. Never on the
//! guest's addresses.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The socket's name inside `VNC_DIR`.
pub const SOCKET_NAME: &str = "vnc.sock";
/// QEMU's id of the secret object holding the password.
const SECRET_ID: &str = "vncpassword";
/// VNC authentication (DES) uses this many bytes of the password.
const VNC_PASSWORD_BYTES: usize = 8;
/// The first TCP port of VNC displays: QEMU's `HOST:N` listens on 5900+N.
const VNC_BASE_PORT: u16 = 5900;

/// The graphical console, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct Vnc {
    /// `VNC_DIR`: where the socket goes; a host directory is mounted here.
    pub dir: PathBuf,
    /// `VNC_PASSWORD_FILE`: the file holding the VNC password (a Docker or Kubernetes secret).
    pub password_file: Option<PathBuf>,
    /// `VNC_LISTEN`: also serve VNC over TCP on this interface's address.
    pub listen: Option<Listen>,
    /// `VGA_RESOLUTION`: the preferred mode the VGA offers the guest (EDID), width × height.
    pub resolution: Option<(u32, u32)>,
}

/// `VNC_LISTEN=IFACE[:PORT]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Listen {
    pub iface: String,
    pub port: u16,
}

impl Vnc {
    /// The VNC socket: `VNC_DIR/vnc.sock`.
    pub fn socket(&self) -> PathBuf {
        self.dir.join(SOCKET_NAME)
    }
}

/// Reads `DISPLAY` and, with `DISPLAY=vnc`, the `VNC_*` and `VGA_RESOLUTION` inputs through
/// `env` (which returns trimmed, non-empty values). `None`: no graphical console.
pub fn parse(env: &dyn Fn(&str) -> Option<String>) -> Result<Option<Vnc>> {
    match env("DISPLAY").as_deref() {
        None | Some("none") => return Ok(None),
        Some("vnc") => {}
        Some(v) => {
            return Err(bad(
                "DISPLAY",
                format!(
                    "{v:?} is not none or vnc (it selects the guest's graphical console, not an X display)"
                ),
            ));
        }
    }
    let dir = PathBuf::from(env("VNC_DIR").unwrap_or_else(|| "/vnc".into()));
    if !dir.is_absolute() {
        return Err(bad(
            "VNC_DIR",
            format!("{:?} is not an absolute path", dir.display()),
        ));
    }
    crate::rundir::check_socket_path("VNC_DIR", &dir.join(SOCKET_NAME))
        .map_err(|msg| bad("VNC_DIR", msg))?;
    let password_file = env("VNC_PASSWORD_FILE").map(PathBuf::from);
    let listen = env("VNC_LISTEN").map(|v| parse_listen(&v)).transpose()?;
    let resolution = env("VGA_RESOLUTION")
        .map(|v| parse_resolution(&v))
        .transpose()?;
    Ok(Some(Vnc {
        dir,
        password_file,
        listen,
        resolution,
    }))
}

fn bad(var: &str, msg: String) -> Error {
    Error::config(var, msg)
}

/// `eth1` or `eth1:5901`; the port must be a VNC display's (5900 and up).
fn parse_listen(v: &str) -> Result<Listen> {
    let (iface, port) = match v.split_once(':') {
        None => (v, VNC_BASE_PORT),
        Some((iface, port)) => match port.parse::<u16>() {
            Ok(p) if p >= VNC_BASE_PORT => (iface, p),
            _ => {
                return Err(bad(
                    "VNC_LISTEN",
                    format!("{v:?}: the port must be a number from 5900 to 65535"),
                ));
            }
        },
    };
    if iface.is_empty() || iface.len() > 15 || iface.contains('/') || iface.contains(' ') {
        return Err(bad(
            "VNC_LISTEN",
            format!("{v:?}: expected an interface name, optionally with :PORT, such as eth1:5900"),
        ));
    }
    Ok(Listen {
        iface: iface.to_string(),
        port,
    })
}

/// `1920x1080`: what a VGA with up to 256 MiB of video memory can show.
fn parse_resolution(v: &str) -> Result<(u32, u32)> {
    let parsed = v
        .split_once(['x', 'X'])
        .and_then(|(w, h)| Some((w.parse::<u32>().ok()?, h.parse::<u32>().ok()?)));
    match parsed {
        Some((w, h)) if (320..=8192).contains(&w) && (200..=8192).contains(&h) => Ok((w, h)),
        _ => Err(bad(
            "VGA_RESOLUTION",
            format!("{v:?} is not WIDTHxHEIGHT within 320x200 to 8192x8192, such as 1920x1080"),
        )),
    }
}

/// The VGA's video memory for a mode: QEMU's default 16 MiB, or the power of two that holds
/// `width × height` at 32 bits per pixel.
fn vgamem_mb(width: u32, height: u32) -> u32 {
    let bytes = u64::from(width) * u64::from(height) * 4;
    let mb = bytes.div_ceil(1 << 20).next_power_of_two();
    mb.max(16) as u32
}

/// The password QEMU gets, from the bytes of `VNC_PASSWORD_FILE`: its one line, without the
/// newline `echo pw > file` leaves. Also a warning when VNC authentication will ignore part of
/// it. Errors name the file, never the password.
pub fn password(raw: &[u8], file: &Path) -> Result<(Vec<u8>, Option<String>)> {
    let text = raw
        .strip_suffix(b"\r\n")
        .or_else(|| raw.strip_suffix(b"\n"))
        .unwrap_or(raw);
    let fail = |why: &str| {
        Err(bad(
            "VNC_PASSWORD_FILE",
            format!("{} {why}; put the password on one line", file.display()),
        ))
    };
    if text.is_empty() {
        return fail("is empty");
    }
    if text.iter().any(|&b| b == b'\n' || b == b'\r' || b == 0) {
        return fail("holds more than one line");
    }
    let warning = (text.len() > VNC_PASSWORD_BYTES).then(|| {
        format!(
            "VNC_PASSWORD_FILE: VNC authentication uses only the first {VNC_PASSWORD_BYTES} characters of the password"
        )
    });
    Ok((text.to_vec(), warning))
}

/// Refuses a socket directory anyone may write to: anyone could put their own socket in the
/// console's place. `mode` is the directory's `st_mode`.
pub fn check_dir_mode(dir: &Path, mode: u32) -> Result<()> {
    if mode & 0o002 != 0 {
        return Err(bad(
            "VNC_DIR",
            format!(
                "{} is world-writable (mode {:04o}), so anyone could replace the console's socket; mount a directory made with mkdir -m 0750",
                dir.display(),
                mode & 0o7777
            ),
        ));
    }
    Ok(())
}

/// Whether `dir` is a mount point according to `/proc/self/mountinfo` (whose fifth field is
/// the mount point, with space, tab, newline and backslash written as octal escapes).
pub fn is_mount_point(mountinfo: &str, dir: &Path) -> bool {
    let want = dir.to_string_lossy();
    let want = want.trim_end_matches('/');
    mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .any(|field| unescape_octal(field) == want)
}

/// `a\040b` → `a b`.
fn unescape_octal(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let code = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)))
            .map(|d| d.iter().fold(0u32, |n, b| n * 8 + u32::from(b - b'0')));
        match code {
            Some(c) if c <= 0xff => {
                out.push(c as u8);
                i += 4;
            }
            _ => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The address VNC listens on for `VNC_LISTEN`: the first IPv4 address of the interface
/// (`addrs`, from the container's network), which must be none of the links the guest's NICs
/// use (`guest_links`: the attached NICs, their macvtaps and doors).
pub fn listen_address(
    listen: &Listen,
    guest_links: &[&str],
    addrs: Option<&[Ipv4Addr]>,
) -> Result<Ipv4Addr> {
    if guest_links.contains(&listen.iface.as_str()) {
        return Err(bad(
            "VNC_LISTEN",
            format!(
                "{} goes to the guest, and VNC never listens on the guest's addresses; use AUTO_ATTACH=no with ATTACH_IFACES naming the guest's NICs and VNC_LISTEN naming an interface the container keeps",
                listen.iface
            ),
        ));
    }
    match addrs {
        None => Err(bad(
            "VNC_LISTEN",
            format!(
                "the container has no interface {}; attach the management network or fix the name",
                listen.iface
            ),
        )),
        Some([]) => Err(bad(
            "VNC_LISTEN",
            format!("{} has no IPv4 address to listen on", listen.iface),
        )),
        Some([first, ..]) => Ok(*first),
    }
}

/// QEMU's display options: `-display none` without a console; with one, a standard VGA (at
/// `VGA_RESOLUTION`), a USB tablet (the pointer follows the viewer's), and VNC on the socket,
/// on `tcp` (the address [`listen_address`] chose) and, with `VNC_PASSWORD_FILE`, with the
/// password QEMU reads from `password_copy`.
pub fn qemu_args(vnc: Option<&Vnc>, password_copy: &Path, tcp: Option<Ipv4Addr>) -> Vec<String> {
    let mut a: Vec<String> = vec!["-display".into(), "none".into()];
    let Some(vnc) = vnc else {
        return a;
    };
    a.extend(["-vga".into(), "std".into()]);
    if let Some((w, h)) = vnc.resolution {
        a.extend(["-global".into(), format!("VGA.xres={w}")]);
        a.extend(["-global".into(), format!("VGA.yres={h}")]);
        let mb = vgamem_mb(w, h);
        if mb > 16 {
            a.extend(["-global".into(), format!("VGA.vgamem_mb={mb}")]);
        }
    }
    a.extend(["-usb".into(), "-device".into(), "usb-tablet".into()]);
    let mut server = format!("unix:{}", escape(&vnc.socket()));
    if let (Some(addr), Some(listen)) = (tcp, &vnc.listen) {
        server += &format!(",vnc={addr}:{}", listen.port - VNC_BASE_PORT);
    }
    if vnc.password_file.is_some() {
        a.extend([
            "-object".into(),
            format!("secret,id={SECRET_ID},file={}", escape(password_copy)),
        ]);
        server += &format!(",password-secret={SECRET_ID}");
    }
    a.extend(["-vnc".into(), server]);
    a
}

/// A path inside a QEMU option value: commas doubled.
fn escape(path: &Path) -> String {
    path.display().to_string().replace(',', ",,")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn parse_with(vars: &[(&str, &str)]) -> Result<Option<Vnc>> {
        let map: HashMap<&str, &str> = vars.iter().copied().collect();
        parse(&|k: &str| map.get(k).map(|v| v.to_string()))
    }

    fn var_of(err: Error) -> String {
        match err {
            Error::Config { var, .. } => var,
            other => panic!("expected a config error, got {other}"),
        }
    }

    fn console() -> Vnc {
        parse_with(&[("DISPLAY", "vnc")]).unwrap().unwrap()
    }

    fn has_pair(argv: &[String], flag: &str, value: &str) -> bool {
        argv.windows(2).any(|w| w[0] == flag && w[1] == value)
    }

    #[test]
    fn no_display_keeps_qemu_headless() {
        assert_eq!(parse_with(&[]).unwrap(), None);
        assert_eq!(parse_with(&[("DISPLAY", "none")]).unwrap(), None);
        // The VNC inputs mean nothing without DISPLAY=vnc.
        assert_eq!(parse_with(&[("VNC_LISTEN", "eth0:1")]).unwrap(), None);
        assert_eq!(
            qemu_args(None, Path::new("/run/vminit/vnc-password"), None),
            ["-display", "none"]
        );
    }

    #[test]
    fn display_vnc_serves_a_standard_vga_on_the_socket_in_vnc_dir() {
        let vnc = console();
        assert_eq!(vnc.socket(), PathBuf::from("/vnc/vnc.sock"));
        let a = qemu_args(Some(&vnc), Path::new("/run/vminit/vnc-password"), None);
        assert!(has_pair(&a, "-display", "none"));
        assert!(has_pair(&a, "-vga", "std"));
        assert!(has_pair(&a, "-device", "usb-tablet") && a.contains(&"-usb".to_string()));
        assert!(has_pair(&a, "-vnc", "unix:/vnc/vnc.sock"));
        assert!(!a.iter().any(|w| w.contains("secret") || w.contains("VGA.")));
    }

    #[test]
    fn display_other_than_none_or_vnc_is_refused() {
        for v in [":0", "web", "VNC", "sdl"] {
            let e = parse_with(&[("DISPLAY", v)]).unwrap_err();
            assert!(e.to_string().contains("none or vnc"), "{v}: {e}");
            assert_eq!(var_of(e), "DISPLAY");
        }
    }

    #[test]
    fn vnc_dir_must_be_absolute_and_commas_are_escaped_for_qemu() {
        let e = parse_with(&[("DISPLAY", "vnc"), ("VNC_DIR", "console")]).unwrap_err();
        assert_eq!(var_of(e), "VNC_DIR");
        let vnc = parse_with(&[("DISPLAY", "vnc"), ("VNC_DIR", "/srv/a,b")])
            .unwrap()
            .unwrap();
        let a = qemu_args(Some(&vnc), Path::new("/run/vminit/vnc-password"), None);
        assert!(has_pair(&a, "-vnc", "unix:/srv/a,,b/vnc.sock"));
    }

    #[test]
    fn the_password_reaches_qemu_as_a_secret_file_never_as_text() {
        let vnc = parse_with(&[
            ("DISPLAY", "vnc"),
            ("VNC_PASSWORD_FILE", "/run/secrets/vnc"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(vnc.password_file, Some(PathBuf::from("/run/secrets/vnc")));
        let a = qemu_args(Some(&vnc), Path::new("/run/vminit/vnc-password"), None);
        assert!(has_pair(
            &a,
            "-object",
            "secret,id=vncpassword,file=/run/vminit/vnc-password"
        ));
        assert!(has_pair(
            &a,
            "-vnc",
            "unix:/vnc/vnc.sock,password-secret=vncpassword"
        ));
    }

    #[test]
    fn the_password_is_the_files_one_line_without_its_newline() {
        let f = Path::new("/run/secrets/vnc");
        assert_eq!(
            password(b"s3cret\n", f).unwrap(),
            (b"s3cret".to_vec(), None)
        );
        assert_eq!(password(b"s3cret\r\n", f).unwrap().0, b"s3cret");
        assert_eq!(password(b"s3cret", f).unwrap().0, b"s3cret");
        let (long, warning) = password(b"longer than eight\n", f).unwrap();
        assert_eq!(long, b"longer than eight");
        assert!(warning.unwrap().contains("first 8 characters"));
        for bad in [&b""[..], b"\n", b"two\nlines\n", b"nul\0"] {
            let e = password(bad, f).unwrap_err();
            let text = e.to_string();
            assert!(text.contains("/run/secrets/vnc"), "{text}");
            assert_eq!(var_of(e), "VNC_PASSWORD_FILE");
        }
        let e = password(b"two\nlines", f).unwrap_err().to_string();
        assert!(!e.contains("two") && !e.contains("lines\""), "{e}");
    }

    #[test]
    fn a_world_writable_socket_directory_is_refused() {
        assert!(check_dir_mode(Path::new("/vnc"), 0o40750).is_ok());
        assert!(check_dir_mode(Path::new("/vnc"), 0o40700).is_ok());
        let e = check_dir_mode(Path::new("/tmp"), 0o41777).unwrap_err();
        assert!(e.to_string().contains("world-writable (mode 1777)"), "{e}");
        assert_eq!(var_of(e), "VNC_DIR");
    }

    #[test]
    fn mount_points_are_read_from_mountinfo() {
        let mountinfo = "\
36 35 98:0 / / rw,relatime - overlay overlay rw
37 36 8:1 /srv/vm1 /vnc rw,relatime - ext4 /dev/sda1 rw
38 36 8:1 /srv/a\\040b /my\\040console rw - ext4 /dev/sda1 rw
";
        assert!(is_mount_point(mountinfo, Path::new("/vnc")));
        assert!(is_mount_point(mountinfo, Path::new("/vnc/")));
        assert!(is_mount_point(mountinfo, Path::new("/my console")));
        assert!(!is_mount_point(mountinfo, Path::new("/run/vnc")));
    }

    #[test]
    fn vnc_listen_is_an_interface_with_an_optional_vnc_port() {
        let listen = |v: &str| parse_with(&[("DISPLAY", "vnc"), ("VNC_LISTEN", v)]);
        assert_eq!(
            listen("eth1").unwrap().unwrap().listen,
            Some(Listen {
                iface: "eth1".into(),
                port: 5900
            })
        );
        assert_eq!(
            listen("lo:5901").unwrap().unwrap().listen.unwrap().port,
            5901
        );
        for bad in ["eth1:80", "eth1:x", ":5900", "a/b", "averyveryverylongname"] {
            assert_eq!(var_of(listen(bad).unwrap_err()), "VNC_LISTEN", "{bad}");
        }
    }

    #[test]
    fn vnc_listens_on_tcp_only_on_an_interface_the_guest_does_not_take() {
        let listen = Listen {
            iface: "eth1".into(),
            port: 5901,
        };
        let guest = ["eth0", "vmtap0", "vmlink0"];
        let addr: Ipv4Addr = "10.9.0.2".parse().unwrap();
        let second: Ipv4Addr = "10.9.0.3".parse().unwrap();
        assert_eq!(
            listen_address(&listen, &guest, Some(&[addr, second])).unwrap(),
            addr
        );
        for taken in ["eth0", "vmlink0"] {
            let l = Listen {
                iface: taken.into(),
                port: 5900,
            };
            let e = listen_address(&l, &guest, Some(&[addr])).unwrap_err();
            assert!(e.to_string().contains("goes to the guest"), "{e}");
            assert_eq!(e.exit_code(), 64);
        }
        let e = listen_address(&listen, &guest, None).unwrap_err();
        assert!(e.to_string().contains("no interface eth1"), "{e}");
        assert_eq!(e.exit_code(), 64);
        let e = listen_address(&listen, &guest, Some(&[])).unwrap_err();
        assert!(e.to_string().contains("no IPv4"), "{e}");

        let mut vnc = console();
        vnc.listen = Some(listen);
        let a = qemu_args(
            Some(&vnc),
            Path::new("/run/vminit/vnc-password"),
            Some(addr),
        );
        assert!(has_pair(&a, "-vnc", "unix:/vnc/vnc.sock,vnc=10.9.0.2:1"));
    }

    #[test]
    fn vga_resolution_sets_the_preferred_mode_and_enough_video_memory() {
        let res = |v: &str| parse_with(&[("DISPLAY", "vnc"), ("VGA_RESOLUTION", v)]);
        let vnc = res("1920x1080").unwrap().unwrap();
        assert_eq!(vnc.resolution, Some((1920, 1080)));
        let a = qemu_args(Some(&vnc), Path::new("/run/vminit/vnc-password"), None);
        assert!(has_pair(&a, "-global", "VGA.xres=1920"));
        assert!(has_pair(&a, "-global", "VGA.yres=1080"));
        assert!(!a.iter().any(|w| w.contains("vgamem")));
        let uhd = res("3840X2160").unwrap().unwrap();
        let a = qemu_args(Some(&uhd), Path::new("/run/vminit/vnc-password"), None);
        assert!(has_pair(&a, "-global", "VGA.vgamem_mb=32"));
        assert_eq!(vgamem_mb(8192, 8192), 256);
        for bad in ["1920", "1920x", "big", "100x100", "9000x9000", "-1x600"] {
            assert_eq!(var_of(res(bad).unwrap_err()), "VGA_RESOLUTION", "{bad}");
        }
    }
}
