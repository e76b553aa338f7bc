//! The shared libtorch link settings, then the C++ bridge that lets a Rust
//! backward join libtorch's autograd (`csrc/custom_function.cpp`).
//!
//! The bridge is compiled against the headers of the libtorch torch-sys found:
//! `DEP_TCH_LIBTORCH_LIB` is its `lib/`, and both PyTorch's wheel and the
//! standalone libtorch keep `include/` beside it. The C++ ABI follows
//! `LIBTORCH_CXX11_ABI` as torch-sys's does (default 1, what PyTorch 2.11's
//! wheels and libtorch downloads use).

#[path = "../../build/libtorch.rs"]
mod libtorch;

use std::path::PathBuf;

fn main() {
    libtorch::main();
    const SOURCE: &str = "csrc/custom_function.cpp";
    println!("cargo:rerun-if-changed={SOURCE}");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    let lib = PathBuf::from(
        std::env::var_os("DEP_TCH_LIBTORCH_LIB").expect("torch-sys did not report libtorch's lib/"),
    );
    let include = lib.parent().expect("libtorch's lib/ has a parent").join("include");
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into());
    cc::Build::new()
        .cpp(true)
        .file(SOURCE)
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .flag("-DGLOG_USE_GLOG_EXPORT")
        .warnings(false)
        .compile("rnnlab_custom_function");
}
