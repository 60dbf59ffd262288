//! `auditd`: see `auditd --help`, the README and `zoho_auditd::cli`.

fn main() -> std::process::ExitCode {
    zoho_auditd::cli::main().into()
}
