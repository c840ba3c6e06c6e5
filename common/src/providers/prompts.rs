//! Prompt templates shipped with the code (`common/prompts/{name}.{language}.jinja`), rendered
//! with minijinja without HTML escaping (processing.md §10). The summary, get-reply, report, chat
//! and library-view templates exist in en, nl, de, fr and es; any other language (`multi`
//! included) uses the English file, which is told the language to answer in.

use minijinja::Environment;
use serde::Serialize;

const TEMPLATES: &[(&str, &str)] = &[
    ("get_reply_system.en", include_str!("../../prompts/get_reply_system.en.jinja")),
    ("get_reply_system.nl", include_str!("../../prompts/get_reply_system.nl.jinja")),
    ("get_reply_system.de", include_str!("../../prompts/get_reply_system.de.jinja")),
    ("get_reply_system.fr", include_str!("../../prompts/get_reply_system.fr.jinja")),
    ("get_reply_system.es", include_str!("../../prompts/get_reply_system.es.jinja")),
    ("get_reply_summarize.en", include_str!("../../prompts/get_reply_summarize.en.jinja")),
    ("get_reply_summarize.nl", include_str!("../../prompts/get_reply_summarize.nl.jinja")),
    ("get_reply_summarize.de", include_str!("../../prompts/get_reply_summarize.de.jinja")),
    ("get_reply_summarize.fr", include_str!("../../prompts/get_reply_summarize.fr.jinja")),
    ("get_reply_summarize.es", include_str!("../../prompts/get_reply_summarize.es.jinja")),
    ("get_reply_brainstorm.en", include_str!("../../prompts/get_reply_brainstorm.en.jinja")),
    ("get_reply_brainstorm.nl", include_str!("../../prompts/get_reply_brainstorm.nl.jinja")),
    ("get_reply_brainstorm.de", include_str!("../../prompts/get_reply_brainstorm.de.jinja")),
    ("get_reply_brainstorm.fr", include_str!("../../prompts/get_reply_brainstorm.fr.jinja")),
    ("get_reply_brainstorm.es", include_str!("../../prompts/get_reply_brainstorm.es.jinja")),
    ("generate_conversation_summary.en", include_str!("../../prompts/generate_conversation_summary.en.jinja")),
    ("generate_conversation_summary.nl", include_str!("../../prompts/generate_conversation_summary.nl.jinja")),
    ("generate_conversation_summary.de", include_str!("../../prompts/generate_conversation_summary.de.jinja")),
    ("generate_conversation_summary.fr", include_str!("../../prompts/generate_conversation_summary.fr.jinja")),
    ("generate_conversation_summary.es", include_str!("../../prompts/generate_conversation_summary.es.jinja")),
    ("system_report.en", include_str!("../../prompts/system_report.en.jinja")),
    ("system_report.nl", include_str!("../../prompts/system_report.nl.jinja")),
    ("system_report.de", include_str!("../../prompts/system_report.de.jinja")),
    ("system_report.fr", include_str!("../../prompts/system_report.fr.jinja")),
    ("system_report.es", include_str!("../../prompts/system_report.es.jinja")),
    ("default_whisper_prompt.en", include_str!("../../prompts/default_whisper_prompt.en.jinja")),
    ("default_whisper_prompt.nl", include_str!("../../prompts/default_whisper_prompt.nl.jinja")),
    ("default_whisper_prompt.de", include_str!("../../prompts/default_whisper_prompt.de.jinja")),
    ("default_whisper_prompt.fr", include_str!("../../prompts/default_whisper_prompt.fr.jinja")),
    ("default_whisper_prompt.es", include_str!("../../prompts/default_whisper_prompt.es.jinja")),
    ("default_view_recurring_themes.en", include_str!("../../prompts/default_view_recurring_themes.en.jinja")),
    ("default_view_recurring_themes.nl", include_str!("../../prompts/default_view_recurring_themes.nl.jinja")),
    ("default_view_recurring_themes.de", include_str!("../../prompts/default_view_recurring_themes.de.jinja")),
    ("default_view_recurring_themes.fr", include_str!("../../prompts/default_view_recurring_themes.fr.jinja")),
    ("default_view_recurring_themes.es", include_str!("../../prompts/default_view_recurring_themes.es.jinja")),
    ("transcript_correction_workflow.en", include_str!("../../prompts/transcript_correction_workflow.en.jinja")),
    // The dashboard chat's templates, one file per language (processing.md §10).
    ("system_chat.en", include_str!("../../prompts/system_chat.en.jinja")),
    ("system_chat.nl", include_str!("../../prompts/system_chat.nl.jinja")),
    ("system_chat.de", include_str!("../../prompts/system_chat.de.jinja")),
    ("system_chat.fr", include_str!("../../prompts/system_chat.fr.jinja")),
    ("system_chat.es", include_str!("../../prompts/system_chat.es.jinja")),
    ("context_project.en", include_str!("../../prompts/context_project.en.jinja")),
    ("context_project.nl", include_str!("../../prompts/context_project.nl.jinja")),
    ("context_project.de", include_str!("../../prompts/context_project.de.jinja")),
    ("context_project.fr", include_str!("../../prompts/context_project.fr.jinja")),
    ("context_project.es", include_str!("../../prompts/context_project.es.jinja")),
    ("context_conversations.en", include_str!("../../prompts/context_conversations.en.jinja")),
    ("context_conversations.nl", include_str!("../../prompts/context_conversations.nl.jinja")),
    ("context_conversations.de", include_str!("../../prompts/context_conversations.de.jinja")),
    ("context_conversations.fr", include_str!("../../prompts/context_conversations.fr.jinja")),
    ("context_conversations.es", include_str!("../../prompts/context_conversations.es.jinja")),
    ("generate_chat_title.en", include_str!("../../prompts/generate_chat_title.en.jinja")),
    ("generate_chat_title.nl", include_str!("../../prompts/generate_chat_title.nl.jinja")),
    ("generate_chat_title.de", include_str!("../../prompts/generate_chat_title.de.jinja")),
    ("generate_chat_title.fr", include_str!("../../prompts/generate_chat_title.fr.jinja")),
    ("generate_chat_title.es", include_str!("../../prompts/generate_chat_title.es.jinja")),
    ("is_followup_question.en", include_str!("../../prompts/is_followup_question.en.jinja")),
    ("is_followup_question.nl", include_str!("../../prompts/is_followup_question.nl.jinja")),
    ("is_followup_question.de", include_str!("../../prompts/is_followup_question.de.jinja")),
    ("is_followup_question.fr", include_str!("../../prompts/is_followup_question.fr.jinja")),
    ("is_followup_question.es", include_str!("../../prompts/is_followup_question.es.jinja")),
    ("auto_select_conversations.en", include_str!("../../prompts/auto_select_conversations.en.jinja")),
    ("auto_select_conversations.nl", include_str!("../../prompts/auto_select_conversations.nl.jinja")),
    ("auto_select_conversations.de", include_str!("../../prompts/auto_select_conversations.de.jinja")),
    ("auto_select_conversations.fr", include_str!("../../prompts/auto_select_conversations.fr.jinja")),
    ("auto_select_conversations.es", include_str!("../../prompts/auto_select_conversations.es.jinja")),
    ("audio_model_system_prompt.en", include_str!("../../prompts/audio_model_system_prompt.en.jinja")),
];

#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    #[error("no prompt template {0}")]
    Missing(String),
    #[error("prompt template {name}: {source}")]
    Render { name: String, source: minijinja::Error },
    #[error("prompt template {name} is not a JSON object with {keys:?}")]
    NotJson { name: String, keys: Vec<&'static str> },
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

/// Renders a JSON template and checks it is an object holding every one of `keys` as a string.
pub fn render_json<C: Serialize>(
    name: &str,
    language: &str,
    context: C,
    keys: &[&'static str],
) -> Result<serde_json::Map<String, serde_json::Value>, PromptError> {
    let text = render(name, language, context)?;
    let bad = || PromptError::NotJson { name: name.to_string(), keys: keys.to_vec() };
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(serde_json::Value::Object(map)) if keys.iter().all(|k| map.get(*k).is_some_and(serde_json::Value::is_string)) => Ok(map),
        _ => Err(bad()),
    }
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

    #[test]
    fn the_correction_prompt_names_hotwords_and_redaction_only_when_asked() {
        let plain = render("transcript_correction_workflow", "en", context! { hotwords_str => "", pii_redaction => false }).unwrap();
        assert!(!plain.contains("[NAME]") && !plain.contains("prefer their spelling"));
        let full =
            render("transcript_correction_workflow", "en", context! { hotwords_str => "Dembrane, ECHO", pii_redaction => true }).unwrap();
        assert!(full.contains("Dembrane, ECHO") && full.contains("[NAME]"));
    }

    #[test]
    fn chat_templates_exist_in_every_language_and_name_it() {
        let conversations = vec![context! { name => "Ada", tags => "park", created_at => "", duration => "", transcript => "swings" }];
        for language in ["en", "nl", "de", "fr", "es"] {
            for name in ["system_chat", "context_project", "context_conversations", "generate_chat_title", "is_followup_question"] {
                let ctx = context! { language, project_context => "name : P", conversations, user_query => "q?", current_question => "q?" };
                let text = render(name, language, ctx).unwrap();
                assert!(text.contains(&format!("\"{language}\"")) || text.contains(&format!("« {language} »")), "{name}.{language}");
                assert!(environment().get_template(&format!("{name}.{language}")).is_ok(), "{name}.{language} has its own file");
            }
            let ctx = context! { language, user_queries => vec!["q?"], conversations => vec![context! { id => "c-1", summary => "s" }] };
            let text = render("auto_select_conversations", language, ctx).unwrap();
            assert!(text.contains("id=\"c-1\"") && text.contains("selected_conversation_ids"), "{language}");
        }
        let text = render("context_conversations", "en", context! { language => "en", conversations }).unwrap();
        assert!(text.contains("<name>Ada</name>") && text.contains("swings"));
        assert!(render("system_chat", "pt", context! { language => "pt" }).unwrap().contains("\"pt\""), "English instructions as fallback");
    }

    #[test]
    fn answer_templates_exist_in_every_language_and_name_it() {
        let conversations = vec![context! { name => "Ada", tags => "park, ", created_at => "", transcript => "swings" }];
        let names = ["get_reply_system", "get_reply_summarize", "get_reply_brainstorm", "generate_conversation_summary", "system_report"];
        for language in ["en", "nl", "de", "fr", "es"] {
            for name in names {
                let ctx = context! { language, conversations, quote_text_joined => "swings", MAIN_USER_TRANSCRIPT => "swings" };
                let text = render(name, language, ctx).unwrap();
                assert!(text.contains(&format!("\"{language}\"")) || text.contains(&format!("« {language} »")), "{name}.{language}");
                assert!(environment().get_template(&format!("{name}.{language}")).is_ok(), "{name}.{language} has its own file");
            }
            let view = render_json("default_view_recurring_themes", language, context! { language }, &["user_query", "user_query_context"]);
            let view = view.unwrap_or_else(|e| panic!("{language}: {e}"));
            assert!(view["user_query_context"].as_str().unwrap().contains(language), "{language}");
            assert!(environment().get_template(&format!("default_view_recurring_themes.{language}")).is_ok());
        }
        let dutch = render("get_reply_summarize", "nl", context! { language => "nl" }).unwrap();
        assert!(dutch.contains("Vat de belangrijkste punten"), "{dutch}");
        let multi = render("generate_conversation_summary", "multi", context! { language => "multi", quote_text_joined => "x" }).unwrap();
        assert!(multi.contains("Write a summary of it in the language the participants mostly speak."), "{multi}");
        let en = render("generate_conversation_summary", "en", context! { language => "en", quote_text_joined => "x" }).unwrap();
        assert!(en.contains("Write a summary of it in the language with code \"en\"."), "{en}");
    }

    #[test]
    fn json_templates_hold_their_keys() {
        let view = render_json("default_view_recurring_themes", "de", context! {}, &["user_query", "user_query_context"]).unwrap();
        assert!(view["user_query"].as_str().unwrap().ends_with('?'));
        let missing = render_json("default_view_recurring_themes", "en", context! {}, &["user_query", "nope"]);
        assert!(matches!(missing, Err(PromptError::NotJson { .. })));
        let not_json = render_json("default_whisper_prompt", "en", context! {}, &["user_query"]);
        assert!(matches!(not_json, Err(PromptError::NotJson { .. })));
    }
}
