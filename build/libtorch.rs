//! Build script shared by every rnnlab crate (each `Cargo.toml` points `build` here).
//!
//! torch-sys finds libtorch (from `LIBTORCH`, which `.cargo/config.toml` points at
//! the `.libtorch` link `make setup` makes, unless the user exported their own) and
//! hands its `lib/` folder to direct dependents as `DEP_TCH_LIBTORCH_LIB`. From it
//! this script makes two promises for every binary the crate links, test binaries
//! included:
//!
//! 1. it finds libtorch at run time with no `LD_LIBRARY_PATH` (an rpath);
//! 2. it keeps `libtorch.so`, and through it `libtorch_cuda.so`, as a dependency.
//!    The GNU linker's `--as-needed` drops both because no symbol is used
//!    directly, and then `tch::Cuda::is_available()` is false on every GPU.
//!
//! `crates/cells/build.rs` includes this file as a module and then compiles its
//! C++ bridge, hence the `pub`.
pub fn main() {
    // the script's own source is tracked by Cargo; its only input is torch-sys's path
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if let Some(lib) = std::env::var_os("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.to_string_lossy());
    }
    if os == "linux" {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch");
    }
}
