//! Java `.properties` files, as `java.util.Properties.load` reads them: `#`/`!` comments,
//! `=`, `:` or whitespace between key and value, backslash line continuation, and escapes.

/// Parses `text` into key/value pairs in file order (a repeated key keeps its last value
/// when looked up with [`last`]).
pub fn parse(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut lines = text.lines();
    while let Some(first) = lines.next() {
        let trimmed = first.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with('!') {
            continue;
        }
        let mut logical = String::new();
        let mut line = trimmed.to_owned();
        loop {
            let trailing = line.chars().rev().take_while(|c| *c == '\\').count();
            if trailing % 2 == 1 {
                line.pop();
                logical.push_str(&line);
                match lines.next() {
                    Some(next) => line = next.trim_start().to_owned(),
                    None => break,
                }
            } else {
                logical.push_str(&line);
                break;
            }
        }
        out.push(split(&logical));
    }
    out
}

/// The last value of `key`.
pub fn last<'a>(props: &'a [(String, String)], key: &str) -> Option<&'a str> {
    props
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn split(line: &str) -> (String, String) {
    let chars: Vec<char> = line.chars().collect();
    let mut i = 0;
    let mut key_end = chars.len();
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 2,
            '=' | ':' | ' ' | '\t' | '\x0c' => {
                key_end = i;
                break;
            }
            _ => i += 1,
        }
    }
    let key: String = chars[..key_end.min(chars.len())].iter().collect();
    let mut j = key_end;
    while j < chars.len() && matches!(chars[j], ' ' | '\t' | '\x0c') {
        j += 1;
    }
    if j < chars.len() && matches!(chars[j], '=' | ':') {
        j += 1;
        while j < chars.len() && matches!(chars[j], ' ' | '\t' | '\x0c') {
            j += 1;
        }
    }
    let value: String = chars[j.min(chars.len())..].iter().collect();
    (unescape(&key), unescape(value.trim_end()))
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\x0c'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                if let Some(ch) = u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                    out.push(ch);
                }
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_properties_syntax() {
        let text = "# comment\n! also\nclusters = A, B\nA.bootstrap.servers:host:9092\nkey value with spaces\nlong = one,\\\n    two\nesc\\=aped = a\\tb\\u0041\nempty=\n";
        let p = parse(text);
        assert_eq!(last(&p, "clusters"), Some("A, B"));
        assert_eq!(last(&p, "A.bootstrap.servers"), Some("host:9092"));
        assert_eq!(last(&p, "key"), Some("value with spaces"));
        assert_eq!(last(&p, "long"), Some("one,two"));
        assert_eq!(last(&p, "esc=aped"), Some("a\tbA"));
        assert_eq!(last(&p, "empty"), Some(""));
    }
}
