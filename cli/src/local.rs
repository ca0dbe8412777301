//! `sluice local …`: the stack on LocalStack, and the functions run locally against it.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use aws_config::SdkConfig;
use indicatif::{ProgressBar, ProgressStyle};

use crate::args::{GlobalArgs, LocalCommand, LocalDeployArgs};
use crate::stack::StackOutputs;
use crate::stack::local_deploy::{delete_stack, deploy_local};

pub async fn run(
    command: &LocalCommand,
    global: &GlobalArgs,
    config: &SdkConfig,
) -> anyhow::Result<()> {
    let cf = aws_sdk_cloudformation::Client::new(config);
    match command {
        LocalCommand::Deploy(args) => deploy(&cf, args, global, config).await,
        LocalCommand::Serve(args) => crate::serve::run(args, global, config).await,
        LocalCommand::Destroy => {
            let spinner = spinner(format!("deleting stack {}", global.stack_name));
            let result = delete_stack(&cf, &global.stack_name).await;
            spinner.finish_and_clear();
            result?;
            println!("deleted stack {}", global.stack_name);
            Ok(())
        }
    }
}

async fn deploy(
    cf: &aws_sdk_cloudformation::Client,
    args: &LocalDeployArgs,
    global: &GlobalArgs,
    config: &SdkConfig,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let spinner = spinner(format!(
        "deploying stack {} from {}",
        global.stack_name,
        args.template.display()
    ));
    let result = deploy_local(cf, &args.template, &global.stack_name, &args.params).await;
    spinner.finish_and_clear();
    let outputs = result?;

    write_env_file(&args.env_file, &outputs, global, config)?;
    println!(
        "stack {} ready in {:.1} s\n  queue  {}\n  dlq    {}\n  table  {}\nwrote {}",
        global.stack_name,
        started.elapsed().as_secs_f64(),
        outputs.queue_url,
        outputs.dlq_url,
        outputs.table_name,
        args.env_file.display()
    );
    Ok(())
}

/// The stack's outputs plus what a client needs to reach the same endpoint.
fn write_env_file(
    path: &Path,
    outputs: &StackOutputs,
    global: &GlobalArgs,
    config: &SdkConfig,
) -> anyhow::Result<()> {
    let mut body = format!(
        "# Written by `sluice local deploy` for stack {}; safe to delete.\nSLUICE_STACK={}\n",
        global.stack_name, global.stack_name
    );
    body.push_str(&outputs.to_env_file());
    if let Some(endpoint) = &global.endpoint_url {
        body.push_str(&format!("AWS_ENDPOINT_URL={endpoint}\n"));
    }
    if let Some(region) = config.region() {
        body.push_str(&format!("AWS_REGION={region}\n"));
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, body).with_context(|| format!("writing {}", path.display()))
}

fn spinner(message: String) -> ProgressBar {
    let bar = ProgressBar::new_spinner().with_message(message);
    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}
