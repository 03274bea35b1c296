//! Hugging Face `tokenizer.json` (`--tokenizer`, or the one beside the
//! weights; `joulebench accuracy --tokenizer`): read it, and use what loads
//! as a run does (a limit on tokens, encode, encode a pair, decode).
//!
//! The tokenizers library panics on some hostile files; TextTokenizer
//! catches those panics and answers with an error. libfuzzer-sys's panic
//! hook aborts on every panic, caught or not, so this target puts in a hook
//! that only keeps the message: a panic that gets out of TextTokenizer
//! still aborts (below, with that message), and that is the bug to find.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::cell::RefCell;
use std::path::Path;
use std::sync::Once;
use workloads::text::tokens::{Cut, TextTokenizer};

thread_local! {
    static LAST_PANIC: RefCell<String> = const { RefCell::new(String::new()) };
}

fn keep_panic_messages() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            LAST_PANIC.with(|last| *last.borrow_mut() = info.to_string());
        }))
    });
}

/// Loads `data` and, if it loads, uses it; every id answered is inside the
/// vocabulary and every encoding within the limit.
fn exercise(data: &[u8]) {
    let Ok(mut tokenizer) = TextTokenizer::parse(data, Path::new("tokenizer.json")) else {
        return;
    };
    let max_tokens = 8;
    let limited = tokenizer.set_max_tokens(Some(max_tokens), Cut::End).is_ok();
    let vocab_size = tokenizer.vocab_size();
    let texts = [
        "The quick brown fox, 2024 — naïve café 東京 🚀",
        "",
        "  \t\n",
    ];
    for text in texts {
        for encoded in [
            tokenizer.encode(text),
            tokenizer.encode_pair(text, "who jumped?"),
        ] {
            let Ok(ids) = encoded else { continue };
            assert!(
                ids.iter().all(|&id| (id as usize) < vocab_size),
                "{ids:?} of {vocab_size}"
            );
            assert!(!limited || ids.len() <= max_tokens, "{} tokens", ids.len());
            let _ = tokenizer.decode(&ids);
        }
    }
    let _ = tokenizer.decode(&[0, 1, 2, 3, 100, 65_535, u32::MAX]);
}

fuzz_target!(|data: &[u8]| {
    keep_panic_messages();
    if std::panic::catch_unwind(|| exercise(data)).is_err() {
        LAST_PANIC.with(|last| eprintln!("a panic got out of TextTokenizer: {}", last.borrow()));
        std::process::abort();
    }
});
