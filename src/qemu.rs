//! Renders QEMU's command line from the plan and the accelerator decisions (pure).

use std::ffi::OsString;
use std::os::fd::RawFd;
use std::path::Path;

use crate::accel::Accelerator;
use crate::types::Mac;

/// One guest NIC as QEMU sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct GuestNic {
    pub fd: RawFd,
    pub mac: Mac,
    pub mtu: u32,
}

pub struct QemuInput<'a> {
    pub qemu: &'a Path,
    pub accel: Accelerator,
    pub vhost: bool,
    pub ram: &'a str,
    pub cpus: u32,
    pub disk: &'a Path,
    /// QEMU's own seccomp sandbox (`QEMU_SANDBOX`).
    pub sandbox: bool,
    pub qmp: &'a Path,
    pub health: &'a Path,
    pub nics: &'a [GuestNic],
    /// CMD arguments, appended verbatim.
    pub extra: &'a [OsString],
}

/// The full argv, program first.
pub fn argv(q: &QemuInput) -> Vec<OsString> {
    let mut a: Vec<OsString> = Vec::new();
    let mut push = |s: String| a.push(OsString::from(s));
    push(q.qemu.display().to_string());
    push("-name".into());
    push("guest=vminit".into());
    match q.accel {
        Accelerator::Kvm => {
            push("-accel".into());
            push("kvm".into());
            push("-cpu".into());
            push("host".into());
        }
        Accelerator::Tcg => {
            push("-accel".into());
            push("tcg".into());
        }
    }
    push("-m".into());
    push(q.ram.to_string());
    push("-smp".into());
    push(q.cpus.to_string());
    push("-display".into());
    push("none".into());
    push("-monitor".into());
    push("none".into());
    // The serial console on stdio; signal=off lets a Ctrl-C reach the guest instead of
    // killing QEMU.
    push("-chardev".into());
    push("stdio,id=console,signal=off".into());
    push("-serial".into());
    push("chardev:console".into());
    // Two QMP sockets: one for vminit's shutdown, one for health checks, so neither
    // waits for the other (QMP serves one client per socket).
    push("-qmp".into());
    push(format!("unix:{},server=on,wait=off", q.qmp.display()));
    push("-qmp".into());
    push(format!("unix:{},server=on,wait=off", q.health.display()));
    push("-drive".into());
    push(format!(
        "file={},if=virtio,format=qcow2",
        q.disk.display().to_string().replace(',', ",,")
    ));
    if q.sandbox {
        // What libvirt asks for: no obsolete system calls, no setuid/setgid, no fork/exec,
        // no scheduler or priority changes.
        push("-sandbox".into());
        push(SANDBOX.into());
    }
    for (i, nic) in q.nics.iter().enumerate() {
        push("-netdev".into());
        push(format!(
            "tap,id=net{i},fd={},vhost={}",
            nic.fd,
            if q.vhost { "on" } else { "off" }
        ));
        push("-device".into());
        push(format!(
            "virtio-net-pci,netdev=net{i},mac={},host_mtu={}",
            nic.mac, nic.mtu
        ));
    }
    a.extend(q.extra.iter().cloned());
    a
}

/// QEMU's seccomp sandbox with every deny option that does not break a guest.
pub const SANDBOX: &str = "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny";

/// The argv as a POSIX shell command line, each word single-quoted.
pub fn shell_line(argv: &[OsString]) -> String {
    argv.iter()
        .map(|w| {
            let w = w.to_string_lossy();
            if !w.is_empty()
                && w.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_=/.,:+@".contains(&b))
            {
                w.into_owned()
            } else {
                format!("'{}'", w.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(accel: Accelerator, vhost: bool, extra: &[&str]) -> Vec<String> {
        render_with(accel, vhost, extra, true)
    }

    fn render_with(accel: Accelerator, vhost: bool, extra: &[&str], sandbox: bool) -> Vec<String> {
        let extra: Vec<OsString> = extra.iter().map(OsString::from).collect();
        let nics = [
            GuestNic {
                fd: 5,
                mac: Mac([2, 0x42, 0xac, 0x13, 0, 2]),
                mtu: 1500,
            },
            GuestNic {
                fd: 6,
                mac: Mac([2, 0x42, 0xac, 0x14, 0, 5]),
                mtu: 1450,
            },
        ];
        argv(&QemuInput {
            qemu: Path::new("/usr/bin/qemu-system-x86_64"),
            accel,
            vhost,
            ram: "512M",
            cpus: 2,
            disk: Path::new("/image/image.qcow2"),
            sandbox,
            qmp: Path::new("/run/vminit/qmp.sock"),
            health: Path::new("/run/vminit/health.sock"),
            nics: &nics,
            extra: &extra,
        })
        .into_iter()
        .map(|s| s.into_string().unwrap())
        .collect()
    }

    fn has_pair(argv: &[String], flag: &str, value: &str) -> bool {
        argv.windows(2).any(|w| w[0] == flag && w[1] == value)
    }

    #[test]
    fn each_nic_is_a_tap_fd_with_the_original_mac_and_mtu_in_order() {
        let a = render(Accelerator::Tcg, false, &[]);
        assert!(has_pair(&a, "-netdev", "tap,id=net0,fd=5,vhost=off"));
        assert!(has_pair(
            &a,
            "-device",
            "virtio-net-pci,netdev=net0,mac=02:42:ac:13:00:02,host_mtu=1500"
        ));
        assert!(has_pair(&a, "-netdev", "tap,id=net1,fd=6,vhost=off"));
        assert!(has_pair(
            &a,
            "-device",
            "virtio-net-pci,netdev=net1,mac=02:42:ac:14:00:05,host_mtu=1450"
        ));
        let p0 = a.iter().position(|s| s.contains("netdev=net0")).unwrap();
        let p1 = a.iter().position(|s| s.contains("netdev=net1")).unwrap();
        assert!(p0 < p1);
    }

    #[test]
    fn console_is_stdio_without_signals_and_qmp_is_a_unix_socket() {
        let a = render(Accelerator::Tcg, false, &[]);
        assert!(has_pair(&a, "-chardev", "stdio,id=console,signal=off"));
        assert!(has_pair(&a, "-serial", "chardev:console"));
        assert!(has_pair(
            &a,
            "-qmp",
            "unix:/run/vminit/qmp.sock,server=on,wait=off"
        ));
        assert!(has_pair(
            &a,
            "-drive",
            "file=/image/image.qcow2,if=virtio,format=qcow2"
        ));
        assert!(has_pair(&a, "-m", "512M") && has_pair(&a, "-smp", "2"));
    }

    #[test]
    fn the_seccomp_sandbox_denies_what_a_guest_does_not_need_unless_switched_off() {
        let a = render(Accelerator::Tcg, false, &[]);
        assert!(has_pair(
            &a,
            "-sandbox",
            "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"
        ));
        let off = render_with(Accelerator::Tcg, false, &[], false);
        assert!(!off.contains(&"-sandbox".to_string()));
    }

    #[test]
    fn kvm_uses_the_host_cpu_and_vhost_is_passed_through() {
        let a = render(Accelerator::Kvm, true, &[]);
        assert!(has_pair(&a, "-accel", "kvm") && has_pair(&a, "-cpu", "host"));
        assert!(has_pair(&a, "-netdev", "tap,id=net0,fd=5,vhost=on"));
        let t = render(Accelerator::Tcg, false, &[]);
        assert!(has_pair(&t, "-accel", "tcg") && !t.contains(&"host".to_string()));
    }

    #[test]
    fn cmd_arguments_come_last_and_unsplit() {
        let a = render(Accelerator::Tcg, false, &["-append", "console=ttyS0 quiet"]);
        assert_eq!(&a[a.len() - 2..], ["-append", "console=ttyS0 quiet"]);
    }

    #[test]
    fn shell_line_quotes_what_a_shell_would_split() {
        let argv: Vec<OsString> = ["qemu", "-append", "a b", "it's"]
            .iter()
            .map(OsString::from)
            .collect();
        assert_eq!(shell_line(&argv), r"qemu -append 'a b' 'it'\''s'");
    }
}
