//! Arbitrary token-service answers: no panic; an accepted body is a JWT whose claims decoded;
//! a refused one is described by its shape, never quoted (it may be a token).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sts_sidecar::token::decode_claims;
use sts_sidecar::token::token_service::interpret;

const URL: &str = "https://uaa.example/token";

fuzz_target!(|data: &[u8]| {
    let (html, body) = match data.split_first() {
        Some((flag, rest)) => (flag & 1 == 1, rest),
        None => (false, data),
    };
    match interpret(URL, body, html) {
        Ok(token) => {
            assert!(!html, "an HTML answer was accepted");
            decode_claims(token.expose()).expect("an accepted token decodes");
            assert_eq!(
                token.expose().split('.').count(),
                3,
                "a JWT has three parts"
            );
            assert!(
                !format!("{token:?}").contains(token.expose()),
                "Debug shows the token"
            );
        }
        Err(e) => {
            // Token-like material (runs of 16+ base64url characters) never reaches the message;
            // the message's own text has no run that long, so any match is a leak.
            let message = format!("{e}");
            let text = String::from_utf8_lossy(body);
            for run in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_')) {
                if run.len() >= 16 {
                    assert!(
                        !message.contains(run),
                        "the error quotes the body: {message}"
                    );
                }
            }
            assert!(
                message.len() < 400,
                "the error grows with the body: {message}"
            );
        }
    }
    if let Ok(text) = std::str::from_utf8(body) {
        let _ = decode_claims(text);
    }
});
