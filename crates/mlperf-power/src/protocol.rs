//! power-dev's v3 client ↔ server protocol: lines ending `\r\n` over TCP.
//!
//! The client opens with [`MAGIC_CLIENT`], the server answers
//! [`MAGIC_SERVER`]; then each command is one line and each reply one line,
//! except `download`, whose reply is a file in chunks (`{len}\r\n{bytes}`,
//! ending with a `0` chunk). This module holds the command set
//! ([`Command`]) both roles share (the framing, with its bounds on what a
//! peer can make us wait for, is [`crate::line_conn`]), so that what our client
//! writes is exactly what our server reads, and both are exactly what
//! power-dev's own client and server write (the protocol tests replay their
//! sequences byte for byte).
//!
//! `joulebench-token,{token}` is ours: power-dev's protocol has no
//! authentication, so a server listening beyond loopback can require a shared
//! token as the first command. It is never recorded in the message lists
//! (the token must not land in result files), so those stay identical to
//! power-dev's.

pub use crate::line_conn::{LineConn, ProtocolError, Waits, MAX_LINE_BYTES};

pub const MAGIC_CLIENT: &str = "mlcommons/power client v3";
pub const MAGIC_SERVER: &str = "mlcommons/power server v3";
/// The server's default port.
pub const DEFAULT_PORT: u16 = 4950;
/// Files a client may download from a finished session, relative to it, in
/// the order power-dev's client fetches them (`run_1/ptd_out.txt` last: it is
/// not in every power-dev release's list).
pub const FETCH_FILES: [&str; 6] = [
    "power/ptd_logs.txt",
    "ranging/spl.txt",
    "power/server.json",
    "power/server.log",
    "run_1/spl.txt",
    "run_1/ptd_out.txt",
];
/// Of [`FETCH_FILES`], the one older power-dev servers do not offer.
pub const OPTIONAL_FETCH_FILES: [&str; 1] = ["run_1/ptd_out.txt"];
/// Our token command's prefix (see the module docs).
pub const TOKEN_COMMAND: &str = "joulebench-token";

/// A measurement stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Ranging,
    Testing,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Ranging => "ranging",
            Mode::Testing => "testing",
        }
    }

    /// The result folder's directory for this stage.
    pub fn dir(self) -> &'static str {
        match self {
            Mode::Ranging => "ranging",
            Mode::Testing => "run_1",
        }
    }
}

/// What a client asks of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionAction {
    Start(Mode),
    /// `start,testing,{volts},{amps}`: testing ranges given by the client
    /// (power-dev accepts it; joulebench's client never sends it).
    StartTestingWithRanges {
        volts: String,
        amps: String,
    },
    Stop(Mode),
    Done,
}

/// One client command after the greeting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Time,
    SetNtp,
    Stop,
    New { label: String, client_uuid: String },
    Session { id: String, action: SessionAction },
    Download { id: String, file: String },
    Cleanup { id: String },
    Token(String),
}

/// Why a line is not a command; the server answers `Error: {reason}` (the
/// reasons are power-dev's words).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadCommand {
    #[error("invalid label")]
    InvalidLabel { label: String },
    #[error("invalid client uuid")]
    InvalidClientUuid { uuid: String },
    #[error("Unknown session command")]
    UnknownSessionCommand { action: Vec<String> },
    #[error("unknown command")]
    UnknownCommand { line: String },
}

/// Letters, digits, `-` and `_` only (power-dev's label rule; the label
/// becomes part of a directory name).
pub fn valid_label(label: &str) -> bool {
    label
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

impl Command {
    /// Parses a command line as power-dev's server splits it (on `,`).
    pub fn parse(line: &str) -> Result<Command, BadCommand> {
        let f: Vec<&str> = line.split(',').collect();
        match f.as_slice() {
            ["time"] => Ok(Command::Time),
            ["set_ntp"] => Ok(Command::SetNtp),
            ["stop"] => Ok(Command::Stop),
            ["new", label, uuid] => {
                if !valid_label(label) {
                    return Err(BadCommand::InvalidLabel {
                        label: label.to_string(),
                    });
                }
                if uuid::Uuid::parse_str(uuid).is_err() {
                    return Err(BadCommand::InvalidClientUuid {
                        uuid: uuid.to_string(),
                    });
                }
                Ok(Command::New {
                    label: label.to_string(),
                    client_uuid: uuid.to_string(),
                })
            }
            ["session", id, rest @ ..] => {
                let action = match rest {
                    ["start", "ranging"] => SessionAction::Start(Mode::Ranging),
                    ["start", "testing"] => SessionAction::Start(Mode::Testing),
                    ["start", "testing", v, a] => SessionAction::StartTestingWithRanges {
                        volts: v.to_string(),
                        amps: a.to_string(),
                    },
                    ["stop", "ranging"] => SessionAction::Stop(Mode::Ranging),
                    ["stop", "testing"] => SessionAction::Stop(Mode::Testing),
                    ["done"] => SessionAction::Done,
                    _ => {
                        return Err(BadCommand::UnknownSessionCommand {
                            action: rest.iter().map(|a| a.to_string()).collect(),
                        })
                    }
                };
                Ok(Command::Session {
                    id: id.to_string(),
                    action,
                })
            }
            ["download", id, file] => Ok(Command::Download {
                id: id.to_string(),
                file: file.to_string(),
            }),
            ["cleanup", id] => Ok(Command::Cleanup { id: id.to_string() }),
            [TOKEN_COMMAND, token] => Ok(Command::Token(token.to_string())),
            _ => Err(BadCommand::UnknownCommand {
                line: line.to_string(),
            }),
        }
    }

    /// The line power-dev's client sends for this command.
    pub fn to_line(&self) -> String {
        match self {
            Command::Time => "time".into(),
            Command::SetNtp => "set_ntp".into(),
            Command::Stop => "stop".into(),
            Command::New { label, client_uuid } => format!("new,{label},{client_uuid}"),
            Command::Session { id, action } => match action {
                SessionAction::Start(m) => format!("session,{id},start,{}", m.as_str()),
                SessionAction::StartTestingWithRanges { volts, amps } => {
                    format!("session,{id},start,testing,{volts},{amps}")
                }
                SessionAction::Stop(m) => format!("session,{id},stop,{}", m.as_str()),
                SessionAction::Done => format!("session,{id},done"),
            },
            Command::Download { id, file } => format!("download,{id},{file}"),
            Command::Cleanup { id } => format!("cleanup,{id}"),
            Command::Token(t) => format!("{TOKEN_COMMAND},{t}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_round_trips_through_its_line() {
        let id = "2026-11-24_10-00-00_x".to_string();
        let cmds = [
            Command::Time,
            Command::SetNtp,
            Command::Stop,
            Command::New {
                label: "lbl-1_a".into(),
                client_uuid: "1b4e28ba-2fa1-11d2-883f-0016d3cca427".into(),
            },
            Command::Session {
                id: id.clone(),
                action: SessionAction::Start(Mode::Ranging),
            },
            Command::Session {
                id: id.clone(),
                action: SessionAction::Stop(Mode::Testing),
            },
            Command::Session {
                id: id.clone(),
                action: SessionAction::Done,
            },
            Command::Download {
                id: id.clone(),
                file: "run_1/spl.txt".into(),
            },
            Command::Cleanup { id },
        ];
        for c in cmds {
            assert_eq!(Command::parse(&c.to_line()).unwrap(), c);
        }
    }

    #[test]
    fn malformed_commands_are_named() {
        for (line, reason) in [
            ("", "unknown command"),
            ("hello", "unknown command"),
            (
                "new,bad label,1b4e28ba-2fa1-11d2-883f-0016d3cca427",
                "invalid label",
            ),
            ("new,x,not-a-uuid", "invalid client uuid"),
            ("session,id,start,sprinting", "Unknown session command"),
            ("download,id", "unknown command"),
        ] {
            assert_eq!(
                Command::parse(line).unwrap_err().to_string(),
                reason,
                "{line:?}"
            );
        }
    }
}
