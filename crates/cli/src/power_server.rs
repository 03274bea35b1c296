//! (in progress: see the issue that owns this command)

use anyhow::{bail, Result};
use clap::Args;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct PowerServerArgs {}

pub fn run(_args: PowerServerArgs) -> Result<ExitCode> {
    bail!("not built yet")
}
