//! `fubar ssl new-certs`: a CA and the certificates it signs, made without OpenSSL.

use fubar_ssl::NewCerts;

use crate::cli::{NewCertsArgs, SslCommand};

/// Runs one `fubar ssl` command.
pub(crate) fn run(cmd: SslCommand) -> anyhow::Result<()> {
    let SslCommand::NewCerts(args) = cmd;
    new_certs(args)
}

/// Makes the certificates and prints the files written, one a line.
fn new_certs(args: NewCertsArgs) -> anyhow::Result<()> {
    let NewCertsArgs {
        dir,
        hosts,
        clients,
        nodes,
        operators,
        role,
        force,
        days,
    } = args;
    let req = NewCerts {
        dir,
        hosts,
        clients,
        nodes,
        operators,
        operator_role: role.parse()?,
        force,
        days,
    };
    // The error's message already says why (its source): a context would say it twice.
    let files = fubar_ssl::new_certs(&req)
        .map_err(|e| anyhow::anyhow!("no certificates made in {}: {e}", req.dir.display()))?;
    for file in files {
        println!("{}", file.display());
    }
    Ok(())
}
