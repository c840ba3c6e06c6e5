//! Token counts for budgets and the token-count endpoint: tiktoken's `o200k_base`, counted
//! locally (no provider call). Counting a long transcript is CPU work, so it runs in `offload`.

use std::sync::OnceLock;

use tiktoken_rs::CoreBPE;

fn bpe() -> &'static CoreBPE {
    static BPE: OnceLock<CoreBPE> = OnceLock::new();
    BPE.get_or_init(|| tiktoken_rs::o200k_base().expect("the o200k_base ranks ship with tiktoken-rs"))
}

/// Blocking: call through `offload` for anything longer than a line.
pub fn count_blocking(text: &str) -> usize {
    bpe().encode_ordinary(text).len()
}

pub async fn count(text: String) -> Result<usize, crate::offload::OffloadError> {
    crate::offload(move || count_blocking(&text)).await
}

/// Cuts `text` to about `max_tokens` by character ratio (as ECHO), marking the cut.
pub fn truncate_blocking(text: &str, max_tokens: usize) -> String {
    let tokens = count_blocking(text);
    if tokens <= max_tokens {
        return text.to_string();
    }
    let keep = text.chars().count() * max_tokens / tokens;
    let mut cut: String = text.chars().take(keep).collect();
    cut.push_str("\n[Truncated for brevity...]");
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_truncates() {
        assert_eq!(count_blocking(""), 0);
        let n = count_blocking("Hello world, this is a conversation about the new park.");
        assert!((8..=16).contains(&n), "{n}");
        let long = "word ".repeat(1000);
        let cut = truncate_blocking(&long, 100);
        assert!(cut.ends_with("[Truncated for brevity...]"));
        assert!(count_blocking(&cut) < 130);
    }
}
