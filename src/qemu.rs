//! Renders QEMU's command line from the plan and the probes' decisions (pure).

use std::ffi::OsString;
use std::os::fd::RawFd;
use std::path::Path;

use crate::config::{Accel, Vhost};
use crate::devices::KvmStatus;
use crate::error::{Error, Result};
use crate::types::Mac;

/// The accelerator QEMU will use, as decided by the probe.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Accelerator {
    Kvm,
    Tcg,
}

/// A decision about QEMU, with the log line that reports it (a warning when the user
/// loses something by it).
#[derive(Debug, PartialEq)]
pub struct Choice<T> {
    pub value: T,
    pub report: String,
    pub warning: bool,
}

/// `ACCEL`: KVM only when the probe guest ran on /dev/kvm (`kvm`: the probe's verdict,
/// `None` when it was not run, as with ACCEL=tcg). `auto` falls back to TCG and says why;
/// `kvm` turns the same finding into an error.
pub fn choose_accelerator(want: Accel, kvm: Option<KvmStatus>) -> Result<Choice<Accelerator>> {
    let choice = |value, report: String, warning| Choice {
        value,
        report,
        warning,
    };
    match (want, kvm) {
        (Accel::Tcg, _) | (_, None) => Ok(choice(
            Accelerator::Tcg,
            "accelerator: tcg (ACCEL=tcg)".into(),
            false,
        )),
        (_, Some(KvmStatus::Usable)) => Ok(choice(
            Accelerator::Kvm,
            "accelerator: kvm (a probe guest ran on /dev/kvm)".into(),
            false,
        )),
        (Accel::Auto, Some(KvmStatus::Unusable(why, hint))) => Ok(choice(
            Accelerator::Tcg,
            format!("accelerator: tcg, software emulation, slow ({why}); {hint}"),
            true,
        )),
        (Accel::Kvm, Some(KvmStatus::Unusable(why, hint))) => Err(Error::Unavailable(format!(
            "ACCEL=kvm but /dev/kvm cannot run a guest ({why}); {hint}, or set ACCEL=tcg"
        ))),
    }
}

/// `VHOST`: vhost-net only when /dev/vhost-net opens (`probe`; `None` when not probed, as
/// with VHOST=off), because QEMU aborts on `vhost=on` without it.
pub fn choose_vhost(
    want: Vhost,
    probe: Option<std::result::Result<(), String>>,
) -> Result<Choice<bool>> {
    const HINT: &str = "hint: add --device /dev/vhost-net (modprobe vhost-net on the host)";
    match (want, probe) {
        (Vhost::Off, _) | (_, None) => Ok(Choice {
            value: false,
            report: "vhost-net: off (VHOST=off)".into(),
            warning: false,
        }),
        (_, Some(Ok(()))) => Ok(Choice {
            value: true,
            report: "vhost-net: on".into(),
            warning: false,
        }),
        (Vhost::Auto, Some(Err(why))) => Ok(Choice {
            value: false,
            report: format!("vhost-net: off ({why}); {HINT} for faster networking"),
            warning: true,
        }),
        (Vhost::On, Some(Err(why))) => Err(Error::Unavailable(format!(
            "VHOST=on but {why}; {HINT}, or set VHOST=auto"
        ))),
    }
}

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
    pub qmp: &'a Path,
    pub health: &'a Path,
    pub nics: &'a [GuestNic],
    /// The display options (`display::qemu_args`): `-display none`, or the VNC console's.
    pub display: &'a [String],
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
    for arg in q.display {
        push(arg.clone());
    }
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
            qmp: Path::new("/run/vminit/qmp.sock"),
            health: Path::new("/run/vminit/health.sock"),
            nics: &nics,
            display: &["-display".into(), "none".into()],
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

    fn unusable() -> Option<KvmStatus> {
        Some(KvmStatus::Unusable(
            "KVM_RUN: EPERM".into(),
            "hint: add --device /dev/kvm",
        ))
    }

    #[test]
    fn accel_auto_takes_kvm_only_when_the_probe_guest_ran() {
        let kvm = choose_accelerator(Accel::Auto, Some(KvmStatus::Usable)).unwrap();
        assert_eq!((kvm.value, kvm.warning), (Accelerator::Kvm, false));
        let tcg = choose_accelerator(Accel::Auto, unusable()).unwrap();
        assert_eq!((tcg.value, tcg.warning), (Accelerator::Tcg, true));
        assert!(tcg.report.contains("KVM_RUN: EPERM") && tcg.report.contains("--device /dev/kvm"));
    }

    #[test]
    fn accel_kvm_refuses_an_unusable_kvm_and_accel_tcg_never_probes() {
        let e = choose_accelerator(Accel::Kvm, unusable()).unwrap_err();
        assert!(
            matches!(e, Error::Unavailable(ref m) if m.contains("ACCEL=kvm") && m.contains("--device /dev/kvm"))
        );
        let tcg = choose_accelerator(Accel::Tcg, None).unwrap();
        assert_eq!((tcg.value, tcg.warning), (Accelerator::Tcg, false));
    }

    #[test]
    fn vhost_auto_falls_back_with_a_warning_and_on_insists() {
        let missing = || Some(Err("open /dev/vhost-net: ENOENT".to_string()));
        let auto = choose_vhost(Vhost::Auto, missing()).unwrap();
        assert_eq!((auto.value, auto.warning), (false, true));
        assert!(auto.report.contains("--device /dev/vhost-net"));
        let e = choose_vhost(Vhost::On, missing()).unwrap_err();
        assert!(
            e.to_string().contains("VHOST=on") && e.to_string().contains("--device /dev/vhost-net")
        );
        assert!(choose_vhost(Vhost::Auto, Some(Ok(()))).unwrap().value);
        assert!(!choose_vhost(Vhost::Off, None).unwrap().value);
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
