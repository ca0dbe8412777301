//! Least privilege that works (DESIGN point 8). LocalStack does not enforce IAM, so every local test passes
//! whatever the template grants, and a missing action shows up only as AccessDenied in AWS. This test holds
//! the AWS operations each function's adapters call against the actions `template.yaml` grants it:
//! 1. which adapters serve which function: the `adapters::<module>` each `functions/<name>/src` names
//!    (a builder in `startup.rs`, such as `aws_drain`, brings the modules it names; a module is a file or a
//!    folder of files, and of a folder only the files that hold or use the items named count);
//! 2. what each adapter calls: every SDK call on a client (`client.update_item()`, `.client\n.get_item()`)
//!    and, for PartiQL calls, the verb each statement literal starts with (INSERT/UPDATE/SELECT/DELETE);
//! 3. the IAM action(s) of each operation (SQS batch calls are authorized by the single-message action;
//!    PartiQL by `PartiQL<Verb>`, which SAM's DynamoDB policy templates do not grant);
//! 4. what the template grants each function: SAM policy templates expanded with the action lists of
//!    SAM's `policy_templates.json`, plus inline `Statement`s.
//!
//! An operation this test cannot map, or a policy it cannot expand, fails it too: a new kind of call is
//! looked at once, not passed by default. Resources are not compared (every grant here is scoped to the
//! stack's own table, queues and secret by the template).
#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use yaml_rust2::{Yaml, YamlLoader};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The SAM policy templates this project may use, with their actions exactly as SAM's
/// `samtranslator/policy_templates_data/policy_templates.json` lists them (aws/serverless-application-model).
const SAM_POLICY_TEMPLATES: &[(&str, &[&str])] = &[
    (
        "DynamoDBCrudPolicy",
        &[
            "dynamodb:GetItem",
            "dynamodb:DeleteItem",
            "dynamodb:PutItem",
            "dynamodb:Scan",
            "dynamodb:Query",
            "dynamodb:UpdateItem",
            "dynamodb:BatchWriteItem",
            "dynamodb:BatchGetItem",
            "dynamodb:DescribeTable",
            "dynamodb:ConditionCheckItem",
        ],
    ),
    (
        "DynamoDBReadPolicy",
        &[
            "dynamodb:GetItem",
            "dynamodb:Scan",
            "dynamodb:Query",
            "dynamodb:BatchGetItem",
            "dynamodb:DescribeTable",
        ],
    ),
    (
        "DynamoDBWritePolicy",
        &[
            "dynamodb:PutItem",
            "dynamodb:UpdateItem",
            "dynamodb:BatchWriteItem",
        ],
    ),
    (
        "SQSPollerPolicy",
        &[
            "sqs:ChangeMessageVisibility",
            "sqs:ChangeMessageVisibilityBatch",
            "sqs:DeleteMessage",
            "sqs:DeleteMessageBatch",
            "sqs:GetQueueAttributes",
            "sqs:ReceiveMessage",
        ],
    ),
    ("SQSSendMessagePolicy", &["sqs:SendMessage*"]),
    (
        "AWSSecretsManagerGetSecretValuePolicy",
        &["secretsmanager:GetSecretValue"],
    ),
];

/// The IAM actions one SDK operation (as the Rust SDK names its method) needs; `verbs` are the PartiQL
/// statement verbs of the file it is called from. `None`: not mapped yet.
fn iam_actions(operation: &str, verbs: &BTreeSet<String>) -> Option<Vec<String>> {
    let one = |a: &str| Some(vec![a.to_string()]);
    match operation {
        "get_item" => one("dynamodb:GetItem"),
        "put_item" => one("dynamodb:PutItem"),
        "update_item" => one("dynamodb:UpdateItem"),
        "delete_item" => one("dynamodb:DeleteItem"),
        "batch_get_item" => one("dynamodb:BatchGetItem"),
        "batch_write_item" => one("dynamodb:BatchWriteItem"),
        "query" => one("dynamodb:Query"),
        "scan" => one("dynamodb:Scan"),
        "describe_table" => one("dynamodb:DescribeTable"),
        // PartiQL is authorized per statement verb, never by the item actions.
        "execute_statement" | "batch_execute_statement" | "execute_transaction" => {
            assert!(
                !verbs.is_empty(),
                "a PartiQL call ({operation}) with no statement literal found beside it"
            );
            Some(
                verbs
                    .iter()
                    .map(|v| format!("dynamodb:PartiQL{v}"))
                    .collect(),
            )
        }
        // SQS batch calls need the single-message actions.
        "send_message" | "send_message_batch" => one("sqs:SendMessage"),
        "receive_message" => one("sqs:ReceiveMessage"),
        "delete_message" | "delete_message_batch" => one("sqs:DeleteMessage"),
        "change_message_visibility" | "change_message_visibility_batch" => {
            one("sqs:ChangeMessageVisibility")
        }
        "get_queue_attributes" => one("sqs:GetQueueAttributes"),
        "get_secret_value" => one("secretsmanager:GetSecretValue"),
        _ => None,
    }
}

/// Rust source without comments, and the contents of its string literals.
fn code_and_strings(source: &str) -> (String, Vec<String>) {
    let mut code = String::with_capacity(source.len());
    let mut strings = Vec::new();
    let mut chars = source.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        code.push('\n');
                        break;
                    }
                }
            }
            '"' => {
                let mut literal = String::new();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some(escaped) = chars.next() {
                                literal.push(escaped);
                            }
                        }
                        '"' => break,
                        c => literal.push(c),
                    }
                }
                code.push_str("\"\"");
                strings.push(literal);
            }
            // A char literal such as '"' must not open a string.
            '\'' => {
                let rest: String = chars.clone().take(3).collect();
                if rest.starts_with("\"'") || rest.starts_with("\\\"'") {
                    let skip = if rest.starts_with('\\') { 3 } else { 2 };
                    for _ in 0..skip {
                        chars.next();
                    }
                } else {
                    code.push(c);
                }
            }
            c => code.push(c),
        }
    }
    (code, strings)
}

/// Every SDK operation called on a client in this source (`client.x()`, `client().x()`, across lines).
fn sdk_calls(code: &str) -> BTreeSet<String> {
    let squeezed: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    let mut calls = BTreeSet::new();
    for prefix in ["client.", "client()."] {
        let mut rest = squeezed.as_str();
        while let Some(at) = rest.find(prefix) {
            let after = &rest[at + prefix.len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            if !name.is_empty() && after[name.len()..].starts_with("()") {
                calls.insert(name);
            }
            rest = after;
        }
    }
    calls
}

/// PartiQL verbs the statement literals of this source start with.
fn partiql_verbs(strings: &[String]) -> BTreeSet<String> {
    strings
        .iter()
        .filter_map(|s| {
            let first = s.split_whitespace().next()?;
            let verb = match first {
                "INSERT" => "Insert",
                "UPDATE" => "Update",
                "SELECT" => "Select",
                "DELETE" => "Delete",
                _ => return None,
            };
            Some(verb.to_string())
        })
        .collect()
}

/// The adapter modules: `shared/src/adapters/<name>.rs`, or every file of a folder `shared/src/adapters/<name>/`.
fn adapter_modules() -> BTreeMap<String, Vec<PathBuf>> {
    fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut modules = BTreeMap::new();
    for entry in std::fs::read_dir(root().join("shared/src/adapters")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        let mut files = Vec::new();
        if path.is_dir() {
            rust_files(&path, &mut files);
        } else if name != "mod" {
            files.push(path);
        }
        if !files.is_empty() {
            modules.insert(name, files);
        }
    }
    modules
}

/// The adapter files each function's code reaches, by binary name: the `adapters::<module>` its
/// `functions/<name>/src` names, and the modules a builder in `shared/src/startup.rs` (e.g. `aws_drain`)
/// names when the function calls one. Of a folder module, only the files [`reached_files`] finds.
fn adapter_files(function: &str) -> BTreeSet<PathBuf> {
    let modules = adapter_modules();
    let dir = root().join("functions").join(function).join("src");
    let mut named = BTreeSet::new();
    let mut sources = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let source = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        let (code, _) = code_and_strings(&source);
        named.extend(identifiers_after(&code, "adapters::"));
        if code.contains("startup::") {
            let startup = std::fs::read_to_string(root().join("shared/src/startup.rs")).unwrap();
            let (startup, _) = code_and_strings(&startup);
            named.extend(
                modules
                    .keys()
                    .filter(|m| startup.contains(&format!("{m}::")))
                    .cloned(),
            );
            sources.push(startup);
        }
        sources.push(code);
    }
    named
        .iter()
        .filter_map(|name| Some((name, modules.get(name)?)))
        .flat_map(|(name, files)| {
            let items: BTreeSet<String> = sources
                .iter()
                .flat_map(|code| items_named(code, name))
                .collect();
            reached_files(files, &items)
        })
        .collect()
}

/// Of a module's files, those code naming `items` of it (`sqs::SqsChangeSink`) reaches. A file module is
/// reached whole. Of a folder: its `mod.rs`; every file that mentions one of the items (defines,
/// implements or re-uses it) or is itself named; and, over and over, the sibling files those name
/// (`batch::`). So a function that names the changes queue is not charged for the operators' DLQ calls.
fn reached_files(files: &[PathBuf], items: &BTreeSet<String>) -> Vec<PathBuf> {
    let is_folder = files
        .iter()
        .any(|f| f.file_stem().is_some_and(|s| s == "mod"));
    if !is_folder || items.is_empty() {
        return files.to_vec();
    }
    let stem = |f: &PathBuf| f.file_stem().unwrap().to_string_lossy().to_string();
    let code: BTreeMap<String, String> = files
        .iter()
        .map(|f| {
            (
                stem(f),
                code_and_strings(&std::fs::read_to_string(f).unwrap()).0,
            )
        })
        .collect();
    let mut reached: BTreeSet<String> = code
        .iter()
        .filter(|(stem, code)| {
            *stem == "mod" || items.iter().any(|i| i == *stem || mentions(code, i))
        })
        .map(|(stem, _)| stem.clone())
        .collect();
    loop {
        let more: Vec<String> = code
            .keys()
            .filter(|sibling| !reached.contains(*sibling))
            .filter(|sibling| {
                reached
                    .iter()
                    .filter(|r| *r != "mod")
                    .any(|r| mentions(&code[r], &format!("{sibling}::")))
            })
            .cloned()
            .collect();
        if more.is_empty() {
            break;
        }
        reached.extend(more);
    }
    files
        .iter()
        .filter(|f| reached.contains(&stem(f)))
        .cloned()
        .collect()
}

fn is_identifier_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Whether `code` has `word` with no identifier character just before or after it.
fn mentions(code: &str, word: &str) -> bool {
    code.match_indices(word).any(|(at, _)| {
        let before = code[..at].chars().next_back();
        let after = code[at + word.len()..].chars().next();
        let word_ends_in_identifier = word.chars().last().is_some_and(is_identifier_char);
        let joined_before = before.is_some_and(is_identifier_char);
        let joined_after = word_ends_in_identifier && after.is_some_and(is_identifier_char);
        !joined_before && !joined_after
    })
}

/// The items `code` names in `module` (`module::Item`, `module::{A, B}`), not counting `self`.
fn items_named(code: &str, module: &str) -> BTreeSet<String> {
    let prefix = format!("{module}::");
    let mut items = BTreeSet::new();
    for (at, _) in code.match_indices(&prefix) {
        if code[..at]
            .chars()
            .next_back()
            .is_some_and(is_identifier_char)
        {
            continue;
        }
        let rest = &code[at + prefix.len()..];
        let list = match rest.strip_prefix('{') {
            Some(inner) => &inner[..inner.find('}').unwrap_or(inner.len())],
            None => rest,
        };
        let names = if rest.starts_with('{') {
            list.split(',').collect()
        } else {
            vec![list]
        };
        for name in names {
            let name: String = name
                .trim_start()
                .chars()
                .take_while(|c| is_identifier_char(*c))
                .collect();
            if !name.is_empty() && name != "self" {
                items.insert(name);
            }
        }
    }
    items
}

fn identifiers_after(code: &str, prefix: &str) -> BTreeSet<String> {
    code.match_indices(prefix)
        .map(|(at, _)| {
            code[at + prefix.len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect::<String>()
        })
        .filter(|name| !name.is_empty())
        .collect()
}

/// What one function's adapters need: IAM action → where it comes from.
fn required_actions(function: &str) -> BTreeMap<String, String> {
    let mut needed = BTreeMap::new();
    let files = adapter_files(function);
    assert!(
        !files.is_empty(),
        "no adapter found for functions/{function}"
    );
    for file in files {
        let source = std::fs::read_to_string(&file).unwrap();
        let (code, strings) = code_and_strings(&source);
        let verbs = partiql_verbs(&strings);
        let shown = file
            .strip_prefix(root())
            .unwrap_or(&file)
            .display()
            .to_string();
        for call in sdk_calls(&code) {
            let actions = iam_actions(&call, &verbs).unwrap_or_else(|| {
                panic!("{shown} calls `{call}()`: map that SDK operation to its IAM action(s) here")
            });
            for action in actions {
                needed
                    .entry(action)
                    .or_insert_with(|| format!("{call}() in {shown}"));
            }
        }
    }
    needed
}

fn strings_of(y: &Yaml) -> Vec<String> {
    match y {
        Yaml::String(s) => vec![s.clone()],
        Yaml::Array(items) => items.iter().flat_map(strings_of).collect(),
        _ => Vec::new(),
    }
}

/// A function's policies, a conditional one (`!If [Condition, Policy, !Ref AWS::NoValue]`) by its branches:
/// the calls it allows are made only in the setups whose condition grants it (the ingest key is read only
/// with `IngestAuth=api-key`), so its actions count as granted.
fn policy_list(policies: &Yaml) -> Vec<&Yaml> {
    let mut out = Vec::new();
    for policy in policies.as_vec().into_iter().flatten() {
        match policy.as_vec() {
            Some(branches) if branches.len() == 3 && branches[0].as_str().is_some() => out.extend(
                branches[1..]
                    .iter()
                    .filter(|b| b.as_str() != Some("AWS::NoValue")),
            ),
            _ => out.push(policy),
        }
    }
    out
}

/// The actions a function's `Policies` grant (SAM templates expanded, inline statements read).
fn granted_actions(resource: &str, policies: &Yaml) -> Vec<String> {
    let mut granted = Vec::new();
    if policies.as_vec().is_none() {
        panic!("{resource}: Policies is not a list");
    }
    for policy in policy_list(policies) {
        let hash = policy.as_hash().unwrap_or_else(|| {
            panic!("{resource}: policy {policy:?} is not a SAM template or a statement list: expand it here")
        });
        for (key, value) in hash {
            let key = key.as_str().unwrap_or_default();
            if key == "Statement" {
                for statement in value.as_vec().into_iter().flatten() {
                    if statement["Effect"].as_str() == Some("Allow") {
                        granted.extend(strings_of(&statement["Action"]));
                    }
                }
            } else if key == "Version" {
            } else {
                let (_, actions) = SAM_POLICY_TEMPLATES
                    .iter()
                    .find(|(name, _)| *name == key)
                    .unwrap_or_else(|| {
                        panic!("{resource}: SAM policy template {key} is not listed here: add its actions from policy_templates.json")
                    });
                granted.extend(actions.iter().map(|a| a.to_string()));
            }
        }
    }
    granted
}

/// IAM's action match: case-insensitive, `*` for any run of characters.
fn matches(pattern: &str, action: &str) -> bool {
    fn go(p: &[u8], a: &[u8]) -> bool {
        match p.split_first() {
            None => a.is_empty(),
            Some((b'*', rest)) => (0..=a.len()).any(|i| go(rest, &a[i..])),
            Some((c, rest)) => a
                .split_first()
                .is_some_and(|(d, tail)| c.eq_ignore_ascii_case(d) && go(rest, tail)),
        }
    }
    go(pattern.as_bytes(), action.as_bytes())
}

/// Each function in the template: (resource name, binary, granted actions).
fn template_functions(path: &Path) -> Vec<(String, String, Vec<String>)> {
    let text = std::fs::read_to_string(path).unwrap();
    let docs = YamlLoader::load_from_str(&text).unwrap();
    let resources = docs[0]["Resources"].as_hash().unwrap();
    let mut out = Vec::new();
    for (name, resource) in resources {
        if resource["Type"].as_str() != Some("AWS::Serverless::Function") {
            continue;
        }
        let name = name.as_str().unwrap().to_string();
        let binary = resource["Metadata"]["BuildProperties"]["Binary"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: no Metadata.BuildProperties.Binary"))
            .to_string();
        let granted = granted_actions(&name, &resource["Properties"]["Policies"]);
        out.push((name, binary, granted));
    }
    out
}

/// The gaps: for each function, every needed action no grant matches.
fn missing_grants(template: &Path) -> Vec<String> {
    let functions = template_functions(template);
    assert!(
        functions.len() >= 2,
        "expected the ingest and drain functions in the template"
    );
    let mut missing = Vec::new();
    for (name, binary, granted) in functions {
        for (action, from) in required_actions(&binary) {
            if !granted.iter().any(|g| matches(g, &action)) {
                missing.push(format!(
                    "{name} (functions/{binary}) needs {action} for {from}, and template.yaml does not grant it"
                ));
            }
        }
    }
    missing
}

/// Rule (DESIGN point 8): every AWS action a function's code calls is granted to that function.
#[test]
fn every_aws_call_of_each_function_is_granted_by_the_template() {
    let missing = missing_grants(&root().join("template.yaml"));
    assert!(missing.is_empty(), "IAM gaps:\n{}", missing.join("\n"));
}

/// The scan sees what the adapters call (so the rule above cannot pass by finding nothing), and a grant
/// taken away from a copy of the template is reported, naming the function and the action.
#[test]
fn the_scan_finds_the_calls_and_a_removed_grant_fails() {
    let drain = required_actions("drain");
    for action in [
        "dynamodb:PartiQLInsert",
        "dynamodb:PartiQLUpdate",
        "dynamodb:BatchGetItem",
        "dynamodb:UpdateItem",
        "sqs:ReceiveMessage",
        "sqs:SendMessage",
        "secretsmanager:GetSecretValue",
    ] {
        assert!(drain.contains_key(action), "{action} not found: {drain:?}");
    }
    let ingest = required_actions("ingest");
    assert!(ingest.contains_key("sqs:SendMessage"), "{ingest:?}");
    assert!(!ingest.contains_key("sqs:ReceiveMessage"), "{ingest:?}");

    let text = std::fs::read_to_string(root().join("template.yaml")).unwrap();
    let without = text.replacen("                - dynamodb:PartiQLUpdate\n", "", 1);
    assert_ne!(
        text, without,
        "the template's PartiQL grant moved: update this test"
    );
    let dir = std::env::temp_dir().join(format!("sluice-iam-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let copy = dir.join("template.yaml");
    std::fs::write(&copy, without).unwrap();
    let missing = missing_grants(&copy);
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(missing.len(), 1, "{missing:?}");
    assert!(
        missing[0].starts_with("DrainFunction (functions/drain) needs dynamodb:PartiQLUpdate"),
        "{}",
        missing[0]
    );

    assert!(matches("sqs:SendMessage*", "sqs:SendMessage"));
    assert!(!matches("sqs:SendMessage*", "sqs:ReceiveMessage"));
}
