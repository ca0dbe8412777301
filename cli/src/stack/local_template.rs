//! The LocalStack copy of `template.yaml`. LocalStack expands the SAM transform server-side and rejects a
//! local-path `CodeUri` even when the function's condition is false, so a local deploy sends
//! [`local_template`]: the same template with every `CodeUri` pointing at an S3 object that need not exist.

/// Bucket named by the rewritten `CodeUri`s; nothing is ever read from it.
pub const LOCAL_CODE_BUCKET: &str = "sluice-local";

/// The template with every `CodeUri: <local path>` replaced by `s3://sluice-local/<path>.zip`, so
/// LocalStack's SAM transform accepts it. Everything else (comments, short-form tags such as
/// `!Ref`, layout) is kept byte for byte; `CodeUri`s that already name S3 or are mappings stay.
pub fn local_template(template_yaml: &str) -> String {
    template_yaml
        .split_inclusive('\n')
        .map(|line| rewrite_code_uri(line).unwrap_or_else(|| line.to_owned()))
        .collect()
}

/// The rewritten line if `line` is a block-style `CodeUri:` with a local path.
fn rewrite_code_uri(line: &str) -> Option<String> {
    let (body, newline) = match line.strip_suffix('\n') {
        Some(b) => match b.strip_suffix('\r') {
            Some(b) => (b, "\r\n"),
            None => (b, "\n"),
        },
        None => (line, ""),
    };
    let rest = body.trim_start();
    let value = rest.strip_prefix("CodeUri:")?;
    // A comment after the value is kept; YAML needs whitespace before `#` for it to be one.
    let (value, comment) = match value.find(" #").or_else(|| value.find("\t#")) {
        Some(i) => value.split_at(value[..i].trim_end().len()),
        None => (value, ""),
    };
    let path = value.trim().trim_matches(|c| c == '"' || c == '\'');
    if path.is_empty()
        || path.starts_with("s3://")
        || path.starts_with('!')
        || path.starts_with('{')
    {
        return None;
    }
    let prefix = &body[..body.len() - rest.len()];
    Some(format!(
        "{prefix}CodeUri: s3://{LOCAL_CODE_BUCKET}/{}.zip{comment}{newline}",
        object_key(path)
    ))
}

/// A stable S3 key for a local code path: `functions/drain/` → `functions-drain`, `.` → `workspace`.
fn object_key(path: &str) -> String {
    let key: String = path
        .trim_start_matches("./")
        .trim_matches('/')
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let key = key.trim_matches('-');
    if key.is_empty() {
        "workspace".to_owned()
    } else {
        key.to_owned()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// `CodeUri`s that are not local paths: left as they are.
    const NOT_LOCAL: &str = "\
  Packaged:
    Properties:
      CodeUri: s3://bucket/key.zip
  Mapping:
    Properties:
      CodeUri:
        Bucket: !Ref Bucket
        Key: code.zip
  Ref:
    Properties:
      CodeUri: !Ref CodeLocation
";

    #[test]
    fn local_template_rewrites_local_code_uris_only() {
        // The same template around three `CodeUri`s (the other ones are not local paths).
        let template = |common: &str, ingest: &str, drain: &str| {
            format!(
                "\
Globals:
  Function:
    CodeUri: {common}
Resources:
  IngestFunction:
    Type: AWS::Serverless::Function
    Condition: FunctionsEnabled
    Properties:
      CodeUri: {ingest}
      Handler: bootstrap
  DrainFunction:
    Properties:
      CodeUri: {drain}   # the drain
{NOT_LOCAL}"
            )
        };
        let out = local_template(&template("functions/common/", ".", "\"./functions/drain\""));
        assert_eq!(
            out,
            template(
                "s3://sluice-local/functions-common.zip",
                "s3://sluice-local/workspace.zip",
                "s3://sluice-local/functions-drain.zip"
            )
        );
    }

    #[test]
    fn local_template_keeps_crlf_and_a_missing_final_newline() {
        assert_eq!(
            local_template("A: 1\r\n  CodeUri: ./\r\nB: 2"),
            "A: 1\r\n  CodeUri: s3://sluice-local/workspace.zip\r\nB: 2"
        );
        assert_eq!(
            local_template("  CodeUri: x"),
            "  CodeUri: s3://sluice-local/x.zip"
        );
    }

    #[test]
    fn local_template_leaves_other_keys_alone() {
        let src = "  DefinitionUri: ./api.yaml\n  # CodeUri: . in a comment\n  MyCodeUri: .\n";
        assert_eq!(local_template(src), src);
    }

    #[test]
    fn object_keys_are_plain() {
        assert_eq!(object_key("."), "workspace");
        assert_eq!(object_key("./"), "workspace");
        assert_eq!(object_key("functions/drain/"), "functions-drain");
        assert_eq!(object_key("./a b/c.d"), "a-b-c-d");
    }
}
