//! Scratch directories for one test, removed on drop: an empty one, or one holding a fresh
//! qcow2 disk.

use std::path::{Path, PathBuf};

use super::cmd::run;
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

/// An empty scratch directory for one test (an image directory, say), removed on drop, after
/// unmounting whatever the test mounted on it.
#[derive(Debug)]
pub struct ScratchDir(pub PathBuf);

impl ScratchDir {
    pub fn new() -> ScratchDir {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(unique_id());
        std::fs::create_dir_all(&dir).expect("create the test's scratch directory");
        ScratchDir(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// The names in the directory, sorted.
    pub fn names(&self) -> Vec<String> {
        dir_names(&self.0)
    }
}

/// The names in directory `dir`, sorted.
pub fn dir_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| {
            e.expect("a directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if std::fs::read_to_string("/proc/self/mounts")
            .is_ok_and(|m| m.contains(&format!(" {} ", self.0.display())))
        {
            run(&["umount", &self.0.to_string_lossy()]);
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
