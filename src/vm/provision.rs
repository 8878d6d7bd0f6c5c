//! Makes the disk the machine inputs ask for before anything else changes: creates it (empty,
//! or as a thin overlay on `DISK_BASE`) or grows it with `qemu-img`, a child vminit watches by
//! its pid; opens the boot ISO and the extra disks, and tells whether the disk is new.

use std::ffi::OsString;
use std::fs;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::sys::signal::SigSet;
use nix::sys::uio::pread;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::pipe2;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::pid1::spawn;
use crate::vm::devices::{self, Disk, DiskFile};
use crate::vm::disk::{self, Format};
use crate::vm::machine::{self, Base, DiskAction, Firmware};

/// How long `qemu-img` may take: creating or growing a qcow2 writes a few metadata clusters.
const QEMU_IMG_TIMEOUT: Duration = Duration::from_secs(60);

/// How `qemu-img` is watched: the signal mask it starts with (vminit's original one), and
/// whether a termination request arrived meanwhile (its signal).
pub struct Watch<'a> {
    pub mask: SigSet,
    pub interrupted: &'a dyn Fn() -> Option<i32>,
}

/// The files and directories this run made beside the disk (a new disk, the UEFI variables,
/// the TPM's state directory): a run that stops before its guest boots removes them again, so
/// a refusal leaves the image directory as it found it.
#[derive(Debug, Default, Clone)]
pub struct Made(Vec<PathBuf>);

impl Made {
    /// Records that this run made `path`.
    pub fn add(&mut self, path: PathBuf) {
        self.0.push(path);
    }

    /// Removes what this run made, newest first; a directory only while it is empty.
    pub fn undo(&self) {
        for path in self.0.iter().rev() {
            let removed = match fs::symlink_metadata(path) {
                Ok(m) if m.is_dir() => fs::remove_dir(path),
                Ok(_) => fs::remove_file(path),
                Err(_) => continue,
            };
            match removed {
                Ok(()) => log::info!("removed {}, which this run made", path.display()),
                Err(e) => log::warn!("cannot remove {}, which this run made: {e}", path.display()),
            }
        }
    }
}

/// The image directory: the canonical directory of the disk.
pub fn image_dir(disk: &Path) -> Result<PathBuf> {
    let parent = match disk.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    fs::canonicalize(parent).map_err(|e| Error::Disk {
        path: disk.to_owned(),
        problem: format!(
            "cannot be made: its directory {} cannot be opened ({e}); mount a volume there with -v /srv/vm:{}",
            parent.display(),
            parent.display()
        ),
    })
}

/// Creates the disk when it is missing and `DISK_SIZE` or `DISK_BASE` asks for one: into a
/// new file beside it, which becomes the disk only once `qemu-img` succeeded (a failure, a
/// full filesystem among them, leaves nothing behind), recorded in `made`.
pub fn create_disk(config: &Config, watch: &Watch, made: &mut Made) -> Result<()> {
    let m = &config.machine;
    let path = &config.paths.disk;
    if m.disk_size.is_none() && m.disk_base.is_none() {
        return Ok(());
    }
    if fs::symlink_metadata(path).is_ok() {
        if m.disk_base.is_some() {
            log::info!(
                "DISK_BASE: {} exists, so it is used as it is",
                path.display()
            );
        }
        return Ok(());
    }
    let dir = image_dir(path)?;
    let base = match &m.disk_base {
        Some(name) => Some(check_base(&dir, name)?),
        None => None,
    };
    let action =
        machine::decide(None, m.disk_size, base).map_err(|(var, msg)| Error::config(var, msg))?;
    devices::check_program(&config.paths.qemu_img, "qemu-img")?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let target = dir.join(&*name);
    let new = dir.join(format!(".{name}.vminit-new"));
    let _ = fs::remove_file(&new);
    let argv = machine::create_command(&config.paths.qemu_img, &new, &action)
        .expect("decide without a disk creates one or keeps none");
    let refuse = |problem: String| Error::Disk {
        path: path.clone(),
        problem,
    };
    if let Err(why) = run_qemu_img(&argv, &[], watch) {
        let _ = fs::remove_file(&new);
        return Err(match why {
            Stop::Interrupted(sig) => Error::Interrupted(sig),
            Stop::Failed(text) => refuse(format!(
                "cannot be created: {text}{}; nothing was left behind",
                full_hint(&text, &dir)
            )),
        });
    }
    if let Err(e) = fs::rename(&new, &target) {
        let _ = fs::remove_file(&new);
        return Err(refuse(format!(
            "cannot be created: rename {}: {e}",
            new.display()
        )));
    }
    made.add(target.clone());
    match action {
        DiskAction::Overlay { base, format, size } => log::info!(
            "created {} ({}), a qcow2 overlay on {} ({})",
            target.display(),
            machine::human(size),
            base.display(),
            format.driver()
        ),
        DiskAction::Create { size } => log::info!(
            "created {}, an empty qcow2 of {}",
            target.display(),
            machine::human(size)
        ),
        _ => {}
    }
    Ok(())
}

/// The fix, when `qemu-img` ran out of space.
fn full_hint(text: &str, dir: &Path) -> String {
    if text.contains("No space left") || text.contains("Disk quota") {
        format!(
            "; free space on the volume of {} (the disk's metadata needs about a megabyte)",
            dir.display()
        )
    } else {
        String::new()
    }
}

/// Checks `DISK_BASE`: a standalone qcow2 or raw image inside the image directory. Returns
/// its name relative to the disk's directory, its format and its size.
fn check_base(dir: &Path, name: &Path) -> Result<Base> {
    let path = dir.join(name);
    let refuse = |problem: String| Error::Disk {
        path: path.clone(),
        problem: format!("{problem} (DISK_BASE)"),
    };
    let file = devices::open_media(&path, dir, false).map_err(refuse)?;
    let head = read_at(&file.read, 0, disk::HEADER_PREFIX).map_err(refuse)?;
    let iso = read_at(&file.read, 32769, 5).map_err(refuse)?;
    let len = nix::sys::stat::fstat(&file.read)
        .map(|st| st.st_size as u64)
        .unwrap_or(0);
    let format = machine::base_format(&head, &iso, len).map_err(refuse)?;
    let size = match format {
        Format::Raw => len,
        Format::Qcow2 => {
            let cluster = disk::cluster_size(&head).map_err(refuse)?;
            let header = read_at(&file.read, 0, cluster).map_err(refuse)?;
            let parsed = disk::parse_header(&header).map_err(refuse)?;
            if let Some((other, _)) = parsed.backing {
                return Err(refuse(format!(
                    "names backing file {}; a base must stand alone: flatten it with qemu-img convert -O qcow2",
                    disk::quoted(&other)
                )));
            }
            if parsed.data_file.is_some() {
                return Err(refuse(
                    "keeps its data in an external data file; a base must stand alone: flatten it with qemu-img convert -O qcow2".into(),
                ));
            }
            machine::qcow2_size(&head)
                .ok_or_else(|| refuse("has a truncated qcow2 header".into()))?
        }
    };
    let relative = file
        .path
        .strip_prefix(dir)
        .expect("open_media opens only files inside the directory")
        .to_owned();
    Ok(Base {
        name: relative,
        format,
        size,
    })
}

/// A growth of the disk's top image that `DISK_SIZE` asks for, decided (`plan_growth`) and
/// not yet made (`grow_disk`).
#[derive(Debug)]
pub struct Growth {
    from: u64,
    to: u64,
}

/// Whether the disk (its top image) must grow to `DISK_SIZE`; refuses a smaller `DISK_SIZE`,
/// and a growth without `qemu-img`. Changes nothing: the growth is made by `grow_disk`, after
/// every other check.
pub fn plan_growth(config: &Config, disk: &Disk) -> Result<Option<Growth>> {
    let (Some(size), Some(top)) = (config.machine.disk_size, disk.layers.first()) else {
        return Ok(None);
    };
    let head = read_at(&top.file.read, 0, disk::HEADER_PREFIX).map_err(|problem| Error::Disk {
        path: top.file.path.clone(),
        problem,
    })?;
    let current = machine::qcow2_size(&head).ok_or_else(|| Error::Disk {
        path: top.file.path.clone(),
        problem: "has a truncated qcow2 header".into(),
    })?;
    let action = machine::decide(Some(current), Some(size), None)
        .map_err(|(var, msg)| Error::config(var, msg))?;
    let DiskAction::Grow { from, to } = action else {
        return Ok(None);
    };
    devices::check_program(&config.paths.qemu_img, "qemu-img")?;
    Ok(Some(Growth { from, to }))
}

/// Grows the disk's top image as `growth` says.
pub fn grow_disk(config: &Config, disk: &Disk, growth: &Growth, watch: &Watch) -> Result<()> {
    let top = disk
        .layers
        .first()
        .expect("a growth was planned for this disk");
    let fd = top
        .file
        .write
        .as_ref()
        .expect("the top image is open for writing")
        .as_raw_fd();
    let argv = machine::grow_command(&config.paths.qemu_img, fd, growth.to);
    run_qemu_img(&argv, &[fd], watch).map_err(|why| match why {
        Stop::Interrupted(sig) => Error::Interrupted(sig),
        Stop::Failed(text) => Error::Disk {
            path: top.file.path.clone(),
            problem: format!(
                "cannot be grown to {}: {text}{}",
                machine::human(growth.to),
                full_hint(&text, top.file.path.parent().unwrap_or(Path::new("/")))
            ),
        },
    })?;
    log::info!(
        "grew {} from {} to {} (growing the guest's filesystem is the guest's business: cloud-init's growpart does it)",
        top.file.path.display(),
        machine::human(growth.from),
        machine::human(growth.to)
    );
    Ok(())
}

/// Whether the disk has never been written: one qcow2 image, no backing file or data file,
/// no cluster allocated (as `qemu-img create` leaves it).
pub fn disk_is_new(disk: &Disk) -> bool {
    let [top] = disk.layers.as_slice() else {
        return false;
    };
    if top.has_backing || top.data_file.is_some() || top.format != Format::Qcow2 {
        return false;
    }
    let Ok(head) = read_at(&top.file.read, 0, disk::HEADER_PREFIX) else {
        return false;
    };
    match machine::l1_table(&head) {
        // A table of more than 64 MiB (a disk of more than 4 PiB) is not read.
        Some((offset, len)) if len <= 64 << 20 => {
            read_at(&top.file.read, offset, len).is_ok_and(|l1| machine::l1_is_empty(&l1))
        }
        _ => false,
    }
}

/// Opens `BOOT_ISO`: a CD/DVD image (ISO 9660 or UDF) inside the image directory.
pub fn open_iso(config: &Config) -> Result<Option<DiskFile>> {
    let Some(name) = &config.machine.boot_iso else {
        return Ok(None);
    };
    let dir = image_dir(&config.paths.disk)?;
    let path = dir.join(name);
    let refuse = |problem: String| Error::Disk {
        path: path.clone(),
        problem: format!("{problem} (BOOT_ISO)"),
    };
    let file = devices::open_media(&path, &dir, false).map_err(refuse)?;
    let id = read_at(&file.read, 32769, 5).map_err(refuse)?;
    if !machine::is_iso(&id) {
        return Err(refuse(
            "is not a CD/DVD image (no ISO 9660 or UDF volume descriptor at 32 KiB)".into(),
        ));
    }
    Ok(Some(file))
}

/// The UEFI firmware `BOOT_MODE` asks for: its code (in the image) and its variables, kept
/// beside the disk (`image.efivars.fd`, made from OVMF's template on the first UEFI start,
/// under a temporary name renamed once complete, and recorded in `made`), open read-write.
/// The variables are always a raw flash image: a compressed template is expanded into one by
/// `qemu-img convert`.
pub fn open_efi_vars(
    config: &Config,
    watch: &Watch,
    made: &mut Made,
) -> Result<Option<(Firmware, DiskFile)>> {
    let Some((code, template)) = config.machine.boot_mode.ovmf() else {
        return Ok(None);
    };
    let (code, template) = (
        find_firmware(config, code)?,
        find_firmware(config, template)?,
    );
    let dir = image_dir(&config.paths.disk)?;
    let path = dir.join(machine::efi_vars_name(&config.paths.disk));
    let refuse = |problem: String| Error::Disk {
        path: path.clone(),
        problem: format!("{problem} (the guest's UEFI variables, BOOT_MODE)"),
    };
    if fs::symlink_metadata(&path).is_err() {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let new = dir.join(format!(".{name}.vminit-new"));
        let _ = fs::remove_file(&new);
        let made_new = match template.format {
            Format::Raw => fs::copy(&template.path, &new)
                .map(drop)
                .map_err(|e| Stop::Failed(e.to_string())),
            Format::Qcow2 => {
                devices::check_program(&config.paths.qemu_img, "qemu-img")?;
                let argv = machine::vars_command(&config.paths.qemu_img, &template.path, &new);
                run_qemu_img(&argv, &[], watch)
            }
        };
        if let Err(why) = made_new.and_then(|()| {
            fs::rename(&new, &path).map_err(|e| Stop::Failed(format!("rename: {e}")))
        }) {
            let _ = fs::remove_file(&new);
            return Err(match why {
                Stop::Interrupted(sig) => Error::Interrupted(sig),
                Stop::Failed(text) => refuse(format!(
                    "cannot be made from {}: {text}{}",
                    template.path.display(),
                    full_hint(&text, &dir)
                )),
            });
        }
        made.add(path.clone());
        log::info!(
            "made {} from {} for the guest's UEFI variables",
            path.display(),
            template.path.display()
        );
    }
    let vars = devices::open_media(&path, &dir, true).map_err(refuse)?;
    Ok(Some((code, vars)))
}

/// One part of OVMF (a stem of [`machine::BootMode::ovmf`]) in `VMINIT_OVMF_DIR`: the first of
/// [`machine::firmware_files`] that is there.
fn find_firmware(config: &Config, stem: &str) -> Result<Firmware> {
    let dir = &config.paths.ovmf_dir;
    machine::firmware_files(stem)
        .into_iter()
        .map(|(name, format)| Firmware {
            path: dir.join(name),
            format,
        })
        .find(|f| f.path.is_file())
        .ok_or_else(|| Error::Unavailable {
            what: format!(
                "UEFI firmware {stem} ({stem}.qcow2 or {stem}.fd in {}, BOOT_MODE)",
                dir.display()
            ),
            hint: "hint: use the vminit image, which ships Debian's ovmf, set VMINIT_OVMF_DIR to \
                   where ovmf is installed, or use BOOT_MODE=bios"
                .into(),
        })
}

/// Opens the extra disks (`disk2.qcow2` ... `disk9.qcow2` in the image directory), each
/// with its chain checked like the disk's, in the order of their numbers.
pub fn open_extra_disks(config: &Config) -> Result<Vec<Disk>> {
    let disk = &config.paths.disk;
    let Ok(dir) = image_dir(disk) else {
        // No image directory: opening the disk says so.
        return Ok(Vec::new());
    };
    let entries =
        fs::read_dir(&dir).map_err(|e| Error::os(format!("read {}", dir.display()), e))?;
    let names: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| Some(std::ffi::OsStr::new(n)) != disk.file_name())
        .collect();
    machine::extra_disks(names.iter().map(String::as_str))
        .into_iter()
        .map(|(_, name)| devices::open_disk(&dir.join(name)))
        .collect()
}

/// Reads up to `len` bytes at `offset`; the problem is a phrase.
fn read_at(fd: &OwnedFd, offset: u64, len: usize) -> std::result::Result<Vec<u8>, String> {
    let mut buf = vec![0u8; len];
    let mut done = 0;
    while done < len {
        match pread(fd, &mut buf[done..], (offset + done as u64) as i64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(format!("cannot be read: {e}")),
        }
    }
    buf.truncate(done);
    Ok(buf)
}

/// Why `qemu-img` did not succeed.
enum Stop {
    Interrupted(i32),
    /// Its complaint (the last line of its stderr), or how it ended.
    Failed(String),
}

/// Runs `qemu-img` with vminit's signal mask restored and only `keep` besides stdio, and
/// waits for it by its pid; kills it when a termination request arrives or it takes longer
/// than `QEMU_IMG_TIMEOUT`.
fn run_qemu_img(argv: &[OsString], keep: &[RawFd], watch: &Watch) -> std::result::Result<(), Stop> {
    log::info!("running {}", crate::vm::qemu::shell_line(argv));
    let (read, write) = pipe2(OFlag::O_CLOEXEC)
        .map_err(|e| Stop::Failed(format!("pipe for qemu-img's messages: {e}")))?;
    let options = spawn::SpawnOptions {
        mask: watch.mask,
        keep,
        own_group: true,
        drop_privileges: false,
    };
    let pid =
        spawn::spawn_with_stderr(argv, &options, write).map_err(|e| Stop::Failed(e.to_string()))?;
    let deadline = Instant::now() + QEMU_IMG_TIMEOUT;
    let status = loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(nix::errno::Errno::EINTR) => {}
            Ok(status) => break Ok(status),
            Err(e) => break Err(format!("wait for qemu-img (pid {pid}): {e}")),
        }
        if let Some(sig) = (watch.interrupted)() {
            spawn::stop_and_reap(pid, Duration::ZERO);
            return Err(Stop::Interrupted(sig));
        }
        if Instant::now() >= deadline {
            spawn::stop_and_reap(pid, Duration::ZERO);
            break Err(format!(
                "qemu-img did not finish within {} s",
                QEMU_IMG_TIMEOUT.as_secs()
            ));
        }
        sleep(Duration::from_millis(10));
    };
    let mut text = String::new();
    let _ = fs::File::from(read).read_to_string(&mut text);
    let said = text.lines().rfind(|l| !l.trim().is_empty()).map(str::trim);
    match status.map_err(Stop::Failed)? {
        WaitStatus::Exited(_, 0) => Ok(()),
        WaitStatus::Exited(_, code) => Err(Stop::Failed(
            said.map_or_else(|| format!("qemu-img exited with {code}"), str::to_owned),
        )),
        other => Err(Stop::Failed(format!("qemu-img ended: {other:?}"))),
    }
}
