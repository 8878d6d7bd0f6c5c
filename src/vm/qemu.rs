//! Renders QEMU's command line from the plan and the accelerator decisions (pure).

use std::ffi::OsString;
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};

use crate::net::types::Mac;
use crate::takeover::slot::Slot;
use crate::vm::accel::Accelerator;
use crate::vm::disk::{File, Format, Layer};
use crate::vm::machine::{Firmware, NicModel};

/// Where a guest NIC's frames go.
#[derive(Clone, Debug, PartialEq)]
pub enum Netdev {
    /// An open tap device (a macvtap's /dev/tapN) QEMU inherits: one descriptor per queue
    /// pair (at least one).
    Tap(Vec<RawFd>),
    /// passt's Unix socket (user mode), which QEMU connects to.
    Stream(PathBuf),
    /// QEMU's own user networking (user mode without passt): `-netdev user`'s options after
    /// its id (`slirp::options`).
    Slirp(String),
}

/// One guest NIC as QEMU sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct GuestNic {
    /// Its place, which names its netdev and device.
    pub slot: Slot,
    pub netdev: Netdev,
    pub mac: Mac,
    pub mtu: u32,
}

pub struct QemuInput<'a> {
    pub qemu: &'a Path,
    pub accel: Accelerator,
    pub vhost: bool,
    pub ram: &'a str,
    pub cpus: u32,
    /// The disk chain, top first, as descriptors QEMU inherits.
    pub disk: &'a [Layer<RawFd>],
    /// The extra disks' chains (`disk2.qcow2`, ...), in the order the guest sees them.
    pub extra_disks: &'a [Vec<Layer<RawFd>>],
    /// The boot ISO (`BOOT_ISO`), as a descriptor, and the `-boot` option that goes with it.
    pub cdrom: Option<(&'a File<RawFd>, &'a str)>,
    pub nic_model: NicModel,
    /// UEFI: the firmware's code (by name: it is part of the image), its variables (a
    /// descriptor, read-write), and whether Secure Boot (q35, SMM) is on.
    pub uefi: Option<Uefi<'a>>,
    /// swtpm's control socket (`TPM=yes`): the guest gets a TPM 2.0 (TIS interface).
    pub tpm: Option<&'a Path>,
    /// QEMU's own seccomp sandbox (`QEMU_SANDBOX`).
    pub sandbox: bool,
    pub qmp: &'a Path,
    pub health: &'a Path,
    pub nics: &'a [GuestNic],
    /// The display options (`display::qemu_args`): `-display none`, or the VNC console's.
    pub display: &'a [String],
    /// The directory holding the NoCloud seed's files, when there is a seed.
    pub seed: Option<&'a Path>,
    /// CMD arguments, appended verbatim.
    pub extra: &'a [OsString],
}

/// The guest's UEFI firmware.
#[derive(Clone, Copy, Debug)]
pub struct Uefi<'a> {
    pub code: &'a Firmware,
    pub vars: &'a File<RawFd>,
    pub secure: bool,
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
    if let Some(uefi) = &q.uefi
        && uefi.secure
    {
        // Secure Boot needs SMM, so that only the firmware writes its variables; the
        // flash takes writes only from SMM.
        push("-machine".into());
        push("q35,smm=on".into());
        push("-global".into());
        push("driver=cfi.pflash01,property=secure,value=on".into());
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
    let unix = |path: &Path| {
        format!(
            "unix:{},server=on,wait=off",
            path.display().to_string().replace(',', ",,")
        )
    };
    push(unix(q.qmp));
    push("-qmp".into());
    push(unix(q.health));
    let mut sets = 0;
    if let Some(uefi) = &q.uefi {
        sets += 1;
        a.push("-drive".into());
        a.push(
            format!(
                "if=pflash,format={},unit=0,readonly=on,file={}",
                uefi.code.format.driver(),
                label(&uefi.code.path)
            )
            .into(),
        );
        // Both modes in the set: QEMU looks at the file read-only before it opens it.
        let vars = uefi.vars;
        a.push("-add-fd".into());
        a.push(
            format!(
                "fd={},set={sets},opaque=ro:{}",
                vars.read,
                label(&vars.path)
            )
            .into(),
        );
        if let Some(fd) = vars.write {
            a.push("-add-fd".into());
            a.push(format!("fd={fd},set={sets},opaque=rw:{}", label(&vars.path)).into());
        }
        a.push("-drive".into());
        a.push(
            format!("if=pflash,format=raw,unit=1,file.driver=file,file.filename=/dev/fdset/{sets}")
                .into(),
        );
    }
    a.extend(
        disk_args(q.disk, "vm-", &mut sets)
            .into_iter()
            .map(OsString::from),
    );
    for (i, layers) in q.extra_disks.iter().enumerate() {
        let prefix = format!("disk{}-", i + 2);
        a.extend(
            disk_args(layers, &prefix, &mut sets)
                .into_iter()
                .map(OsString::from),
        );
    }
    let mut push = |s: String| a.push(OsString::from(s));
    if let Some((iso, boot)) = q.cdrom {
        // An IDE CD-ROM, which every installer and firmware knows, read-only from its fd.
        sets += 1;
        push("-add-fd".into());
        push(format!(
            "fd={},set={sets},opaque=ro:{}",
            iso.read,
            label(&iso.path)
        ));
        push("-drive".into());
        push(format!(
            "if=ide,media=cdrom,readonly=on,format=raw,file.driver=file,file.filename=/dev/fdset/{sets}"
        ));
        push("-boot".into());
        push(boot.into());
    }
    if let Some(dir) = q.seed {
        // QEMU presents the directory as a read-only FAT disk (its vvfat driver) labelled
        // cidata, where cloud-init's NoCloud datasource looks: no image tool needed.
        push("-drive".into());
        push(format!(
            "if=virtio,driver=vvfat,dir={},label={},readonly=on",
            dir.display().to_string().replace(',', ",,"),
            crate::vm::seed::LABEL
        ));
    }
    if let Some(socket) = q.tpm {
        push("-chardev".into());
        push(format!("socket,id=tpm,path={}", label(socket)));
        push("-tpmdev".into());
        push("emulator,id=tpm0,chardev=tpm".into());
        push("-device".into());
        push("tpm-tis,tpmdev=tpm0".into());
    }
    if q.sandbox {
        // What libvirt asks for: no obsolete system calls, no setuid/setgid, no fork/exec,
        // no scheduler or priority changes.
        push("-sandbox".into());
        push(SANDBOX.into());
    }
    let q35 = q.uefi.is_some_and(|u| u.secure);
    if q35 {
        // q35's root bus (pcie.0) hot-plugs nothing: every NIC gets a PCIe root port of its
        // own (the NIC in slot i on port i), and HOTPLUG_PORTS more stay empty for NICs
        // connected later. No I/O window (io-reserve=0): virtio NICs behind PCIe ports use
        // memory only, and the 64 KiB I/O space would not go round many ports.
        for i in 0..root_ports(q.nics) {
            push("-device".into());
            push(format!(
                "pcie-root-port,id={},chassis={},io-reserve=0",
                Slot(i).root_port(),
                i + 1
            ));
        }
    }
    for nic in q.nics {
        let (netdev, device) = (nic.slot.netdev(), nic.slot.device());
        let queues = match &nic.netdev {
            Netdev::Tap(fds) => fds.len(),
            Netdev::Stream(_) | Netdev::Slirp(_) => 1,
        };
        push("-netdev".into());
        push(match &nic.netdev {
            Netdev::Tap(fds) => format!(
                "tap,id={netdev},{},vhost={}",
                fd_option(&fds.iter().map(RawFd::to_string).collect::<Vec<_>>()),
                if q.vhost { "on" } else { "off" }
            ),
            Netdev::Stream(socket) => format!(
                "stream,id={netdev},server=off,addr.type=unix,addr.path={}",
                socket.display().to_string().replace(',', ",,")
            ),
            Netdev::Slirp(options) => format!("user,id={netdev},{options}"),
        });
        push("-device".into());
        let mut d = nic_device(q.nic_model, &netdev, &device, nic.mac, nic.mtu, queues);
        if q35 {
            d += &format!(",bus={}", nic.slot.root_port());
        }
        push(d);
    }
    a.extend(q.extra.iter().cloned());
    a
}

/// A tap netdev's descriptors: `fd=A` for one queue, `fds=A:B:…` for several (QEMU then
/// makes one queue pair per descriptor, and with vhost one vhost-net per queue).
fn fd_option(fds: &[String]) -> String {
    match fds {
        [one] => format!("fd={one}"),
        _ => format!("fds={}", fds.join(":")),
    }
}

/// What virtio-net needs for `queues` queue pairs: multiqueue on, and an MSI-X vector for
/// each queue of each pair plus one for the control queue and one for configuration
/// changes. Nothing for one queue (the device as before).
fn multiqueue_option(queues: usize) -> String {
    if queues > 1 {
        format!(",mq=on,vectors={}", 2 * queues + 2)
    } else {
        String::new()
    }
}

/// A guest NIC's `-device`: the model, its netdev, the container NIC's MAC and (virtio) MTU
/// and queues.
fn nic_device(
    model: NicModel,
    netdev: &str,
    device: &str,
    mac: Mac,
    mtu: u32,
    queues: usize,
) -> String {
    let mut d = format!("{},netdev={netdev},id={device},mac={mac}", model.device());
    if model.takes_host_mtu() {
        d += &format!(",host_mtu={mtu}");
        d += &multiqueue_option(queues);
    }
    d
}

/// A path as an fd set's label: commas doubled (QEMU's option syntax).
fn label(path: &Path) -> String {
    path.display().to_string().replace(',', ",,")
}

/// QEMU's seccomp sandbox with every deny option that does not break a guest.
pub const SANDBOX: &str = "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny";

/// The disk chain, pinned: every file is a descriptor in an fd set (`-add-fd`, opened by
/// QEMU as `/dev/fdset/N`, so QEMU opens no path of the disk), every layer has its driver
/// named, and every backing file and data file is given explicitly, never taken from a
/// header. Backing layers are `-blockdev` nodes, read-only, defined bottom first; the top
/// stays a `-drive if=virtio` (same defaults and PCI slot as before) that refers to them.
/// `prefix` names the disk's nodes (`vm-` for the disk, `disk2-` ...); `count` is the last fd
/// set used so far.
fn disk_args(layers: &[Layer<RawFd>], prefix: &str, count: &mut usize) -> Vec<String> {
    let mut a = Vec::new();
    let mut add_fds = |a: &mut Vec<String>, file: &File<RawFd>| {
        *count += 1;
        let count = *count;
        let label = label(&file.path);
        a.push("-add-fd".into());
        a.push(format!("fd={},set={count},opaque=ro:{label}", file.read));
        if let Some(fd) = file.write {
            a.push("-add-fd".into());
            a.push(format!("fd={fd},set={count},opaque=rw:{label}"));
        }
        count
    };
    // Each layer's fd set, and its data file's.
    let sets: Vec<(usize, Option<usize>)> = layers
        .iter()
        .map(|l| {
            let file = add_fds(&mut a, &l.file);
            (file, l.data_file.as_ref().map(|d| add_fds(&mut a, d)))
        })
        .collect();
    let file_node = |node: String, set: usize, read_only: bool| {
        let ro = if read_only {
            r#","read-only":true"#
        } else {
            ""
        };
        format!(r#"{{"driver":"file","node-name":"{node}","filename":"/dev/fdset/{set}"{ro}}}"#)
    };
    for (i, (layer, &(set, data))) in layers.iter().zip(&sets).enumerate().skip(1).rev() {
        a.push("-blockdev".into());
        a.push(file_node(format!("{prefix}file{i}"), set, true));
        let mut node = format!(
            r#"{{"driver":"{}","node-name":"{prefix}layer{i}","file":"{prefix}file{i}","read-only":true"#,
            layer.format.driver()
        );
        if let Some(data) = data {
            a.push("-blockdev".into());
            a.push(file_node(format!("{prefix}data{i}"), data, true));
            node += &format!(r#","data-file":"{prefix}data{i}""#);
        }
        if layer.format == Format::Qcow2 {
            if layer.has_backing {
                node += &format!(r#","backing":"{prefix}layer{}""#, i + 1);
            } else {
                node += r#","backing":null"#;
            }
        }
        node.push('}');
        a.push("-blockdev".into());
        a.push(node);
    }
    let Some(&(set, data)) = sets.first() else {
        return a;
    };
    let mut drive =
        format!("if=virtio,format=qcow2,file.driver=file,file.filename=/dev/fdset/{set}");
    if let Some(data) = data {
        a.push("-blockdev".into());
        a.push(file_node(format!("{prefix}data0"), data, false));
        drive += &format!(",data-file={prefix}data0");
    }
    if layers[0].has_backing {
        drive += &format!(",backing={prefix}layer1");
    }
    a.push("-drive".into());
    a.push(drive);
    a
}

/// The QMP commands that plug one more NIC into the running guest, in order.
pub struct Plug {
    /// One `getfd` per queue, each naming the tap descriptor passed with it.
    pub getfd: Vec<String>,
    /// The slot's netdev on those descriptors.
    pub netdev_add: String,
    /// A NIC of the guest's model with its MAC (and, virtio, MTU and multiqueue for several
    /// queues) on the machine's PCI bus, which the default `pc` machine hot-plugs through
    /// ACPI; on `q35`, on the slot's PCIe root port.
    pub device_add: String,
}

/// The QMP commands that plug a NIC with `queues` queue pairs (virtio; one for other
/// models) into the running guest.
pub fn plug_commands(
    slot: Slot,
    queues: usize,
    vhost: bool,
    model: NicModel,
    mac: Mac,
    mtu: u32,
    q35: bool,
) -> Plug {
    let (netdev, device) = (slot.netdev(), slot.device());
    let names: Vec<String> = (0..queues.max(1)).map(|q| slot.fd_name(q)).collect();
    let fds = match names.as_slice() {
        [one] => format!(r#""fd":"{one}""#),
        _ => format!(r#""fds":"{}""#, names.join(":")),
    };
    let extra = match (model.takes_host_mtu(), names.len()) {
        (false, _) => String::new(),
        (true, 1) => format!(r#","host_mtu":{mtu}"#),
        (true, n) => format!(r#","host_mtu":{mtu},"mq":true,"vectors":{}"#, 2 * n + 2),
    };
    // On q35, the slot's own root port (empty: the slot is free); QEMU refuses a port
    // beyond those made at start, and the NIC stays with the container.
    let extra = match q35 {
        true => format!(r#"{extra},"bus":"{}""#, slot.root_port()),
        false => extra,
    };
    Plug {
        getfd: names
            .iter()
            .map(|fd| format!(r#"{{"execute":"getfd","arguments":{{"fdname":"{fd}"}}}}"#))
            .collect(),
        netdev_add: format!(
            r#"{{"execute":"netdev_add","arguments":{{"type":"tap","id":"{netdev}",{fds},"vhost":{vhost}}}}}"#
        ),
        device_add: format!(
            r#"{{"execute":"device_add","arguments":{{"driver":"{}","id":"{device}","netdev":"{netdev}","mac":"{mac}"{extra}}}}}"#,
            model.device()
        ),
    }
}

/// The QMP commands that take a NIC out of the running guest: the device (the guest
/// ejects it through ACPI), then its netdev.
pub fn unplug_commands(slot: Slot) -> [String; 2] {
    let (netdev, device) = (slot.netdev(), slot.device());
    [
        format!(r#"{{"execute":"device_del","arguments":{{"id":"{device}"}}}}"#),
        format!(r#"{{"execute":"netdev_del","arguments":{{"id":"{netdev}"}}}}"#),
    ]
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

/// PCI slots of the root bus: 32, less on `pc` the host bridge (0), the PIIX3 (1: ISA, IDE,
/// USB, ACPI as its functions) and the VGA (2), which QEMU always adds; on `q35` the host
/// bridge (0), the VGA (1) and the ICH9 (0x1f: LPC, AHCI, SMBus as its functions).
const FREE_PCI_SLOTS: usize = 32 - 3;

/// PCIe root ports kept empty on `q35` for NICs connected while the guest runs (its root
/// bus hot-plugs nothing; the `pc` machine hot-plugs into any free slot).
pub const HOTPLUG_PORTS: usize = 4;

/// The PCIe root ports a `q35` guest gets: one for each NIC it starts with (slots 0, 1, …)
/// and [`HOTPLUG_PORTS`] more.
fn root_ports(nics: &[GuestNic]) -> usize {
    let slots: Vec<Slot> = nics.iter().map(|n| n.slot).collect();
    nic_places(true, &slots) + HOTPLUG_PORTS
}

/// The PCI places the guest's NICs at `slots` take: one each on `pc`; on `q35` a root port
/// for every slot up to the highest (a guest restarted after a kill keeps its NICs' slots,
/// gaps and all).
pub fn nic_places(q35: bool, slots: &[Slot]) -> usize {
    match q35 {
        false => slots.len(),
        true => slots
            .iter()
            .map(|s| s.0 + 1)
            .max()
            .unwrap_or(0)
            .max(slots.len()),
    }
}

/// What takes slots of the guest's PCI root bus beside its NICs (the host bridge, the
/// chipset and the VGA, which every guest has, are left out of [`FREE_PCI_SLOTS`] already).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SlotUse {
    /// The extra disks (`disk2.qcow2` …): a virtio-blk device each, like the VM disk.
    pub extra_disks: usize,
    /// The cloud-init seed: another virtio-blk.
    pub seed: bool,
    /// The `q35` machine (`BOOT_MODE=secure`): each NIC behind a root port of its own, and
    /// [`HOTPLUG_PORTS`] empty ones.
    pub q35: bool,
    /// The VNC console's USB controller (`-usb`): a function of the PIIX3 on `pc`, but a
    /// slot of its own (the ICH9's EHCI with its UHCI companions) on `q35`.
    pub usb: bool,
}

impl SlotUse {
    /// The most NICs the guest can start with: a device each (on `q35`, a root port each)
    /// in the slots the VM disk (one virtio-blk, whatever its chain), the extra disks, the
    /// seed, on `q35` the hot-plug ports and the VNC console's USB controller leave. On `pc`
    /// nothing is kept back for hot-plug: a NIC connected later takes a slot left free, and
    /// QEMU refuses one beyond (the NIC stays with the container). Devices in CMD's
    /// arguments are not counted.
    pub fn max_nics(self) -> usize {
        let q35_only = if self.q35 {
            HOTPLUG_PORTS + usize::from(self.usb)
        } else {
            0
        };
        let taken = 1 + self.extra_disks + usize::from(self.seed) + q35_only;
        FREE_PCI_SLOTS.saturating_sub(taken)
    }

    /// What the free slots go to beside the NICs, for the refusal: `the VM disk, 2 extra
    /// disks, the seed, …`.
    pub fn describe(self) -> String {
        let mut parts = vec!["the VM disk".to_string()];
        match self.extra_disks {
            0 => {}
            1 => parts.push("1 extra disk".into()),
            n => parts.push(format!("{n} extra disks")),
        }
        if self.seed {
            parts.push("the cloud-init seed".into());
        }
        if self.q35 {
            parts.push(format!(
                "{HOTPLUG_PORTS} PCIe root ports kept empty for hot-plug (BOOT_MODE=secure)"
            ));
            if self.usb {
                parts.push("the VNC console's USB controller".into());
            }
        }
        format!(
            "of the {FREE_PCI_SLOTS} the chipset and the VGA leave, less {}",
            parts.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, read: RawFd, write: Option<RawFd>) -> File<RawFd> {
        File {
            path: path.into(),
            read,
            write,
        }
    }

    fn plain_disk() -> Vec<Layer<RawFd>> {
        vec![Layer {
            file: file("/image/image.qcow2", 7, Some(8)),
            format: Format::Qcow2,
            data_file: None,
            has_backing: false,
        }]
    }

    fn render(accel: Accelerator, vhost: bool, extra: &[&str]) -> Vec<String> {
        render_with(accel, vhost, extra, &plain_disk(), true)
    }

    fn render_with(
        accel: Accelerator,
        vhost: bool,
        extra: &[&str],
        disk: &[Layer<RawFd>],
        sandbox: bool,
    ) -> Vec<String> {
        let nics = [
            GuestNic {
                slot: Slot(0),
                netdev: Netdev::Tap(vec![5]),
                mac: Mac([2, 0x42, 0xac, 0x13, 0, 2]),
                mtu: 1500,
            },
            GuestNic {
                slot: Slot(1),
                netdev: Netdev::Tap(vec![6]),
                mac: Mac([2, 0x42, 0xac, 0x14, 0, 5]),
                mtu: 1450,
            },
        ];
        render_nics(accel, vhost, extra, disk, sandbox, &nics)
    }

    fn render_nics(
        accel: Accelerator,
        vhost: bool,
        extra: &[&str],
        disk: &[Layer<RawFd>],
        sandbox: bool,
        nics: &[GuestNic],
    ) -> Vec<String> {
        let extra: Vec<OsString> = extra.iter().map(OsString::from).collect();
        words(&QemuInput {
            accel,
            vhost,
            ram: "512M",
            cpus: 2,
            sandbox,
            nics,
            display: &["-display".into(), "none".into()],
            extra: &extra,
            ..minimal(disk)
        })
    }

    /// A QEMU input with nothing but `disk`, for tests that set a few fields.
    fn minimal(disk: &[Layer<RawFd>]) -> QemuInput<'_> {
        QemuInput {
            qemu: Path::new("/usr/bin/qemu-system-x86_64"),
            accel: Accelerator::Tcg,
            vhost: false,
            ram: "1G",
            cpus: 1,
            disk,
            extra_disks: &[],
            cdrom: None,
            nic_model: NicModel::Virtio,
            uefi: None,
            tpm: None,
            sandbox: true,
            qmp: Path::new("/run/vminit/qmp.sock"),
            health: Path::new("/run/vminit/health.sock"),
            nics: &[],
            display: &[],
            seed: None,
            extra: &[],
        }
    }

    /// The values of every `flag` in `argv`, in order.
    fn values_of<'a>(argv: &'a [String], flag: &str) -> Vec<&'a str> {
        argv.windows(2)
            .filter(|w| w[0] == flag)
            .map(|w| w[1].as_str())
            .collect()
    }

    fn words(q: &QemuInput) -> Vec<String> {
        argv(q)
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect()
    }

    #[test]
    fn user_mode_nics_are_passts_socket_or_qemus_slirp_with_the_containers_mac() {
        for (netdev, want) in [
            (
                Netdev::Stream("/run/vminit/passt0.sock".into()),
                "stream,id=net0,server=off,addr.type=unix,addr.path=/run/vminit/passt0.sock",
            ),
            (
                Netdev::Slirp("ipv6=off,net=172.19.0.0/29".into()),
                "user,id=net0,ipv6=off,net=172.19.0.0/29",
            ),
        ] {
            let nics = [GuestNic {
                slot: Slot(0),
                netdev,
                mac: Mac([2, 0x42, 0xac, 0x13, 0, 2]),
                mtu: 1500,
            }];
            let a = render_nics(Accelerator::Tcg, false, &[], &plain_disk(), true, &nics);
            assert!(has_pair(&a, "-netdev", want), "{a:?}");
            assert!(has_pair(
                &a,
                "-device",
                "virtio-net-pci,netdev=net0,id=nic0,mac=02:42:ac:13:00:02,host_mtu=1500"
            ));
        }
    }

    fn has_pair(argv: &[String], flag: &str, value: &str) -> bool {
        argv.windows(2).any(|w| w[0] == flag && w[1] == value)
    }

    #[test]
    fn qmp_socket_paths_carry_commas_escaped() {
        let a = words(&QemuInput {
            sandbox: false,
            qmp: Path::new("/run/a,b/qmp.sock"),
            health: Path::new("/run/a,b/health.sock"),
            ..minimal(&[])
        });
        assert!(has_pair(
            &a,
            "-qmp",
            "unix:/run/a,,b/qmp.sock,server=on,wait=off"
        ));
        assert!(has_pair(
            &a,
            "-qmp",
            "unix:/run/a,,b/health.sock,server=on,wait=off"
        ));
    }

    #[test]
    fn the_nics_get_the_pci_slots_the_disks_the_seed_the_hot_plug_ports_and_usb_leave() {
        // QEMU 7.2 with this command line's devices (`-S`, every combination tried): on `pc`
        // 28 virtio-net devices beside one virtio-blk, 27 beside two, 26 beside three, with
        // or without `-usb`; on `q35`, with a root port per NIC and 4 more, 24, 23, 22, and
        // one fewer with `-usb`. One more NIC: "PCI: no slot/function available".
        let max = |extra_disks, seed, q35, usb| {
            SlotUse {
                extra_disks,
                seed,
                q35,
                usb,
            }
            .max_nics()
        };
        assert_eq!(max(0, false, false, false), 28);
        assert_eq!(max(0, true, false, false), 27);
        assert_eq!(max(2, false, false, false), 26);
        assert_eq!(max(2, true, false, true), 25, "USB is the PIIX3's on pc");
        assert_eq!(max(0, false, true, false), 24);
        assert_eq!(max(0, true, true, false), 23);
        assert_eq!(max(1, false, true, false), 23);
        assert_eq!(max(2, false, true, true), 21);
        assert_eq!(max(8, true, true, true), 14, "disk2 to disk9");
    }

    #[test]
    fn under_q35_the_nics_take_a_root_port_for_every_slot_up_to_the_highest() {
        let slots = [Slot(0), Slot(5)];
        assert_eq!(nic_places(false, &slots), 2);
        assert_eq!(nic_places(true, &slots), 6, "ports 0 to 5");
        assert_eq!(nic_places(true, &[Slot(0), Slot(1)]), 2);
        assert_eq!(nic_places(true, &[]), 0);
    }

    #[test]
    fn the_refusal_names_what_takes_the_slots() {
        let pc = SlotUse {
            extra_disks: 2,
            seed: true,
            ..SlotUse::default()
        };
        assert_eq!(
            pc.describe(),
            "of the 29 the chipset and the VGA leave, less the VM disk, 2 extra disks, the cloud-init seed"
        );
        let q35 = SlotUse {
            extra_disks: 1,
            q35: true,
            usb: true,
            ..SlotUse::default()
        };
        assert_eq!(
            q35.describe(),
            "of the 29 the chipset and the VGA leave, less the VM disk, 1 extra disk, 4 PCIe root ports kept empty for hot-plug (BOOT_MODE=secure), the VNC console's USB controller"
        );
    }

    #[test]
    fn each_nic_is_a_tap_fd_with_the_original_mac_and_mtu_in_order() {
        let a = render(Accelerator::Tcg, false, &[]);
        assert!(has_pair(&a, "-netdev", "tap,id=net0,fd=5,vhost=off"));
        assert!(has_pair(
            &a,
            "-device",
            "virtio-net-pci,netdev=net0,id=nic0,mac=02:42:ac:13:00:02,host_mtu=1500"
        ));
        assert!(has_pair(&a, "-netdev", "tap,id=net1,fd=6,vhost=off"));
        assert!(has_pair(
            &a,
            "-device",
            "virtio-net-pci,netdev=net1,id=nic1,mac=02:42:ac:14:00:05,host_mtu=1450"
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
        assert!(has_pair(&a, "-m", "512M") && has_pair(&a, "-smp", "2"));
        assert!(
            has_pair(&a, "-display", "none"),
            "the display options are passed"
        );
    }

    #[test]
    fn the_disk_is_descriptors_qemu_inherits_with_the_format_pinned() {
        let a = render(Accelerator::Tcg, false, &[]);
        assert!(has_pair(
            &a,
            "-add-fd",
            "fd=7,set=1,opaque=ro:/image/image.qcow2"
        ));
        assert!(has_pair(
            &a,
            "-add-fd",
            "fd=8,set=1,opaque=rw:/image/image.qcow2"
        ));
        assert!(has_pair(
            &a,
            "-drive",
            "if=virtio,format=qcow2,file.driver=file,file.filename=/dev/fdset/1"
        ));
        assert!(!a.iter().any(|w| w.contains("backing")), "{a:?}");
        assert!(
            !a.iter().any(|w| w.contains("file=/image")),
            "no path QEMU opens"
        );
    }

    #[test]
    fn every_backing_layer_is_a_read_only_node_with_its_driver_and_backing_named() {
        let chain = vec![
            Layer {
                file: file("/image/image.qcow2", 7, Some(8)),
                format: Format::Qcow2,
                data_file: Some(file("/image/image,data", 9, Some(10))),
                has_backing: true,
            },
            Layer {
                file: file("/image/mid.qcow2", 11, None),
                format: Format::Qcow2,
                data_file: None,
                has_backing: true,
            },
            Layer {
                file: file("/image/base.qcow2", 12, None),
                format: Format::Qcow2,
                data_file: None,
                has_backing: false,
            },
        ];
        let a = render_with(Accelerator::Tcg, false, &[], &chain, true);
        let pairs: Vec<String> = a
            .windows(2)
            .filter(|w| ["-add-fd", "-blockdev", "-drive"].contains(&w[0].as_str()))
            .map(|w| format!("{} {}", w[0], w[1]))
            .collect();
        assert_eq!(
            pairs,
            [
                "-add-fd fd=7,set=1,opaque=ro:/image/image.qcow2",
                "-add-fd fd=8,set=1,opaque=rw:/image/image.qcow2",
                "-add-fd fd=9,set=2,opaque=ro:/image/image,,data",
                "-add-fd fd=10,set=2,opaque=rw:/image/image,,data",
                "-add-fd fd=11,set=3,opaque=ro:/image/mid.qcow2",
                "-add-fd fd=12,set=4,opaque=ro:/image/base.qcow2",
                r#"-blockdev {"driver":"file","node-name":"vm-file2","filename":"/dev/fdset/4","read-only":true}"#,
                r#"-blockdev {"driver":"qcow2","node-name":"vm-layer2","file":"vm-file2","read-only":true,"backing":null}"#,
                r#"-blockdev {"driver":"file","node-name":"vm-file1","filename":"/dev/fdset/3","read-only":true}"#,
                r#"-blockdev {"driver":"qcow2","node-name":"vm-layer1","file":"vm-file1","read-only":true,"backing":"vm-layer2"}"#,
                r#"-blockdev {"driver":"file","node-name":"vm-data0","filename":"/dev/fdset/2"}"#,
                "-drive if=virtio,format=qcow2,file.driver=file,file.filename=/dev/fdset/1,data-file=vm-data0,backing=vm-layer1",
            ]
        );
    }

    #[test]
    fn a_raw_base_has_no_backing_option() {
        let chain = vec![
            Layer {
                file: file("/image/image.qcow2", 7, Some(8)),
                format: Format::Qcow2,
                data_file: None,
                has_backing: true,
            },
            Layer {
                file: file("/image/base.raw", 9, None),
                format: Format::Raw,
                data_file: None,
                has_backing: false,
            },
        ];
        let a = render_with(Accelerator::Tcg, false, &[], &chain, true);
        assert!(has_pair(
            &a,
            "-blockdev",
            r#"{"driver":"raw","node-name":"vm-layer1","file":"vm-file1","read-only":true}"#
        ));
    }

    #[test]
    fn the_seccomp_sandbox_denies_what_a_guest_does_not_need_unless_switched_off() {
        let a = render(Accelerator::Tcg, false, &[]);
        assert!(has_pair(
            &a,
            "-sandbox",
            "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"
        ));
        let off = render_with(Accelerator::Tcg, false, &[], &plain_disk(), false);
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
    fn a_hot_plugged_nic_is_a_netdev_on_the_passed_fd_and_a_device_with_the_mac_and_mtu() {
        let plug = plug_commands(
            Slot(3),
            1,
            false,
            NicModel::Virtio,
            Mac([2, 0x42, 10, 2, 0, 5]),
            1400,
            false,
        );
        assert_eq!(
            plug.getfd,
            [r#"{"execute":"getfd","arguments":{"fdname":"tap3.0"}}"#]
        );
        assert_eq!(
            plug.netdev_add,
            r#"{"execute":"netdev_add","arguments":{"type":"tap","id":"net3","fd":"tap3.0","vhost":false}}"#
        );
        assert_eq!(
            plug.device_add,
            r#"{"execute":"device_add","arguments":{"driver":"virtio-net-pci","id":"nic3","netdev":"net3","mac":"02:42:0a:02:00:05","host_mtu":1400}}"#
        );
        let e1000e = plug_commands(
            Slot(3),
            1,
            false,
            NicModel::E1000e,
            Mac([2, 0x42, 10, 2, 0, 5]),
            1400,
            false,
        )
        .device_add;
        assert_eq!(
            e1000e,
            r#"{"execute":"device_add","arguments":{"driver":"e1000e","id":"nic3","netdev":"net3","mac":"02:42:0a:02:00:05"}}"#
        );
        let [del, netdel] = unplug_commands(Slot(3));
        assert!(del.contains(r#""device_del","arguments":{"id":"nic3"}"#));
        assert!(netdel.contains(r#""netdev_del","arguments":{"id":"net3"}"#));
    }

    #[test]
    fn a_hot_plugged_multiqueue_nic_passes_one_fd_per_queue_and_asks_for_its_vectors() {
        let plug = plug_commands(
            Slot(2),
            3,
            true,
            NicModel::Virtio,
            Mac([2, 0x42, 10, 2, 0, 5]),
            1500,
            false,
        );
        let names: Vec<&str> = plug
            .getfd
            .iter()
            .map(|c| c.split('"').nth(9).unwrap())
            .collect();
        assert_eq!(names, ["tap2.0", "tap2.1", "tap2.2"]);
        assert!(
            plug.netdev_add
                .contains(r#""id":"net2","fds":"tap2.0:tap2.1:tap2.2","vhost":true"#),
            "{}",
            plug.netdev_add
        );
        assert!(
            plug.device_add
                .ends_with(r#""host_mtu":1500,"mq":true,"vectors":8}}"#),
            "{}",
            plug.device_add
        );
    }

    #[test]
    fn a_multiqueue_nic_is_a_tap_on_all_its_fds_with_mq_and_two_vectors_per_queue_pair() {
        let nics = [GuestNic {
            slot: Slot(0),
            netdev: Netdev::Tap(vec![5, 9, 10, 11]),
            mac: Mac([2, 0x42, 0xac, 0x13, 0, 2]),
            mtu: 1500,
        }];
        let disk = plain_disk();
        let a = words(&QemuInput {
            vhost: true,
            cpus: 4,
            nics: &nics,
            ..minimal(&disk)
        });
        assert!(has_pair(
            &a,
            "-netdev",
            "tap,id=net0,fds=5:9:10:11,vhost=on"
        ));
        assert!(has_pair(
            &a,
            "-device",
            "virtio-net-pci,netdev=net0,id=nic0,mac=02:42:ac:13:00:02,host_mtu=1500,mq=on,vectors=10"
        ));
    }

    #[test]
    fn a_seed_is_a_read_only_vvfat_disk_labelled_cidata_after_the_vm_disk() {
        let disk = plain_disk();
        let a = words(&QemuInput {
            seed: Some(Path::new("/run/a,b/seed")),
            ..minimal(&disk)
        });
        assert_eq!(
            values_of(&a, "-drive"),
            [
                "if=virtio,format=qcow2,file.driver=file,file.filename=/dev/fdset/1",
                "if=virtio,driver=vvfat,dir=/run/a,,b/seed,label=cidata,readonly=on"
            ]
        );
    }

    #[test]
    fn shell_line_quotes_what_a_shell_would_split() {
        let argv: Vec<OsString> = ["qemu", "-append", "a b", "it's"]
            .iter()
            .map(OsString::from)
            .collect();
        assert_eq!(shell_line(&argv), r"qemu -append 'a b' 'it'\''s'");
    }

    #[test]
    fn extra_disks_follow_the_disk_in_order_and_the_iso_is_a_read_only_ide_cdrom() {
        let disk = plain_disk();
        let extra = vec![
            vec![
                Layer {
                    file: file("/image/disk2.qcow2", 20, Some(21)),
                    format: Format::Qcow2,
                    data_file: None,
                    has_backing: true,
                },
                Layer {
                    file: file("/image/base.raw", 22, None),
                    format: Format::Raw,
                    data_file: None,
                    has_backing: false,
                },
            ],
            vec![Layer {
                file: file("/image/disk3.qcow2", 23, Some(24)),
                format: Format::Qcow2,
                data_file: None,
                has_backing: false,
            }],
        ];
        let iso = file("/image/install.iso", 30, None);
        let nics = [GuestNic {
            slot: Slot(0),
            netdev: Netdev::Tap(vec![5]),
            mac: Mac([2, 0x42, 0xac, 0x13, 0, 2]),
            mtu: 1500,
        }];
        let a = words(&QemuInput {
            extra_disks: &extra,
            cdrom: Some((&iso, "order=c,once=d")),
            nic_model: NicModel::E1000e,
            nics: &nics,
            ..minimal(&disk)
        });
        assert_eq!(
            values_of(&a, "-drive"),
            [
                "if=virtio,format=qcow2,file.driver=file,file.filename=/dev/fdset/1",
                "if=virtio,format=qcow2,file.driver=file,file.filename=/dev/fdset/2,backing=disk2-layer1",
                "if=virtio,format=qcow2,file.driver=file,file.filename=/dev/fdset/4",
                "if=ide,media=cdrom,readonly=on,format=raw,file.driver=file,file.filename=/dev/fdset/5",
            ]
        );
        assert!(has_pair(
            &a,
            "-add-fd",
            "fd=22,set=3,opaque=ro:/image/base.raw"
        ));
        assert!(has_pair(
            &a,
            "-blockdev",
            r#"{"driver":"raw","node-name":"disk2-layer1","file":"disk2-file1","read-only":true}"#
        ));
        assert!(has_pair(
            &a,
            "-add-fd",
            "fd=30,set=5,opaque=ro:/image/install.iso"
        ));
        assert!(
            !a.iter()
                .any(|w| w.starts_with("fd=30") && w.contains("rw:"))
        );
        assert!(has_pair(&a, "-boot", "order=c,once=d"));
        assert!(has_pair(
            &a,
            "-device",
            "e1000e,netdev=net0,id=nic0,mac=02:42:ac:13:00:02"
        ));
    }

    #[test]
    fn uefi_is_ovmf_in_flash_with_its_variables_as_descriptors_and_the_tpm_is_swtpms_socket() {
        let disk = plain_disk();
        let vars = file("/image/image.efivars.fd", 40, Some(41));
        // The image's compressed copy of OVMF's code: QEMU is told its format.
        let code = Firmware {
            path: "/usr/share/OVMF/OVMF_CODE_4M.qcow2".into(),
            format: Format::Qcow2,
        };
        let uefi = Uefi {
            code: &code,
            vars: &vars,
            secure: false,
        };
        let a = words(&QemuInput {
            uefi: Some(uefi),
            ..minimal(&disk)
        });
        assert_eq!(
            values_of(&a, "-drive")[..2],
            [
                "if=pflash,format=qcow2,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.qcow2",
                "if=pflash,format=raw,unit=1,file.driver=file,file.filename=/dev/fdset/1",
            ]
        );
        assert!(has_pair(
            &a,
            "-add-fd",
            "fd=41,set=1,opaque=rw:/image/image.efivars.fd"
        ));
        assert!(
            values_of(&a, "-drive")[2].contains("/dev/fdset/2"),
            "the disk's set follows"
        );
        assert!(
            values_of(&a, "-machine").is_empty(),
            "the default pc machine"
        );
        let a = words(&QemuInput {
            uefi: Some(Uefi {
                secure: true,
                ..uefi
            }),
            ..minimal(&disk)
        });
        assert_eq!(values_of(&a, "-machine"), ["q35,smm=on"]);
        assert_eq!(
            values_of(&a, "-global"),
            ["driver=cfi.pflash01,property=secure,value=on"]
        );
        assert!(values_of(&a, "-tpmdev").is_empty());
        let a = words(&QemuInput {
            tpm: Some(Path::new("/run/vminit/swtpm.sock")),
            ..minimal(&disk)
        });
        assert_eq!(
            values_of(&a, "-chardev")[1..],
            ["socket,id=tpm,path=/run/vminit/swtpm.sock"]
        );
        assert_eq!(values_of(&a, "-tpmdev"), ["emulator,id=tpm0,chardev=tpm"]);
        assert!(has_pair(&a, "-device", "tpm-tis,tpmdev=tpm0"));
    }

    #[test]
    fn under_q35_each_nic_has_a_root_port_of_its_own_and_four_stay_empty_for_hot_plug() {
        let disk = plain_disk();
        let vars = file("/image/image.efivars.fd", 40, Some(41));
        let nics = [GuestNic {
            slot: Slot(0),
            netdev: Netdev::Tap(vec![5]),
            mac: Mac([2, 0x42, 0xac, 0x13, 0, 2]),
            mtu: 1500,
        }];
        let code = Firmware {
            path: "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd".into(),
            format: Format::Raw,
        };
        let secure = Uefi {
            code: &code,
            vars: &vars,
            secure: true,
        };
        let a = words(&QemuInput {
            uefi: Some(secure),
            nics: &nics,
            ..minimal(&disk)
        });
        let ports: Vec<&str> = values_of(&a, "-device")
            .into_iter()
            .filter(|d| d.starts_with("pcie-root-port,"))
            .collect();
        assert_eq!(
            ports,
            (0..5)
                .map(|i| format!("pcie-root-port,id=port{i},chassis={},io-reserve=0", i + 1))
                .collect::<Vec<_>>()
        );
        assert!(has_pair(
            &a,
            "-device",
            "virtio-net-pci,netdev=net0,id=nic0,mac=02:42:ac:13:00:02,host_mtu=1500,bus=port0"
        ));
        let plug = plug_commands(
            Slot(1),
            1,
            false,
            NicModel::Virtio,
            Mac([2, 0x42, 10, 2, 0, 5]),
            1400,
            true,
        );
        assert!(
            plug.device_add
                .ends_with(r#""host_mtu":1400,"bus":"port1"}}"#),
            "{}",
            plug.device_add
        );

        // The pc machine: no root ports, NICs on its root bus.
        let a = words(&QemuInput {
            uefi: Some(Uefi {
                secure: false,
                ..secure
            }),
            nics: &nics,
            ..minimal(&disk)
        });
        assert!(
            !a.iter()
                .any(|w| w.contains("pcie-root-port") || w.contains("bus="))
        );
    }
}
