//! (in progress: see the issue that owns this command)

use anyhow::{bail, Result};
use clap::Args;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct CompareArgs {}

pub fn run(_args: CompareArgs) -> Result<ExitCode> {
    bail!("not built yet")
}
