//! ReMixer's prompts: defaults for the twelve BRIGHT domains and a generic
//! domain for any other corpus (our wording of the structure, rules and rubric
//! the released scripts use, the ReasonEmbed paper's §3 and its released scripts), each overridable per domain
//! from a TOML file.
//!
//! Templates fill `{placeholders}`: `{domain}`, `{document}`, `{length}`,
//! `{level}`, `{query}`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

/// Query length targets; repeated entries weight the uniform draw (1:2:3:3:2:1).
pub const LENGTHS: &[&str] = &[
    "less than 100 words",
    "100 to 200 words",
    "100 to 200 words",
    "200 to 300 words",
    "200 to 300 words",
    "200 to 300 words",
    "300 to 400 words",
    "300 to 400 words",
    "300 to 400 words",
    "400 to 500 words",
    "400 to 500 words",
    "at least 500 words",
];

/// Education levels, weighted 1:2:2.
pub const LEVELS: &[&str] = &["high school", "college", "college", "phd", "phd"];

/// The full prompt set of one domain.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prompts {
    /// Stage 0: does `{document}` belong to `{domain}`? (yes/no)
    pub clean: String,
    /// Stage 1: write a query from `{document}`, `{length}` long, at `{level}`.
    pub generate: String,
    /// Stage 1b: the reasoning-augmented query for `{query}`.
    pub reason: String,
    /// Stage 3: grade `{document}` for `{query}` from 1 to 5 in `<score>` tags.
    pub annotate: String,
    /// The retrieval instruction written as each training record's `prompt`.
    pub instruction: String,
}

/// Per-domain overrides read from a prompts file: any subset of the fields.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptOverrides {
    pub clean: Option<String>,
    pub generate: Option<String>,
    pub reason: Option<String>,
    pub annotate: Option<String>,
    pub instruction: Option<String>,
}

/// Reads `[domain]` tables of overrides from a TOML file.
pub fn read_overrides(path: &Path) -> Result<BTreeMap<String, PromptOverrides>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// What differs between domains in the default prompts.
struct Flavour {
    /// The domain as named in the cleaning question.
    clean_domain: String,
    /// The generation task sentence.
    task: String,
    /// What the query is ("Biology post") and what it is called in the notes.
    query_type: String,
    item: &'static str,
    document_type: &'static str,
    /// When a document counts as relevant.
    relevance: String,
    instruction: String,
}

fn stackexchange(domain: &str, label: &str) -> Flavour {
    Flavour {
        clean_domain: label.into(),
        task: format!(
            "Write a {label} post of the kind asked on StackExchange, such that a domain expert could draft an answer to it by drawing on the key concepts or theories in the content below."
        ),
        query_type: format!("{label} post"),
        item: "post",
        document_type: "passage",
        relevance: format!(
            "A passage is relevant to a {label} post if the key concepts or theories it discusses would give a domain expert references for drafting an answer to the post."
        ),
        instruction: reasonembed_data::bright::reasonembed_instruction(domain, false).expect("a BRIGHT domain"),
    }
}

fn math(domain: &str, task: &str, document_type: &'static str, relevance: &str) -> Flavour {
    Flavour {
        clean_domain: "Math".into(),
        task: task.into(),
        query_type: "math problem".into(),
        item: "problem",
        document_type,
        relevance: relevance.into(),
        instruction: reasonembed_data::bright::reasonembed_instruction(domain, false).expect("a BRIGHT domain"),
    }
}

fn flavour(domain: &str) -> Flavour {
    match domain {
        "biology" => stackexchange(domain, "Biology"),
        "earth_science" => stackexchange(domain, "Earth Science"),
        "economics" => stackexchange(domain, "Economics"),
        "psychology" => stackexchange(domain, "Psychology"),
        "robotics" => stackexchange(domain, "Robotics"),
        "sustainable_living" => stackexchange(domain, "Sustainable Living"),
        "stackoverflow" => stackexchange(domain, "Coding"),
        "leetcode" => Flavour {
            clean_domain: "Coding".into(),
            task: "Read the solved LeetCode problem below (with its solution) and write a new LeetCode problem that the same algorithms or data structures help solve.".into(),
            query_type: "LeetCode problem".into(),
            item: "problem",
            document_type: "coding problem solution",
            relevance: "A coding problem solution is relevant to a LeetCode problem if the algorithms or data structures it uses offer useful insight for solving the problem.".into(),
            instruction: reasonembed_data::bright::reasonembed_instruction(domain, false).expect("a BRIGHT domain"),
        },
        "pony" => Flavour {
            clean_domain: "Coding".into(),
            task: "Read the Pony documentation passage below and write a Pony coding instruction that the syntax it describes helps implement.".into(),
            query_type: "Pony coding instruction".into(),
            item: "instruction",
            document_type: "Pony documentation passage",
            relevance: "A Pony documentation passage is relevant to a coding instruction if a beginner with no knowledge of Pony needs the syntax it describes to complete the instruction.".into(),
            instruction: reasonembed_data::bright::reasonembed_instruction(domain, false).expect("a BRIGHT domain"),
        },
        "aops" => math(
            domain,
            "Read the math problem below with its solution and write a new math problem that the same problem-solving skills help solve.",
            "math problem solution",
            "A math problem solution is relevant to a math problem if the theorems it uses offer useful insight for solving the problem.",
        ),
        "theoremqa_questions" => math(
            domain,
            "Read the math problem below with its solution and write a new math problem that the theorems used in the solution help solve.",
            "math problem solution",
            "A math problem solution is relevant to a math problem if the theorems it uses offer useful insight for solving the problem.",
        ),
        "theoremqa_theorems" => math(
            domain,
            "Read the math theorem below and write a math problem that the theorem helps solve.",
            "math-related passage",
            "A math-related passage is relevant to a math problem if the theorem it describes helps solve the problem.",
        ),
        _ => Flavour {
            clean_domain: "{domain}".into(),
            task: "Write a {domain} question of the kind an expert forum receives, such that a domain expert could draft an answer to it by drawing on the key concepts or findings in the content below.".into(),
            query_type: "{domain} question".into(),
            item: "question",
            document_type: "passage",
            relevance: "A passage is relevant to a {domain} question if the concepts, findings or methods it discusses would give a domain expert references for drafting an answer to the question.".into(),
            instruction: "Given a {domain} question, retrieve relevant passages that help answer the question.".into(),
        },
    }
}

/// BRIGHT's reasoning prompt (`reason.py`), our default for stage 1b.
pub const REASON: &str = "{query}\n\nInstructions:\n1. Identify the essential problem.\n2. Think step by step to reason and describe what information could be relevant and helpful to address the questions in detail.\n3. Draft an answer with as many thoughts as you have.";

impl Prompts {
    /// The defaults of `domain` (a BRIGHT domain, or generic named
    /// `display_name`), with `overrides` applied.
    pub fn for_domain(domain: &str, display_name: &str, overrides: Option<&PromptOverrides>) -> Self {
        let f = flavour(domain);
        let item = f.item;
        let clean = format!(
            "Does the following passage belong to the domain of {}? Answer with \"Yes\" or \"No\" only.\n\n[Begin of Content]\n{{document}}\n[End of Content]",
            f.clean_domain
        );
        let generate = format!(
            "{}\n\n[Begin of Content]\n{{document}}\n[End of Content]\n\nNotes:\n- Answer with the {item} only.\n- The {item} must be self-contained: it must never point back at the content above, so do not refer to it with words such as \"it\", \"this\", \"that\", \"the given\" or \"the provided\".\n- The {item} should be {{length}} long.\n- The {item} should be pitched at the {{level}} level.\n- Do not explain anything.\n\nYour {item}:",
            f.task
        );
        let annotate = format!(
            "{}\n\nBelow are a {} (the query) and a {} (the document). Judge how relevant the document is to the query in three steps:\n1. Query analysis: reason about what information would best help answer the query.\n2. Document analysis: discuss how far the document meets or misses those needs.\n3. Relevance annotation: justify a score, then give an integer score from 1 to 5 on this scale:\n   5 (Highly Relevant): fully responsive and comprehensive.\n   4 (Relevant): provides most of the needed information, with minor gaps.\n   3 (Moderately Relevant): partial, incomplete or vague help.\n   2 (Slightly Relevant): only tangentially related.\n   1 (Irrelevant): no useful relation.\n\nWrite the score strictly between <score> and </score>, for example <score>3</score>. Keep the whole answer under 512 words.\n\n[Begin of Query]\n{{query}}\n[End of Query]\n\n[Begin of Document]\n{{document}}\n[End of Document]",
            f.relevance, f.query_type, f.document_type
        );
        let with_name = |s: String| s.replace("{domain}", display_name);
        let mut prompts = Self {
            clean: with_name(clean),
            generate: with_name(generate),
            reason: REASON.into(),
            annotate: with_name(annotate),
            instruction: with_name(f.instruction),
        };
        if let Some(o) = overrides {
            let pick = |field: &Option<String>, default: &mut String| {
                if let Some(text) = field {
                    *default = text.replace("{domain}", display_name);
                }
            };
            pick(&o.clean, &mut prompts.clean);
            pick(&o.generate, &mut prompts.generate);
            pick(&o.reason, &mut prompts.reason);
            pick(&o.annotate, &mut prompts.annotate);
            pick(&o.instruction, &mut prompts.instruction);
        }
        prompts
    }
}

/// Fills `{name}` placeholders in one pass, so a value that itself contains
/// `{query}` (a document quoting code, say) is never expanded again.
pub fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let hit = after
            .find('}')
            .and_then(|end| values.iter().find(|(k, _)| *k == &after[..end]).map(|(_, v)| (end, v)));
        match hit {
            Some((end, value)) => {
                out.push_str(value);
                rest = &after[end + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_lists_have_the_published_weights() {
        let share = |list: &[&str], item: &str| list.iter().filter(|x| **x == item).count();
        let lengths: Vec<usize> = [
            "less than 100 words",
            "100 to 200 words",
            "200 to 300 words",
            "300 to 400 words",
            "400 to 500 words",
            "at least 500 words",
        ]
        .iter()
        .map(|l| share(LENGTHS, l))
        .collect();
        assert_eq!(lengths, [1, 2, 3, 3, 2, 1]);
        assert_eq!(LENGTHS.len(), 12);
        assert_eq!(["high school", "college", "phd"].map(|l| share(LEVELS, l)), [1, 2, 2]);
    }

    #[test]
    fn every_domain_has_complete_prompts() {
        // The twelve BRIGHT domains have their own defaults; any other name is generic.
        for domain in reasonembed_data::bright::TASKS.iter().chain(&["cranfield"]) {
            let p = Prompts::for_domain(domain, "Aerodynamics", None);
            assert!(
                p.generate.contains("{document}") && p.generate.contains("{length}") && p.generate.contains("{level}")
            );
            assert!(
                p.annotate.contains("{query}") && p.annotate.contains("{document}") && p.annotate.contains("<score>")
            );
            assert!(p.clean.contains("{document}") && p.reason.contains("{query}"));
            assert!(!p.generate.contains("{domain}") && !p.instruction.is_empty());
            assert!(p.generate.contains("\"the given\""), "the no-pronoun rule is stated");
        }
        assert!(
            Prompts::for_domain("cranfield", "Aerodynamics", None)
                .generate
                .contains("Aerodynamics question")
        );
        assert_eq!(
            Prompts::for_domain("biology", "x", None).instruction,
            "Given a Biology post, retrieve relevant passages that help answer the post."
        );
    }

    #[test]
    fn overrides_replace_single_prompts() {
        let o = PromptOverrides {
            annotate: Some("Rate {query} vs {document} for {domain}".into()),
            ..Default::default()
        };
        let p = Prompts::for_domain("other", "Law", Some(&o));
        assert_eq!(p.annotate, "Rate {query} vs {document} for Law");
        assert_eq!(p.generate, Prompts::for_domain("other", "Law", None).generate);
    }

    #[test]
    fn fill_expands_each_placeholder_once() {
        let text = fill(
            "Q: {query} D: {document} {unknown} {",
            &[("query", "{document}"), ("document", "d")],
        );
        assert_eq!(text, "Q: {document} D: d {unknown} {");
    }
}
