//! Which accelerator, which vhost mode and which network datapath QEMU gets, decided from
//! the probes' findings (pure). Each decision comes with the log line that reports it.

use crate::config::{Accel, Datapath, NetDatapath, Vhost};
use crate::error::{Error, Result};

/// Whether `/dev/kvm` can run a guest; if not, why and the fix.
#[derive(Debug, PartialEq)]
pub enum KvmStatus {
    Usable,
    Unusable(String, &'static str),
}

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
        (Accel::Kvm, Some(KvmStatus::Unusable(why, hint))) => Err(Error::Unavailable {
            what: format!("ACCEL=kvm but /dev/kvm cannot run a guest ({why})"),
            hint: format!("{hint}, or set ACCEL=tcg"),
        }),
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
        (Vhost::On, Some(Err(why))) => Err(Error::Unavailable {
            what: format!("VHOST=on but {why}"),
            hint: format!("{HINT}, or set VHOST=auto"),
        }),
    }
}

/// What the macvtap probe found: its device nodes can be made and opened, the driver is
/// not loaded yet (nothing to try), or they cannot (the error names the missing flag).
#[derive(Debug)]
pub enum MacvtapProbe {
    Usable,
    NotLoaded,
    Refused(Error),
}

/// The fix for a container where no datapath works.
const TUN_HINT: &str = "hint: add --device /dev/net/tun (and --cap-add NET_ADMIN)";

/// `NET_DATAPATH`: `auto` takes macvtap when its device nodes can be made and opened
/// (nothing changes for those who run it so today), else tap when `/dev/net/tun` opens
/// (`tun`: the probe's error otherwise); `macvtap` and `tap` insist.
pub fn choose_datapath(
    want: NetDatapath,
    macvtap: MacvtapProbe,
    tun: std::result::Result<(), String>,
) -> Result<Choice<Datapath>> {
    let chose = |value, report: String| {
        Ok(Choice {
            value,
            report,
            warning: false,
        })
    };
    match (want, macvtap, tun) {
        (NetDatapath::User, _, _) => chose(Datapath::User, "datapath: user mode (NET_DATAPATH=user)".into()),
        (NetDatapath::Macvtap, MacvtapProbe::Refused(e), _) => Err(e),
        (NetDatapath::Macvtap, _, _) => chose(Datapath::Macvtap, "datapath: macvtap (NET_DATAPATH=macvtap)".into()),
        (NetDatapath::Tap, _, Ok(())) => chose(Datapath::Tap, "datapath: tap (NET_DATAPATH=tap)".into()),
        (NetDatapath::Tap, _, Err(why)) => Err(Error::Unavailable {
            what: format!("NET_DATAPATH=tap but {why}"),
            hint: TUN_HINT.into(),
        }),
        (NetDatapath::Auto, MacvtapProbe::Usable, _) => chose(
            Datapath::Macvtap,
            "datapath: macvtap (its device nodes can be made and opened)".into(),
        ),
        (NetDatapath::Auto, MacvtapProbe::NotLoaded, Ok(())) => chose(
            Datapath::Tap,
            "datapath: tap (the macvtap driver is not loaded, so its device nodes cannot be tried; /dev/net/tun opens)".into(),
        ),
        (NetDatapath::Auto, MacvtapProbe::NotLoaded, Err(why)) => chose(
            Datapath::Macvtap,
            format!("datapath: macvtap (the macvtap driver is not loaded yet; {why})"),
        ),
        (NetDatapath::Auto, MacvtapProbe::Refused(e), Ok(())) => chose(
            Datapath::Tap,
            format!("datapath: tap (macvtap: {e}; /dev/net/tun opens)"),
        ),
        (NetDatapath::Auto, MacvtapProbe::Refused(e), Err(why)) => Err(Error::Unavailable {
            what: format!("no network datapath: macvtap: {e}; tap: {why}"),
            hint: TUN_HINT.into(),
        }),
    }
}

/// What the guest loses in user mode, said wherever user mode is chosen for want of better.
const USER_LOSES: &str = "the guest keeps the container's addresses, but its TCP, UDP and ping are relayed at socket level (by passt, or by slirp where passt cannot sandbox itself: the next line says which): its MAC is not on the wire, no other protocol passes, only USER_PORTS reach it from outside, NICs connected later are not plugged in, and throughput is lower";

/// The flags that give the datapaths which hand the NIC itself to the guest.
pub const BETTER_FLAGS: &str = "--cap-add NET_ADMIN with --device-cgroup-rule 'c <macvtap major>:* rwm' for macvtap, or with --device /dev/net/tun for tap";

/// `NET_DATAPATH=user`, and `auto`'s last resort: user mode (passt) when this container may
/// not take its network over (neither macvtap nor tap can be had). `net_admin`: vminit holds CAP_NET_ADMIN, which every takeover
/// needs; `better`: the choice among the takeover datapaths, asked only when it can matter.
pub fn choose_user(
    want: NetDatapath,
    net_admin: bool,
    better: impl FnOnce() -> Result<Choice<Datapath>>,
) -> Result<Choice<Datapath>> {
    let user = |why: String| {
        Ok(Choice {
            value: Datapath::User,
            report: format!("datapath: user mode ({why}): {USER_LOSES}; {BETTER_FLAGS}"),
            warning: true,
        })
    };
    match (want, net_admin) {
        (NetDatapath::User, _) => Ok(Choice {
            value: Datapath::User,
            report: format!("datapath: user mode (NET_DATAPATH=user): {USER_LOSES}"),
            warning: false,
        }),
        (NetDatapath::Auto, false) => user("this container lacks the capability NET_ADMIN".into()),
        (NetDatapath::Macvtap | NetDatapath::Tap, false) => Err(Error::Unavailable {
            what: format!(
                "NET_DATAPATH={} but this container lacks the capability NET_ADMIN",
                if want == NetDatapath::Tap { "tap" } else { "macvtap" }
            ),
            hint: "hint: run the container with --cap-add NET_ADMIN, or set NET_DATAPATH=user (user mode: no capability needed)".into(),
        }),
        (NetDatapath::Auto, true) => match better() {
            Ok(choice) => Ok(choice),
            Err(e) => user(e.to_string()),
        },
        (NetDatapath::Macvtap | NetDatapath::Tap, true) => better(),
    }
}

/// What relays a guest NIC's traffic in user mode.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum UserBackend {
    /// One passt per NIC, which copies the container NIC's prefix, routes, MTU and IPv6.
    Passt,
    /// QEMU's own user networking, where passt cannot build its sandbox.
    Slirp,
}

/// What the guest loses with slirp rather than passt.
const SLIRP_LOSES: &str = "the guest gets the container's address in a /29, not the container's prefix (the other addresses of that /29 are out of its reach; the rest of the network is reached through slirp's router), no IPv6, an MTU of at most 1500, ping only where net.ipv4.ping_group_range allows it, and QEMU's slower relay";

/// User mode's relay: passt where its sandbox can be built (`sandbox`: the probe's verdict),
/// else QEMU's own user networking, said with what it costs and how to get passt.
pub fn choose_user_backend(sandbox: std::result::Result<(), String>) -> Choice<UserBackend> {
    match sandbox {
        Ok(()) => Choice {
            value: UserBackend::Passt,
            report: "user mode: passt (its sandbox can be built here)".into(),
            warning: false,
        },
        Err(why) => Choice {
            value: UserBackend::Slirp,
            report: format!(
                "user mode: QEMU's user networking (slirp), as passt cannot build its sandbox here ({why}; the container's seccomp profile, such as Docker's default or Kubernetes' RuntimeDefault, forbids it without CAP_SYS_ADMIN): {SLIRP_LOSES}; --security-opt seccomp=unconfined (or a profile allowing unshare, mount, umount2 and pivot_root) gives passt"
            ),
            warning: true,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused() -> MacvtapProbe {
        MacvtapProbe::Refused(Error::Unavailable {
            what: "mknod /dev/.vminit-probe: EPERM".into(),
            hint: "hint: add --device-cgroup-rule 'c 236:* rwm'".into(),
        })
    }

    #[test]
    fn user_mode_takes_slirp_only_where_passt_cannot_sandbox_itself_and_says_the_cost() {
        let passt = choose_user_backend(Ok(()));
        assert_eq!((passt.value, passt.warning), (UserBackend::Passt, false));
        let slirp =
            choose_user_backend(Err("unshare(CLONE_NEWUSER): Operation not permitted".into()));
        assert_eq!((slirp.value, slirp.warning), (UserBackend::Slirp, true));
        for said in ["CLONE_NEWUSER", "/29", "no IPv6", "seccomp=unconfined"] {
            assert!(slirp.report.contains(said), "{said}: {}", slirp.report);
        }
    }

    #[test]
    fn datapath_auto_keeps_macvtap_where_it_works_and_takes_tap_where_it_cannot() {
        let tun_ok = || Ok(());
        let no_tun = || Err("open /dev/net/tun: ENOENT".to_string());
        let d = choose_datapath(NetDatapath::Auto, MacvtapProbe::Usable, no_tun()).unwrap();
        assert_eq!(d.value, Datapath::Macvtap);
        let d = choose_datapath(NetDatapath::Auto, refused(), tun_ok()).unwrap();
        assert_eq!(d.value, Datapath::Tap);
        assert!(
            d.report.contains("EPERM") && d.report.contains("/dev/net/tun opens"),
            "{}",
            d.report
        );
        let d = choose_datapath(NetDatapath::Auto, MacvtapProbe::NotLoaded, tun_ok()).unwrap();
        assert_eq!(d.value, Datapath::Tap);
        let d = choose_datapath(NetDatapath::Auto, MacvtapProbe::NotLoaded, no_tun()).unwrap();
        assert_eq!(d.value, Datapath::Macvtap);
        let e = choose_datapath(NetDatapath::Auto, refused(), no_tun()).unwrap_err();
        assert!(e.to_string().contains("--device /dev/net/tun"), "{e}");
    }

    #[test]
    fn datapath_tap_and_macvtap_insist_and_name_the_missing_flag() {
        let e = choose_datapath(
            NetDatapath::Tap,
            MacvtapProbe::Usable,
            Err("open /dev/net/tun: EPERM".into()),
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("NET_DATAPATH=tap")
                && e.to_string().contains("--device /dev/net/tun"),
            "{e}"
        );
        let e = choose_datapath(NetDatapath::Macvtap, refused(), Ok(())).unwrap_err();
        assert!(e.to_string().contains("--device-cgroup-rule"), "{e}");
        let d = choose_datapath(NetDatapath::Tap, refused(), Ok(())).unwrap();
        assert_eq!(d.value, Datapath::Tap);
    }

    fn macvtap() -> Result<Choice<Datapath>> {
        Ok(Choice {
            value: Datapath::Macvtap,
            report: "datapath: macvtap".into(),
            warning: false,
        })
    }

    fn no_takeover() -> Result<Choice<Datapath>> {
        Err(Error::Unavailable {
            what: "open /dev/.vminit-probe: permission denied by the device cgroup".into(),
            hint: "hint: add --device-cgroup-rule 'c 236:* rwm'".into(),
        })
    }

    #[test]
    fn auto_falls_back_to_user_mode_only_when_no_takeover_can_be_had_and_says_what_is_lost() {
        let d = choose_user(NetDatapath::Auto, true, macvtap).unwrap();
        assert_eq!(d.value, Datapath::Macvtap);
        let d = choose_user(NetDatapath::Auto, false, || panic!("not asked")).unwrap();
        assert_eq!(d.value, Datapath::User);
        assert!(d.warning);
        for words in ["NET_ADMIN", "MAC is not on the wire", "--cap-add NET_ADMIN"] {
            assert!(d.report.contains(words), "{words}: {}", d.report);
        }
        let d = choose_user(NetDatapath::Auto, true, no_takeover).unwrap();
        assert_eq!(d.value, Datapath::User);
        assert!(d.report.contains("device cgroup"), "{}", d.report);
    }

    #[test]
    fn user_is_taken_when_asked_and_macvtap_without_net_admin_names_the_flags() {
        let d = choose_user(NetDatapath::User, true, || panic!("not asked")).unwrap();
        assert_eq!((d.value, d.warning), (Datapath::User, false));
        let e = choose_user(NetDatapath::Tap, false, macvtap).unwrap_err();
        assert!(e.to_string().contains("NET_DATAPATH=tap"), "{e}");
        let e = choose_user(NetDatapath::Macvtap, false, macvtap).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("--cap-add NET_ADMIN") && text.contains("NET_DATAPATH=user"),
            "{text}"
        );
        assert_eq!(e.exit_code(), crate::error::exit::UNAVAILABLE);
        assert!(choose_user(NetDatapath::Macvtap, true, no_takeover).is_err());
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
            matches!(e, Error::Unavailable { ref what, ref hint } if what.contains("ACCEL=kvm") && hint.contains("--device /dev/kvm"))
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
}
