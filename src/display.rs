//! Text the Python reprs and notebook tables are made of: values written as Python literals
//! (`'id'`, `0.5`, `True`, `None`, `{'code': 0.9}`) and small escaped HTML tables. The core's
//! `Display` impls use these so that every repr reads like the Python call that builds it.

use std::fmt::Write;

/// A string as Python's `repr()` writes it: single quotes unless the text holds one and no
/// double quote; backslash escapes for the quote, backslash and control characters.
pub fn py_str(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// A float as Python's `repr()` writes it: shortest round-trip digits, `1.0` not `1`,
/// `1e+16` not `1e16`, `inf`, `nan`.
pub fn py_float(v: f64) -> String {
    if v.is_nan() {
        return "nan".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "inf" } else { "-inf" }.into();
    }
    let text = format!("{v:?}");
    match text.split_once('e') {
        Some((mantissa, exp)) => {
            let (sign, digits) = exp.strip_prefix('-').map_or(("+", exp), |d| ("-", d));
            let mantissa = mantissa.strip_suffix(".0").unwrap_or(mantissa);
            format!("{mantissa}e{sign}{digits:0>2}")
        }
        None => text,
    }
}

/// `True` / `False`.
pub fn py_bool(v: bool) -> &'static str {
    if v {
        "True"
    } else {
        "False"
    }
}

/// A float, or `None`.
pub fn py_opt_float(v: Option<f64>) -> String {
    v.map_or_else(|| "None".into(), py_float)
}

/// Named levels as a Python dict: `{'code': 0.9, 'chat': 0.5}`.
pub fn py_levels(pairs: &[(String, f64)]) -> String {
    let items: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}: {}", py_str(k), py_float(*v)))
        .collect();
    format!("{{{}}}", items.join(", "))
}

/// A list of strings as a Python list: `['a', 'b']`.
pub fn py_str_list(items: &[String]) -> String {
    let items: Vec<String> = items.iter().map(|s| py_str(s)).collect();
    format!("[{}]", items.join(", "))
}

/// Text safe inside HTML elements and attribute values.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// An HTML table of plain-text cells (all escaped here): a header row, then `rows`; an optional
/// caption line above it.
pub fn html_table(caption: Option<&str>, headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = String::new();
    if let Some(caption) = caption {
        let _ = write!(out, "<p>{}</p>", escape_html(caption));
    }
    out.push_str("<table><thead><tr>");
    for h in headers {
        let _ = write!(out, "<th>{}</th>", escape_html(h));
    }
    out.push_str("</tr></thead><tbody>");
    for row in rows {
        out.push_str("<tr>");
        for c in row {
            let _ = write!(out, "<td>{}</td>", escape_html(c));
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_quoted_like_python_repr() {
        assert_eq!(py_str("abc"), "'abc'");
        assert_eq!(py_str("it's"), "\"it's\"");
        assert_eq!(py_str("a'b\"c"), "'a\\'b\"c'");
        assert_eq!(py_str("a\\b\n\x01"), "'a\\\\b\\n\\x01'");
        assert_eq!(py_str("é"), "'é'");
    }

    #[test]
    fn floats_are_written_like_python_repr() {
        let cases = [
            (1.0, "1.0"),
            (0.1, "0.1"),
            (300.0, "300.0"),
            (-2.5, "-2.5"),
            (1e16, "1e+16"),
            (1.5e300, "1.5e+300"),
            (1e-7, "1e-07"),
            (2.5e-5, "2.5e-05"),
            (123456789.0, "123456789.0"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (f64::NAN, "nan"),
        ];
        for (v, want) in cases {
            assert_eq!(py_float(v), want, "{v}");
        }
    }

    #[test]
    fn collections_and_options() {
        let levels = vec![("chat".to_string(), 0.5), ("code".to_string(), 1.0)];
        assert_eq!(py_levels(&levels), "{'chat': 0.5, 'code': 1.0}");
        assert_eq!(py_levels(&[]), "{}");
        assert_eq!(py_opt_float(None), "None");
        assert_eq!(py_opt_float(Some(30.0)), "30.0");
        assert_eq!(py_bool(true), "True");
        assert_eq!(py_str_list(&["a".into(), "b".into()]), "['a', 'b']");
    }

    #[test]
    fn html_tables_escape_every_cell() {
        let t = html_table(Some("a<b"), &["x&y"], &[vec!["<script>".into()]]);
        assert_eq!(
            t,
            "<p>a&lt;b</p><table><thead><tr><th>x&amp;y</th></tr></thead><tbody>\
             <tr><td>&lt;script&gt;</td></tr></tbody></table>"
        );
    }
}
