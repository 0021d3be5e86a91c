//! Query instructions for BRIGHT: the ReasonEmbed / FlagEmbedding set (the
//! default), BRIGHT's own per-model templates, none, or a file.

use std::collections::BTreeMap;
use std::path::Path;

use reasonembed_data::bright::reasonembed_instruction;
use reasonembed_models::Prompt;

/// How a task's queries are given to the embedder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryFormat {
    /// The query text with this prompt in front (the encode contract's prompt).
    Prompt(Prompt),
    /// A template with `{query}` where the query goes; the result gets no prompt.
    Template(String),
}

impl QueryFormat {
    /// The texts to embed and the prompt to embed them with.
    pub fn apply(&self, queries: Vec<String>) -> (Vec<String>, Prompt) {
        match self {
            Self::Prompt(prompt) => (queries, prompt.clone()),
            Self::Template(t) => (queries.iter().map(|q| t.replace("{query}", q)).collect(), Prompt::None),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum InstructionSet {
    /// FlagEmbedding's `prompts.py`, in `Instruct: {instruction}\nQuery: {query}`.
    ReasonEmbed,
    /// BRIGHT's `configs/{e5,sf,qwen,qwen2}` templates with the raw task key.
    Bright,
    /// BRIGHT's `configs/bge` templates.
    BrightBge,
    None,
    /// `task → instruction` from a JSON file; an instruction containing
    /// `{query}` is a template, any other is used in the ReasonEmbed format.
    Custom(BTreeMap<String, String>),
}

impl InstructionSet {
    /// `reasonembed`, `bright`, `bright-bge`, `none`, or a JSON file.
    pub fn parse(spec: &str) -> Result<Self, String> {
        match spec {
            "reasonembed" => Ok(Self::ReasonEmbed),
            "bright" => Ok(Self::Bright),
            "bright-bge" => Ok(Self::BrightBge),
            "none" => Ok(Self::None),
            path => {
                let text = std::fs::read_to_string(Path::new(path)).map_err(|e| {
                    format!("{path}: {e} (instruction sets: reasonembed, bright, bright-bge, none, or a JSON file)")
                })?;
                let map: BTreeMap<String, String> = serde_json::from_str(&text)
                    .map_err(|e| format!("{path}: expected a JSON object of task → instruction: {e}"))?;
                Ok(Self::Custom(map))
            }
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Self::ReasonEmbed => "reasonembed",
            Self::Bright => "bright",
            Self::BrightBge => "bright-bge",
            Self::None => "none",
            Self::Custom(_) => "file",
        }
    }

    /// How `task`'s queries are formatted.
    pub fn format(&self, task: &str, long: bool) -> Result<QueryFormat, String> {
        Ok(match self {
            Self::None => QueryFormat::Prompt(Prompt::None),
            Self::ReasonEmbed => QueryFormat::Prompt(Prompt::Instruction(reasonembed_instruction(task, long)?)),
            Self::Bright => QueryFormat::Prompt(Prompt::Text(bright_e5(task, long)?)),
            Self::BrightBge => QueryFormat::Prompt(Prompt::Text(bright_bge(task, long)?)),
            Self::Custom(map) => {
                let instruction = map
                    .get(task)
                    .ok_or(format!("the instruction file has no entry for task '{task}'"))?;
                if instruction.contains("{query}") {
                    QueryFormat::Template(instruction.clone())
                } else {
                    QueryFormat::Prompt(Prompt::Instruction(instruction.clone()))
                }
            }
        })
    }
}

fn unknown(task: &str) -> String {
    format!("no instruction for unknown task '{task}'")
}

/// BRIGHT's e5 / sf / qwen / qwen2 query templates (its `configs/<model>/<task>.json`).
fn bright_e5(task: &str, long: bool) -> Result<String, String> {
    let passages = if long { "documents" } else { "passages" };
    Ok(match task {
        "pony" => format!(
            "Instruct: Given a {task} question, retrieve relevant {passages} that help answer the question\nQuery: "
        ),
        "leetcode" => {
            "Instruct: Given a coding problem, retrieve relevant examples that help answer the problem\nQuery: ".into()
        }
        "aops" | "theoremqa_questions" => {
            "Instruct: Given a Math problem, retrieve relevant examples that help answer the problem\nQuery: ".into()
        }
        "theoremqa_theorems" => {
            "Instruct: Given a Math problem, retrieve relevant theorems that help answer the problem\nQuery: ".into()
        }
        t if reasonembed_data::bright::TASKS[..7].contains(&t) => {
            format!("Instruct: Given a {task} post, retrieve relevant {passages} that help answer the post\nQuery: ")
        }
        _ => return Err(unknown(task)),
    })
}

/// BRIGHT's bge query templates (its `configs/bge/<task>.json`).
fn bright_bge(task: &str, long: bool) -> Result<String, String> {
    let passages = if long { "documents" } else { "passages" };
    Ok(match task {
        "pony" => format!("Represent this Pony question for searching relevant {passages}: "),
        "leetcode" => "Represent this Coding problem for searching relevant examples: ".into(),
        "aops" | "theoremqa_questions" => "Represent this Math problem for searching relevant examples: ".into(),
        "theoremqa_theorems" => "Represent this Math problem for searching relevant theorems: ".into(),
        t if reasonembed_data::bright::TASKS[..7].contains(&t) => {
            format!("Represent this {task} post for searching relevant {passages}: ")
        }
        _ => return Err(unknown(task)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The text the embedder sees for `query`, as the encode contract builds it.
    fn text(set: &InstructionSet, task: &str, long: bool, query: &str) -> Result<String, String> {
        let (texts, prompt) = set.format(task, long)?.apply(vec![query.to_string()]);
        let prefix = match prompt {
            Prompt::None => String::new(),
            Prompt::Text(t) => t,
            Prompt::Instruction(i) => reasonembed_models::with_instruction(&i, ""),
            other => panic!("unexpected prompt {other:?}"),
        };
        Ok(format!("{prefix}{}", texts[0]))
    }

    #[test]
    fn reasonembed_set_matches_flagembedding() {
        assert_eq!(
            text(&InstructionSet::ReasonEmbed, "earth_science", false, "Why?").unwrap(),
            "Instruct: Given an Earth Science post, retrieve relevant passages that help answer the post.\nQuery: Why?"
        );
        assert_eq!(
            reasonembed_instruction("theoremqa_theorems", false).unwrap(),
            "Given a Math problem, retrieve relevant theorems that help answer the problem."
        );
        assert_eq!(
            reasonembed_instruction("pony", true).unwrap(),
            "Given a Pony question, retrieve relevant documents that help answer the question"
        );
        assert_eq!(
            reasonembed_instruction("biology", true).unwrap(),
            "Given a Biology post, retrieve relevant documents that help answer the post."
        );
    }

    #[test]
    fn bright_templates_use_the_raw_task_key() {
        assert_eq!(
            text(&InstructionSet::Bright, "earth_science", false, "q").unwrap(),
            "Instruct: Given a earth_science post, retrieve relevant passages that help answer the post\nQuery: q"
        );
        assert_eq!(
            text(&InstructionSet::BrightBge, "biology", false, "q").unwrap(),
            "Represent this biology post for searching relevant passages: q"
        );
        assert!(InstructionSet::Bright.format("cooking", false).is_err());
    }

    #[test]
    fn custom_sets_take_templates_or_instructions() {
        let map = BTreeMap::from([
            ("a".to_string(), "Find it".to_string()),
            ("b".to_string(), "<q>{query}</q>".to_string()),
        ]);
        let set = InstructionSet::Custom(map);
        assert_eq!(text(&set, "a", false, "x").unwrap(), "Instruct: Find it\nQuery: x");
        assert_eq!(text(&set, "b", false, "x").unwrap(), "<q>x</q>");
        assert!(set.format("c", false).is_err());
    }
}
