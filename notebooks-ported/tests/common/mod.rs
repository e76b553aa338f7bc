//! Runs a notebook binary in quick mode into a fresh folder and checks what
//! every notebook promises: it exits cleanly, its transcript has the
//! notebook's sections in order, and every figure it links is a real PNG.

// each test file uses its own share of these helpers
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

/// A finished quick run: its output folder and transcript.
pub struct QuickRun {
    pub dir: PathBuf,
    pub transcript: String,
}

impl QuickRun {
    /// Runs `exe` (a `CARGO_BIN_EXE_*` path) as notebook `name` with `QUICK=1`
    /// on the CPU from the repository root, and checks that it succeeds and that `sections` appear as
    /// `## ` headings in this order.
    pub fn new(exe: &str, name: &str, sections: &[&str]) -> Self {
        let root = std::env::temp_dir().join(format!("rnnlab-nb-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let out = Command::new(exe)
            .env("QUICK", "1")
            .env("DEVICE", "cpu")
            .env("NOTEBOOKS_OUT", &root)
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
            .output()
            .expect("notebook binary runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{name} failed: {}\n{stdout}\n{stderr}", out.status);
        let dir = root.join(name);
        let transcript = std::fs::read_to_string(dir.join("output.md")).expect("output.md");
        assert_eq!(transcript.trim(), stdout.trim(), "the transcript is what was printed");
        let mut from = 0;
        for s in sections {
            let heading = format!("\n## {s}\n");
            let at = transcript[from..]
                .find(&heading)
                .unwrap_or_else(|| panic!("{name}: no section {s:?} after byte {from}"));
            from += at + heading.len();
        }
        let run = Self { dir, transcript };
        for link in run.figure_links() {
            run.assert_png(&link);
        }
        run
    }

    /// Files linked as `![..](file)` in the transcript.
    pub fn figure_links(&self) -> Vec<String> {
        self.transcript
            .split("](")
            .skip(1)
            .filter_map(|rest| rest.split(')').next())
            .map(str::to_owned)
            .collect()
    }

    /// `file` in the output folder is a PNG (or GIF) of a real figure.
    pub fn assert_png(&self, file: &str) {
        let path = self.dir.join(file);
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(bytes.len() > 5_000, "{} is nearly empty ({} bytes)", path.display(), bytes.len());
        let image = &bytes[1..4] == b"PNG" || bytes.starts_with(b"GIF8");
        assert!(image, "{} is not a PNG or GIF", path.display());
    }
}

impl Drop for QuickRun {
    fn drop(&mut self) {
        if let Some(root) = self.dir.parent() {
            let _ = std::fs::remove_dir_all(root);
        }
    }
}

/// The number right after the first occurrence of `key` in `text`.
pub fn number_after(text: &str, key: &str) -> f64 {
    let at = text.find(key).unwrap_or_else(|| panic!("no {key:?} in:\n{text}"));
    parse_number(&text[at + key.len()..], key)
}

/// The number right after every occurrence of `key` in `text`.
pub fn numbers_after(text: &str, key: &str) -> Vec<f64> {
    text.match_indices(key).map(|(at, _)| parse_number(&text[at + key.len()..], key)).collect()
}

/// The number `rest` starts with (after spaces), e.g. `1.5e-3` in `1.5e-3, ...`.
fn parse_number(rest: &str, key: &str) -> f64 {
    let token: String = rest
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | '-' | '+'))
        .collect();
    token.parse().unwrap_or_else(|_| panic!("no number after {key:?}: {token:?}"))
}

/// The text of section `title` of a transcript, up to the next section.
pub fn section<'a>(transcript: &'a str, title: &str) -> &'a str {
    let heading = format!("\n## {title}\n");
    let start = transcript.find(&heading).unwrap_or_else(|| panic!("no section {title:?}"));
    let rest = &transcript[start + heading.len()..];
    &rest[..rest.find("\n## ").unwrap_or(rest.len())]
}
