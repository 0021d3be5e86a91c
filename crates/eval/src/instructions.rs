//! Query instructions for BRIGHT: the ReasonEmbed / FlagEmbedding set (the
//! default), BRIGHT's own per-model templates, none, or a file.

use std::collections::BTreeMap;
use std::path::Path;

use reasonembed_models::with_instruction;

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

    /// The text to embed for `query` of `task`.
    pub fn apply(&self, task: &str, long: bool, query: &str) -> Result<String, String> {
        Ok(match self {
            Self::None => query.to_string(),
            Self::ReasonEmbed => with_instruction(&reasonembed(task, long)?, query),
            Self::Bright => format!("{}{query}", bright_e5(task, long)?),
            Self::BrightBge => format!("{}{query}", bright_bge(task, long)?),
            Self::Custom(map) => {
                let instruction = map
                    .get(task)
                    .ok_or(format!("the instruction file has no entry for task '{task}'"))?;
                if instruction.contains("{query}") {
                    instruction.replace("{query}", query)
                } else {
                    with_instruction(instruction, query)
                }
            }
        })
    }
}

fn unknown(task: &str) -> String {
    format!("no instruction for unknown task '{task}'")
}

/// FlagEmbedding's BRIGHT instructions (bright.md §6.2).
pub fn reasonembed(task: &str, long: bool) -> Result<String, String> {
    let (subject, what, target) = match task {
        "biology" => ("a Biology post", "passages", "post"),
        "earth_science" => ("an Earth Science post", "passages", "post"),
        "economics" => ("an Economics post", "passages", "post"),
        "psychology" => ("a Psychology post", "passages", "post"),
        "robotics" => ("a Robotics post", "passages", "post"),
        "stackoverflow" => ("a Stack Overflow post", "passages", "post"),
        "sustainable_living" => ("a Sustainable Living post", "passages", "post"),
        "pony" => ("a Pony question", "passages", "question"),
        "leetcode" => ("a Coding problem", "examples", "problem"),
        "aops" | "theoremqa_questions" => ("a Math problem", "examples", "problem"),
        "theoremqa_theorems" => ("a Math problem", "theorems", "problem"),
        _ => return Err(unknown(task)),
    };
    let what = if long && what == "passages" { "documents" } else { what };
    // The long pony instruction is published without its final period.
    let end = if long && task == "pony" { "" } else { "." };
    Ok(format!(
        "Given {subject}, retrieve relevant {what} that help answer the {target}{end}"
    ))
}

/// BRIGHT's e5 / sf / qwen / qwen2 query templates (bright.md §6.1).
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

/// BRIGHT's bge query templates (bright.md §6.1).
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

    #[test]
    fn reasonembed_set_matches_flagembedding() {
        let set = InstructionSet::ReasonEmbed;
        assert_eq!(
            set.apply("earth_science", false, "Why?").unwrap(),
            "Instruct: Given an Earth Science post, retrieve relevant passages that help answer the post.\nQuery: Why?"
        );
        assert_eq!(
            reasonembed("theoremqa_theorems", false).unwrap(),
            "Given a Math problem, retrieve relevant theorems that help answer the problem."
        );
        assert_eq!(
            reasonembed("pony", true).unwrap(),
            "Given a Pony question, retrieve relevant documents that help answer the question"
        );
        assert_eq!(
            reasonembed("biology", true).unwrap(),
            "Given a Biology post, retrieve relevant documents that help answer the post."
        );
    }

    #[test]
    fn bright_templates_use_the_raw_task_key() {
        assert_eq!(
            InstructionSet::Bright.apply("earth_science", false, "q").unwrap(),
            "Instruct: Given a earth_science post, retrieve relevant passages that help answer the post\nQuery: q"
        );
        assert_eq!(
            InstructionSet::BrightBge.apply("biology", false, "q").unwrap(),
            "Represent this biology post for searching relevant passages: q"
        );
        assert!(InstructionSet::Bright.apply("cooking", false, "q").is_err());
    }

    #[test]
    fn custom_sets_take_templates_or_instructions() {
        let map = BTreeMap::from([
            ("a".to_string(), "Find it".to_string()),
            ("b".to_string(), "<q>{query}</q>".to_string()),
        ]);
        let set = InstructionSet::Custom(map);
        assert_eq!(set.apply("a", false, "x").unwrap(), "Instruct: Find it\nQuery: x");
        assert_eq!(set.apply("b", false, "x").unwrap(), "<q>x</q>");
        assert!(set.apply("c", false, "x").is_err());
    }
}
