//! `data::download` against a loopback HTTP server (127.0.0.1, a bounded number of
//! connections) serving a Speech Commands-shaped tarball built here: a whole download, a
//! resumed one (`Range`), a connection cut short, a bad status, and extraction of only the
//! requested classes and the lists.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};

use data::download::{download, extract, fetch, ARCHIVE_NAME};
use data::speech_commands::{SpeechCommands, Split, DATASET_DIR};

/// A tar.gz with three classes, background noise, the lists and a licence (about 300 KB).
fn tarball() -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    let mut add = |path: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, path, data).unwrap();
    };
    // Incompressible-ish bytes so the archive is big enough to be cut in the middle.
    let mut state = 7u32;
    let mut noise = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                (state >> 16) as u8
            })
            .collect()
    };
    for class in ["one", "two", "four"] {
        for k in 0..2 {
            add(&format!("./{class}/s{k}_nohash_0.wav"), &noise(40_000));
        }
    }
    add("./_background_noise_/white.wav", &noise(20_000));
    add("./validation_list.txt", b"one/s1_nohash_0.wav\nfour/s1_nohash_0.wav\n");
    add("./testing_list.txt", b"two/s1_nohash_0.wav\n");
    add("./LICENSE", b"CC BY 4.0\n");
    tar.into_inner().unwrap().finish().unwrap()
}

#[derive(Clone, Copy)]
enum Mode {
    Serve,
    CutAfter(usize),
    NotFound,
}

/// Serves `body` for `connections` requests, then stops; returns the URL and the Range
/// headers it received.
fn serve(
    body: Vec<u8>,
    mode: Mode,
    connections: usize,
) -> (String, Arc<Mutex<Vec<Option<String>>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/data/{ARCHIVE_NAME}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(connections) {
            let mut stream = stream.unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut range = None;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
                    break;
                }
                if let Some((k, v)) = line.split_once(':') {
                    if k.eq_ignore_ascii_case("range") {
                        range = Some(v.trim().to_string());
                    }
                }
            }
            log.lock().unwrap().push(range.clone());
            let start = range
                .as_deref()
                .and_then(|r| r.strip_prefix("bytes="))
                .and_then(|r| r.trim_end_matches('-').parse::<usize>().ok())
                .unwrap_or(0);
            let total = body.len();
            let head = match mode {
                Mode::NotFound => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n".to_string(),
                _ if start > 0 => format!(
                    "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{}/{total}\r\n",
                    total - start,
                    total - 1
                ),
                _ => format!("HTTP/1.1 200 OK\r\nContent-Length: {total}\r\n"),
            };
            let _ = stream.write_all(format!("{head}Connection: close\r\n\r\n").as_bytes());
            let end = match mode {
                Mode::CutAfter(n) => n.min(total),
                Mode::NotFound => start,
                Mode::Serve => total,
            };
            let _ = stream.write_all(&body[start..end.max(start)]);
        }
    });
    (url, seen)
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn downloads_and_extracts_only_the_requested_classes() {
    let body = tarball();
    let (url, seen) = serve(body.clone(), Mode::Serve, 1);
    let dest = tempfile::tempdir().unwrap();
    let dir = download(&url, dest.path(), &["one", "two"], Some(body.len() as u64), false).unwrap();
    assert_eq!(dir, dest.path().join(DATASET_DIR));
    assert_eq!(std::fs::read(dest.path().join(ARCHIVE_NAME)).unwrap(), body);
    assert_eq!(names(&dir), ["one", "testing_list.txt", "two", "validation_list.txt"]);
    assert_eq!(names(&dir.join("one")), ["s0_nohash_0.wav", "s1_nohash_0.wav"]);
    assert_eq!(seen.lock().unwrap().as_slice(), [None]);
    // The result opens as a dataset (layout and lists), without features being computed.
    let cache =
        std::sync::Arc::new(data::cache::FeatureCache::uncached(Default::default(), Some(16_000)));
    let val =
        SpeechCommands::with_cache(dest.path(), Split::Validation, &["one", "two"], cache).unwrap();
    assert_eq!(val.len(), 1);
    // Present already: nothing is fetched again (the server accepted only one connection).
    download(&url, dest.path(), &["one", "two", "four"], None, false).unwrap();
    assert!(dir.join("four").is_dir());
}

#[test]
fn resumes_a_partial_download_with_a_range_request() {
    let body = tarball();
    let dest = tempfile::tempdir().unwrap();
    let file = dest.path().join(ARCHIVE_NAME);
    let half = body.len() / 2;
    std::fs::write(dest.path().join(format!("{ARCHIVE_NAME}.part")), &body[..half]).unwrap();
    let (url, seen) = serve(body.clone(), Mode::Serve, 1);
    assert_eq!(fetch(&url, &file, None, false).unwrap(), body.len() as u64);
    assert_eq!(seen.lock().unwrap().as_slice(), [Some(format!("bytes={half}-"))]);
    assert_eq!(std::fs::read(&file).unwrap(), body);
    assert!(!dest.path().join(format!("{ARCHIVE_NAME}.part")).exists());
}

#[test]
fn a_cut_connection_keeps_the_part_and_the_next_run_finishes() {
    let body = tarball();
    let dest = tempfile::tempdir().unwrap();
    let file = dest.path().join(ARCHIVE_NAME);
    let (url, _) = serve(body.clone(), Mode::CutAfter(100_000), 1);
    let err = fetch(&url, &file, None, false).unwrap_err().to_string();
    assert!(err.contains(&url) && err.contains("resume"), "{err}");
    assert!(!file.exists());
    let part = std::fs::read(dest.path().join(format!("{ARCHIVE_NAME}.part"))).unwrap();
    assert_eq!(part, body[..100_000]);
    let (url, seen) = serve(body.clone(), Mode::Serve, 1);
    fetch(&url, &file, None, false).unwrap();
    assert_eq!(seen.lock().unwrap().as_slice(), [Some("bytes=100000-".to_string())]);
    assert_eq!(std::fs::read(&file).unwrap(), body);
}

#[test]
fn a_wrong_size_or_status_is_an_error_naming_the_url() {
    let body = tarball();
    let dest = tempfile::tempdir().unwrap();
    let file = dest.path().join(ARCHIVE_NAME);
    let (url, _) = serve(body.clone(), Mode::Serve, 1);
    let err = fetch(&url, &file, Some(body.len() as u64 + 1), false).unwrap_err().to_string();
    assert!(err.contains(&url) && err.contains("expected"), "{err}");
    let (url, _) = serve(body, Mode::NotFound, 1);
    let err = fetch(&url, &file, None, false).unwrap_err().to_string();
    assert!(err.contains(&url) && err.contains("404"), "{err}");
}

#[test]
fn a_file_that_is_not_an_archive_is_an_error_naming_it() {
    let dest = tempfile::tempdir().unwrap();
    let bogus = dest.path().join("bogus.tar.gz");
    std::fs::write(&bogus, b"<html>not found</html>").unwrap();
    let err = extract(&bogus, dest.path(), &["one"]).unwrap_err().to_string();
    assert!(err.contains("bogus.tar.gz"), "{err}");
}
