//! `rnnlab data download`: fetch the official Speech Commands v0.02 archive with a
//! progress bar, resuming a partial download, checking its size, then extract only the
//! requested classes and the two split lists.
//!
//! The archive is first written to `<file>.part`; a later run asks the server for the rest
//! (`Range: bytes=N-`), and the file gets its final name only once it has exactly the size
//! the server announced (and `expected_size`, when given).

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use flate2::read::GzDecoder;
use indicatif::{ProgressBar, ProgressStyle};

use crate::error::{DataError, Result};
use crate::speech_commands::{DATASET_DIR, TESTING_LIST, VALIDATION_LIST};

/// The archive's official address (the one the coursework and torchaudio use).
pub const OFFICIAL_URL: &str = "http://download.tensorflow.org/data/speech_commands_v0.02.tar.gz";
/// The archive's file name.
pub const ARCHIVE_NAME: &str = "speech_commands_v0.02.tar.gz";

/// Downloads `url` to `file`, resuming `file.part`. Returns the file's size. An existing
/// `file` is taken as complete (its size is checked against `expected_size` when given).
pub fn fetch(url: &str, file: &Path, expected_size: Option<u64>, progress: bool) -> Result<u64> {
    let fail = |reason: String| DataError::Download { url: url.to_string(), reason };
    if let Ok(meta) = std::fs::metadata(file) {
        return match expected_size {
            Some(want) if want != meta.len() => Err(fail(format!(
                "{} exists with {} bytes, expected {want}: delete it to download again",
                file.display(),
                meta.len()
            ))),
            _ => Ok(meta.len()),
        };
    }
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    }
    let part = part_path(file);
    let have = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);

    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(30)))
            .build(),
    );
    let mut req = agent.get(url);
    if have > 0 {
        req = req.header("Range", format!("bytes={have}-"));
    }
    let resp = req.call().map_err(|e| fail(e.to_string()))?;
    let status = resp.status().as_u16();
    let header =
        |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).map(String::from);
    let (start, total) = match status {
        206 => {
            let range =
                header("content-range").ok_or_else(|| fail("206 without Content-Range".into()))?;
            let (start, total) = parse_content_range(&range)
                .ok_or_else(|| fail(format!("unreadable Content-Range {range:?}")))?;
            if start != have {
                return Err(fail(format!(
                    "asked to resume at byte {have}, server sent from {start}"
                )));
            }
            (start, total)
        }
        200 => {
            let len = header("content-length").and_then(|v| v.parse::<u64>().ok());
            (0, len.ok_or_else(|| fail("the server sent no Content-Length".into()))?)
        }
        416 if have > 0 => {
            // Nothing left to send: the part file may already be whole.
            let total: Option<u64> =
                header("content-range").and_then(|r| r.rsplit('/').next()?.parse().ok());
            match total {
                Some(t) if t == have => (have, have),
                _ => return Err(fail(format!("cannot resume {} at byte {have}", part.display()))),
            }
        }
        s => return Err(fail(format!("HTTP status {s}"))),
    };
    if let Some(want) = expected_size.filter(|&w| w != total) {
        return Err(fail(format!("the server announces {total} bytes, expected {want}")));
    }

    let mut out = OpenOptions::new()
        .create(true)
        .write(true)
        .append(start > 0)
        .truncate(start == 0)
        .open(&part)
        .map_err(|e| DataError::io(&part, e))?;
    let bar = if progress { ProgressBar::new(total) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_message(ARCHIVE_NAME);
    bar.set_position(start);
    let mut written = start;
    if start < total {
        let mut body = resp.into_body().into_reader();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = match body.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    bar.abandon();
                    return Err(fail(format!(
                        "connection lost after {written} of {total} bytes ({e}); run again to resume"
                    )));
                }
            };
            out.write_all(&buf[..n]).map_err(|e| DataError::io(&part, e))?;
            written += n as u64;
            bar.set_position(written);
        }
    }
    out.sync_all().map_err(|e| DataError::io(&part, e))?;
    bar.finish();
    if written != total {
        return Err(fail(format!(
            "got {written} of {total} bytes; {} is kept, run again to resume",
            part.display()
        )));
    }
    std::fs::rename(&part, file).map_err(|e| DataError::io(file, e))?;
    Ok(total)
}

fn part_path(file: &Path) -> PathBuf {
    let mut name = file.file_name().unwrap_or_default().to_os_string();
    name.push(".part");
    file.with_file_name(name)
}

/// `bytes START-END/TOTAL` -> `(START, TOTAL)`.
fn parse_content_range(v: &str) -> Option<(u64, u64)> {
    let rest = v.trim().strip_prefix("bytes")?.trim();
    let (range, total) = rest.split_once('/')?;
    let (start, _) = range.split_once('-')?;
    Some((start.trim().parse().ok()?, total.trim().parse().ok()?))
}

/// Extracts the `.wav` files of `classes` and the two split lists from the tar.gz `archive`
/// into `dest/data_speech_commands_v0.02/`. Returns the number of files written. Entries
/// with absolute paths or `..` are skipped.
pub fn extract<S: AsRef<str>>(archive: &Path, dest: &Path, classes: &[S]) -> Result<usize> {
    let bad = |reason: String| DataError::Archive { path: archive.to_path_buf(), reason };
    let file = File::open(archive).map_err(|e| DataError::io(archive, e))?;
    let mut tar = tar::Archive::new(GzDecoder::new(std::io::BufReader::new(file)));
    let root = dest.join(DATASET_DIR);
    let mut count = 0;
    for entry in tar.entries().map_err(|e| bad(e.to_string()))? {
        let mut entry = entry.map_err(|e| bad(e.to_string()))?;
        let path = entry.path().map_err(|e| bad(e.to_string()))?.into_owned();
        let parts: Vec<&str> = match path
            .components()
            .filter(|c| !matches!(c, Component::CurDir))
            .map(|c| match c {
                Component::Normal(s) => s.to_str(),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()
        {
            Some(p) => p,
            None => continue,
        };
        let wanted = match parts.as_slice() {
            [name] => *name == VALIDATION_LIST || *name == TESTING_LIST,
            [class, name] => name.ends_with(".wav") && classes.iter().any(|c| c.as_ref() == *class),
            _ => false,
        };
        if !wanted || !entry.header().entry_type().is_file() {
            continue;
        }
        let target = root.join(parts.join("/"));
        if let Some(dir) = target.parent() {
            std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
        }
        entry.unpack(&target).map_err(|e| bad(format!("{}: {e}", target.display())))?;
        count += 1;
    }
    for list in [VALIDATION_LIST, TESTING_LIST] {
        if !root.join(list).is_file() {
            return Err(bad(format!("has no {list}: not a Speech Commands archive")));
        }
    }
    Ok(count)
}

/// Fetches [`ARCHIVE_NAME`] from `url` into `dest` and extracts `classes` and the lists
/// into `dest/data_speech_commands_v0.02/`. Returns that folder.
pub fn download<S: AsRef<str>>(
    url: &str,
    dest: &Path,
    classes: &[S],
    expected_size: Option<u64>,
    progress: bool,
) -> Result<PathBuf> {
    let archive = dest.join(ARCHIVE_NAME);
    fetch(url, &archive, expected_size, progress)?;
    extract(&archive, dest, classes)?;
    Ok(dest.join(DATASET_DIR))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range() {
        assert_eq!(parse_content_range("bytes 100-199/200"), Some((100, 200)));
        assert_eq!(parse_content_range("bytes */200"), None);
    }
}
