//! The graphical console of the vminit image under a real Docker daemon, as the README's recipe
//! runs it: `-e DISPLAY=vnc -v DIR:/vnc` and a password file mounted as a secret; on the host,
//! websockify with noVNC on the mounted socket, and a real browser (headless Chromium) that sees
//! the guest's VGA console and types into it.

use crate::common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::docker::{BOOT, Scenario, VmOpts};
use common::{Browser, Viewer, unique_id};

/// The password the test gives VNC, in a file mounted as a secret.
const PASSWORD: &str = "d0cker";

#[test]
fn a_browser_on_the_host_shows_the_containers_vga_console_through_the_mounted_socket() {
    let sc = Scenario::new("vnc");
    let net = sc.network();
    // The host side: the socket directory (mkdir -m 0750) and the password file.
    let console = sc.disk_dir("console");
    fs::set_permissions(&console, fs::Permissions::from_mode(0o750)).expect("chmod 0750");
    let secrets = sc.disk_dir("secrets");
    let secret = secrets.join("vnc");
    fs::write(&secret, format!("{PASSWORD}\n")).expect("write the password file");

    let nonce = &unique_id()[3..];
    let banner = format!("Hello from the container {nonce}");
    let vm = sc.create_vm(
        VmOpts::new()
            .network(&net)
            .env("DISPLAY", "vnc")
            .env("VNC_PASSWORD_FILE", "/run/secrets/vnc")
            .docker_flags(&[
                &format!("--volume={}:/vnc", console.display()),
                &format!("--volume={}:/run/secrets/vnc:ro", secret.display()),
            ])
            .kernel_args(&format!(
                "vminit_test_vga_banner={}",
                banner.replace(' ', "_")
            )),
    );
    sc.start(&vm);
    sc.wait_logs(&vm, "QEMU running", BOOT);

    // The password is in neither `docker inspect` nor the container's processes.
    let config = sc.inspect(&vm, "{{json .Config}}");
    assert!(!config.contains(PASSWORD), "{config}");
    let top = sc.docker_ok(&["top", &vm, "-o", "pid,args"]);
    assert!(
        top.contains("password-secret=vncpassword") && !top.contains(PASSWORD),
        "{top}"
    );

    // The socket appears in the host's directory.
    let socket = console.join("vnc.sock");
    let deadline = Instant::now() + BOOT;
    while UnixStream::connect(&socket).is_err() {
        assert!(
            Instant::now() < deadline,
            "no VNC socket at {}\n{}",
            socket.display(),
            sc.logs_tail(&vm)
        );
        sleep(Duration::from_millis(100));
    }

    // The README's recipe on the host: websockify with noVNC, a browser on its page.
    let viewer = Viewer::start(&socket);
    let browser = Browser::start(1024, 640);
    browser.connect_novnc(&viewer, Some(PASSWORD));
    let shows = |text: &str| {
        browser
            .wait_to_show(text, Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("{e}\n{}\nwebsockify:\n{}", sc.logs_tail(&vm), viewer.log()))
    };
    shows(&banner);

    // Keys typed in the browser reach the guest; `docker logs` (the serial console, still on
    // the container's stdio) shows the guest repeating them.
    let typed = format!("typed through docker {nonce}");
    browser.type_on_console(&format!("{typed}\n"));
    sc.wait_logs(&vm, &format!("GUEST-KEYS {typed}"), Duration::from_secs(30));
    shows(&format!("The guest read: {typed}"));
}
