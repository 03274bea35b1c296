//! Hostile `tokenizer.json` files (`--tokenizer`, or the one beside the
//! weights) and hostile input to a tokenizer that loaded: arbitrary bytes,
//! JSON-like text, line mutations of a valid WordPiece tokenizer, and valid
//! JSON whose parts are replaced by hostile ones (other normalizers,
//! pre-tokenizers, decoders, post-processors and models with hostile
//! settings). Loading never panics, finishes quickly, and an error names
//! the file. A tokenizer that loads encodes any text and decodes any ids
//! (a hostile accuracy log's) without a panic: each answer is ids inside
//! its vocabulary, no more than `set_max_tokens` allows, or an error naming
//! the file.

use hostile_input::strategies::{config, hostile_text, mutate, mutations, nasty_value, timed};
use proptest::prelude::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use workloads::text::tokens::{Cut, TextTokenizer};
use workloads::text::TextError;

/// A small BERT-style WordPiece tokenizer, laid out as Hugging Face writes
/// them (one entry a line, so that line mutations hit single settings).
/// bench/fuzz.sh seeds the tokenizer fuzz target with it too.
const WORDPIECE: &str = include_str!("data/wordpiece_tokenizer.json");

/// Tokens in [`WORDPIECE`]'s vocabulary.
const WORDPIECE_VOCAB: usize = 25;

/// Words of [`WORDPIECE`], and of tokenizer.json files generally, for text
/// that comes close to valid.
const WORDS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    "\"",
    ":",
    ",",
    "\"type\"",
    "\"model\"",
    "\"vocab\"",
    "\"WordPiece\"",
    "\"BPE\"",
    "\"Unigram\"",
    "\"[UNK]\"",
    "\"##\"",
    "null",
    "the",
    "##s",
    "[CLS]",
    "[SEP]",
];

/// Writes `bytes` as `tokenizer.json` in a fresh folder.
fn file(bytes: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokenizer.json");
    std::fs::write(&path, bytes).unwrap();
    (dir, path)
}

/// A tokenizer error names the file it is about.
fn check_error(e: &TextError, path: &Path) {
    let shown = e.to_string();
    assert!(
        shown.starts_with(&format!("tokenizer {}: ", path.display())),
        "{shown}"
    );
}

/// Loads `bytes` as a tokenizer.json: the tokenizer, or `None` after
/// checking the error names the file.
fn load(bytes: &[u8]) -> Option<(tempfile::TempDir, TextTokenizer)> {
    let (dir, path) = file(bytes);
    match timed("TextTokenizer::from_file", || {
        TextTokenizer::from_file(&path)
    }) {
        Ok(tokenizer) => Some((dir, tokenizer)),
        Err(e) => {
            check_error(&e, &path);
            None
        }
    }
}

/// Encodes `text` (alone and as a pair) and decodes the ids: ids inside the
/// vocabulary and no more than `max_tokens`, or an error naming the file.
/// Returns whether everything succeeded.
fn check_encode_decode(tok: &TextTokenizer, text: &str, max_tokens: Option<usize>) -> bool {
    let mut all_ok = true;
    for encoded in [
        timed("encode", || tok.encode(text)),
        timed("encode_pair", || tok.encode_pair(text, "the quick fox")),
    ] {
        match encoded {
            Ok(ids) => {
                if let Some(max) = max_tokens {
                    assert!(ids.len() <= max, "{} ids, max {max}", ids.len());
                }
                for &id in &ids {
                    assert!(
                        (id as usize) < tok.vocab_size(),
                        "{id} of {}",
                        tok.vocab_size()
                    );
                }
                if let Err(e) = timed("decode", || tok.decode(&ids)) {
                    check_error(&e, tok.path());
                    all_ok = false;
                }
            }
            Err(e) => {
                check_error(&e, tok.path());
                all_ok = false;
            }
        }
    }
    all_ok
}

/// Text to encode: hostile text, or words of the vocabulary.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        hostile_text(WORDS),
        prop::collection::vec(
            prop::sample::select(vec![
                "the", "quick", "foxes", "jumped", "over", "a", "b1", "?", " "
            ]),
            0..40
        )
        .prop_map(|w| w.join(" ")),
        any::<String>(),
    ]
}

/// A limit on tokens, small ones (below the special tokens) included.
fn max_tokens() -> impl Strategy<Value = Option<usize>> {
    prop_oneof![
        Just(None),
        (0usize..12).prop_map(Some),
        any::<usize>().prop_map(Some)
    ]
}

fn cut() -> impl Strategy<Value = Cut> {
    prop_oneof![Just(Cut::End), Just(Cut::Start)]
}

/// Sets the limit: refused with an error naming the file, or set.
fn limit(tok: &mut TextTokenizer, max_tokens: Option<usize>, cut: Cut) -> Option<usize> {
    match tok.set_max_tokens(max_tokens, cut) {
        Ok(()) => max_tokens,
        Err(e) => {
            check_error(&e, tok.path());
            // Refused: the tokenizer keeps no limit.
            None
        }
    }
}

// ------------------------------------------------------ hostile JSON values

/// Base64 (standard alphabet, padded), for `precompiled_charsmap`.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A JSON value where a setting belongs: a nasty value (as JSON where it
/// is JSON, else as a string), an edge integer, or a string of the format.
fn json_value() -> BoxedStrategy<Value> {
    prop_oneof![
        3 => nasty_value().prop_map(|v| serde_json::from_str(&v).unwrap_or(Value::String(v))),
        1 => prop::sample::select(vec![0u64, 1, 2, 5, 100, u64::from(u32::MAX), u64::from(u32::MAX) + 1, u64::MAX])
            .prop_map(Value::from),
        1 => prop::sample::select(vec!["", "##", "[UNK]", "[NOPE]", "▁", " ", "<0x41>", "<0xZZ>"])
            .prop_map(Value::from),
        1 => Just(json!([])),
        1 => Just(json!({})),
    ]
    .boxed()
}

/// Regular expressions that are invalid, empty, slow to a backtracking
/// engine, or need fancy-regex's look-around.
const PATTERNS: &[&str] = &[
    "",
    "(",
    "\\",
    "[",
    "(a*)*b",
    "(\\w+\\s?)*$",
    "(?=a)",
    "(?<=a)b",
    "(a)\\1",
    "a{1000000}",
    ".*",
    "\\p{Nope}",
    "(?i)THE",
];

fn pattern() -> BoxedStrategy<Value> {
    prop_oneof![
        prop::sample::select(PATTERNS).prop_map(|p| json!({ "Regex": p })),
        prop::sample::select(PATTERNS).prop_map(|p| json!({ "String": p })),
        json_value(),
    ]
    .boxed()
}

/// A charsmap blob: a declared trie size (often a lie), then arbitrary bytes.
fn charsmap() -> BoxedStrategy<Value> {
    (
        prop_oneof![0u32..64, Just(u32::MAX), any::<u32>()],
        prop::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(|(size, rest)| {
            let mut bytes = size.to_le_bytes().to_vec();
            bytes.extend(rest);
            Value::from(base64(&bytes))
        })
        .boxed()
}

fn normalizer() -> BoxedStrategy<Value> {
    prop_oneof![
        charsmap().prop_map(|c| json!({"type": "Precompiled", "precompiled_charsmap": c})),
        (pattern(), json_value())
            .prop_map(|(p, c)| json!({"type": "Replace", "pattern": p, "content": c})),
        json_value().prop_map(|p| json!({"type": "Prepend", "prepend": p})),
        Just(json!({"type": "Strip", "strip_left": true, "strip_right": true})),
        prop::sample::select(vec![
            "NFC",
            "NFD",
            "NFKC",
            "NFKD",
            "Lowercase",
            "Nmt",
            "StripAccents",
            "ByteLevel"
        ])
        .prop_map(|t| json!({"type": t})),
        Just(json!({"type": "Sequence", "normalizers": [{"type": "NFKC"}, {"type": "Lowercase"}]})),
    ]
    .boxed()
}

fn pre_tokenizer() -> BoxedStrategy<Value> {
    let behavior = prop::sample::select(vec![
        "Removed",
        "Isolated",
        "MergedWithPrevious",
        "MergedWithNext",
        "Contiguous",
        "Nope",
    ]);
    prop_oneof![
        json_value().prop_map(|n| json!({"type": "FixedLength", "length": n})),
        (pattern(), behavior.clone(), any::<bool>())
            .prop_map(|(p, b, i)| json!({"type": "Split", "pattern": p, "behavior": b, "invert": i})),
        (json_value(), prop::sample::select(vec!["always", "first", "never"]), any::<bool>()).prop_map(
            |(r, s, split)| json!({"type": "Metaspace", "replacement": r, "prepend_scheme": s, "split": split})
        ),
        (any::<bool>(), any::<bool>()).prop_map(|(a, r)| {
            json!({"type": "ByteLevel", "add_prefix_space": a, "trim_offsets": true, "use_regex": r})
        }),
        any::<bool>().prop_map(|d| json!({"type": "Digits", "individual_digits": d})),
        behavior.prop_map(|b| json!({"type": "Punctuation", "behavior": b})),
        json_value().prop_map(|d| json!({"type": "CharDelimiterSplit", "delimiter": d})),
        prop::sample::select(vec!["Whitespace", "WhitespaceSplit", "UnicodeScripts", "BertPreTokenizer"])
            .prop_map(|t| json!({"type": t})),
        Just(json!({"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": true}, {"type": "FixedLength", "length": 2}]})),
    ]
    .boxed()
}

fn decoder() -> BoxedStrategy<Value> {
    prop_oneof![
        (json_value(), json_value(), json_value())
            .prop_map(|(c, a, b)| json!({"type": "Strip", "content": c, "start": a, "stop": b})),
        (
            prop::sample::select(vec![" ", "#", "a", "t"]),
            0usize..8,
            0usize..8
        )
            .prop_map(|(c, a, b)| json!({"type": "Strip", "content": c, "start": a, "stop": b})),
        prop::sample::select(vec!["ByteFallback", "Fuse"]).prop_map(|t| json!({"type": t})),
        (json_value(), any::<bool>()).prop_map(|(r, s)| {
            json!({"type": "Metaspace", "replacement": r, "prepend_scheme": "always", "split": s})
        }),
        json_value().prop_map(|s| json!({"type": "BPEDecoder", "suffix": s})),
        (json_value(), json_value())
            .prop_map(|(p, w)| json!({"type": "CTC", "pad_token": p, "word_delimiter_token": w, "cleanup": true})),
        (pattern(), json_value()).prop_map(|(p, c)| json!({"type": "Replace", "pattern": p, "content": c})),
        (json_value(), any::<bool>()).prop_map(|(p, c)| json!({"type": "WordPiece", "prefix": p, "cleanup": c})),
        Just(json!({"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true})),
        Just(json!({"type": "Sequence", "decoders": [{"type": "ByteFallback"}, {"type": "Strip", "content": "a", "start": 3, "stop": 3}]})),
    ]
    .boxed()
}

fn post_processor() -> BoxedStrategy<Value> {
    let id = prop_oneof![0u64..30, Just(u64::from(u32::MAX)), any::<u64>()];
    let ids = prop::collection::vec(id.clone(), 0..4);
    prop_oneof![
        (id.clone(), id.clone())
            .prop_map(|(s, c)| json!({"type": "BertProcessing", "sep": ["[SEP]", s], "cls": ["[CLS]", c]})),
        (id.clone(), id, any::<bool>()).prop_map(|(s, c, a)| {
            json!({"type": "RobertaProcessing", "sep": ["</s>", s], "cls": ["<s>", c], "trim_offsets": true, "add_prefix_space": a})
        }),
        (ids.clone(), ids, prop::collection::vec(prop::sample::select(vec!["[CLS]", "[SEP]", "[X]"]), 0..4))
            .prop_map(|(cls, sep, single)| {
                let mut template: Vec<Value> = single.iter().map(|t| json!({"SpecialToken": {"id": t, "type_id": 0}})).collect();
                template.push(json!({"Sequence": {"id": "A", "type_id": 0}}));
                json!({
                    "type": "TemplateProcessing",
                    "single": template,
                    "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
                    "special_tokens": {
                        "[CLS]": {"id": "[CLS]", "ids": cls, "tokens": ["[CLS]"]},
                        "[SEP]": {"id": "[SEP]", "ids": sep, "tokens": ["[SEP]"]}
                    }
                })
            }),
        Just(json!({"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true})),
        Just(json!({"type": "Sequence", "processors": [{"type": "ByteLevel", "trim_offsets": true}, {"type": "BertProcessing", "sep": ["[SEP]", 3], "cls": ["[CLS]", 2]}]})),
    ]
    .boxed()
}

/// Vocabulary entries whose ids are hostile (huge, repeated, past u32).
fn vocab() -> BoxedStrategy<Value> {
    prop::collection::btree_map(
        prop::sample::select(vec![
            "[UNK]", "the", "##s", "a", "##a", "t", "h", "e", "th", "<0x41>", "▁the",
        ]),
        prop_oneof![
            0u64..30,
            Just(u64::from(u32::MAX)),
            Just(u64::from(u32::MAX) + 1)
        ],
        0..8,
    )
    .prop_map(|m| {
        Value::Object(
            m.into_iter()
                .map(|(k, v)| (k.to_string(), v.into()))
                .collect(),
        )
    })
    .boxed()
}

fn model() -> BoxedStrategy<Value> {
    prop_oneof![
        (json_value(), json_value(), json_value(), vocab()).prop_map(|(unk, prefix, max_chars, vocab)| {
            json!({"type": "WordPiece", "unk_token": unk, "continuing_subword_prefix": prefix,
                   "max_input_chars_per_word": max_chars, "vocab": vocab})
        }),
        (
            prop_oneof![Just(Value::Null), json_value()],
            any::<bool>(),
            any::<bool>(),
            vocab(),
            prop::collection::vec(prop::sample::select(vec!["t h", "th e", "a a", "x y", "the", ""]), 0..4)
        )
            .prop_map(|(dropout, fuse_unk, byte_fallback, vocab, merges)| {
                json!({"type": "BPE", "dropout": dropout, "unk_token": "[UNK]", "continuing_subword_prefix": null,
                       "end_of_word_suffix": null, "fuse_unk": fuse_unk, "byte_fallback": byte_fallback,
                       "vocab": vocab, "merges": merges})
            }),
        (
            json_value(),
            prop::collection::vec(
                (prop::sample::select(vec!["[UNK]", "the", "a", "▁", "<0x41>", ""]), prop_oneof![-1e300f64..0.0, Just(0.0), 0.0..1e300f64]),
                0..6
            ),
            any::<bool>()
        )
            .prop_map(|(unk_id, vocab, byte_fallback)| {
                json!({"type": "Unigram", "unk_id": unk_id, "vocab": vocab, "byte_fallback": byte_fallback})
            }),
        (vocab(), json_value()).prop_map(|(vocab, unk)| json!({"type": "WordLevel", "vocab": vocab, "unk_token": unk})),
    ]
    .boxed()
}

/// One part of a tokenizer.json replaced by a hostile one.
fn part() -> impl Strategy<Value = (&'static str, Value)> {
    prop_oneof![
        normalizer().prop_map(|v| ("normalizer", v)),
        pre_tokenizer().prop_map(|v| ("pre_tokenizer", v)),
        decoder().prop_map(|v| ("decoder", v)),
        post_processor().prop_map(|v| ("post_processor", v)),
        model().prop_map(|v| ("model", v)),
    ]
}

/// Descends from `value` by `choices` (each taken modulo the children of
/// the node it is at), stopping at a leaf.
fn descend<'a>(value: &'a mut Value, choices: &[usize]) -> &'a mut Value {
    let Some((&choice, rest)) = choices.split_first() else {
        return value;
    };
    let children = match value {
        Value::Object(map) => map.len(),
        Value::Array(items) => items.len(),
        _ => 0,
    };
    if children == 0 {
        return value;
    }
    let child = match value {
        Value::Object(map) => map.values_mut().nth(choice % children).unwrap(),
        Value::Array(items) => &mut items[choice % children],
        _ => unreachable!("a leaf has no children"),
    };
    descend(child, rest)
}

/// [`WORDPIECE`] with `parts` replaced, then the settings at `settings`
/// (paths into the JSON) replaced by hostile values.
fn damaged(parts: &[(&str, Value)], settings: &[(Vec<usize>, Value)]) -> Vec<u8> {
    let mut tokenizer: Value = serde_json::from_str(WORDPIECE).unwrap();
    for (name, part) in parts {
        tokenizer[*name] = part.clone();
    }
    for (path, value) in settings {
        *descend(&mut tokenizer, path) = value.clone();
    }
    serde_json::to_vec_pretty(&tokenizer).unwrap()
}

fn settings() -> impl Strategy<Value = Vec<(Vec<usize>, Value)>> {
    prop::collection::vec(
        (prop::collection::vec(any::<usize>(), 1..5), json_value()),
        0..3,
    )
}

// ---------------------------------------------------------------- the tests

#[test]
fn the_valid_tokenizer_loads_and_encodes() {
    let (_dir, mut tok) = load(WORDPIECE.as_bytes()).expect("valid");
    assert_eq!(tok.vocab_size(), WORDPIECE_VOCAB);
    assert_eq!(
        tok.encode("The foxs jumped").unwrap(),
        [2, 5, 8, 10, 9, 11, 3]
    );
    assert_eq!(tok.decode(&[2, 5, 8, 10, 3]).unwrap(), "the foxs");
    tok.set_max_tokens(Some(4), Cut::End).unwrap();
    assert_eq!(tok.encode("the quick brown fox").unwrap(), [2, 5, 6, 3]);
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn arbitrary_bytes_as_tokenizer_json_are_errors_naming_the_file(
        bytes in prop::collection::vec(any::<u8>(), 0..3000),
    ) {
        prop_assert!(load(&bytes).is_none());
    }

    #[test]
    fn json_like_text_as_tokenizer_json_never_panics(text in hostile_text(WORDS)) {
        if let Some((_dir, tok)) = load(text.as_bytes()) {
            check_encode_decode(&tok, "the quick fox", None);
        }
    }

    #[test]
    fn the_valid_tokenizer_encodes_any_text_within_the_limit(
        text in text(),
        max_tokens in max_tokens(),
        cut in cut(),
    ) {
        let (_dir, mut tok) = load(WORDPIECE.as_bytes()).unwrap();
        let max_tokens = limit(&mut tok, max_tokens, cut);
        prop_assert!(check_encode_decode(&tok, &text, max_tokens), "a valid tokenizer failed on {:?}", text);
    }

    #[test]
    fn the_valid_tokenizer_decodes_any_ids(ids in prop::collection::vec(any::<u32>(), 0..50)) {
        let (_dir, tok) = load(WORDPIECE.as_bytes()).unwrap();
        prop_assert!(tok.decode(&ids).is_ok());
    }
}

proptest! {
    // Most mutated files are no longer JSON: more cases, so that a few
    // dozen still load and reach encode and decode.
    #![proptest_config(config(256))]

    #[test]
    fn mutated_lines_of_a_valid_tokenizer_load_or_name_the_file(
        muts in mutations(1..6),
        text in text(),
    ) {
        if let Some((_dir, tok)) = load(&mutate(WORDPIECE, &muts)) {
            check_encode_decode(&tok, &text, None);
        }
    }
}

proptest! {
    // About a quarter of these load; each case is quick.
    #![proptest_config(config(512))]

    #[test]
    fn hostile_parts_and_settings_load_encode_and_decode_or_name_the_file(
        parts in prop::collection::vec(part(), 0..3),
        settings in settings(),
        text in text(),
        max_tokens in max_tokens(),
        cut in cut(),
        ids in prop::collection::vec(prop_oneof![0u32..30, any::<u32>()], 0..20),
    ) {
        if let Some((_dir, mut tok)) = load(&damaged(&parts, &settings)) {
            let max_tokens = limit(&mut tok, max_tokens, cut);
            check_encode_decode(&tok, &text, max_tokens);
            if let Err(e) = timed("decode", || tok.decode(&ids)) {
                check_error(&e, tok.path());
            }
        }
    }
}

// ------------------------------------------------- found by the properties

/// [`WORDPIECE`] with one part replaced.
fn with_part(name: &str, part: Value) -> Vec<u8> {
    damaged(&[(name, part)], &[])
}

/// Found by `mutated_lines_of_a_valid_tokenizer_load_or_name_the_file`: a
/// decoder that is not JSON (here an object key that is not a string) made
/// the tokenizers library panic while reading the file ("Helper"), not
/// return an error.
#[test]
fn a_malformed_decoder_is_an_error_naming_the_file() {
    let text = WORDPIECE.replace("\"prefix\": \"##\",", "1: \"##\",");
    let (_dir, path) = file(text.as_bytes());
    let e = TextTokenizer::from_file(&path).unwrap_err();
    check_error(&e, &path);
    assert!(e.to_string().contains("not a valid tokenizer.json"), "{e}");
}

/// Found by `hostile_parts_and_settings_load_encode_and_decode_or_name_the_file`:
/// a `precompiled_charsmap` that does not parse panicked while reading.
#[test]
fn a_bad_precompiled_charsmap_is_an_error_naming_the_file() {
    let part = json!({"type": "Precompiled", "precompiled_charsmap": base64(&[8, 0, 0])});
    let (_dir, path) = file(&with_part("normalizer", part));
    let e = TextTokenizer::from_file(&path).unwrap_err();
    check_error(&e, &path);
}

/// Found reading the library's BPE builder: a merge whose result is longer
/// than every token of the vocabulary overran a buffer sized to the longest
/// token (a panic while reading the file) instead of the library's own
/// "merge token out of vocabulary" error.
#[test]
fn a_bpe_merge_longer_than_any_token_is_an_error_naming_the_file() {
    let model = json!({
        "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
        "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
        "vocab": {"a": 0, "b": 1}, "merges": ["a b"]
    });
    let (_dir, path) = file(&with_part("model", model));
    let e = TextTokenizer::from_file(&path).unwrap_err();
    check_error(&e, &path);
    assert!(e.to_string().contains("not a valid tokenizer.json"), "{e}");
}

/// Found by `hostile_parts_and_settings_load_encode_and_decode_or_name_the_file`:
/// a `Strip` decoder told to cut more characters than a token has panicked
/// on decode (an overflow in debug builds, an index past the end in
/// release); a `FixedLength` pre-tokenizer of length 0 panicked on encode.
#[test]
fn decoders_and_pre_tokenizers_that_panic_are_errors_naming_the_file() {
    // Token 19 is "a": all of it is cut, and then one more.
    let strip = json!({"type": "Strip", "content": "a", "start": 0, "stop": 2});
    let (_dir, tok) = load(&with_part("decoder", strip)).expect("it loads");
    let e = tok.decode(&[19]).unwrap_err();
    check_error(&e, tok.path());
    assert!(e.to_string().contains("cannot decode"), "{e}");

    let fixed = json!({"type": "FixedLength", "length": 0});
    let (_dir, tok) = load(&with_part("pre_tokenizer", fixed)).expect("it loads");
    let e = tok.encode("the fox").unwrap_err();
    check_error(&e, tok.path());
    assert!(e.to_string().contains("cannot encode"), "{e}");
}

/// Found by `the_valid_tokenizer_encodes_any_text_within_the_limit`: a
/// limit below the special tokens the tokenizer adds (BERT's [CLS] and
/// [SEP]: 2, or 3 for a pair) underflowed inside the library: a panic in
/// debug builds, and in release no limit at all, so `--seq-len 2` gave
/// inputs longer than the model takes. Such a limit is now refused.
#[test]
fn a_limit_with_no_room_for_text_is_refused() {
    let (_dir, mut tok) = load(WORDPIECE.as_bytes()).unwrap();
    for max_tokens in [0, 1, 2, 3] {
        let e = tok.set_max_tokens(Some(max_tokens), Cut::End).unwrap_err();
        check_error(&e, tok.path());
        assert!(e.to_string().contains("3 special tokens"), "{e}");
    }
    tok.set_max_tokens(Some(4), Cut::End).unwrap();
    assert_eq!(tok.encode_pair("the fox", "a dog").unwrap().len(), 4);
}

/// Ids the file gives that lie outside its vocabulary (a post-processor's
/// special token with id 2^32 - 1, vocabulary ids with gaps): `vocab_size`
/// covers every id of the vocabulary, and an id past it is an error, not a
/// sample the model cannot embed.
#[test]
fn ids_outside_the_vocabulary_are_errors_naming_the_file() {
    let sparse = WORDPIECE.replace("\"##1\": 24", "\"##1\": 1000");
    let (_dir, tok) = load(sparse.as_bytes()).unwrap();
    assert_eq!(tok.vocab_size(), 1001);
    assert_eq!(tok.encode("1").unwrap(), [2, 23, 3]);

    let far = json!({"type": "BertProcessing", "sep": ["[SEP]", u32::MAX], "cls": ["[CLS]", 2]});
    let (_dir, tok) = load(&with_part("post_processor", far)).unwrap();
    let e = tok.encode("the fox").unwrap_err();
    check_error(&e, tok.path());
    assert!(e.to_string().contains("4294967295"), "{e}");
}

/// Found while reading the library for `hostile_parts_…`: a
/// `precompiled_charsmap` of 16 bytes declaring a trie of 4 GiB made the
/// library reserve 8 GiB before reading the trie; where that much memory
/// cannot be had (a container's limit, `ulimit -v`), the allocation fails
/// and the process aborts, which no guard can catch. The declared size is
/// now checked against the blob first, wherever the charsmap sits.
#[test]
fn a_charsmap_declaring_more_than_it_holds_is_refused_before_the_library_reads_it() {
    let mut blob = u32::MAX.to_le_bytes().to_vec();
    blob.extend([0u8; 8]);
    let charsmap = json!({"type": "Precompiled", "precompiled_charsmap": base64(&blob)});
    for part in [
        charsmap.clone(),
        json!({"type": "Sequence", "normalizers": [{"type": "NFKC"}, charsmap]}),
    ] {
        let (_dir, path) = file(&with_part("normalizer", part));
        let e = TextTokenizer::from_file(&path).unwrap_err();
        check_error(&e, &path);
        assert!(
            e.to_string()
                .contains("declares a trie of 4294967295 bytes but holds 8"),
            "{e}"
        );
    }
    // A key spelled with a JSON escape is the same key.
    let text = String::from_utf8(with_part(
        "normalizer",
        json!({"type": "Precompiled", "precompiled_charsmap": base64(&blob)}),
    ))
    .unwrap()
    .replace("precompiled_charsmap", "precompiled\\u005fcharsmap");
    let (_dir, path) = file(text.as_bytes());
    let e = TextTokenizer::from_file(&path).unwrap_err();
    assert!(e.to_string().contains("declares a trie"), "{e}");
}
