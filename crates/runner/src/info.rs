//! `rnnlab info`: what this binary runs on.
//!
//! The libtorch path and version are read from the library the process has
//! actually loaded (`/proc/self/maps`), not from build-time settings, so the
//! report stays true when the rpath or `LD_LIBRARY_PATH` points elsewhere.
//! The tch version is the one Cargo resolved for this build, read from the
//! workspace's `Cargo.lock`, which is compiled in.

use std::path::{Path, PathBuf};
use tch::{Cuda, Device};

pub fn run(device: Device) -> anyhow::Result<()> {
    let lib = loaded_libtorch();
    let root = lib.as_deref().and_then(Path::parent).and_then(Path::parent);
    let version = root.and_then(libtorch_version);
    let cuda_lib = lib.as_deref().map(|l| l.with_file_name("libtorch_cuda.so"));
    println!("rnnlab          {}", env!("CARGO_PKG_VERSION"));
    println!("tch             {}", locked_version(CARGO_LOCK, "tch").unwrap_or("unknown"));
    println!("libtorch        {}", version.as_deref().unwrap_or("unknown"));
    match &lib {
        Some(l) => println!("libtorch path   {}", l.parent().unwrap_or(l).display()),
        None => println!("libtorch path   unknown (libtorch_cpu.so not found in /proc/self/maps)"),
    }
    let cuda_build = cuda_lib.is_some_and(|p| p.exists());
    println!(
        "cuda build      {}",
        if cuda_build { "yes (libtorch_cuda.so)" } else { "no (CPU-only libtorch)" }
    );
    println!("cuda available  {}", Cuda::is_available());
    println!("cudnn available {}", Cuda::cudnn_is_available());
    println!("cuda devices    {}", Cuda::device_count());
    println!("threads         {}", tch::get_num_threads());
    println!("device          {device:?}");
    Ok(())
}

/// The workspace's lock file as it was when this binary was built (Cargo
/// rebuilds the crate when it changes), so the versions it names are the ones
/// linked in.
const CARGO_LOCK: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.lock"));

/// The version of package `name` in a `Cargo.lock` (the first entry of that
/// name; the workspace has one tch).
fn locked_version<'a>(lock: &'a str, name: &str) -> Option<&'a str> {
    lock.split("[[package]]").skip(1).find_map(|entry| {
        let field = |key: &str| {
            entry.lines().find_map(|l| {
                let (k, v) = l.split_once('=')?;
                (k.trim() == key).then(|| v.trim().trim_matches('"'))
            })
        };
        (field("name")? == name).then(|| field("version")).flatten()
    })
}

/// The `libtorch_cpu.so` this process mapped.
fn loaded_libtorch() -> Option<PathBuf> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| p.ends_with("/libtorch_cpu.so"))
        .map(PathBuf::from)
}

/// A libtorch zip has `build-version`; a PyTorch wheel has `version.py`.
fn libtorch_version(root: &Path) -> Option<String> {
    if let Ok(v) = std::fs::read_to_string(root.join("build-version")) {
        return Some(v.trim().to_owned());
    }
    let py = std::fs::read_to_string(root.join("version.py")).ok()?;
    py.lines()
        .find_map(|l| l.strip_prefix("__version__ = "))
        .map(|v| v.trim().trim_matches(['\'', '"']).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locked_version_reads_the_named_package() {
        let lock = "version = 4\n\n[[package]]\nname = \"tch\"\nversion = \"0.24.0\"\n\
                    source = \"registry\"\n\n[[package]]\nname = \"torch-sys\"\n\
                    version = \"0.24.1\"\n";
        assert_eq!(locked_version(lock, "tch"), Some("0.24.0"));
        assert_eq!(locked_version(lock, "torch-sys"), Some("0.24.1"));
        assert_eq!(locked_version(lock, "tch-sys"), None);
    }

    #[test]
    fn the_compiled_in_lock_names_tch() {
        let v = locked_version(CARGO_LOCK, "tch").expect("tch in Cargo.lock");
        assert_eq!(v.split('.').count(), 3, "{v}");
    }
}
