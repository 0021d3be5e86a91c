//! The embedded model's decoding loop, with an [`AnswerFormat`] enforced by
//! forcing the verdict rather than by a full grammar.
//!
//! Why this shape: a grammar over the whole answer would have to allow any
//! reasoning text anyway, so only the verdict needs constraining. The model
//! writes freely; if it closes a valid verdict itself, decoding stops there.
//! If it ends its turn, or reaches the room reserved for the verdict at the
//! end of `max_tokens`, the tail is forced: an open reasoning block is
//! closed, the opening literal (`<score>`) appended unless already open, the
//! next tokens restricted to those spelling a verdict word (all other logits
//! masked to −∞, then sampled as usual), and the closing literal appended.
//! A format whose verdict opens the answer (yes/no) enters the masked step
//! at once, after any reasoning block the model opens.

use candle_core::{Device, Tensor};
use candle_transformers::generation::LogitsProcessor;

use super::answer::AnswerFormat;
use super::{LlmError, open_reasoning};

/// A model that turns tokens into next-token logits.
pub(crate) trait Model {
    /// Runs `tokens` after those run so far; the logits (one per vocabulary
    /// entry) of the token after the last of them.
    fn feed(&mut self, tokens: &[u32]) -> candle_core::Result<Tensor>;
}

/// The tokenizer as the decoding loop needs it.
pub(crate) trait Vocabulary {
    fn tokens(&self, text: &str) -> Result<Vec<u32>, LlmError>;
    fn text(&self, tokens: &[u32]) -> Result<String, LlmError>;
    /// The text of every token, indexed by id.
    fn token_texts(&self) -> &[String];
}

/// One answer to decode.
pub(crate) struct Task<'a> {
    pub prompt: &'a [u32],
    /// Text already in the answer (part of the prompt): the constraint
    /// reads the answer as `prefill` followed by the decoded tokens.
    pub prefill: &'a str,
    /// At most this many answer tokens.
    pub budget: usize,
    /// Tokens that end the model's turn.
    pub stop: &'a [u32],
    pub format: Option<AnswerFormat>,
}

/// The answer's tokens, and how it ended.
#[derive(Debug, PartialEq)]
pub(crate) struct Decoded {
    pub tokens: Vec<u32>,
    /// The answer ended (by the model or with a verdict) rather than at the
    /// token budget.
    pub ended: bool,
    /// The constraint changed the answer: the verdict was appended, or the
    /// model's most likely token at a verdict step was not a verdict.
    pub forced: bool,
}

/// Why the free part of an answer stopped.
#[derive(Clone, Copy)]
enum FreeEnd {
    /// The model ended its answer, with a valid verdict if one was asked for.
    Ended,
    /// No verdict format, and the budget is spent.
    OutOfTokens,
    /// The verdict is due where the format puts it (yes/no: at the start).
    VerdictDue,
    /// The model ended, or reached the reserved room, without a verdict.
    VerdictMissing,
}

/// Tokens waiting to be run: a literal appended to the answer is run in one
/// step, and tokens never followed by a sampled one (the closing literal,
/// the last token) are never run at all.
struct Stream<'m, M> {
    model: &'m mut M,
    pending: Vec<u32>,
}

impl<M: Model> Stream<'_, M> {
    fn logits(&mut self) -> Result<Tensor, LlmError> {
        let logits = self.model.feed(&self.pending).map_err(generation)?;
        self.pending.clear();
        Ok(logits)
    }
}

fn generation(error: candle_core::Error) -> LlmError {
    LlmError::Permanent(format!("generation failed: {error}"))
}

/// Decodes one answer, enforcing `task.format` if it has one.
pub(crate) fn decode(
    model: &mut impl Model,
    vocab: &impl Vocabulary,
    sampler: &mut LogitsProcessor,
    task: &Task,
) -> Result<Decoded, LlmError> {
    let mut stream = Stream {
        model,
        pending: task.prompt.to_vec(),
    };
    let mut tokens = Vec::new();
    let reserve = match task.format {
        Some(format) => reserve(vocab, format)?,
        None => 0,
    };
    let free_end = free_text(&mut stream, vocab, sampler, task, reserve, &mut tokens)?;
    match (free_end, task.format) {
        (FreeEnd::Ended, _) => Ok(finished(tokens, false)),
        (FreeEnd::OutOfTokens, _) | (_, None) => Ok(cut(tokens)),
        (_, Some(format)) => {
            let forced = matches!(free_end, FreeEnd::VerdictMissing);
            verdict(&mut stream, vocab, sampler, task, format, tokens, forced)
        }
    }
}

/// Appends the verdict to `tokens`: the opening literal where one is
/// needed, a word sampled among the verdicts only, the closing literal. A
/// verdict that cannot fit the budget leaves the answer cut.
fn verdict<M: Model>(
    stream: &mut Stream<M>,
    vocab: &impl Vocabulary,
    sampler: &mut LogitsProcessor,
    task: &Task,
    format: AnswerFormat,
    mut tokens: Vec<u32>,
    mut forced: bool,
) -> Result<Decoded, LlmError> {
    let answer = answer_text(vocab, task.prefill, &tokens)?;
    let opening = vocab.tokens(&forced_opening(format, &answer))?;
    let closing = vocab.tokens(format.closing())?;
    if tokens.len() + opening.len() + 1 + closing.len() > task.budget {
        return Ok(cut(tokens));
    }
    tokens.extend(&opening);
    stream.pending.extend(&opening);
    let mut word = String::new();
    while !format.choices().contains(&word.as_str()) {
        if tokens.len() + closing.len() >= task.budget {
            return Ok(cut(tokens));
        }
        let allowed = verdict_tokens(vocab, format, &word);
        if allowed.is_empty() {
            return Err(LlmError::Permanent(format!(
                "no token of the vocabulary continues the verdict '{word}' ({format:?})"
            )));
        }
        let (next, own_choice) = sample_among(sampler, &stream.logits()?, &allowed)?;
        forced |= !own_choice;
        word.push_str(&vocab.token_texts()[next as usize]);
        tokens.push(next);
        stream.pending.push(next);
    }
    tokens.extend(closing);
    Ok(finished(tokens, forced))
}

fn finished(tokens: Vec<u32>, forced: bool) -> Decoded {
    Decoded {
        tokens,
        ended: true,
        forced,
    }
}

fn cut(tokens: Vec<u32>) -> Decoded {
    Decoded {
        tokens,
        ended: false,
        forced: false,
    }
}

/// Samples freely until the answer ends, the budget (less the room reserved
/// for a verdict) is spent, or the verdict is due.
fn free_text<M: Model>(
    stream: &mut Stream<M>,
    vocab: &impl Vocabulary,
    sampler: &mut LogitsProcessor,
    task: &Task,
    reserve: usize,
    tokens: &mut Vec<u32>,
) -> Result<FreeEnd, LlmError> {
    let room = task.budget.saturating_sub(reserve);
    loop {
        if let Some(format) = task.format
            && !format.reasons_first()
            && !open_reasoning(&answer_text(vocab, task.prefill, tokens)?)
        {
            return Ok(FreeEnd::VerdictDue);
        }
        if tokens.len() >= room {
            return Ok(match task.format {
                Some(_) => FreeEnd::VerdictMissing,
                None => FreeEnd::OutOfTokens,
            });
        }
        let next = sampler.sample(&stream.logits()?).map_err(generation)?;
        if task.stop.contains(&next) {
            return Ok(match task.format {
                Some(_) => FreeEnd::VerdictMissing,
                None => FreeEnd::Ended,
            });
        }
        tokens.push(next);
        stream.pending.push(next);
        if let Some(format) = task.format
            && format.reasons_first()
            && format.is_closed_by(&answer_text(vocab, task.prefill, tokens)?)
        {
            return Ok(FreeEnd::Ended);
        }
    }
}

fn answer_text(vocab: &impl Vocabulary, prefill: &str, tokens: &[u32]) -> Result<String, LlmError> {
    Ok(format!("{prefill}{}", vocab.text(tokens)?))
}

/// The most tokens a forced verdict can take: closing a reasoning block and
/// an open tag, the opening literal, the longest verdict word, the closing
/// literal.
fn reserve(vocab: &impl Vocabulary, format: AnswerFormat) -> Result<usize, LlmError> {
    let lead = format!("\n</think>\n{}\n{}", format.closing(), format.opening());
    let mut word = 0;
    for choice in format.choices() {
        word = word.max(vocab.tokens(choice)?.len());
    }
    Ok(vocab.tokens(&lead)?.len() + word + vocab.tokens(format.closing())?.len())
}

/// The text to append before the verdict word: closes a reasoning block
/// left open (its verdict would not count), closes a tag the model opened
/// but filled with something else (the parser reads the last tag), and
/// opens the tag unless the answer already ends in an empty open one.
fn forced_opening(format: AnswerFormat, answer: &str) -> String {
    let opening = format.opening();
    let lead = if open_reasoning(answer) {
        "\n</think>\n".to_string()
    } else if opening.is_empty() {
        String::new()
    } else {
        match open_tag(answer, opening, format.closing()) {
            Some(inside) if inside.trim().is_empty() => return String::new(),
            Some(_) => format!("{}\n", format.closing()),
            None if answer.is_empty() || answer.ends_with(char::is_whitespace) => String::new(),
            None => "\n".into(),
        }
    };
    lead + opening
}

/// The text after the answer's last `opening`, if no `closing` follows it.
fn open_tag<'t>(answer: &'t str, opening: &str, closing: &str) -> Option<&'t str> {
    let start = answer.rfind(opening)? + opening.len();
    let inside = &answer[start..];
    (!inside.contains(closing)).then_some(inside)
}

/// The tokens that continue `word` towards one of the format's verdicts.
fn verdict_tokens(vocab: &impl Vocabulary, format: AnswerFormat, word: &str) -> Vec<u32> {
    let choices = format.choices();
    vocab
        .token_texts()
        .iter()
        .enumerate()
        .filter(|(_, text)| !text.is_empty())
        .filter(|(_, text)| {
            let longer = format!("{word}{text}");
            choices.iter().any(|c| c.starts_with(&longer))
        })
        .map(|(id, _)| id as u32)
        .collect()
}

/// Samples among `allowed` only (every other logit masked to −∞), and says
/// whether the model's most likely token was allowed anyway.
fn sample_among(sampler: &mut LogitsProcessor, logits: &Tensor, allowed: &[u32]) -> Result<(u32, bool), LlmError> {
    let logits: Vec<f32> = logits
        .to_dtype(candle_core::DType::F32)
        .and_then(|l| l.to_vec1())
        .map_err(generation)?;
    let favourite = logits
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(id, _)| id as u32);
    let mut masked = vec![f32::NEG_INFINITY; logits.len()];
    for &id in allowed {
        masked[id as usize] = logits[id as usize];
    }
    let masked = Tensor::from_vec(masked, logits.len(), &Device::Cpu).map_err(generation)?;
    let next = sampler.sample(&masked).map_err(generation)?;
    Ok((next, favourite.is_some_and(|f| allowed.contains(&f))))
}

#[cfg(test)]
mod tests {
    use candle_transformers::generation::Sampling;

    use super::*;

    /// A fake model over a character-level fake vocabulary: it "prefers"
    /// the tokens of a script, one per step, whatever it is fed, and
    /// records what it was fed.
    struct FakeLogits {
        vocab: FakeVocab,
        script: Vec<u32>,
        step: usize,
        fed: Vec<u32>,
    }

    impl FakeLogits {
        fn new(script: &[&str]) -> Self {
            let vocab = FakeVocab::new();
            let script = script.iter().map(|t| vocab.id(t)).collect();
            Self {
                vocab,
                script,
                step: 0,
                fed: Vec::new(),
            }
        }
    }

    impl Model for FakeLogits {
        fn feed(&mut self, tokens: &[u32]) -> candle_core::Result<Tensor> {
            self.fed.extend(tokens);
            let mut logits = vec![0.0f32; self.vocab.texts.len()];
            // Past its script the fake keeps saying "lorem".
            let favourite = self.script.get(self.step).copied().unwrap_or(self.vocab.id("lorem"));
            logits[favourite as usize] = 10.0;
            // A lesser preference for "4" shows which digit a mask keeps.
            logits[self.vocab.id("4") as usize] = 5.0;
            self.step += 1;
            Tensor::from_vec(logits, self.vocab.texts.len(), &Device::Cpu)
        }
    }

    /// Whole-word tokens: the literals and verdicts the loop appends, and
    /// a few words; text is tokenised greedily, longest token first.
    struct FakeVocab {
        texts: Vec<String>,
    }

    const EOS: &str = "<eos>";

    impl FakeVocab {
        fn new() -> Self {
            let words = [
                EOS, "<score>", "</score>", "<think>", "</think>", "\n", " ", "1", "2", "3", "4", "5", "6", "Y", "es",
                "Yes", "No", "lorem", "<", "score", ">", "x",
            ];
            Self {
                texts: words.iter().map(|w| w.to_string()).collect(),
            }
        }

        fn id(&self, text: &str) -> u32 {
            self.texts.iter().position(|t| t == text).expect("a fake token") as u32
        }
    }

    impl Vocabulary for FakeVocab {
        fn tokens(&self, mut text: &str) -> Result<Vec<u32>, LlmError> {
            let mut ids = Vec::new();
            while !text.is_empty() {
                let (id, token) = self
                    .texts
                    .iter()
                    .enumerate()
                    .filter(|(_, t)| text.starts_with(t.as_str()))
                    .max_by_key(|(_, t)| t.len())
                    .ok_or_else(|| LlmError::Permanent(format!("no fake token for {text:?}")))?;
                ids.push(id as u32);
                text = &text[token.len()..];
            }
            Ok(ids)
        }

        fn text(&self, tokens: &[u32]) -> Result<String, LlmError> {
            Ok(tokens.iter().map(|&t| self.texts[t as usize].as_str()).collect())
        }

        fn token_texts(&self) -> &[String] {
            &self.texts
        }
    }

    struct Outcome {
        text: String,
        ended: bool,
        forced: bool,
        fed: Vec<u32>,
    }

    fn run(script: &[&str], prefill: &str, budget: usize, format: Option<AnswerFormat>) -> Outcome {
        let mut model = FakeLogits::new(script);
        let vocab = FakeVocab::new();
        let stop = [vocab.id(EOS)];
        let prompt = vocab.tokens("x").unwrap();
        let task = Task {
            prompt: &prompt,
            prefill,
            budget,
            stop: &stop,
            format,
        };
        let mut sampler = LogitsProcessor::from_sampling(1, Sampling::ArgMax);
        let decoded = decode(&mut model, &vocab, &mut sampler, &task).unwrap();
        Outcome {
            text: vocab.text(&decoded.tokens).unwrap(),
            ended: decoded.ended,
            forced: decoded.forced,
            fed: model.fed,
        }
    }

    const SCORE: Option<AnswerFormat> = Some(AnswerFormat::Score1to5);
    const YES_NO: Option<AnswerFormat> = Some(AnswerFormat::YesNo);

    #[test]
    fn unconstrained_decoding_stops_at_the_stop_token_or_the_budget() {
        let o = run(&["lorem", " ", "3", EOS], "", 20, None);
        assert_eq!((o.text.as_str(), o.ended, o.forced), ("lorem 3", true, false));
        // The prompt and each sampled token are run once; the stop token never.
        assert_eq!(o.fed.len(), 1 + 3);
        let o = run(&[], "", 4, None);
        assert_eq!((o.text.as_str(), o.ended), ("loremloremloremlorem", false));
        // The last token is never run: nothing samples after it.
        assert_eq!(o.fed.len(), 1 + 3);
    }

    #[test]
    fn a_verdict_the_model_closes_itself_ends_the_answer_unforced() {
        let o = run(&["lorem", "<score>", "2", "</score>", "lorem"], "", 20, SCORE);
        assert_eq!(
            (o.text.as_str(), o.ended, o.forced),
            ("lorem<score>2</score>", true, false)
        );
        // A prefilled tag counts as the answer's.
        let o = run(&["3", "</score>"], "<score>", 20, SCORE);
        assert_eq!((o.text.as_str(), o.ended, o.forced), ("3</score>", true, false));
    }

    #[test]
    fn an_answer_ended_without_a_verdict_gets_one_forced() {
        let o = run(&["lorem", EOS], "", 20, SCORE);
        // The mask leaves the digits, of which the fake prefers 4.
        assert_eq!(
            (o.text.as_str(), o.ended, o.forced),
            ("lorem\n<score>4</score>", true, true)
        );
        assert_eq!(crate::stages::annotate::parse_score(&o.text), 4);
    }

    #[test]
    fn the_verdict_is_forced_within_the_budget() {
        let o = run(&[], "", 12, SCORE);
        assert!(o.ended && o.forced, "{:?}", o.text);
        assert!(o.text.ends_with("\n<score>4</score>"), "{:?}", o.text);
        let tokens = FakeVocab::new().tokens(&o.text).unwrap();
        assert!(tokens.len() <= 12, "{tokens:?}");
    }

    #[test]
    fn an_invalid_verdict_is_never_kept() {
        // "6" is outside the scale: the tag is closed and a valid one follows.
        let o = run(&["<score>", "6", EOS], "", 20, SCORE);
        assert_eq!(o.text, "<score>6</score>\n<score>4</score>");
        assert_eq!(crate::stages::annotate::parse_score(&o.text), 4);
        // An empty open tag is filled, not repeated.
        let o = run(&["<score>", " ", EOS], "", 20, SCORE);
        assert_eq!(o.text, "<score> 4</score>");
    }

    #[test]
    fn an_open_reasoning_block_is_closed_before_a_forced_verdict() {
        let o = run(&["<think>", "lorem", EOS], "", 20, SCORE);
        assert_eq!(o.text, "<think>lorem\n</think>\n<score>4</score>");
        assert_eq!(crate::stages::annotate::parse_score(&o.text), 4);
        // A score quoted while thinking does not end the answer.
        let o = run(&["<think>", "<score>", "2", "</score>", EOS], "", 20, SCORE);
        assert!(o.text.ends_with("</think>\n<score>4</score>"), "{:?}", o.text);
    }

    #[test]
    fn a_yes_no_verdict_opens_the_answer_and_ends_it() {
        // The model's own choice, spelled in one token or two.
        let o = run(&["Yes", "lorem"], "", 8, YES_NO);
        assert_eq!((o.text.as_str(), o.ended, o.forced), ("Yes", true, false));
        let o = run(&["Y", "es", "lorem"], "", 8, YES_NO);
        assert_eq!((o.text.as_str(), o.ended, o.forced), ("Yes", true, false));
        // A model that would say something else is masked, and counted.
        let o = run(&["lorem"], "", 8, YES_NO);
        assert!(
            o.ended && o.forced && ["Yes", "No"].contains(&o.text.as_str()),
            "{:?}",
            o.text
        );
        // It may think first; the verdict follows its reasoning.
        let o = run(&["</think>", "No"], "<think>", 8, YES_NO);
        assert_eq!((o.text.as_str(), o.forced), ("</think>No", false));
        // Thinking past its room, it has the block closed and a verdict forced.
        let o = run(&[], "<think>", 6, YES_NO);
        assert!(o.ended && o.forced, "{:?}", o.text);
        assert!(o.text.starts_with("lorem\n</think>\n"), "{:?}", o.text);
        assert!(crate::stages::clean::parse_yes_no(&format!("<think>{}", o.text)).is_some());
    }

    #[test]
    fn a_verdict_that_cannot_fit_is_a_cut_answer() {
        let o = run(&[], "", 1, SCORE);
        assert!(!o.ended && !o.forced, "{:?}", o.text);
    }
}
