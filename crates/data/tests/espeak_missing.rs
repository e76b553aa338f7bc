//! Without `espeak-ng` on PATH, synthesis fails with a message saying how to install it.
//! (Its own test binary: it empties PATH for the whole process.)

use data::synth::{espeak_available, generate, speak, Engine, SynthConfig, Voice};

#[test]
fn a_missing_espeak_says_how_to_install_it() {
    let empty = tempfile::tempdir().unwrap();
    std::env::set_var("PATH", empty.path());
    assert!(!espeak_available());
    let v = Voice::espeak("en-us", None, 50, 160);
    let err = speak("one", &v).unwrap_err().to_string();
    assert!(err.contains("espeak-ng") && err.contains("apt-get install espeak-ng"), "{err}");
    let out = tempfile::tempdir().unwrap();
    let cfg = SynthConfig { engines: vec![Engine::Espeak], ..SynthConfig::default() };
    let err = generate(out.path(), &cfg).unwrap_err().to_string();
    assert!(err.contains("apt-get install espeak-ng"), "{err}");
}

#[test]
fn a_missing_flite_or_festival_names_the_engine_and_voice() {
    let empty = tempfile::tempdir().unwrap();
    std::env::set_var("PATH", empty.path());
    for (engine, voice) in [(Engine::Flite, "slt"), (Engine::Festival, "kal_diphone")] {
        assert!(!engine.available());
        let err = speak("one", &Voice::new(engine, voice, 50, 175)).unwrap_err().to_string();
        assert!(err.contains(engine.program()) && err.contains("apt-get install"), "{err}");
        let cfg = SynthConfig { engines: vec![engine], ..SynthConfig::default() };
        let out = tempfile::tempdir().unwrap();
        let err = generate(out.path(), &cfg).unwrap_err().to_string();
        assert!(err.contains(engine.program()) && err.contains(voice), "{err}");
    }
}
