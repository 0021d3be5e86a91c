//! Progress bars on stderr, with rate and ETA; hidden with `--quiet` or when
//! stderr is not a terminal.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub fn bar(len: u64, unit: &str, quiet: bool) -> ProgressBar {
    let target = if quiet {
        ProgressDrawTarget::hidden()
    } else {
        ProgressDrawTarget::stderr()
    };
    let bar = ProgressBar::with_draw_target(Some(len), target);
    let template = format!(
        "{{spinner}} {{prefix}} [{{elapsed_precise}}] {{bar:30}} {{pos}}/{{len}} {unit} ({{per_sec}}, ETA {{eta}}) {{msg}}"
    );
    bar.set_style(
        ProgressStyle::with_template(&template)
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar
}

/// A bar per phase of a long job (the library reports phases and counts).
pub struct Bars {
    quiet: bool,
    /// Printed before each phase's label, e.g. the task.
    context: String,
    current: Option<ProgressBar>,
}

impl Bars {
    pub fn new(quiet: bool) -> Self {
        Self {
            quiet,
            context: String::new(),
            current: None,
        }
    }
}

impl reasonembed_data::Progress for Bars {
    fn start(&mut self, label: &str, total: usize) {
        let bar = bar(total as u64, "", self.quiet);
        bar.set_prefix(if self.context.is_empty() {
            label.to_string()
        } else {
            format!("{} {label}", self.context)
        });
        self.current = Some(bar);
    }

    fn update(&mut self, done: usize) {
        if let Some(bar) = &self.current {
            bar.set_position(done as u64);
        }
    }

    fn message(&mut self, message: &str) {
        if let Some(bar) = &self.current {
            bar.set_message(message.to_string());
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.current.take() {
            bar.finish_and_clear();
        }
    }

    fn context(&mut self, context: &str) {
        self.context = context.to_string();
    }
}
