//! The `rnnlab` binary finds libtorch by itself and keeps its CUDA library.
//!
//! Without `-Wl,--no-as-needed -ltorch` (see `build/libtorch.rs`) the GNU
//! linker drops `libtorch_cuda.so` and `tch::Cuda::is_available()` is false on
//! every GPU machine. That cannot be seen without a GPU, but it can be read
//! from the ELF file: this test fails when the installed libtorch ships
//! `libtorch_cuda.so` and the linked binary would not load it.

use std::path::{Path, PathBuf};
use std::process::Command;

const RNNLAB: &str = env!("CARGO_BIN_EXE_rnnlab");

/// `readelf -d`: the NEEDED libraries and the RPATH/RUNPATH folders.
fn dynamic_section(file: &Path) -> (Vec<String>, Vec<PathBuf>) {
    let out = Command::new("readelf")
        .arg("-d")
        .arg(file)
        .output()
        .expect("readelf (binutils) must be installed to check linking");
    assert!(out.status.success(), "readelf -d {} failed", file.display());
    let text = String::from_utf8_lossy(&out.stdout);
    let value = |line: &str| line.split('[').nth(1).map(|v| v.trim_end_matches(']').to_owned());
    let needed = text.lines().filter(|l| l.contains("(NEEDED)")).filter_map(value).collect();
    let paths = text
        .lines()
        .filter(|l| l.contains("(RPATH)") || l.contains("(RUNPATH)"))
        .filter_map(value)
        .flat_map(|v| v.split(':').map(PathBuf::from).collect::<Vec<_>>())
        .collect();
    (needed, paths)
}

#[test]
fn binary_keeps_libtorch_cuda_when_libtorch_ships_it() {
    let (needed, rpath) = dynamic_section(Path::new(RNNLAB));
    let lib_dir = rpath
        .iter()
        .find(|d| d.join("libtorch_cpu.so").exists())
        .unwrap_or_else(|| panic!("no RPATH of rnnlab holds libtorch_cpu.so: {rpath:?}"));
    assert!(needed.iter().any(|n| n == "libtorch_cpu.so"), "NEEDED: {needed:?}");
    if !lib_dir.join("libtorch_cuda.so").exists() {
        eprintln!("{} is a CPU-only libtorch: nothing to check", lib_dir.display());
        return;
    }
    // Either directly, or through libtorch.so, whose own NEEDED names it.
    let direct = needed.iter().any(|n| n == "libtorch_cuda.so");
    let via_libtorch = needed.iter().any(|n| n == "libtorch.so")
        && dynamic_section(&lib_dir.join("libtorch.so")).0.iter().any(|n| n == "libtorch_cuda.so");
    assert!(
        direct || via_libtorch,
        "rnnlab would not load libtorch_cuda.so (NEEDED: {needed:?}); \
         the build script must pass -Wl,--no-as-needed -ltorch"
    );
}

fn rnnlab(args: &[&str]) -> std::process::Output {
    Command::new(RNNLAB).args(args).env_remove("LD_LIBRARY_PATH").output().expect("running rnnlab")
}

#[test]
fn info_runs_without_ld_library_path() {
    let out = rnnlab(&["--device", "cpu", "info"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for field in ["rnnlab", "tch             0.24.0", "libtorch        2.11.0", "cuda available"] {
        assert!(stdout.contains(field), "missing {field:?} in:\n{stdout}");
    }
    assert!(stdout.contains("device          Cpu"), "{stdout}");
}

#[test]
fn device_cuda_without_a_gpu_fails_clearly() {
    if tch::Cuda::is_available() {
        eprintln!("a CUDA device is present: the no-GPU error cannot be shown here");
        let out = rnnlab(&["--device", "cuda", "info"]);
        assert!(out.status.success());
        return;
    }
    let out = rnnlab(&["--device", "cuda", "info"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "--device cuda ran on a machine without CUDA");
    assert!(stderr.contains("no CUDA device"), "unclear message: {stderr}");
    assert!(out.stdout.is_empty(), "it ran anyway: {}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn unknown_device_is_rejected() {
    let out = rnnlab(&["--device", "tpu", "info"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("tpu"));
}
