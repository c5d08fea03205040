//! The seed's own `aws` commands, aimed at the local pipeline (`--endpoint-url`), as the
//! interactive mode prints them for the user to paste into another terminal.
//!
//! Each command is built once as an argument vector and rendered for the shell from it, so what
//! the user copies is exactly what the test runs.

use local_emulator::provision::{Names, REFERENCE_OBJECT};

use crate::demo::changed_reference_object;

/// One command to show: what it does, its arguments, and what it reads on standard input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AwsCommand {
    /// What it does, in a few words.
    pub what: String,
    /// `aws` and its arguments.
    pub args: Vec<String>,
    /// Standard input (the new object's body for `aws s3 cp -`), if any.
    pub stdin: Option<String>,
}

impl AwsCommand {
    /// The line to paste into a POSIX shell (arguments quoted where needed; standard input
    /// given with `printf`).
    pub fn shell_line(&self) -> String {
        let command = self
            .args
            .iter()
            .map(|a| shell_quote(a))
            .collect::<Vec<_>>()
            .join(" ");
        match &self.stdin {
            Some(input) => format!("printf '{}' | {command}", input.replace('\n', "\\n")),
            None => command,
        }
    }
}

/// Quotes `arg` for a POSIX shell: as it is when it has no special characters, otherwise in
/// single quotes (a single quote inside written `'\''`).
pub fn shell_quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+%".contains(c));
    if plain {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

fn aws(endpoint: &str, rest: &[&str]) -> Vec<String> {
    let mut args = vec!["aws".to_owned()];
    args.extend(rest.iter().map(|s| (*s).to_owned()));
    args.extend(["--endpoint-url".to_owned(), endpoint.to_owned()]);
    args.extend(["--region".to_owned(), "us-east-1".to_owned()]);
    args
}

/// The seed's walkthrough update (burger: `SET priority = :s`, `high`), verbatim but for the
/// table's name and `--endpoint-url`.
pub fn update_priority(names: &Names, endpoint: &str, item: &str, priority: &str) -> AwsCommand {
    let key = format!(r#"{{"item":{{"S":"{item}"}}, "price":{{"N":"100"}}}}"#);
    let values = format!(r#"{{":s": {{"S": "{priority}"}}}}"#);
    AwsCommand {
        what: format!("the seed's update: {item}'s priority becomes {priority}"),
        args: aws(
            endpoint,
            &[
                "dynamodb",
                "update-item",
                "--table-name",
                &names.table,
                "--key",
                &key,
                "--update-expression",
                "SET priority = :s",
                "--expression-attribute-values",
                &values,
                "--return-values",
                "ALL_NEW",
            ],
        ),
        stdin: None,
    }
}

/// Replaces the S3 reference object (salad's menu category becomes `salads`): the seed's second
/// pattern, which puts a change flag on every shard.
pub fn replace_reference_object(names: &Names, endpoint: &str) -> AwsCommand {
    let target = format!(
        "s3://{}/{}{REFERENCE_OBJECT}",
        names.bucket, names.reference_prefix
    );
    AwsCommand {
        what: "replace the S3 reference object: salad's menu category becomes salads".into(),
        args: aws(endpoint, &["s3", "cp", "-", &target]),
        stdin: Some(changed_reference_object()),
    }
}

/// Lists a dish's output partitions, as the seed has the user look at its target folder.
pub fn list_output(names: &Names, endpoint: &str, item: &str) -> AwsCommand {
    let target = format!("s3://{}/{}item={item}/", names.bucket, names.output_prefix);
    AwsCommand {
        what: format!("list {item}'s output (one folder per priority)"),
        args: aws(endpoint, &["s3", "ls", "--recursive", &target]),
        stdin: None,
    }
}

/// Every command the interactive mode prints, in the order the walkthrough uses them.
pub fn walkthrough(names: &Names, endpoint: &str) -> Vec<AwsCommand> {
    vec![
        update_priority(names, endpoint, "burger", "high"),
        replace_reference_object(names, endpoint),
        list_output(names, endpoint, "burger"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_update_is_the_seeds_command_with_an_endpoint() {
        let c = update_priority(&Names::default(), "http://127.0.0.1:5000", "burger", "high");
        assert_eq!(
            c.shell_line(),
            r#"aws dynamodb update-item --table-name ProductPriority --key '{"item":{"S":"burger"}, "price":{"N":"100"}}' --update-expression 'SET priority = :s' --expression-attribute-values '{":s": {"S": "high"}}' --return-values ALL_NEW --endpoint-url http://127.0.0.1:5000 --region us-east-1"#
        );
    }

    #[test]
    fn the_s3_change_pipes_the_new_object_into_s3_cp() {
        let c = replace_reference_object(&Names::default(), "http://127.0.0.1:5000");
        assert_eq!(
            c.shell_line(),
            "printf 'item,category\\nburger,mains\\npizza,mains\\nsalad,salads\\n' | aws s3 cp - s3://demo-bucket-123456789012/reference/menu-categories.csv --endpoint-url http://127.0.0.1:5000 --region us-east-1"
        );
    }

    #[test]
    fn quoting_survives_single_quotes_and_spaces() {
        assert_eq!(shell_quote("plain-1.csv"), "plain-1.csv");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
