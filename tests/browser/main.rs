//! The guest's graphical console (`DISPLAY=vnc`): a real browser (headless Chromium with noVNC,
//! through websockify, to the VNC socket in a directory mounted from the host) shows the guest's
//! VGA screen and types into it; VNC over TCP listens on the management interface only; the
//! password never shows on a command line.

#[path = "../common/mod.rs"]
mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddrV4, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::{
    Browser, Container, Network, NicSpec, ScratchDisk, Viewer, Vminit, VminitBuilder, test_guest,
    unique_id, vminit_binary,
};
use nix::sched::CloneFlags;

/// TCG boots the guest in a few seconds; parallel tests share two cores.
const BOOT: Duration = Duration::from_secs(120);
/// The password the tests give VNC (in a file, as a secret would be).
const PASSWORD: &str = "s3cret";
/// Where a README screenshot of the browser is left (copied to docs/vnc-console.png).
const SCREENSHOT: &str = "vnc-console.png";

/// A container on one network, a disk, and a host directory holding the console's socket
/// directory and the password file.
struct Fixture {
    _net: Network,
    ctr: Container,
    scratch: ScratchDisk,
    /// The host side of `VNC_DIR` (mode 0750).
    vnc_dir: PathBuf,
    /// The password file, as `echo s3cret > file` makes it.
    secret: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let net = Network::new(1);
        let (ctr, _) = Container::docker_on(&net);
        let scratch = ScratchDisk::new();
        let vnc_dir = scratch.dir.join("console");
        fs::create_dir(&vnc_dir).expect("create the console directory");
        fs::set_permissions(&vnc_dir, fs::Permissions::from_mode(0o750)).expect("chmod 0750");
        let secret = scratch.dir.join("vnc-password");
        fs::write(&secret, format!("{PASSWORD}\n")).expect("write the password file");
        Fixture {
            _net: net,
            ctr,
            scratch,
            vnc_dir,
            secret,
        }
    }

    /// vminit with the console on: `-v VNC_DIR:/run/vnc -v SECRET:/run/secrets/vnc`.
    fn vminit(&self, cmdline: &str) -> VminitBuilder<'_> {
        self.ctr
            .vminit(&vminit_binary())
            .env("AUTO_ATTACH", "yes")
            .env("ACCEL", "tcg")
            .env("RAM_SIZE", "256M")
            .env("VMINIT_DISK", &self.scratch.path)
            .env("DISPLAY", "vnc")
            .env("VNC_DIR", "/run/vnc")
            .env("VNC_PASSWORD_FILE", "/run/secrets/vnc")
            .bind(&self.vnc_dir, Path::new("/run/vnc"))
            .bind(&self.secret, Path::new("/run/secrets/vnc"))
            .args(test_guest().qemu_args(cmdline))
    }

    /// The socket, as the host sees it.
    fn socket(&self) -> PathBuf {
        self.vnc_dir.join("vnc.sock")
    }
}

/// Waits until `path` accepts connections (QEMU listens once it has started).
fn wait_for_socket(path: &Path, vm: &Vminit) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while UnixStream::connect(path).is_err() {
        assert!(
            Instant::now() < deadline,
            "nothing listens on {}\n{}",
            path.display(),
            vm.tails()
        );
        sleep(Duration::from_millis(50));
    }
}

/// The RFB handshake up to the server's offer: its version line and the security types it
/// offers (1: none, 2: VNC authentication).
fn rfb_offer(mut stream: impl Read + Write) -> (String, Vec<u8>) {
    let mut version = [0u8; 12];
    stream
        .read_exact(&mut version)
        .expect("read the RFB version");
    stream
        .write_all(b"RFB 003.008\n")
        .expect("send the RFB version");
    let mut count = [0u8; 1];
    stream
        .read_exact(&mut count)
        .expect("read the security type count");
    let mut types = vec![0u8; usize::from(count[0])];
    stream
        .read_exact(&mut types)
        .expect("read the security types");
    (String::from_utf8_lossy(&version).into_owned(), types)
}

/// The command line of the QEMU whose arguments contain `marker`.
fn qemu_cmdline(marker: &str) -> String {
    for entry in fs::read_dir("/proc").expect("read /proc").flatten() {
        let Ok(raw) = fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let line = String::from_utf8_lossy(&raw).replace('\0', " ");
        if line.contains("qemu-system") && line.contains(marker) {
            return line;
        }
    }
    panic!("no QEMU with {marker:?} in its arguments");
}

#[test]
fn a_browser_shows_the_guests_vga_console_and_its_keys_reach_the_guest() {
    let f = Fixture::new();
    // The guest clears its VGA console and shows this (underscores become spaces).
    let nonce = &unique_id()[3..];
    let banner = format!("Hello from the guest {nonce}");
    let option = format!("vminit_test_vga_banner={}", banner.replace(' ', "_"));
    let vm = f.vminit(&option).spawn();
    wait_for_socket(&f.socket(), &vm);

    // The password is QEMU's only through a file: on no command line, in no log.
    let cmdline = qemu_cmdline(&option);
    assert!(
        cmdline.contains("-vnc unix:/run/vnc/vnc.sock,password-secret=vncpassword"),
        "{cmdline}"
    );
    assert!(!cmdline.contains(PASSWORD), "{cmdline}");
    assert!(!vm.log().text().contains(PASSWORD), "{}", vm.log().text());
    // VNC offers password authentication only.
    let (version, types) = rfb_offer(UnixStream::connect(f.socket()).expect("connect"));
    assert_eq!((version.as_str(), types), ("RFB 003.008\n", vec![2]));

    // What a person on the host does: websockify with noVNC, a browser on its page.
    let viewer = Viewer::start(&f.socket());
    let browser = Browser::start(1024, 640);
    browser.connect_novnc(&viewer, Some(PASSWORD));
    let shows = |text: &str| {
        browser
            .wait_to_show(text, Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("{e}\n{}\nwebsockify:\n{}", vm.tails(), viewer.log()))
    };
    shows(&banner);

    // Keys typed in the browser reach the guest's keyboard: the guest repeats the line on its
    // serial console, and on its screen.
    let typed = format!("typed in the browser {nonce}");
    let from = vm.console().len();
    browser.type_on_console(&format!("{typed}\n"));
    vm.expect_console_from(
        from,
        &format!("GUEST-KEYS {typed}"),
        Duration::from_secs(30),
    );
    let png = shows(&format!("The guest read: {typed}"));
    let keep = Path::new(env!("CARGO_TARGET_TMPDIR")).join(SCREENSHOT);
    fs::write(&keep, png).expect("keep the screenshot");
    println!("screenshot: {}", keep.display());
}

#[test]
fn vnc_over_tcp_listens_on_the_management_interface_only() {
    let guest_net = Network::new(1);
    let mgmt = Network::new(2);
    let ctr = Container::new();
    let nic = ctr.add_nic(&guest_net, NicSpec::docker(&guest_net, 2));
    let kept = ctr.add_nic(&mgmt, NicSpec::docker(&mgmt, 2).name("eth1"));
    ctr.set_default_route(guest_net.gateway, "eth0");
    let scratch = ScratchDisk::new();
    let vm = ctr
        .vminit(&vminit_binary())
        .env("AUTO_ATTACH", "no")
        .env("ATTACH_IFACES", "eth0")
        .env("ACCEL", "tcg")
        .env("RAM_SIZE", "256M")
        .env("VMINIT_DISK", &scratch.path)
        .env("DISPLAY", "vnc")
        .env("VNC_DIR", "/run/vnc")
        .env("VNC_LISTEN", "eth1:5901")
        .args(test_guest().qemu_args(""))
        .spawn();
    vm.expect_console("GUEST-REPORT done", BOOT);
    vm.expect_log(&format!("VNC also on {}:5901 (eth1)", kept.ip()), BOOT);
    vm.expect_log("has no password", BOOT);

    // A viewer on the management network gets the RFB handshake, without a password.
    let (version, types) = from_netns(mgmt.peer_ns().name(), SocketAddrV4::new(kept.ip(), 5901))
        .map(rfb_offer)
        .unwrap_or_else(|e| panic!("connect {}:5901: {e}\n{}", kept.ip(), vm.tails()));
    assert_eq!((version.as_str(), types), ("RFB 003.008\n", vec![1]));
    // The only TCP listener in the container is that one: nothing on the guest's address.
    let listeners = ctr.exec("ss -Hltn").stdout;
    let ports: Vec<&str> = listeners
        .lines()
        .filter_map(|l| l.split_whitespace().nth(3))
        .filter(|addr| !addr.ends_with(":53")) // dnsmasq's DNS on the door addresses
        .collect();
    assert_eq!(ports, [format!("{}:5901", kept.ip())], "{listeners}");
    // On the guest's network, the guest's address has no VNC (the guest itself answers).
    let refused = from_netns(
        guest_net.peer_ns().name(),
        SocketAddrV4::new(nic.ip(), 5901),
    );
    assert!(
        refused.is_err(),
        "VNC must not answer on the guest's address"
    );
    // And the Unix socket is served too.
    let socket = vm.container_path("/run/vnc/vnc.sock");
    assert_eq!(
        rfb_offer(UnixStream::connect(&socket).expect("connect")).1,
        [1]
    );
}

/// A TCP connection made from inside the network namespace `netns` (as a machine there would).
fn from_netns(netns: &str, to: SocketAddrV4) -> std::io::Result<TcpStream> {
    let path = format!("/run/netns/{netns}");
    std::thread::spawn(move || {
        // setns(CLONE_NEWNET) moves only this thread.
        let ns = fs::File::open(&path)?;
        nix::sched::setns(&ns, CloneFlags::CLONE_NEWNET)?;
        let stream = TcpStream::connect_timeout(&to.into(), Duration::from_secs(5))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        Ok(stream)
    })
    .join()
    .expect("the connecting thread does not panic")
}

#[test]
fn the_debug_shells_qemu_command_has_the_console_and_no_password() {
    let f = Fixture::new();
    let vm = f
        .ctr
        .vminit(&vminit_binary())
        .env("AUTO_ATTACH", "yes")
        .env("ACCEL", "tcg")
        .env("VMINIT_DISK", &f.scratch.path)
        .env("DISPLAY", "vnc")
        .env("VNC_DIR", "/run/vnc")
        .env("VNC_PASSWORD_FILE", "/run/secrets/vnc")
        .env("VGA_RESOLUTION", "1280x720")
        .bind(&f.vnc_dir, Path::new("/run/vnc"))
        .bind(&f.secret, Path::new("/run/secrets/vnc"))
        .arg("sh")
        .spawn();
    vm.expect_log("debug mode: run `sh /run/vminit/qemu.sh`", BOOT);
    vm.type_console("cat /run/vminit/qemu.sh; stat -c 'password copy %a' /run/vminit/vnc-password; cat /run/vminit/vnc-password; echo; echo END\n");
    vm.expect_console("END", Duration::from_secs(20));
    let text = vm.console().text();
    for expected in [
        "-vga std",
        "-global VGA.xres=1280 -global VGA.yres=720",
        "-device usb-tablet",
        "-object secret,id=vncpassword,file=/run/vminit/vnc-password",
        "-vnc unix:/run/vnc/vnc.sock,password-secret=vncpassword",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} not in qemu.sh:\n{text}"
        );
    }
    assert!(text.contains("password copy 600"), "{text}");
    // The copy holds the password without the file's newline; qemu.sh names only the copy.
    let script = text.split("password copy").next().unwrap_or_default();
    assert!(!script.contains(PASSWORD), "{script}");
    assert!(text.contains(&format!("\n{PASSWORD}\n")), "{text}");
}
