//! The stand-in QEMU (tests/standin): a recorder that notes how vminit started it, then a
//! script that records the signals it gets and behaves as `STANDIN_MODE` says.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::cmd::run;

/// tests/standin/record.c, compiled once per test process: the program to give vminit as
/// `VMINIT_QEMU` (with `STANDIN_SCRIPT`, `STANDIN_MODE` and `STANDIN_LOG` in its environment).
pub fn recorder() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/standin/record.c");
        let bin = Path::new(env!("CARGO_TARGET_TMPDIR")).join("standin-record");
        let built = run(&[
            "cc",
            "-O2",
            "-o",
            &bin.to_string_lossy(),
            &src.to_string_lossy(),
        ]);
        assert!(built.success(), "compile the stand-in recorder: {built:?}");
        bin
    })
}

/// tests/standin/qemu.sh, which `recorder` execs.
pub fn standin_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/standin/qemu.sh")
}
