//! What every Docker test needs, made once per test process: a Docker daemon
//! (`scripts/dockerd.sh start`, which reuses a running one; the tests never stop it), the vminit
//! image (`image/build.sh`), the test guest (`tests/guest/build-guest.sh`), a bootable disk made
//! from it for the debug shell (`tests/docker/build-boot-disk.sh`) and a `FROM scratch` busybox
//! image for peer containers.

use std::fs;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use super::super::cmd::{BUILD_TIMEOUT, CmdOutput, run, run_for};
use super::names::reap_stale;

/// The image tag the tests build and run, unless `VMINIT_TEST_IMAGE` names another (use one of
/// your own where other runs share the daemon).
pub const DEFAULT_IMAGE: &str = "vminit:vmt-docker-test";
/// The peer containers' image: Debian's static busybox, `FROM scratch`.
pub const BUSYBOX_IMAGE: &str = "vmt-busybox:test";
/// Debian's busybox-static: peer containers' busybox and the debug shell.
pub const HOST_BUSYBOX: &str = "/bin/busybox";

/// What every test needs, made once per test process.
#[derive(Debug)]
pub struct Fixtures {
    /// The vminit image's tag: `$VMINIT_TEST_IMAGE`, else [`DEFAULT_IMAGE`].
    pub image: String,
    /// The directory with the guest's `vmlinuz` and `initramfs.cpio.gz`.
    pub guest_dir: PathBuf,
    /// A bootable qcow2 made from the guest (for the debug shell, which has no CMD arguments).
    pub boot_disk: PathBuf,
    /// The macvtap character devices' major number, from /proc/devices.
    pub macvtap_major: String,
    /// Where the tests' disks live (`<target>/tmp/docker-tests`).
    pub work: PathBuf,
}

/// The shared fixtures; the first caller makes them, the others wait. A failure fails every test.
pub fn fixtures() -> &'static Fixtures {
    static FIXTURES: OnceLock<Result<Fixtures, String>> = OnceLock::new();
    let made = FIXTURES.get_or_init(|| {
        panic::catch_unwind(AssertUnwindSafe(prepare)).unwrap_or_else(|panicked| {
            let why = panicked
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panicked.downcast_ref::<&str>().map(|s| (*s).to_owned()));
            Err(why.unwrap_or_else(|| "a panic".into()))
        })
    });
    match made {
        Ok(fixtures) => fixtures,
        Err(e) => panic!("set-up failed: {e}"),
    }
}

/// Runs one set-up step, saying what it does; its output is the error if it fails.
fn step<S: AsRef<str>>(what: &str, argv: &[S], limit: Duration) -> Result<CmdOutput, String> {
    eprintln!("docker tests: {what}");
    let out = run_for(argv, limit);
    if out.success() {
        Ok(out)
    } else {
        Err(format!("{what}: {out}"))
    }
}

fn prepare() -> Result<Fixtures, String> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let target = tmp.parent().unwrap_or(tmp);
    let work = tmp.join("docker-tests");
    fs::create_dir_all(&work).map_err(|e| format!("mkdir {}: {e}", work.display()))?;
    let path = |p: &Path| p.to_string_lossy().into_owned();
    let image = std::env::var("VMINIT_TEST_IMAGE").unwrap_or_else(|_| DEFAULT_IMAGE.to_owned());

    step(
        "starting dockerd if none runs",
        &[&path(&repo.join("scripts/dockerd.sh")), "start"],
        Duration::from_secs(120),
    )?;
    reap_stale();
    let superseded = image_id(&image);
    step(
        &format!("building the image {image}"),
        &[&path(&repo.join("image/build.sh")), &image],
        BUILD_TIMEOUT,
    )?;
    remove_if_superseded(&image, superseded);
    // `sh SCRIPT PATHS…` for a script of the repository.
    let sh = |what: &str, script: &str, args: &[&Path]| {
        let mut argv = vec!["sh".to_owned(), path(&repo.join(script))];
        argv.extend(args.iter().map(|p| path(p)));
        step(what, &argv, BUILD_TIMEOUT)
    };
    let guest_dir = target.join("guest");
    sh(
        "building the test guest",
        "tests/guest/build-guest.sh",
        &[&guest_dir],
    )?;
    let boot_disk = work.join("boot.qcow2");
    sh(
        "building the bootable test disk",
        "tests/docker/build-boot-disk.sh",
        &[&guest_dir, &boot_disk],
    )?;

    // A FROM scratch image with Debian's static busybox, for peer containers.
    let context = work.join("busybox-image");
    fs::create_dir_all(&context).map_err(|e| format!("mkdir {}: {e}", context.display()))?;
    fs::copy(HOST_BUSYBOX, context.join("busybox"))
        .map_err(|e| format!("copy {HOST_BUSYBOX} (busybox-static): {e}"))?;
    fs::write(
        context.join("Dockerfile"),
        "FROM scratch\nCOPY busybox /bin/busybox\nENTRYPOINT [\"/bin/busybox\"]\n",
    )
    .map_err(|e| format!("write the busybox Dockerfile: {e}"))?;
    let superseded = image_id(BUSYBOX_IMAGE);
    step(
        "building the busybox image",
        &[
            "docker",
            "build",
            "-q",
            "-t",
            BUSYBOX_IMAGE,
            &path(&context),
        ],
        BUILD_TIMEOUT,
    )?;
    remove_if_superseded(BUSYBOX_IMAGE, superseded);

    let macvtap_major = match macvtap_major() {
        Some(major) => major,
        None => {
            // The module loads on the first macvtap; load it now to learn its major.
            let _ = run(&["modprobe", "macvtap"]);
            macvtap_major().ok_or("no macvtap in /proc/devices (modprobe macvtap failed)")?
        }
    };
    Ok(Fixtures {
        image,
        guest_dir,
        boot_disk,
        macvtap_major,
        work,
    })
}

/// The id of the image tagged `tag`, if there is one.
fn image_id(tag: &str) -> Option<String> {
    let out = run(&["docker", "image", "inspect", "-f", "{{.Id}}", tag]);
    out.success().then(|| out.stdout.trim().to_owned())
}

/// Removes the image `tag` named before a rebuild, if the rebuild moved the tag away from it and
/// no other tag names it (the same build may also be, say, `vminit:latest`), so that runs do not
/// pile up untagged images. Does nothing when a container still uses it.
fn remove_if_superseded(tag: &str, before: Option<String>) {
    let Some(old) = before else { return };
    if image_id(tag).is_none_or(|new| new == old) {
        return;
    }
    let tags = run(&[
        "docker",
        "image",
        "inspect",
        "-f",
        "{{len .RepoTags}}",
        &old,
    ]);
    if tags.success() && tags.stdout.trim() == "0" {
        run(&["docker", "rmi", &old]);
    }
}

fn macvtap_major() -> Option<String> {
    let devices = fs::read_to_string("/proc/devices").ok()?;
    devices.lines().find_map(|line| {
        let (major, name) = line.trim().split_once(' ')?;
        (name == "macvtap").then(|| major.to_owned())
    })
}
