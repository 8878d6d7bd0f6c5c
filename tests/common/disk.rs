//! A scratch directory holding a fresh qcow2 disk for one test, removed on drop.

use std::path::{Path, PathBuf};

use super::guest::make_qcow2;
use super::names::unique_id;

#[derive(Debug)]
pub struct ScratchDisk {
    /// The test's own directory (other scratch files may go here too).
    pub dir: PathBuf,
    /// `dir/image.qcow2`, 16 MiB, empty.
    pub path: PathBuf,
}

impl ScratchDisk {
    pub fn new() -> ScratchDisk {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(unique_id());
        std::fs::create_dir_all(&dir).expect("create the test's scratch directory");
        let path = dir.join("image.qcow2");
        make_qcow2(&path, "16M");
        ScratchDisk { dir, path }
    }
}

impl Drop for ScratchDisk {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
