//! Chat templates: the Jinja template a model ships (`tokenizer.chat_template`
//! in GGUF metadata), rendered with minijinja and Python-compatible string
//! methods, or ChatML when the model ships none.

use minijinja::{Environment, ErrorKind, context};

use super::Message;

pub struct ChatTemplate {
    env: Environment<'static>,
    bos: String,
    eos: String,
}

/// ChatML, the format of SmolLM2 and Qwen; used when a model has no template.
pub const CHATML: &str = "{% for message in messages %}<|im_start|>{{ message.role }}\n{{ message.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

impl ChatTemplate {
    pub fn new(source: Option<&str>, bos: &str, eos: &str) -> Result<Self, String> {
        let mut env = Environment::new();
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |message: String| -> Result<String, minijinja::Error> {
                Err(minijinja::Error::new(ErrorKind::InvalidOperation, message))
            },
        );
        env.add_template_owned("chat", source.unwrap_or(CHATML).to_string())
            .map_err(|e| format!("the chat template does not parse: {e}"))?;
        Ok(Self {
            env,
            bos: bos.into(),
            eos: eos.into(),
        })
    }

    /// The prompt text for `messages`, ending where the assistant's answer begins.
    pub fn render(&self, messages: &[Message]) -> Result<String, String> {
        let template = self.env.get_template("chat").map_err(|e| e.to_string())?;
        template
            .render(context! {
                messages => messages,
                add_generation_prompt => true,
                bos_token => self.bos,
                eos_token => self.eos,
            })
            .map_err(|e| format!("cannot apply the chat template: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chatml_fallback_ends_at_the_assistant_turn() {
        let t = ChatTemplate::new(None, "", "<|im_end|>").unwrap();
        let text = t.render(&[Message::system("S"), Message::user("Hi")]).unwrap();
        assert_eq!(
            text,
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn python_string_methods_and_raise_exception_work() {
        let source = "{% for m in messages %}{% if m.role not in ['user'] %}{{ raise_exception('only user') }}{% endif %}{{ bos_token }}{{ m.content.strip() }}{% endfor %}";
        let t = ChatTemplate::new(Some(source), "<s>", "</s>").unwrap();
        assert_eq!(t.render(&[Message::user("  x ")]).unwrap(), "<s>x");
        let error = t.render(&[Message::system("x")]).unwrap_err();
        assert!(error.contains("only user"), "{error}");
    }
}
