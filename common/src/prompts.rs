//! Prompt templates shipped with the code (`common/prompts/{name}.{language}.jinja`), rendered
//! with minijinja without HTML escaping. A language without its own file uses English.

use minijinja::Environment;
use serde::Serialize;

const TEMPLATES: &[(&str, &str)] = &[
    ("get_reply_system.en", include_str!("../prompts/get_reply_system.en.jinja")),
    ("get_reply_summarize.en", include_str!("../prompts/get_reply_summarize.en.jinja")),
    ("get_reply_brainstorm.en", include_str!("../prompts/get_reply_brainstorm.en.jinja")),
    ("generate_conversation_summary.en", include_str!("../prompts/generate_conversation_summary.en.jinja")),
    ("system_report.en", include_str!("../prompts/system_report.en.jinja")),
    ("default_whisper_prompt.en", include_str!("../prompts/default_whisper_prompt.en.jinja")),
];

#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    #[error("no prompt template {0}")]
    Missing(String),
    #[error("prompt template {name}: {source}")]
    Render { name: String, source: minijinja::Error },
}

fn environment() -> &'static Environment<'static> {
    static ENV: std::sync::OnceLock<Environment<'static>> = std::sync::OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        env.set_keep_trailing_newline(true);
        for (name, source) in TEMPLATES {
            env.add_template(name, source).expect("shipped templates parse");
        }
        env
    })
}

/// Renders `{name}.{language}`, falling back to `{name}.en`.
pub fn render<C: Serialize>(name: &str, language: &str, context: C) -> Result<String, PromptError> {
    let env = environment();
    let template = env
        .get_template(&format!("{name}.{language}"))
        .or_else(|_| env.get_template(&format!("{name}.en")))
        .map_err(|_| PromptError::Missing(format!("{name}.{language}")))?;
    template.render(context).map_err(|source| PromptError::Render { name: name.to_string(), source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use minijinja::context;

    #[test]
    fn renders_with_fallback_and_no_escaping() {
        let text = render("generate_conversation_summary", "nl", context! { quote_text_joined => "a <b> & c", language => "nl" }).unwrap();
        assert!(text.contains("a <b> & c"));
        assert!(text.contains("\"nl\""));
        assert!(matches!(render("nope", "en", context! {}), Err(PromptError::Missing(_))));
    }
}
