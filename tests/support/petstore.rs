//! The petstore worker as a deployment runs it, and a workflow over its operations.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use codegen_runtime::RetryPolicy;
use codegen_runtime::workflow::{WorkflowContext, WorkflowError};
use petstore::operations::{CreatePet, ShowPetById};
use petstore::types::NewPet;

/// What the scripted API answers for a pet.
pub const PET: &str = r#"{"id": 7, "name": "Rex", "createdAt": "2026-11-26T10:00:00Z"}"#;

/// Creates a pet, then reads it back: two tasks, retried quickly.
pub async fn adopt(ctx: WorkflowContext, name: String) -> Result<String, WorkflowError> {
    let policy = RetryPolicy::default().with_initial_delay(Duration::from_millis(10));
    let body = NewPet {
        name,
        tag: None,
        status: None,
        birthday: None,
    };
    let created = ctx.call_with(&CreatePet { body }, policy.clone()).await?;
    let shown = ctx
        .call_with(&ShowPetById { pet_id: created.id }, policy)
        .await?;
    Ok(format!("{} #{}", shown.name, shown.id))
}

/// Builds `<package>-worker` (with the `otel` feature, so every test shares one build) into
/// the target directory the generated-crate tests share.
pub fn build_worker(package: &str) -> PathBuf {
    let root = super::root();
    let target = root.join("target/generated-crates");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--quiet",
            "-p",
            package,
            "--features",
            "otel",
            "--bin",
            &format!("{package}-worker"),
            "--target-dir",
        ])
        .arg(&target)
        .current_dir(&root)
        .env_remove("RUSTFLAGS")
        .status()
        .expect("cargo runs");
    assert!(status.success(), "cannot build {package}-worker");
    target.join(format!("debug/{package}-worker"))
}
