//! Workflows that an endpoint and a task (or two functions) share: the pipeline's steps and
//! status rows, merging a conversation's audio, summaries, deletions, and RunPod's completion
//! (the webhook and the poller finish a job the same way).

pub mod cleanup;
pub mod merge;
pub mod pipeline;
pub mod runpod_completion;
pub mod summary;
