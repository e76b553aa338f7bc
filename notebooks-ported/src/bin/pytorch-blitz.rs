//! PyTorch's 60-minute blitz, questions (a)-(i), answered in Rust.
use notebooks::{say, Notebook};

fn main() -> anyhow::Result<()> {
    let mut nb = Notebook::start("pytorch-blitz", "PyTorch 60-minute blitz (a)-(i)")?;
    nb.section("(a) Tensors and arrays");
    say!(nb, "todo");
    Ok(())
}
