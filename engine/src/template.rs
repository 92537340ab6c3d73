//! Prompts of human nodes: `{{vars.a.b}}`, `{{input.x}}`, `{{from}}` and `{{node}}` replaced
//! when an operator is shown the job. Rule: never fail and never hide a problem: a path that
//! is not there renders as a visible `<missing vars.x>` marker, so an operator sees what the
//! graph author meant to show. Pure: no IO.

use serde_json::Value;

/// Renders `prompt` for one job. `vars` and `input` are the workflow's JSON; `from` is the node
/// the workflow came from and `node` the human node itself. Strings are inserted unquoted,
/// other JSON compactly; missing paths and unknown placeholders become `<missing ...>` and
/// `<unknown ...>`; text without a closing `}}` stays as written.
pub fn render_prompt(prompt: &str, vars: &Value, input: &Value, from: &str, node: &str) -> String {
    let mut out = String::with_capacity(prompt.len());
    let mut rest = prompt;
    while let Some(open) = rest.find("{{") {
        let Some(close) = rest[open + 2..].find("}}") else {
            break;
        };
        out.push_str(&rest[..open]);
        let expr = rest[open + 2..open + 2 + close].trim();
        match Placeholder::parse(expr) {
            Some(Placeholder::From) => out.push_str(from),
            Some(Placeholder::Node) => out.push_str(node),
            Some(Placeholder::Path { root, path }) => {
                let doc = if root == "vars" { vars } else { input };
                match lookup(doc, path) {
                    Some(Value::String(s)) => out.push_str(s),
                    Some(value) => out.push_str(&value.to_string()),
                    None => out.push_str(&format!("<missing {expr}>")),
                }
            }
            None => out.push_str(&format!("<unknown {expr}>")),
        }
        rest = &rest[open + 2 + close + 2..];
    }
    out.push_str(rest);
    out
}

/// The placeholders of `prompt` that [`render_prompt`] does not understand, as written
/// between the braces; validation warns about them.
pub(crate) fn unknown_placeholders(prompt: &str) -> Vec<String> {
    let mut unknown = Vec::new();
    let mut rest = prompt;
    while let Some(open) = rest.find("{{") {
        let Some(close) = rest[open + 2..].find("}}") else {
            break;
        };
        let expr = rest[open + 2..open + 2 + close].trim();
        if Placeholder::parse(expr).is_none() {
            unknown.push(expr.to_owned());
        }
        rest = &rest[open + 2 + close + 2..];
    }
    unknown
}

enum Placeholder<'a> {
    From,
    Node,
    /// `vars` or `input`, then dot-separated keys (or array indexes).
    Path {
        root: &'a str,
        path: &'a str,
    },
}

impl<'a> Placeholder<'a> {
    fn parse(expr: &'a str) -> Option<Self> {
        match expr {
            "from" => return Some(Placeholder::From),
            "node" => return Some(Placeholder::Node),
            _ => {}
        }
        let (root, path) = expr.split_once('.').unwrap_or((expr, ""));
        let valid_path = path.is_empty() || path.split('.').all(|segment| !segment.is_empty());
        (matches!(root, "vars" | "input") && valid_path).then_some(Placeholder::Path { root, path })
    }
}

fn lookup<'v>(doc: &'v Value, path: &str) -> Option<&'v Value> {
    if path.is_empty() {
        return Some(doc);
    }
    path.split('.').try_fold(doc, |value, segment| match value {
        Value::Object(map) => map.get(segment),
        Value::Array(items) => segment.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn replaces_every_kind_of_placeholder() {
        let vars = json!({"order_id": "A-17", "customer": {"name": "Ada", "tier": 2}, "items": ["pen", "ink"]});
        let input = json!({"amount": 12.5, "tags": ["x"], "gift": true, "note": null});
        let cases = [
            (
                "Order {{vars.order_id}} failed at {{from}}",
                "Order A-17 failed at reserve",
            ),
            (
                "{{ vars.customer.name }} (tier {{vars.customer.tier}})",
                "Ada (tier 2)",
            ),
            ("first item {{vars.items.0}}", "first item pen"),
            (
                "amount {{input.amount}}, tags {{input.tags}}",
                "amount 12.5, tags [\"x\"]",
            ),
            (
                "gift {{input.gift}}, note {{input.note}}",
                "gift true, note null",
            ),
            (
                "customer {{vars.customer}}",
                "customer {\"name\":\"Ada\",\"tier\":2}",
            ),
            ("at {{node}}", "at escalate"),
        ];
        for (prompt, expected) in cases {
            assert_eq!(
                render_prompt(prompt, &vars, &input, "reserve", "escalate"),
                expected,
                "{prompt}"
            );
        }
    }

    #[test]
    fn missing_and_unknown_placeholders_stay_visible() {
        let vars = json!({"a": {"b": 1}});
        let input = json!({});
        let cases = [
            ("x={{vars.nope}}", "x=<missing vars.nope>"),
            ("x={{vars.a.b.c}}", "x=<missing vars.a.b.c>"),
            ("x={{vars.a.}}", "x=<unknown vars.a.>"),
            ("x={{input.list.9}}", "x=<missing input.list.9>"),
            ("x={{var.a}}", "x=<unknown var.a>"),
            ("unclosed {{vars.a", "unclosed {{vars.a"),
            ("no placeholders", "no placeholders"),
        ];
        for (prompt, expected) in cases {
            assert_eq!(
                render_prompt(prompt, &vars, &input, "f", "n"),
                expected,
                "{prompt}"
            );
        }
    }

    #[test]
    fn lists_placeholders_it_does_not_understand() {
        let prompt = "{{vars.ok}} {{from}} {{ sender }} {{input}} {{vars..x}}";
        assert_eq!(unknown_placeholders(prompt), ["sender", "vars..x"]);
    }
}
