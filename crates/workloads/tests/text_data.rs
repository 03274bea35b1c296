//! Text data: JSON/JSONL prompts and SQuAD read with errors naming
//! file:line, `tokenizer.json` round trips, and the token library the
//! language SUTs read from.

use loadgen::QuerySampleLibrary;
use std::path::{Path, PathBuf};
use workloads::image_qsl::SampleError;
use workloads::text::dataset::{read_text_dataset, Framing, TextInput, TextQsl};
use workloads::text::tokens::{synthetic_tokens, Cut, TextTokenizer};

fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path
}

/// A small WordLevel tokenizer with BERT-style `[CLS] … [SEP]` framing.
const TOKENIZER_JSON: &str = r#"{
  "version": "1.0",
  "truncation": null,
  "padding": null,
  "added_tokens": [
    {"id": 0, "content": "[UNK]", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
    {"id": 1, "content": "[CLS]", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
    {"id": 2, "content": "[SEP]", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}
  ],
  "normalizer": {"type": "Lowercase"},
  "pre_tokenizer": {"type": "Whitespace"},
  "post_processor": {
    "type": "TemplateProcessing",
    "single": [
      {"SpecialToken": {"id": "[CLS]", "type_id": 0}},
      {"Sequence": {"id": "A", "type_id": 0}},
      {"SpecialToken": {"id": "[SEP]", "type_id": 0}}
    ],
    "pair": [
      {"SpecialToken": {"id": "[CLS]", "type_id": 0}},
      {"Sequence": {"id": "A", "type_id": 0}},
      {"SpecialToken": {"id": "[SEP]", "type_id": 0}},
      {"Sequence": {"id": "B", "type_id": 1}},
      {"SpecialToken": {"id": "[SEP]", "type_id": 1}}
    ],
    "special_tokens": {
      "[CLS]": {"id": "[CLS]", "ids": [1], "tokens": ["[CLS]"]},
      "[SEP]": {"id": "[SEP]", "ids": [2], "tokens": ["[SEP]"]}
    }
  },
  "decoder": null,
  "model": {
    "type": "WordLevel",
    "vocab": {"[UNK]": 0, "[CLS]": 1, "[SEP]": 2, "the": 3, "quick": 4, "brown": 5, "fox": 6,
              "jumps": 7, "over": 8, "lazy": 9, "dog": 10, "who": 11, "jumped": 12, "?": 13, "a": 14},
    "unk_token": "[UNK]"
  }
}"#;

fn tokenizer(dir: &Path) -> TextTokenizer {
    TextTokenizer::from_file(&write(dir, "tokenizer.json", TOKENIZER_JSON)).unwrap()
}

#[test]
fn jsonl_reads_text_prompt_and_question_lines_with_ids_and_references() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "prompts.jsonl",
        concat!(
            "{\"text\": \"The quick brown fox\", \"id\": \"q1\", \"references\": [\"a\", \"b\"]}\n",
            "\n",
            "{\"prompt\": \"jumps over\", \"answers\": [{\"text\": \"the dog\"}]}\n",
            "{\"question\": \"who jumped?\", \"context\": \"the fox\", \"answers\": [\"fox\"], \"id\": 7}\n",
        ),
    );
    let records = read_text_dataset(&path).unwrap();
    assert_eq!(records.len(), 3);
    assert_eq!(records[0].id, "q1");
    assert_eq!(
        records[0].input,
        TextInput::Plain("The quick brown fox".into())
    );
    assert_eq!(records[0].references, vec!["a", "b"]);
    assert_eq!(records[0].line, 1);
    assert_eq!(records[1].line, 3, "blank lines still count");
    assert_eq!(records[1].id, "1", "no id: the record's position");
    assert_eq!(records[1].references, vec!["the dog"]);
    assert_eq!(records[2].id, "7");
    assert_eq!(
        records[2].input,
        TextInput::Question {
            question: "who jumped?".into(),
            context: "the fox".into()
        }
    );
    assert!(records[2].input.prompt().contains("Question: who jumped?"));
}

#[test]
fn jsonl_errors_name_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "{\"text\": \"ok\"}\n{\"text\": \"ok\"}\n{\"text\": oops}\n",
            ":3:",
            "expected",
        ),
        (
            "{\"text\": \"ok\"}\n{\"title\": \"no text here\"}\n",
            ":2:",
            "no text",
        ),
        (
            "{\"text\": \"ok\", \"prompt\": \"also\"}\n",
            ":1:",
            "not several",
        ),
        ("{\"text\": \"   \"}\n", ":1:", "empty"),
        ("{\"question\": \"why?\"}\n", ":1:", "context"),
        ("{\"text\": 5}\n", ":1:", "invalid type"),
    ];
    for (i, (content, line, why)) in cases.iter().enumerate() {
        let path = write(dir.path(), &format!("bad{i}.jsonl"), content);
        let err = read_text_dataset(&path).unwrap_err().to_string();
        let location = format!("{}{line}", path.display());
        assert!(err.contains(&location), "{err} should name {location}");
        assert!(err.contains(why), "{err} should say {why}");
    }
    let empty = write(dir.path(), "empty.jsonl", "\n\n");
    let err = read_text_dataset(&empty).unwrap_err().to_string();
    assert!(
        err.contains("empty.jsonl") && err.contains("no records"),
        "{err}"
    );
    let missing = dir.path().join("missing.jsonl");
    let err = read_text_dataset(&missing).unwrap_err().to_string();
    assert!(err.contains("missing.jsonl"), "{err}");
}

const SQUAD: &str = r#"{
  "version": "1.1",
  "data": [
    {
      "title": "Foxes",
      "paragraphs": [
        {
          "context": "The quick brown fox jumps over the lazy dog.",
          "qas": [
            {
              "id": "s1",
              "question": "Who jumps?",
              "answers": [{"text": "The quick brown fox", "answer_start": 0}, {"text": "fox", "answer_start": 16}]
            },
            {
              "id": "s2",
              "question": "Over what?",
              "answers": [{"text": "the lazy dog", "answer_start": 31}]
            }
          ]
        }
      ]
    },
    {
      "title": "Empty",
      "paragraphs": [
        {
          "context": "Nothing to see.",
          "qas": [
            {
              "id": "s3",
              "question": "Is there an answer?",
              "answers": [],
              "is_impossible": true
            }
          ]
        }
      ]
    }
  ]
}"#;

#[test]
fn squad_reads_every_question_with_its_context_answers_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "dev-v1.1.json", SQUAD);
    let records = read_text_dataset(&path).unwrap();
    let ids: Vec<&str> = records.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["s1", "s2", "s3"]);
    assert_eq!(records[0].references, vec!["The quick brown fox", "fox"]);
    assert!(records[2].references.is_empty());
    match &records[1].input {
        TextInput::Question { question, context } => {
            assert_eq!(question, "Over what?");
            assert!(context.starts_with("The quick brown fox"));
        }
        other => panic!("{other:?}"),
    }
    // Each question's line is where its object opens.
    let lines: Vec<usize> = records.iter().map(|r| r.line).collect();
    assert_eq!(lines, [10, 15, 30]);
}

#[test]
fn squad_and_json_errors_name_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    // A question without "question".
    let broken = SQUAD.replace("\"question\": \"Over what?\",", "");
    let path = write(dir.path(), "broken.json", &broken);
    let err = read_text_dataset(&path).unwrap_err().to_string();
    // serde stops at the end of the object missing the field.
    assert!(err.contains("broken.json:19:"), "{err}");
    assert!(err.contains("question"), "{err}");
    // A syntax error on line 3.
    let path = write(
        dir.path(),
        "syntax.json",
        "[\n{\"text\": \"a\"},\n{\"text\": }\n]",
    );
    let err = read_text_dataset(&path).unwrap_err().to_string();
    assert!(err.contains("syntax.json:3:"), "{err}");
    // A list of prompts with a bad element on line 4.
    let path = write(
        dir.path(),
        "list.json",
        "[\n  {\"text\": \"a\"},\n  {\"prompt\": \"b\"},\n  {\"other\": 1}\n]",
    );
    let err = read_text_dataset(&path).unwrap_err().to_string();
    assert!(
        err.contains("list.json:4:") && err.contains("no text"),
        "{err}"
    );
    // A single object that is neither.
    let path = write(dir.path(), "object.json", "{\"text\": \"a\"}");
    let err = read_text_dataset(&path).unwrap_err().to_string();
    assert!(
        err.contains("object.json:1:") && err.contains(".jsonl"),
        "{err}"
    );
}

#[test]
fn a_json_list_of_prompts_reads_like_jsonl() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "list.json",
        "[\n  {\"text\": \"the fox\"},\n  {\"prompt\": \"the dog\", \"reference\": \"barks\"}\n]",
    );
    let records = read_text_dataset(&path).unwrap();
    assert_eq!(records.len(), 2);
    assert_eq!(records[1].references, vec!["barks"]);
    assert_eq!(records[1].line, 3);
}

#[test]
fn tokenizer_round_trips_and_frames_and_truncates() {
    let dir = tempfile::tempdir().unwrap();
    let mut tok = tokenizer(dir.path());
    assert_eq!(tok.vocab_size(), 15);
    assert_eq!(tok.token_id("[SEP]"), Some(2));
    let ids = tok.encode("The quick brown fox").unwrap();
    assert_eq!(ids, [1, 3, 4, 5, 6, 2]);
    assert_eq!(tok.decode(&ids).unwrap(), "the quick brown fox");
    let pair = tok.encode_pair("who jumped ?", "the fox").unwrap();
    assert_eq!(pair, [1, 11, 12, 13, 2, 3, 6, 2]);
    assert_eq!(
        tok.encode("the zebra").unwrap(),
        [1, 3, 0, 2],
        "unknown words map to [UNK]"
    );
    tok.set_max_tokens(Some(4), Cut::End).unwrap();
    assert_eq!(
        tok.encode("the quick brown fox jumps").unwrap(),
        [1, 3, 4, 2]
    );
    tok.set_max_tokens(Some(4), Cut::Start).unwrap();
    assert_eq!(
        tok.encode("the quick brown fox jumps").unwrap(),
        [1, 6, 7, 2],
        "a prompt keeps its end"
    );
}

#[test]
fn tokenizer_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.json");
    let err = TextTokenizer::from_file(&missing).unwrap_err().to_string();
    assert!(
        err.contains("nope.json") && err.contains("no such file"),
        "{err}"
    );
    let corrupt = write(
        dir.path(),
        "corrupt.json",
        "{\"model\": {\"type\": \"Nope\"}}",
    );
    let err = TextTokenizer::from_file(&corrupt).unwrap_err().to_string();
    assert!(
        err.contains("corrupt.json") && err.contains("not a valid tokenizer.json"),
        "{err}"
    );
    let truncated = write(dir.path(), "truncated.json", &TOKENIZER_JSON[..300]);
    let err = TextTokenizer::from_file(&truncated)
        .unwrap_err()
        .to_string();
    assert!(err.contains("truncated.json"), "{err}");
}

#[test]
fn text_library_tokenizes_at_build_and_serves_loaded_samples() {
    let dir = tempfile::tempdir().unwrap();
    let mut tok = tokenizer(dir.path());
    tok.set_max_tokens(Some(6), Cut::End).unwrap();
    let path = write(
        dir.path(),
        "data.jsonl",
        "{\"text\": \"the fox\"}\n{\"question\": \"who jumped ?\", \"context\": \"the quick brown fox\"}\n",
    );
    let records = read_text_dataset(&path).unwrap();
    let enc = TextQsl::from_records(&path, &records, &tok, Framing::Encoder, 10).unwrap();
    assert_eq!(enc.total_sample_count(), 2);
    assert_eq!(
        enc.performance_sample_count(),
        2,
        "capped at the data set's size"
    );
    assert_eq!(enc.max_tokens(), 6, "the pair is cut to --seq-len");
    assert!(enc.max_token_id().unwrap() < 15);
    assert!(matches!(
        enc.batch(&[0]),
        Err(SampleError::NotLoaded { index: 0 })
    ));
    enc.load_samples_to_ram(&[0, 1]).unwrap();
    let batch = enc.batch(&[1, 0]).unwrap();
    assert_eq!(&batch[1][..], [1, 3, 6, 2]);
    assert_eq!(batch[0][0], 1, "[CLS] first");
    enc.unload_samples_from_ram(&[0]);
    assert!(enc.batch(&[0]).is_err());
    assert!(enc
        .load_samples_to_ram(&[2])
        .unwrap_err()
        .to_string()
        .contains("outside"));
    // A decoder sees the question as one prompt, not a pair.
    let dec = TextQsl::from_records(&path, &records, &tok, Framing::Decoder, 1).unwrap();
    dec.load_samples_to_ram(&[1]).unwrap();
    let prompt = dec.batch(&[1]).unwrap();
    assert_eq!(prompt[0].len(), 6);
    assert_eq!(dec.performance_sample_count(), 1);
}

#[test]
fn synthetic_tokens_are_deterministic_and_inside_the_vocabulary() {
    let a = synthetic_tokens(7, 3, 64, 1000);
    assert_eq!(a, synthetic_tokens(7, 3, 64, 1000));
    assert_ne!(a, synthetic_tokens(7, 4, 64, 1000));
    assert_ne!(a, synthetic_tokens(8, 3, 64, 1000));
    assert_eq!(a.len(), 64);
    assert!(a.iter().all(|&t| t < 1000));
    let qsl = TextQsl::synthetic(20, 8, 7, 16, 50);
    assert_eq!(qsl.total_sample_count(), 20);
    assert_eq!(qsl.performance_sample_count(), 8);
    assert_eq!(qsl.max_tokens(), 16);
    assert!(qsl.max_token_id().unwrap() < 50);
    assert!(qsl.describe().contains("synthetic"));
    qsl.load_samples_to_ram(&[19]).unwrap();
    assert_eq!(
        &qsl.batch(&[19]).unwrap()[0][..],
        synthetic_tokens(7, 19, 16, 50)
    );
}

/// GPT-2's byte-to-character table: printable bytes stand for themselves,
/// the others are shifted past 255 (`bytes_to_unicode` in GPT-2's encoder).
fn gpt2_byte_chars() -> Vec<char> {
    let printable = |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || b >= 174;
    let mut shifted = 0;
    (0u32..256)
        .map(|b| {
            if printable(b) {
                char::from_u32(b).unwrap()
            } else {
                shifted += 1;
                char::from_u32(255 + shifted).unwrap()
            }
        })
        .collect()
}

/// A byte-level BPE tokenizer in GPT-2's layout: 256 byte tokens, a few
/// merges, `<|endoftext|>`. Its pre-tokenizer is GPT-2's regex, which needs
/// look-ahead (the fancy-regex back end).
fn byte_level_tokenizer_json() -> String {
    let chars = gpt2_byte_chars();
    let mut vocab = serde_json::Map::new();
    for (id, c) in chars.iter().enumerate() {
        vocab.insert(c.to_string(), id.into());
    }
    let merges = [("Ġ", "t"), ("h", "e"), ("Ġt", "he")];
    for (i, (a, b)) in merges.iter().enumerate() {
        vocab.insert(format!("{a}{b}"), (256 + i).into());
    }
    let eos = 256 + merges.len();
    vocab.insert("<|endoftext|>".into(), eos.into());
    let byte_level = serde_json::json!({
        "type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true
    });
    serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [{"id": eos, "content": "<|endoftext|>", "single_word": false,
            "lstrip": false, "rstrip": false, "normalized": true, "special": true}],
        "normalizer": null,
        "pre_tokenizer": byte_level,
        "post_processor": byte_level,
        "decoder": byte_level,
        "model": {
            "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": "",
            "end_of_word_suffix": "", "fuse_unk": false, "byte_fallback": false,
            "vocab": vocab,
            "merges": merges.iter().map(|(a, b)| format!("{a} {b}")).collect::<Vec<_>>()
        }
    })
    .to_string()
}

#[test]
fn byte_level_bpe_round_trips_any_text_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "gpt2-tokenizer.json",
        &byte_level_tokenizer_json(),
    );
    let tok = TextTokenizer::from_file(&path).unwrap();
    assert_eq!(tok.vocab_size(), 260);
    assert_eq!(tok.token_id("<|endoftext|>"), Some(259));
    let ids = tok.encode("in the end").unwrap();
    assert!(ids.contains(&258), "the merges apply: {ids:?}");
    for text in [
        "in the end",
        "Hello,  world!\n\tit's 2024 — naïve café, 東京 🚀",
        "trailing spaces   ",
    ] {
        let ids = tok.encode(text).unwrap();
        assert!(ids.iter().all(|&id| id < 260));
        assert_eq!(tok.decode(&ids).unwrap(), text, "{ids:?}");
    }
}
