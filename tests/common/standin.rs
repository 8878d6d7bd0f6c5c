//! The stand-in QEMU (tests/standin): a recorder that notes how vminit started it, then a
//! script that records the signals it gets and behaves as `STANDIN_MODE` says; and the
//! other small C tools there (a QMP socket that never accepts, ...).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::cmd::run;
use super::container::Container;
use super::disk::ScratchDisk;
use super::vminit::{VminitBuilder, vminit_binary};

/// vminit in `ctr` with the stand-in QEMU (which waits, recording the signals it gets to
/// `log`) on `disk`: every NIC attached, TCG, and a one-second `STOP_TIMEOUT`.
pub fn standin_vm<'c>(ctr: &'c Container, disk: &ScratchDisk, log: &Path) -> VminitBuilder<'c> {
    ctr.vminit(&vminit_binary())
        .env("AUTO_ATTACH", "yes")
        .env("ACCEL", "tcg")
        .env("VMINIT_DISK", &disk.path)
        .env("VMINIT_QEMU", recorder())
        .env("STANDIN_SCRIPT", standin_script())
        .env("STANDIN_MODE", "wait")
        .env("STANDIN_LOG", log)
        .env("STOP_TIMEOUT", "1")
}

/// tests/standin/record.c, compiled: the program to give vminit as `VMINIT_QEMU` (with
/// `STANDIN_SCRIPT`, `STANDIN_MODE` and `STANDIN_LOG` in its environment).
pub fn recorder() -> PathBuf {
    standin_tool("record")
}

/// tests/standin/qemu.sh, which `recorder` execs.
pub fn standin_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/standin/qemu.sh")
}

/// tests/standin/NAME.c, compiled once per test process.
pub fn standin_tool(name: &str) -> PathBuf {
    static BUILT: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let mut built = BUILT.lock().expect("lock");
    let bin = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("standin-{name}"));
    if !built.iter().any(|b| b == name) {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/standin/{name}.c"));
        let out = run(&[
            "cc",
            "-O2",
            "-o",
            &bin.to_string_lossy(),
            &src.to_string_lossy(),
        ]);
        assert!(out.success(), "compile tests/standin/{name}.c: {out:?}");
        built.push(name.to_owned());
    }
    bin
}
